//! Authorizations belong to patient plans: archiving a plan while its authorization is in
//! progress withdraws it, deleting it from ACCloud and stopping the send.

use std::time::Duration;

use refbridge_accloud_sim::{Endpoint, FaultKind, ScriptedFault, SimConfig};
use serde_json::{Value, json};

use crate::helpers::{TestApp, sample_terms, spawn_app_with};

const ID: &str = "0e1d5e34-63d7-4bb2-8e22-9376943ab56f";

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = app
        .http
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(&app.reviewer);
    if let Some(b) = body {
        req = req.json(b);
    }
    let res = req.send().await.unwrap();
    let s = res.status().as_u16();
    (s, res.json().await.unwrap_or(Value::Null))
}

/// A referral approved and sent up to its authorization, then stalled: ACCloud refuses every
/// referral create for now.
async fn stalled_after_the_authorization() -> (TestApp, Value) {
    let app = spawn_app_with(SimConfig::default(), false).await;
    app.post_referral(&app.payload(ID, 1094)).await;
    app.sim().push_scripted_fault(ScriptedFault::new(
        Endpoint::ReferralCreate,
        FaultKind::ErrorBeforeCommit { status: 500 },
        1000,
    ));
    let (s, b) = app.approve(ID, &sample_terms()).await;
    assert_eq!(s, 202, "{b}");
    assert!(
        b["terms"]["authorizations"][0]["plan_id"].is_string(),
        "the primary plan from intake: {b}"
    );
    let engine = app.engine("worker-a");
    let start = std::time::Instant::now();
    loop {
        engine.run_once().await.unwrap();
        let d = app.detail(ID).await;
        if d["send"]["steps"][2]["state"] == "done" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(app.sim().state().authorizations.len(), 1);
    let d = app.detail(ID).await;
    let plans = call(
        &app,
        reqwest::Method::GET,
        &format!(
            "/v1/patients/{}/patient-plans",
            d["patient"]["id"].as_str().unwrap()
        ),
        None,
    )
    .await
    .1;
    let primary = plans["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["plan_order_number"] == 1)
        .unwrap()
        .clone();
    (app, primary)
}

fn replacement(primary: &Value, conflict: &str) -> Value {
    json!({
        "patient_id": primary["patient_id"],
        "member_number": "NEW-555",
        "payor_entity_id": primary["payor_entity_id"],
        "plan_order_number": 1,
        "source_id": "cpr:new-plan",
        "conflict_behavior": conflict,
    })
}

#[tokio::test]
async fn archiving_the_plan_mid_send_withdraws_and_deletes_the_authorization() {
    let (app, primary) = stalled_after_the_authorization().await;
    let (s, b) = call(
        &app,
        reqwest::Method::PUT,
        "/v1/patient-plans",
        Some(&replacement(&primary, "REPLACE")),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["outcome"], "replaced");
    assert_eq!(
        b["withdrawn_authorization_ids"],
        json!([format!("{ID}/authorizations/0")])
    );

    let d = app.detail(ID).await;
    assert_eq!(d["status"], "needs_attention");
    assert!(
        d["history"].as_array().unwrap().last().unwrap()["reason"]
            .as_str()
            .unwrap()
            .contains("authorization withdrawn")
    );
    let events = app.events(ID).await;
    let n = events.len();
    assert_eq!(events[n - 2].0, "send.authorization_withdrawn");
    assert_eq!(events[n - 2].1["authorizations"], json!([0]));
    assert_eq!(events[n - 1].0, "send.needs_attention");
    assert_eq!(events[n - 1].1["reason"], "authorization_withdrawn");

    // The worker deletes it from ACCloud; the referral is never created.
    app.sim().clear_faults();
    let engine = app.engine("worker-b");
    let start = std::time::Instant::now();
    loop {
        engine.run_once().await.unwrap();
        if app.sim().state().authorizations.iter().all(|a| a.deleted) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "not deleted");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    engine.run_once().await.unwrap();
    let d = app.detail(ID).await;
    assert_eq!(d["status"], "needs_attention");
    assert_eq!(d["send"]["state"], "paused");
    let kinds = step_states(&d);
    assert_eq!(
        kinds,
        vec![
            ("client", "done"),
            ("service", "done"),
            ("authorization", "done"),
            ("referral", "skipped"),
            ("attachment", "skipped"),
            ("authorization_withdraw", "done"),
        ]
    );
    assert!(app.sim().state().referrals.is_empty());

    // A resume corrects the approved authorizations; it does not add one.
    let mut two = sample_terms();
    let first = two["authorizations"][0].clone();
    two["authorizations"].as_array_mut().unwrap().push(first);
    two["authorizations"][1]["rule_weekly"] = json!(3);
    let (s, b) = call(
        &app,
        reqwest::Method::POST,
        &format!("/v1/referral-requests/{ID}/approval/resume"),
        Some(&two),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["details"][0]["path"], "authorizations", "{b}");
    assert!(
        b["details"][0]["problem"]
            .as_str()
            .unwrap()
            .contains("approved number of authorizations (1)"),
        "{b}"
    );
    assert_eq!(app.detail(ID).await["status"], "needs_attention");

    // Resumed with the terms resolved again (now against the new plan), the first send
    // plans what the withdrawal skipped and reaches the agency after all.
    let (s, b) = call(
        &app,
        reqwest::Method::POST,
        &format!("/v1/referral-requests/{ID}/approval/resume"),
        Some(&sample_terms()),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    let new_plan = b["terms"]["authorizations"][0]["plan_id"].clone();
    assert!(new_plan.is_string());
    assert_ne!(new_plan, primary["patient_plan_id"]);
    run_until_sent(&app).await;
    let d = app.detail(ID).await;
    let kinds = step_states(&d);
    assert_eq!(
        kinds,
        vec![
            ("client", "done"),
            ("service", "done"),
            ("authorization", "done"),
            ("referral", "replanned"),
            ("attachment", "replanned"),
            ("authorization_withdraw", "done"),
            ("authorization", "done"),
            ("referral", "done"),
            ("attachment", "done"),
        ]
    );
    assert_eq!(d["send"]["changes"][2]["kind"], "resume");
    let sim = app.sim().state();
    let live = live_authorizations(&sim);
    assert_eq!(live.len(), 1, "the withdrawn one stays deleted, one new");
    assert_eq!(sim.referrals.len(), 1);
    assert_eq!(sim.referrals[0].authorization_ids, live);
    assert!(app.sim().duplicates().is_empty());
    // Sent: nothing left to resume.
    let (s, _) = call(
        &app,
        reqwest::Method::POST,
        &format!("/v1/referral-requests/{ID}/approval/resume"),
        None,
    )
    .await;
    assert_eq!(s, 409);
}

/// Each step of the send as (kind, state), in order.
fn step_states(detail: &Value) -> Vec<(&str, &str)> {
    detail["send"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["kind"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect()
}

/// The ids of the authorizations ACCloud has not deleted.
fn live_authorizations(sim: &refbridge_accloud_sim::StateSnapshot) -> Vec<i64> {
    sim.authorizations
        .iter()
        .filter(|a| !a.deleted)
        .map(|a| a.id)
        .collect()
}

/// Runs the worker until the referral is sent.
async fn run_until_sent(app: &TestApp) {
    let engine = app.engine("worker-a");
    let start = std::time::Instant::now();
    while app.detail(ID).await["status"] != "sent" {
        engine.run_once().await.unwrap();
        assert!(start.elapsed() < Duration::from_secs(20), "not sent");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// Runs the worker until step `position` is done.
async fn run_until_done(app: &TestApp, position: usize) {
    let engine = app.engine("worker-a");
    let start = std::time::Instant::now();
    while app.detail(ID).await["send"]["steps"][position]["state"] != "done" {
        engine.run_once().await.unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "step {position} not done"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// The plan that replaced the first is archived in turn while the resumed send is under way:
/// a second withdrawal, a second resume, and still one referral and one live authorization.
#[tokio::test]
async fn a_resumed_send_can_be_withdrawn_and_resumed_again() {
    let (app, primary) = stalled_after_the_authorization().await;
    let resume_path = format!("/v1/referral-requests/{ID}/approval/resume");
    let terms = sample_terms();
    let resume = || call(&app, reqwest::Method::POST, &resume_path, Some(&terms));
    let put = |member: &str, source: &str| {
        let mut plan = replacement(&primary, "REPLACE");
        plan["member_number"] = json!(member);
        plan["source_id"] = json!(source);
        plan
    };
    let plan = put("NEW-555", "cpr:new-plan");
    let (s, b) = call(&app, reqwest::Method::PUT, "/v1/patient-plans", Some(&plan)).await;
    assert_eq!(
        (s, b["withdrawn_authorization_ids"].as_array().map(Vec::len)),
        (201, Some(1))
    );
    run_until_done(&app, 5).await; // the withdrawal
    let (s, b) = resume().await;
    assert_eq!(s, 202, "{b}");
    run_until_done(&app, 6).await; // the authorization again; the referral still fails

    let plan = put("NEW-777", "cpr:newer-plan");
    let (s, b) = call(&app, reqwest::Method::PUT, "/v1/patient-plans", Some(&plan)).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        b["withdrawn_authorization_ids"],
        json!([format!("{ID}/authorizations/0")])
    );
    assert_eq!(app.detail(ID).await["status"], "needs_attention");
    run_until_done(&app, 9).await; // the second withdrawal

    app.sim().clear_faults();
    let (s, b) = resume().await;
    assert_eq!(s, 202, "{b}");
    run_until_sent(&app).await;
    let d = app.detail(ID).await;
    let changes: Vec<&str> = d["send"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        changes,
        vec!["approval", "withdrawal", "resume", "withdrawal", "resume"]
    );
    let sim = app.sim().state();
    let live = live_authorizations(&sim);
    assert_eq!((live.len(), sim.authorizations.len()), (1, 3));
    assert_eq!(sim.referrals.len(), 1);
    assert_eq!(sim.referrals[0].authorization_ids, live);
    assert!(app.sim().duplicates().is_empty());
}

#[tokio::test]
async fn raise_error_on_auth_withdrawal_refuses_while_the_authorization_is_in_progress() {
    let (app, primary) = stalled_after_the_authorization().await;
    let (s, b) = call(
        &app,
        reqwest::Method::PUT,
        "/v1/patient-plans",
        Some(&replacement(&primary, "RAISE_ERROR_ON_AUTH_WITHDRAWAL")),
    )
    .await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(app.detail(ID).await["status"], "sending");
    assert!(app.sim().state().authorizations.iter().all(|a| !a.deleted));
}
