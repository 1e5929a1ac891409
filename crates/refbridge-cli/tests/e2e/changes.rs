//! After the approval: changes of terms, revisions, cancellation, more documents; each with
//! the exact calls it makes (from the simulator's journal) and the state it leaves.

use std::time::Duration;

use refbridge_accloud_sim::{Endpoint, FaultKind, ScriptedFault, SimConfig};
use serde_json::{Value, json};

use crate::helpers::{TestApp, sample_terms, sim_summary, spawn_app, spawn_app_with};

const ID: &str = "0e1d5e34-63d7-4bb2-8e22-9376943ab56f";

async fn sent(app: &TestApp) {
    app.post_referral(&app.payload(ID, 1094)).await;
    assert_eq!(app.approve(ID, &sample_terms()).await.0, 202);
    app.wait_status(ID, &["sent"], Duration::from_secs(20))
        .await;
    app.sim().clear_journal();
}

async fn sent_app() -> TestApp {
    let app = spawn_app().await;
    sent(&app).await;
    app
}

async fn put_terms(app: &TestApp, terms: &Value, query: &str) -> (u16, Value) {
    let res = app
        .http
        .put(format!(
            "{}/v1/referral-requests/{ID}/approval{query}",
            app.base
        ))
        .bearer_auth(&app.reviewer)
        .json(terms)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// The calls that changed something in ACCloud (reads left out).
fn writes(app: &TestApp) -> Vec<String> {
    app.sim()
        .journal()
        .iter()
        .filter(|j| j.method != "GET")
        .map(|j| {
            format!(
                "{} {:?}",
                j.method,
                j.endpoint.unwrap_or(Endpoint::GroupList)
            )
        })
        .collect()
}

fn live_auths(app: &TestApp) -> Vec<refbridge_accloud_sim::AuthorizationRecord> {
    app.sim()
        .state()
        .authorizations
        .into_iter()
        .filter(|a| !a.deleted)
        .collect()
}

fn latest_revision(app: &TestApp) -> refbridge_accloud_sim::ReferralRecord {
    app.sim()
        .state()
        .referrals
        .into_iter()
        .find(|r| r.is_latest_revision)
        .unwrap()
}

async fn change_and_wait(app: &TestApp, terms: &Value) -> Value {
    let (s, b) = put_terms(app, terms, "").await;
    assert_eq!(s, 202, "{b}");
    app.wait_status(ID, &["sent"], Duration::from_secs(20))
        .await;
    b
}

fn end_plus(terms: &mut Value, days: i64) -> String {
    let end = chrono::NaiveDate::parse_from_str(
        terms["authorizations"][0]["end_date"].as_str().unwrap(),
        "%Y-%m-%d",
    )
    .unwrap();
    let new = (end + chrono::Duration::days(days)).to_string();
    terms["authorizations"][0]["end_date"] = json!(new);
    new
}

#[tokio::test]
async fn an_end_date_change_updates_the_authorization_in_place_and_sends_a_revision() {
    let app = sent_app().await;
    let before = live_auths(&app);
    let mut terms = sample_terms();
    let old_end = terms["authorizations"][0]["end_date"]
        .as_str()
        .unwrap()
        .to_owned();
    let new_end = end_plus(&mut terms, 30);
    terms["revision_comment"] = json!("Extended after the physician's call");
    let b = change_and_wait(&app, &terms).await;
    assert_eq!(
        b["planned_calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["step"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["authorization_update", "referral_update"]
    );
    assert_eq!(
        writes(&app),
        vec!["PUT AuthorizationUpdate", "POST ReferralUpdate"]
    );
    let after = live_auths(&app);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].id, before[0].id, "updated in place");
    assert_eq!(after[0].end_at.unwrap().to_string(), new_end);
    let r = latest_revision(&app);
    assert_eq!(r.revision_number, 2);
    assert_eq!(r.authorization_ids, vec![after[0].id]);
    assert_eq!(
        r.revision_reasons.clone().unwrap()[0],
        format!("Authorization end date changed from {old_end} to {new_end}")
    );
    assert_eq!(
        r.revision_comment.as_deref(),
        Some("Extended after the physician's call")
    );
    let tz: chrono_tz::Tz = "America/Denver".parse().unwrap();
    assert_eq!(
        r.end_at.with_timezone(&tz).date_naive().to_string(),
        new_end
    );
    let events = app.events(ID).await;
    assert_eq!(
        events.last().unwrap(),
        &(
            "send.change_sent".to_owned(),
            json!({"status": "sent", "change_no": 1})
        )
    );
}

