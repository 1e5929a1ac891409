//! Every create step under every ambiguous fault, and a worker killed between a call and its
//! commit: the end state must equal the fault-free run, with no duplicate in ACCloud.

use std::time::Duration;

use refbridge_accloud_sim::{Endpoint, FaultKind, ScriptedFault, SimConfig};
use serde_json::Value;

use crate::helpers::{TestApp, sample_terms, sim_summary, spawn_app, spawn_app_with};

const ID: &str = "0e1d5e34-63d7-4bb2-8e22-9376943ab56f";

const CREATES: [(Endpoint, &str); 5] = [
    (Endpoint::ClientCreate, "client"),
    (Endpoint::ServiceCreate, "service"),
    (Endpoint::AuthorizationCreate, "authorization"),
    (Endpoint::ReferralCreate, "referral"),
    (Endpoint::AttachmentUpload, "attachment"),
];

async fn run_once_through(app: &TestApp) -> Value {
    app.post_referral(&app.payload(ID, 1094)).await;
    let (s, b) = app.approve(ID, &sample_terms()).await;
    assert_eq!(s, 202, "{b}");
    app.wait_status(ID, &["sent"], Duration::from_secs(30))
        .await
}

async fn baseline() -> Value {
    let app = spawn_app().await;
    run_once_through(&app).await;
    sim_summary(&app.sim())
}

fn creates_of(app: &TestApp, endpoint: Endpoint) -> usize {
    app.sim()
        .journal()
        .iter()
        .filter(|j| j.endpoint == Some(endpoint) && j.committed())
        .count()
}

/// One fault on the first call of one create endpoint; the send must still end with exactly
/// the objects of a fault-free run.
async fn fault_on(endpoint: Endpoint, kind: &str, fault: FaultKind, expected: &Value) {
    let app = spawn_app().await;
    app.sim()
        .push_scripted_fault(ScriptedFault::new(endpoint, fault, 1));
    let d = run_once_through(&app).await;
    assert_eq!(&sim_summary(&app.sim()), expected, "{kind} under {fault:?}");
    assert!(
        app.sim().duplicates().is_empty(),
        "{kind} under {fault:?}: {:?}",
        app.sim().duplicates()
    );
    assert_eq!(
        creates_of(&app, endpoint),
        1,
        "{kind} under {fault:?}: created once"
    );
    let step = d["send"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == kind)
        .unwrap()
        .clone();
    assert_eq!(
        step["attempts"], 1,
        "{kind} under {fault:?}: found by lookup, not created again: {step}"
    );
}

async fn every_step_under(fault: FaultKind) {
    let expected = baseline().await;
    let runs = CREATES
        .iter()
        .map(|(e, k)| fault_on(*e, k, fault, &expected));
    futures::future::join_all(runs).await;
}

#[tokio::test]
async fn a_5xx_after_commit_on_any_create_leaves_exactly_one_object() {
    every_step_under(FaultKind::ErrorAfterCommit { status: 502 }).await;
}

#[tokio::test]
async fn a_503_after_commit_on_any_create_leaves_exactly_one_object() {
    every_step_under(FaultKind::ErrorAfterCommit { status: 503 }).await;
}

#[tokio::test]
async fn a_connection_dropped_after_commit_on_any_create_leaves_exactly_one_object() {
    every_step_under(FaultKind::DropAfterCommit).await;
}

#[tokio::test]
async fn a_hang_past_the_timeout_after_commit_on_any_create_leaves_exactly_one_object() {
    every_step_under(FaultKind::HangAfterCommit { ms: 2500 }).await;
}

#[tokio::test]
async fn a_5xx_before_commit_is_retried_and_creates_once() {
    let expected = &baseline().await;
    let runs = CREATES.iter().map(|(e, k)| async move {
        let app = spawn_app().await;
        app.sim().push_scripted_fault(ScriptedFault::new(
            *e,
            FaultKind::ErrorBeforeCommit { status: 500 },
            2,
        ));
        run_once_through(&app).await;
        assert_eq!(&sim_summary(&app.sim()), expected, "{k}");
        assert_eq!(creates_of(&app, *e), 1, "{k}");
    });
    futures::future::join_all(runs).await;
}