async fn replaced_by(change: impl Fn(&mut Value)) {
    let app = sent_app().await;
    let before = live_auths(&app);
    let mut terms = sample_terms();
    change(&mut terms);
    change_and_wait(&app, &terms).await;
    assert_eq!(
        writes(&app),
        vec![
            "DELETE AuthorizationDelete",
            "POST AuthorizationCreate",
            "POST ReferralUpdate"
        ]
    );
    let after = live_auths(&app);
    assert_eq!(after.len(), 1);
    assert_ne!(after[0].id, before[0].id, "a new authorization");
    assert!(
        app.sim()
            .state()
            .authorizations
            .iter()
            .any(|a| a.id == before[0].id && a.deleted)
    );
    assert_eq!(latest_revision(&app).authorization_ids, vec![after[0].id]);
    assert!(app.sim().duplicates().is_empty());
}

#[tokio::test]
async fn a_start_date_change_deletes_and_recreates_the_authorization() {
    replaced_by(|t| {
        let start = chrono::NaiveDate::parse_from_str(
            t["authorizations"][0]["start_date"].as_str().unwrap(),
            "%Y-%m-%d",
        )
        .unwrap();
        t["authorizations"][0]["start_date"] =
            json!((start + chrono::Duration::days(3)).to_string());
    })
    .await;
}

#[tokio::test]
async fn a_frequency_change_deletes_and_recreates_the_authorization() {
    replaced_by(|t| t["authorizations"][0]["rule_weekly"] = json!(3)).await;
}

#[tokio::test]
async fn a_rule_type_change_deletes_and_recreates_the_authorization() {
    replaced_by(|t| t["authorizations"][0]["rule_type"] = json!("HOURS")).await;
}

#[tokio::test]
async fn authorizations_can_be_added_and_removed() {
    let app = sent_app().await;
    let mut terms = sample_terms();
    let mut second = terms["authorizations"][0].clone();
    second["authorization_number"] = json!("A-2");
    second["rule_weekly"] = json!(1);
    terms["authorizations"].as_array_mut().unwrap().push(second);
    let b = change_and_wait(&app, &terms).await;
    assert_eq!(
        writes(&app),
        vec!["POST AuthorizationCreate", "POST ReferralUpdate"]
    );
    assert!(
        b["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("Authorization 2 added"),
        "{b}"
    );
    let two = live_auths(&app);
    assert_eq!(two.len(), 2);
    assert_eq!(latest_revision(&app).authorization_ids.len(), 2);

    app.sim().clear_journal();
    change_and_wait(&app, &sample_terms()).await;
    assert_eq!(
        writes(&app),
        vec!["DELETE AuthorizationDelete", "POST ReferralUpdate"]
    );
    let one = live_auths(&app);
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].authorization_number.as_deref(), Some("A-1"));
    assert_eq!(latest_revision(&app).authorization_ids, vec![one[0].id]);
}

#[tokio::test]
async fn a_demographics_change_updates_the_client_and_sends_a_revision() {
    let app = sent_app().await;
    let mut terms = sample_terms();
    terms["client"] = json!({"city": "Kettering", "phone_main": "555-987-6543"});
    let b = change_and_wait(&app, &terms).await;
    assert_eq!(b["reasons"], json!(["Client demographics changed"]));
    assert_eq!(
        writes(&app),
        vec!["PUT ClientUpdate", "POST ReferralUpdate"]
    );
    let c = &app.sim().state().clients[0];
    assert_eq!(c.demographics["city"], "Kettering");
    assert_eq!(c.demographics["phone_main"], "555-987-6543");
    assert_eq!(c.groups, vec![1008], "groups untouched");
}

#[tokio::test]
async fn unchanged_terms_make_no_call() {
    let app = sent_app().await;
    let (s, b) = put_terms(&app, &sample_terms(), "").await;
    assert_eq!(s, 200);
    assert_eq!(b["changed"], false);
    assert_eq!(b["planned_calls"], json!([]));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(app.sim().journal().is_empty());
    assert_eq!(app.detail(ID).await["status"], "sent");
}

#[tokio::test]
async fn a_dry_run_returns_the_plan_and_changes_nothing() {
    let app = sent_app().await;
    let mut terms = sample_terms();
    terms["authorizations"][0]["rule_weekly"] = json!(4);
    let (s, b) = put_terms(&app, &terms, "?dry_run=true").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["dry_run"], true);
    assert_eq!(
        b["planned_calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["step"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["authorization_delete", "authorization", "referral_update"]
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(app.sim().journal().is_empty());
    let d = app.detail(ID).await;
    assert_eq!(d["status"], "sent");
    assert_eq!(
        d["send"]["terms"]["authorizations"][0]["limits"]["rule_weekly"],
        2.0
    );
    assert_eq!(d["send"]["changes"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn fields_accloud_cannot_change_are_400() {
    let app = sent_app().await;
    let mut terms = sample_terms();
    terms["service"] = json!({"funder_name": "Medicare"});
    let (s, b) = put_terms(&app, &terms, "").await;
    assert_eq!(s, 400);
    assert_eq!(b["details"][0]["path"], "service.funder");
}

#[tokio::test]
async fn revisions_chain_in_one_group_with_only_the_newest_latest() {
    let app = sent_app().await;
    let mut terms = sample_terms();
    let first_end = end_plus(&mut terms, 10);
    change_and_wait(&app, &terms).await;
    let second_end = end_plus(&mut terms, 10);
    change_and_wait(&app, &terms).await;
    let mut revs = app.sim().state().referrals;
    revs.sort_by_key(|r| r.revision_number);
    assert_eq!(
        revs.iter().map(|r| r.revision_number).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(
        revs.iter()
            .all(|r| r.revision_group_id == revs[0].revision_group_id)
    );
    assert_eq!(
        revs.iter()
            .map(|r| r.is_latest_revision)
            .collect::<Vec<_>>(),
        vec![false, false, true]
    );
    let reasons = revs[2].revision_reasons.clone().unwrap();
    assert_eq!(
        reasons[0],
        format!("Authorization end date changed from {first_end} to {second_end}")
    );
    let d = app.detail(ID).await;
    let kinds: Vec<&str> = d["send"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["approval", "change", "change"]);
    let audit: Vec<&str> = d["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(audit.iter().filter(|a| **a == "send.change").count(), 2);
    assert!(
        d["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "send.change" && a["actor"] == "reviewer-1")
    );
}

#[tokio::test]
async fn cancel_works_with_each_reason_code() {
    let app = spawn_app().await;
    for (i, code) in refbridge_domain::send::CancelReason::ALL
        .iter()
        .map(|r| r.as_str())
        .enumerate()
    {
        let id = format!("00000000-0000-4000-8000-{i:012}");
        let mut p = app.payload(&id, 7000 + i as i64);
        p["client"]["last_name"] = json!(format!("Cancel{i}"));
        app.post_referral(&p).await;
        app.approve(&id, &sample_terms()).await;
        app.wait_status(&id, &["sent"], Duration::from_secs(20))
            .await;
        app.sim().clear_journal();
        let (s, b) = app
            .post(
                &format!("/v1/referral-requests/{id}/cancel"),
                Some(&json!({"reason_code": code, "comment": "per CPR+"})),
            )
            .await;
        assert_eq!(s, 202, "{code}: {b}");
        let d = app
            .wait_status(&id, &["cancelled"], Duration::from_secs(20))
            .await;
        assert_eq!(writes(&app), vec!["POST ReferralCancel"], "{code}");
        let r = app
            .sim()
            .state()
            .referrals
            .into_iter()
            .find(|r| {
                r.client_id.to_string() == d["send"]["steps"][0]["accloud_id"].as_str().unwrap()
            })
            .unwrap();
        assert_eq!(r.status, "cancelled");
        assert_eq!(r.reason_code.as_deref(), Some(code));
        assert_eq!(r.cancellation_comment.as_deref(), Some("per CPR+"));
    }
}

#[tokio::test]
async fn a_bad_reason_code_is_400_listing_the_seven() {
    let app = sent_app().await;
    let (s, b) = app
        .post(
            &format!("/v1/referral-requests/{ID}/cancel"),
            Some(&json!({"reason_code": "bored"})),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(
        b["message"],
        "reason_code must be one of datetime_change, client_request, client_hospitalization, client_passed_away, client_refused_service, processing_error, other"
    );
    let (s, b) = app
        .post(
            &format!("/v1/referral-requests/{ID}/cancel"),
            Some(&json!({"reason_code": "other", "comment": "x".repeat(1001)})),
        )
        .await;
    assert_eq!(
        (s, b["details"][0]["path"].as_str()),
        (400, Some("comment"))
    );
}

#[tokio::test]
async fn cancelling_twice_makes_one_call_and_a_cancelled_referral_refuses_changes() {
    let app = sent_app().await;
    let path = format!("/v1/referral-requests/{ID}/cancel");
    assert_eq!(
        app.post(&path, Some(&json!({"reason_code": "client_request"})))
            .await
            .0,
        202
    );
    app.wait_status(ID, &["cancelled"], Duration::from_secs(20))
        .await;
    let (s, b) = app
        .post(&path, Some(&json!({"reason_code": "client_request"})))
        .await;
    assert_eq!((s, &b["changed"]), (200, &json!(false)));
    assert_eq!(writes(&app), vec!["POST ReferralCancel"]);
    let events = app.events(ID).await;
    let cancelled: Vec<_> = events.iter().filter(|e| e.0 == "send.cancelled").collect();
    assert_eq!(cancelled.len(), 1, "one cancellation, one event");
    assert_eq!(cancelled[0].1["by"], "reviewer");

    let mut terms = sample_terms();
    end_plus(&mut terms, 5);
    let (s, b) = put_terms(&app, &terms, "").await;
    assert_eq!(s, 409);
    assert_eq!(
        b["message"],
        format!("referral request {ID} is cancelled and cannot be changed")
    );
}

#[tokio::test]
async fn a_second_change_while_one_is_pending_is_rejected_and_says_so() {
    let mut app = spawn_app_with(SimConfig::default(), false).await;
    let w = app.engine("worker-a");
    app.start_worker(w);
    sent(&app).await;
    app.kill_workers();
    let mut terms = sample_terms();
    end_plus(&mut terms, 5);
    assert_eq!(put_terms(&app, &terms, "").await.0, 202);
    end_plus(&mut terms, 5);
    let (s, b) = put_terms(&app, &terms, "").await;
    assert_eq!(s, 409);
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("rejected, not queued"),
        "{b}"
    );
    let w = app.engine("worker-b");
    app.start_worker(w);
    app.wait_status(ID, &["sent"], Duration::from_secs(20))
        .await;
    assert_eq!(
        put_terms(&app, &terms, "").await.0,
        202,
        "accepted once the first is sent"
    );
    app.wait_status(ID, &["sent"], Duration::from_secs(20))
        .await;
    assert_eq!(latest_revision(&app).revision_number, 3);
}

#[tokio::test]
async fn documents_after_sending_are_uploaded_once_each() {
    let app = sent_app().await;
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"%PDF-1.4 plan of care".to_vec())
                .file_name("plan_of_care.pdf"),
        )
        .part(
            "file",
            reqwest::multipart::Part::bytes(vec![9u8; 300_000]).file_name("scan.bin"),
        );
    let res = app
        .http
        .post(format!("{}/v1/referral-requests/{ID}/documents", app.base))
        .bearer_auth(&app.reviewer)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let d = app
        .wait_status(ID, &["sent"], Duration::from_secs(20))
        .await;
    assert_eq!(
        writes(&app),
        vec!["POST AttachmentUpload", "POST AttachmentUpload"]
    );
    assert_eq!(d["files"].as_array().unwrap().len(), 3);
    let names: Vec<String> = attachment_names(&app);
    assert_eq!(names.len(), 3);
    assert_eq!(
        names[1..],
        ["plan_of_care.pdf".to_owned(), "scan.bin".to_owned()],
        "the agency sees the names given"
    );
    assert!(app.sim().duplicates().is_empty());

    let res = app
        .http
        .post(format!("{}/v1/referral-requests/{ID}/documents", app.base))
        .bearer_auth(&app.reviewer)
        .multipart(reqwest::multipart::Form::new().text("note", "no file here"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        app.event_types(ID).await,
        [
            "referral_request.received",
            "referral_request.approved",
            "send.completed",
            "send.documents_delivered"
        ]
    );
}

/// A referral the agency processed still takes changes; what refbridge shows then is ACCloud's
/// answer to the revision (assigned again), not the processed status read before it.
#[tokio::test]
async fn after_a_change_the_agency_status_is_the_new_revisions() {
    let app = sent_app().await;
    let r = latest_revision(&app);
    app.sim().mark_processed(r.id).unwrap();
    let mut cfg = app.engine_cfg.clone();
    cfg.agency_check_every = Some(Duration::ZERO);
    let watcher = refbridge_saga::Engine::new(
        app.state.store.clone(),
        app.state.files.clone(),
        app.accloud.clone(),
        cfg,
    );
    assert_eq!(watcher.check_agency_once().await.unwrap(), 1);
    let d = app.detail(ID).await;
    assert_eq!(d["send"]["agency_status"], "processed");
    assert!(d["send"]["agency_checked_at"].is_string());

    let mut terms = sample_terms();
    end_plus(&mut terms, 7);
    change_and_wait(&app, &terms).await;
    let latest = latest_revision(&app);
    assert_eq!(latest.revision_number, 2);
    assert_eq!(latest.status, "assigned");
    let d = app.detail(ID).await;
    assert_eq!(
        d["send"]["agency_status"], "assigned",
        "from ACCloud's answer"
    );
    assert_eq!(d["send"]["agency_checked_at"], Value::Null);
    // The next periodic read agrees, and is shown with its time.
    assert_eq!(watcher.check_agency_once().await.unwrap(), 1);
    let d = app.detail(ID).await;
    assert_eq!(d["send"]["agency_status"], "assigned");
    assert!(d["send"]["agency_checked_at"].is_string());
}

/// Idle workers re-read what the agency did with a sent referral until it is final.
#[tokio::test]
async fn the_agency_status_is_re_read_until_the_agency_processed_the_referral() {
    let app = sent_app().await;
    let detail = app.detail(ID).await;
    assert_eq!(detail["send"]["agency_status"], "assigned", "from the send");
    assert_eq!(detail["send"]["agency_checked_at"], Value::Null);
    let calls = || app.sim().journal().len();

    // Not due yet under the default ten minutes: no call.
    let before = calls();
    assert_eq!(app.engine("watcher").check_agency_once().await.unwrap(), 0);
    assert_eq!(calls(), before);

    let mut cfg = app.engine_cfg.clone();
    cfg.agency_check_every = Some(Duration::ZERO);
    let watcher = refbridge_saga::Engine::new(
        app.state.store.clone(),
        app.state.files.clone(),
        app.accloud.clone(),
        cfg,
    );
    assert_eq!(watcher.check_agency_once().await.unwrap(), 1);
    assert_eq!(calls(), before + 1, "one list call per referral");
    let detail = app.detail(ID).await;
    assert_eq!(detail["send"]["agency_status"], "assigned");
    assert!(detail["send"]["agency_checked_at"].is_string());

    app.sim().mark_processed(latest_revision(&app).id).unwrap();
    assert_eq!(watcher.check_agency_once().await.unwrap(), 1);
    assert_eq!(app.detail(ID).await["send"]["agency_status"], "processed");
    let changes: Vec<Value> = app
        .events(ID)
        .await
        .into_iter()
        .filter(|e| e.0 == "referral_request.agency_status_changed")
        .map(|e| e.1)
        .collect();
    assert_eq!(
        changes,
        [
            json!({"agency_status": "assigned", "previous": null}),
            json!({"agency_status": "processed", "previous": "assigned"})
        ],
        "an event per change of the agency's status, none for a read that changed nothing"
    );
    // Processed is final: no more reads.
    let before = calls();
    assert_eq!(watcher.check_agency_once().await.unwrap(), 0);
    assert_eq!(calls(), before);
}

#[tokio::test]
async fn a_running_worker_checks_the_agency_on_its_own() {
    let mut app = sent_app().await;
    app.sim().mark_processed(latest_revision(&app).id).unwrap();
    let mut cfg = app.engine_cfg.clone();
    cfg.owner = "watcher".into();
    cfg.agency_check_every = Some(Duration::ZERO);
    let watcher = refbridge_saga::Engine::new(
        app.state.store.clone(),
        app.state.files.clone(),
        app.accloud.clone(),
        cfg,
    );
    app.start_worker(std::sync::Arc::new(watcher));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.detail(ID).await["send"]["agency_status"] != "processed" {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never read the agency's status"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- faults on the change calls ----

const CHANGE_CALLS: [(Endpoint, &str); 4] = [
    (Endpoint::AuthorizationDelete, "authorization_delete"),
    (Endpoint::AuthorizationCreate, "authorization"),
    (Endpoint::ReferralUpdate, "referral_update"),
    (Endpoint::AuthorizationUpdate, "authorization_update"),
];

/// A change touching every kind of call: an end date (update), a frequency on a second
/// authorization (delete + create), a revision.
fn big_change_terms() -> Value {
    let mut terms = sample_terms();
    let mut second = terms["authorizations"][0].clone();
    second["authorization_number"] = json!("A-2");
    terms["authorizations"].as_array_mut().unwrap().push(second);
    terms
}

fn big_change_next(terms: &Value) -> Value {
    let mut t = terms.clone();
    let end = end_plus(&mut t, 9);
    t["authorizations"][1]["end_date"] = json!(end);
    t["authorizations"][1]["rule_weekly"] = json!(5);
    t
}

async fn change_summary(fault: Option<(Endpoint, FaultKind)>, crash: Option<&str>) -> Value {
    let app = spawn_app_with(SimConfig::default(), crash.is_none()).await;
    let first = big_change_terms();
    app.post_referral(&app.payload(ID, 1094)).await;
    app.approve(ID, &first).await;
    if crash.is_some() {
        drive(&app, "setup").await;
    }
    app.wait_status(ID, &["sent"], Duration::from_secs(20))
        .await;
    if let Some((e, f)) = fault {
        app.sim().push_scripted_fault(ScriptedFault::new(e, f, 1));
    }
    let (s, b) = put_terms(&app, &big_change_next(&first), "").await;
    assert_eq!(s, 202, "{b}");
    if let Some(kind) = crash {
        let doomed = app.engine("doomed");
        doomed.crash_points.arm(kind);
        assert!(doomed.run_once().await.is_err(), "{kind}: crashes");
        drive(&app, kind).await;
    }
    app.wait_status(ID, &["sent"], Duration::from_secs(30))
        .await;
    assert!(
        app.sim().duplicates().is_empty(),
        "{fault:?} {crash:?}: {:?}",
        app.sim().duplicates()
    );
    let mut summary = sim_summary(&app.sim());
    // Revisions: compare the chain, not ids.
    summary["revisions"] = json!(
        app.sim()
            .state()
            .referrals
            .iter()
            .map(|r| (
                r.revision_number,
                r.is_latest_revision,
                r.authorization_ids.len()
            ))
            .collect::<Vec<_>>()
    );
    summary
}

/// Runs a hand-driven engine until the send is done (its lease expiring first, after a crash).
async fn drive(app: &TestApp, what: &str) {
    let heir = app.engine("heir");
    let start = std::time::Instant::now();
    loop {
        heir.run_once().await.unwrap();
        let d = app.detail(ID).await;
        if d["status"] == "sent" {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: {}",
            d["send"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn ambiguous_faults_on_every_change_call_leave_the_fault_free_state() {
    let expected = change_summary(None, None).await;
    let mut runs = Vec::new();
    for (endpoint, _) in CHANGE_CALLS {
        for fault in [
            FaultKind::ErrorAfterCommit { status: 502 },
            FaultKind::DropAfterCommit,
            FaultKind::HangAfterCommit { ms: 2500 },
        ] {
            runs.push(async move {
                (
                    endpoint,
                    fault,
                    change_summary(Some((endpoint, fault)), None).await,
                )
            });
        }
    }
    for (endpoint, fault, got) in futures::future::join_all(runs).await {
        assert_eq!(got, expected, "{endpoint:?} under {fault:?}");
    }
}

#[tokio::test]
async fn a_worker_killed_mid_change_is_recovered_without_duplicates() {
    let expected = change_summary(None, None).await;
    let runs = CHANGE_CALLS
        .iter()
        .map(|(_, kind)| async move { (kind, change_summary(None, Some(kind)).await) });
    for (kind, got) in futures::future::join_all(runs).await {
        assert_eq!(got, expected, "killed after {kind}");
    }
}

#[tokio::test]
async fn ambiguous_faults_on_cancel_and_document_upload_are_resolved_by_lookup() {
    let mut runs = Vec::new();
    for fault in [
        FaultKind::ErrorAfterCommit { status: 503 },
        FaultKind::DropAfterCommit,
        FaultKind::HangAfterCommit { ms: 2500 },
    ] {
        runs.push(async move {
            let app = sent_app().await;
            app.sim()
                .push_scripted_fault(ScriptedFault::new(Endpoint::ReferralCancel, fault, 1));
            app.post(
                &format!("/v1/referral-requests/{ID}/cancel"),
                Some(&json!({"reason_code": "other"})),
            )
            .await;
            app.wait_status(ID, &["cancelled"], Duration::from_secs(30))
                .await;
            let cancels = app
                .sim()
                .journal()
                .iter()
                .filter(|j| j.endpoint == Some(Endpoint::ReferralCancel) && j.committed())
                .count();
            assert_eq!(cancels, 1, "cancel under {fault:?}");

            let app = sent_app().await;
            app.sim()
                .push_scripted_fault(ScriptedFault::new(Endpoint::AttachmentUpload, fault, 1));
            let form = reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(b"more".to_vec()).file_name("more.txt"),
            );
            app.http
                .post(format!("{}/v1/referral-requests/{ID}/documents", app.base))
                .bearer_auth(&app.reviewer)
                .multipart(form)
                .send()
                .await
                .unwrap();
            app.wait_status(ID, &["sent"], Duration::from_secs(30))
                .await;
            assert_eq!(
                app.sim().state().attachments.len(),
                2,
                "upload under {fault:?}"
            );
            assert!(app.sim().duplicates().is_empty());
        });
    }
    futures::future::join_all(runs).await;
}

// ---- a change keeps what it does not name; revisions only for what the agency receives ----

/// Naming limits without a rule type keeps the rule type (and the dates, number and the
/// rest): new limits replace the authorization, and the revision carries them.
#[tokio::test]
async fn a_change_naming_only_limits_keeps_the_rule_type_and_the_rest() {
    let app = sent_app().await;
    let before = live_auths(&app);
    let (s, b) = put_terms(&app, &json!({"authorizations": [{"rule_weekly": 3}]}), "").await;
    assert_eq!(s, 202, "{b}");
    app.wait_status(ID, &["sent"], Duration::from_secs(20))
        .await;
    assert_eq!(
        writes(&app),
        vec![
            "DELETE AuthorizationDelete",
            "POST AuthorizationCreate",
            "POST ReferralUpdate"
        ]
    );
    let after = live_auths(&app);
    assert_eq!(after.len(), 1);
    let (old, new) = (&before[0], &after[0]);
    assert_ne!(new.id, old.id, "replaced: limits cannot change in place");
    assert_eq!(new.rule_type, "VISITS");
    assert_eq!(new.rules.weekly, Some(3.0));
    assert_eq!(new.rules.period, None, "naming a limit replaces the limits");
    assert_eq!(
        (new.start_at, new.end_at, &new.authorization_number),
        (old.start_at, old.end_at, &old.authorization_number)
    );
    let r = latest_revision(&app);
    assert_eq!(r.revision_number, 2);
    assert_eq!(r.authorization_ids, vec![new.id]);
    assert!(app.sim().duplicates().is_empty());
}

/// An authorization's case manager is kept on the HQ branch only: changing it alone updates
/// the authorization and sends the agency no revision.
#[tokio::test]
async fn an_authorizations_case_manager_alone_sends_no_revision() {
    let app = sent_app().await;
    let before = live_auths(&app);
    let (s, b) = put_terms(
        &app,
        &json!({"authorizations": [{"case_manager": {"name": "Dana Lee"}}]}),
        "",
    )
    .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["reasons"], json!([]));
    app.wait_status(ID, &["sent"], Duration::from_secs(20))
        .await;
    assert_eq!(writes(&app), vec!["PUT AuthorizationUpdate"]);
    let after = live_auths(&app);
    assert_eq!(after[0].id, before[0].id, "updated in place");
    assert_eq!(after[0].case_manager_name.as_deref(), Some("Dana Lee"));
    assert_eq!(after[0].end_at, before[0].end_at);
    assert_eq!(latest_revision(&app).revision_number, 1, "no revision");
}

// ---- documents: once by content, under their own names ----

/// The names the uploads are stored under in the client's attachments folder.
fn attachment_names(app: &TestApp) -> Vec<String> {
    app.sim()
        .state()
        .attachments
        .iter()
        .map(|a| a.filepath.rsplit('/').next().unwrap_or_default().to_owned())
        .collect()
}

async fn post_documents(app: &TestApp, files: &[(&str, Vec<u8>)]) -> (u16, Value) {
    app.post_documents(ID, files).await
}

/// A document whose content the referral already has, from intake or an earlier upload, is
/// not sent again; the answer names it.
#[tokio::test]
async fn documents_posted_again_are_not_sent_again() {
    let app = sent_app().await;
    let plan = b"%PDF-1.4 plan of care".to_vec();
    let scan = vec![9u8; 3000];
    let docs = [("plan_of_care.pdf", plan.clone()), ("scan.bin", scan)];
    let (s, b) = post_documents(&app, &docs).await;
    assert_eq!(s, 202, "{b}");
    app.wait_status(ID, &["sent"], Duration::from_secs(20))
        .await;
    app.sim().clear_journal();

    // The same request again (a retry without an Idempotency-Key): nothing to send.
    let (s, b) = post_documents(&app, &docs).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["changed"], false);
    assert_eq!(
        b["already_delivered"],
        json!(["plan_of_care.pdf", "scan.bin"])
    );
    assert_eq!(b["planned_calls"], json!([]));
    assert_eq!(app.detail(ID).await["status"], "sent");

    // The intake's file under another name, one known content and one new.
    let d = app.detail(ID).await;
    let intake_file = &d["files"][0];
    let intake_bytes = app
        .http
        .get(format!(
            "{}{}",
            app.base,
            intake_file["href"].as_str().unwrap()
        ))
        .bearer_auth(&app.reviewer)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let (s, b) = post_documents(
        &app,
        &[
            ("order again.pdf", intake_bytes),
            ("copy of plan.pdf", plan),
            ("new.txt", b"a new note".to_vec()),
        ],
    )
    .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(
        b["already_delivered"],
        json!(["order again.pdf", "copy of plan.pdf"])
    );
    assert_eq!(b["reasons"], json!(["1 document(s) added"]));
    app.wait_status(ID, &["sent"], Duration::from_secs(20))
        .await;
    assert_eq!(writes(&app), vec!["POST AttachmentUpload"]);
    assert_eq!(app.detail(ID).await["files"].as_array().unwrap().len(), 4);
    assert_eq!(attachment_names(&app).len(), 4);
    assert!(app.sim().duplicates().is_empty());
}

/// Two documents of one name: ACCloud stores the second as `name (1).ext`. After unknown
/// outcomes on both uploads, each is found again by its content, not created again.
#[tokio::test]
async fn documents_sharing_a_name_are_each_found_again_after_an_unknown_outcome() {
    let app = sent_app().await;
    app.sim().push_scripted_fault(ScriptedFault::new(
        Endpoint::AttachmentUpload,
        FaultKind::ErrorAfterCommit { status: 502 },
        2,
    ));
    let (s, b) = post_documents(
        &app,
        &[
            // Same name, same size: only the content tells them apart.
            ("scan.pdf", b"%PDF-1.4 page one".to_vec()),
            ("scan.pdf", b"%PDF-1.4 page two".to_vec()),
        ],
    )
    .await;
    assert_eq!(s, 202, "{b}");
    let d = app
        .wait_status(ID, &["sent"], Duration::from_secs(30))
        .await;
    assert_eq!(
        writes(&app),
        vec!["POST AttachmentUpload", "POST AttachmentUpload"],
        "each uploaded once"
    );
    let names = attachment_names(&app);
    assert_eq!(
        names[1..],
        ["scan.pdf".to_owned(), "scan (1).pdf".to_owned()]
    );
    let uploads: Vec<&Value> = d["send"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "attachment" && s["change_no"] == 1)
        .collect();
    assert_eq!(uploads.len(), 2);
    for step in uploads {
        assert_eq!(step["attempts"], 1, "{step}");
        assert_eq!(step["result"]["found_by_lookup"], true, "{step}");
    }
    assert!(app.sim().duplicates().is_empty());
}

/// A change to a referral the agency cancelled in ACCloud cannot reach it: the send ends with
/// the referral cancelled instead of pausing for a resume that could never send it.
#[tokio::test]
async fn a_change_to_a_referral_the_agency_cancelled_ends_it_cancelled() {
    let app = sent_app().await;
    app.sim()
        .cancel_as_agency(latest_revision(&app).id)
        .unwrap();
    let mut terms = sample_terms();
    end_plus(&mut terms, 7);
    let (s, b) = put_terms(&app, &terms, "").await;
    assert_eq!(s, 202, "{b}");
    let d = app
        .wait_status(
            ID,
            &["cancelled", "needs_attention"],
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(d["status"], "cancelled", "{}", d["send"]);
    assert_eq!(writes(&app), vec!["PUT AuthorizationUpdate"]);
    let events = app.events(ID).await;
    let tail: Vec<&(String, Value)> = events.iter().rev().take(2).collect();
    assert_eq!(tail[0].0, "send.cancelled");
    assert_eq!(tail[0].1["by"], "agency");
    assert_eq!(tail[1].1, json!({"agency_status": "cancelled"}));
    assert_eq!(latest_revision(&app).revision_number, 1, "no revision");
    assert_eq!(d["send"]["agency_status"], "cancelled");
    let last = d["send"]["steps"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["kind"], "referral_update");
    assert_eq!(last["state"], "skipped");
    assert!(
        last["last_error"]
            .as_str()
            .unwrap()
            .contains("cancelled in ACCloud"),
        "{last}"
    );
    end_plus(&mut terms, 7);
    assert_eq!(
        put_terms(&app, &terms, "").await.0,
        409,
        "nothing more to change"
    );
}