#[tokio::test]
async fn a_lookup_that_lags_behind_a_create_does_not_cause_a_second_one() {
    // Every object stays invisible to lookups for 800 ms (less than the settle delay), and
    // every create first fails after committing: the lookup misses, and only the settle
    // delay keeps the worker from creating again.
    let expected = &baseline().await;
    let runs = CREATES.iter().map(|(e, k)| async move {
        let sim_cfg = SimConfig {
            indexing_lag_ms: 800,
            ..SimConfig::default()
        };
        let app = spawn_app_with(sim_cfg, true).await;
        app.sim().push_scripted_fault(ScriptedFault::new(
            *e,
            FaultKind::ErrorAfterCommit { status: 504 },
            1,
        ));
        run_once_through(&app).await;
        assert_eq!(&sim_summary(&app.sim()), expected, "{k}");
        assert!(app.sim().duplicates().is_empty(), "{k}");
    });
    futures::future::join_all(runs).await;
}

#[tokio::test]
async fn a_worker_killed_between_the_call_and_the_commit_is_recovered_by_lookup() {
    let expected = &baseline().await;
    let runs = CREATES.iter().map(|(e, k)| async move {
        let app = spawn_app_with(SimConfig::default(), false).await;
        app.post_referral(&app.payload(ID, 1094)).await;
        app.approve(ID, &sample_terms()).await;
        let first = app.engine("worker-doomed");
        first.crash_points.arm(k);
        let err = first.run_once().await.expect_err("the worker dies");
        assert!(err.to_string().contains("simulated crash"), "{err}");
        assert_eq!(creates_of(&app, *e), 1, "{k}: the call landed");

        // Its lease still holds: nobody else may take the send yet.
        let second = app.engine("worker-heir");
        assert!(
            !second.run_once().await.unwrap(),
            "{k}: the dead worker's lease is respected"
        );
        // Once the lease expires the heir takes over, starting with a lookup.
        let start = std::time::Instant::now();
        loop {
            second.run_once().await.unwrap();
            if app.detail(ID).await["status"] == "sent" {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{k}: not sent");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(&sim_summary(&app.sim()), expected, "{k}");
        assert_eq!(creates_of(&app, *e), 1, "{k}: not created again");
        assert!(app.sim().duplicates().is_empty(), "{k}");
    });
    futures::future::join_all(runs).await;
}

#[tokio::test]
async fn a_429_is_retried_only_after_retry_after() {
    let app = spawn_app().await;
    app.sim().push_scripted_fault(ScriptedFault::new(
        Endpoint::ServiceCreate,
        FaultKind::RateLimited {
            retry_after_secs: 2,
        },
        1,
    ));
    let d = run_once_through(&app).await;
    let calls: Vec<_> = app
        .sim()
        .journal()
        .into_iter()
        .filter(|j| j.endpoint == Some(Endpoint::ServiceCreate))
        .collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].status, Some(429));
    let waited = calls[1].at - calls[0].at;
    assert!(
        waited >= chrono::Duration::milliseconds(1950),
        "retried after {waited:?}"
    );
    assert_eq!(d["send"]["steps"][1]["attempts"], 2);
    assert_eq!(app.sim().state().services.len(), 1);
}

#[tokio::test]
async fn an_accloud_outage_pauses_the_send_when_retries_run_out() {
    let mut app = spawn_app_with(SimConfig::default(), false).await;
    app.engine_cfg.retry.max_attempts = 3;
    let e = app.engine("worker-a");
    app.start_worker(e);
    app.sim().push_scripted_fault(ScriptedFault::new(
        Endpoint::ServiceCreate,
        FaultKind::ErrorBeforeCommit { status: 500 },
        10,
    ));
    app.post_referral(&app.payload(ID, 1094)).await;
    app.approve(ID, &sample_terms()).await;
    let d = app
        .wait_status(ID, &["needs_attention"], Duration::from_secs(30))
        .await;
    let step = &d["send"]["steps"][1];
    assert_eq!(step["state"], "failed");
    assert!(
        step["last_error"]
            .as_str()
            .unwrap()
            .starts_with("gave up after 3 attempts"),
        "{step}"
    );
    assert!(app.sim().state().services.is_empty());

    // Once ACCloud is back, a resume finishes it.
    app.sim().clear_faults();
    let (s, _) = app
        .post(&format!("/v1/referral-requests/{ID}/approval/resume"), None)
        .await;
    assert_eq!(s, 202);
    app.wait_status(ID, &["sent"], Duration::from_secs(30))
        .await;
    assert!(app.sim().duplicates().is_empty());
}
