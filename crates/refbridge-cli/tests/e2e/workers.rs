//! Several workers over one database (run on both backends, `REFBRIDGE_TEST_DATABASE`):
//! fencing of stale leases, wake-ups across processes (PostgreSQL `LISTEN/NOTIFY`), the shared
//! ACCloud rate budget with `Retry-After`, and the queue figures of `/readyz` and `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use refbridge_accloud::{AcCloud, AcCloudError};
use refbridge_accloud_sim::{Endpoint, FaultKind, ScriptedFault, SimConfig};
use refbridge_cli::rate_budget::{ACCLOUD_BUDGET, Budget, RateBudgeted};
use refbridge_domain::send::{ClientResult, JobState, NaturalKey, StepResult, StepState, keys};
use refbridge_domain::{ReferralStatus, RequestId};
use refbridge_saga::{Engine, EngineConfig};
use refbridge_storage::{Backend, DoneStep, SendError, Store, StoreOptions};
use serde_json::Value;

use crate::helpers::{TestApp, metrics, sample_terms, spawn_app_with};

const ID: &str = "0e1d5e34-63d7-4bb2-8e22-9376943ab56f";

async fn approved(app: &TestApp) -> RequestId {
    app.post_referral(&app.payload(ID, 1094)).await;
    let (s, b) = app.approve(ID, &sample_terms()).await;
    assert_eq!(s, 202, "{b}");
    RequestId::parse(ID).unwrap()
}

#[tokio::test]
async fn a_stale_lease_cannot_write_once_another_worker_holds_the_send() {
    let app = spawn_app_with(SimConfig::default(), false).await;
    let id = approved(&app).await;
    let store = &app.state.store;

    // Worker A claims with a lease that expires at once (as if it stalled), B takes over.
    let a = store
        .claim_send_job("worker-a", Duration::from_millis(1), "worker")
        .await
        .unwrap()
        .expect("A claims the send");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let b = store
        .claim_send_job("worker-b", Duration::from_secs(30), "worker")
        .await
        .unwrap()
        .expect("B takes the expired lease over");
    assert_eq!(b.request_id, id);
    assert!(b.fence > a.fence, "the fencing token moves on");

    // Every write A attempts is refused; none of them changes anything.
    let before = store.send_steps(id).await.unwrap();
    let lost = |r: Result<(), SendError>| matches!(r, Err(SendError::LeaseLost));
    let key = NaturalKey::Client(keys::client("patient"));
    assert!(lost(store.step_intent(&a, 0, &key).await));
    let result = StepResult::Client(ClientResult {
        client_id: 999,
        reused: false,
        updated: false,
    });
    assert!(lost(store.step_done(&a, 0, "999", &result).await));
    let done = DoneStep {
        position: 0,
        remote_id: "999",
        result: &result,
    };
    assert!(lost(store.step_done_then_intent(&a, &done, 1, &key).await));
    assert!(lost(
        store.finish_send_after(&a, "worker-a", Some(&done)).await
    ));
    assert!(lost(
        store
            .step_retry(&a, 0, StepState::Pending, Utc::now(), "x", false)
            .await
    ));
    assert!(lost(
        store
            .step_failed(
                &a,
                0,
                "x",
                refbridge_domain::event::AttentionReason::Rejected,
                "worker-a"
            )
            .await
    ));
    assert!(lost(store.finish_send(&a, "worker-a").await));
    assert!(lost(store.release_send_job(&a, Utc::now()).await));
    assert!(matches!(
        store.renew_lease(&a, Duration::from_secs(30)).await,
        Err(SendError::LeaseLost)
    ));
    assert_eq!(store.send_steps(id).await.unwrap(), before);
    let job = store.send_job(id).await.unwrap().unwrap();
    assert_eq!(job.lease_owner.as_deref(), Some("worker-b"));
    assert_eq!(job.fence, b.fence);
    assert_eq!(job.state, JobState::Ready);

    // B's writes go through.
    store.step_intent(&b, 0, &key).await.unwrap();
    assert_eq!(store.send_steps(id).await.unwrap()[0].attempts, 1);
}

/// A first send starts with its claim: the claim's transaction moves the approved referral to
/// `sending` with one history row; a later claim of the same send adds none.
#[tokio::test]
async fn the_first_claim_of_a_send_moves_its_referral_to_sending_once() {
    let app = spawn_app_with(SimConfig::default(), false).await;
    let id = approved(&app).await;
    let store = &app.state.store;
    let sending_rows = || async {
        store
            .status_history(id)
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.status == ReferralStatus::Sending)
            .map(|c| c.actor)
            .collect::<Vec<_>>()
    };
    assert!(sending_rows().await.is_empty(), "approved, not claimed yet");

    let lease = store
        .claim_send_job("worker-a", Duration::from_secs(30), "worker")
        .await
        .unwrap()
        .expect("the send is due");
    assert_eq!(lease.request_id, id);
    let rec = store.get_referral(id).await.unwrap().unwrap();
    assert_eq!(rec.status, ReferralStatus::Sending);
    assert_eq!(sending_rows().await, vec!["worker".to_owned()]);

    // Given back and claimed again (a retry, a takeover): still one history row.
    store.release_send_job(&lease, Utc::now()).await.unwrap();
    let again = store
        .claim_send_job("worker-b", Duration::from_secs(30), "worker")
        .await
        .unwrap()
        .expect("the send is due again");
    assert!(again.fence > lease.fence);
    assert_eq!(sending_rows().await.len(), 1, "one move to sending");
}

#[tokio::test]
async fn a_send_queued_by_one_process_wakes_the_workers_of_another() {
    let app = spawn_app_with(SimConfig::default(), false).await;
    if app.state.store.backend() != Backend::Postgres {
        // SQLite serves one process, whose API wakes its workers directly (send.rs).
        return;
    }
    // "Another process": its own store, wake handle and listener; it never polls.
    let other = Store::open(&app.db_url, &StoreOptions::default())
        .await
        .unwrap();
    let wake = Arc::new(tokio::sync::Notify::new());
    let listener = tokio::spawn(refbridge_storage::listen_for_sends(
        app.db_url.clone(),
        wake.clone(),
    ));
    let engine = Arc::new(
        Engine::new(
            other,
            app.state.files.clone(),
            app.accloud.clone(),
            EngineConfig {
                owner: "other-process".into(),
                poll_interval: Duration::from_secs(3600),
                ..app.engine_cfg.clone()
            },
        )
        .with_wake_handle(wake),
    );
    let worker = tokio::spawn(engine.run(std::future::pending()));
    tokio::time::sleep(Duration::from_millis(500)).await;

    approved(&app).await;
    let d = app
        .wait_status(ID, &["sent"], Duration::from_secs(20))
        .await;
    assert_eq!(d["status"], "sent");
    worker.abort();
    listener.abort();
}

#[tokio::test]
async fn readyz_and_metrics_show_the_send_queue() {
    let mut app = spawn_app_with(SimConfig::default(), false).await;
    approved(&app).await;
    // The send has waited since its approval (no worker runs here).
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let ready: Value = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["queue"]["queue_depth"], 1, "{ready}");
    assert_eq!(ready["queue"]["due"], 1, "{ready}");
    assert_eq!(ready["queue"]["unknown_steps"], 0, "{ready}");
    let waited = ready["queue"]["oldest_pending_step_age_seconds"]
        .as_f64()
        .unwrap();
    assert!((1.0..60.0).contains(&waited), "{ready}");
    let postgres = app.state.store.backend() == Backend::Postgres;
    assert_eq!(
        ready["database"],
        if postgres { "postgres" } else { "sqlite" }
    );

    // A transaction held open elsewhere shows in the oldest transaction's age (PostgreSQL).
    let held = if postgres {
        use sqlx::Connection;
        let mut c = sqlx::postgres::PgConnection::connect(&app.db_url)
            .await
            .unwrap();
        sqlx::raw_sql("BEGIN; SELECT txid_current();")
            .execute(&mut c)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        Some(c)
    } else {
        None
    };
    let text = metrics(&app).await;
    assert!(text.contains("\nrefbridge_send_queue_depth 1\n"), "{text}");
    assert!(
        text.contains("# TYPE refbridge_send_unknown_steps gauge"),
        "{text}"
    );
    assert!(
        text.contains("refbridge_send_oldest_pending_step_age_seconds "),
        "{text}"
    );
    match held {
        Some(c) => {
            let age = gauge(&text, "refbridge_db_oldest_transaction_age_seconds");
            assert!(age >= 1.0, "{text}");
            drop(c);
        }
        None => assert!(!text.contains("oldest_transaction"), "{text}"),
    }

    // An unknown outcome is counted until the worker resolves it.
    app.sim().push_scripted_fault(ScriptedFault::new(
        Endpoint::ClientCreate,
        FaultKind::DropAfterCommit,
        1,
    ));
    let e = app.engine("worker-a");
    app.start_worker(e);
    app.wait_status(ID, &["sent"], Duration::from_secs(30))
        .await;
    let text = metrics(&app).await;
    assert_eq!(gauge(&text, "refbridge_send_queue_depth"), 0.0, "{text}");
    assert_eq!(gauge(&text, "refbridge_send_unknown_steps"), 0.0, "{text}");
    assert_eq!(
        gauge(&text, "refbridge_send_in_flight_steps"),
        0.0,
        "{text}"
    );
}

fn gauge(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing: {text}"))
        .parse()
        .unwrap()
}

/// Two "processes" (each its own store and budget handle) over one database.
async fn two_processes(app: &TestApp, per_second: u32) -> [Arc<dyn AcCloud>; 2] {
    let mut out = Vec::new();
    for _ in 0..2 {
        let store = Store::open(&app.db_url, &StoreOptions::default())
            .await
            .unwrap();
        let ac: Arc<dyn AcCloud> = Arc::new(RateBudgeted::new(
            app.accloud.clone(),
            Budget::new(store, ACCLOUD_BUDGET, per_second),
        ));
        out.push(ac.with_timeout(Duration::from_secs(10)));
    }
    out.try_into().map_err(|_| ()).unwrap()
}

/// The most calls the simulator received within any one second (a sliding window).
fn peak_per_second(at: &[DateTime<Utc>]) -> usize {
    let mut at = at.to_vec();
    at.sort();
    let mut peak = 0;
    let mut first = 0;
    for last in 0..at.len() {
        while at[last] - at[first] >= chrono::Duration::seconds(1) {
            first += 1;
        }
        peak = peak.max(last - first + 1);
    }
    peak
}

#[tokio::test]
async fn calls_of_every_process_share_one_rate_budget() {
    let app = spawn_app_with(SimConfig::default(), false).await;
    let [p1, p2] = two_processes(&app, 8).await;
    app.sim().clear_journal();
    let calls = (0..24).map(|i| {
        let ac = if i % 2 == 0 { p1.clone() } else { p2.clone() };
        async move { ac.get_client_by_external_id(&format!("nobody-{i}")).await }
    });
    for r in futures::future::join_all(calls).await {
        assert!(matches!(r, Ok(None)), "{r:?}");
    }
    let at: Vec<_> = app.sim().journal().iter().map(|j| j.at).collect();
    assert_eq!(at.len(), 24);
    let peak = peak_per_second(&at);
    assert!(peak <= 8, "{peak} calls within one second; the budget is 8");
}

#[tokio::test]
async fn a_retry_after_seen_by_one_process_pauses_every_process() {
    let app = spawn_app_with(SimConfig::default(), false).await;
    let [p1, p2] = two_processes(&app, 0).await;
    app.sim().push_scripted_fault(ScriptedFault::new(
        Endpoint::ClientGetByExternalId,
        FaultKind::RateLimited {
            retry_after_secs: 2,
        },
        1,
    ));
    let first = p1.get_client_by_external_id("someone").await;
    assert!(
        matches!(
            first,
            Err(AcCloudError::RateLimited {
                retry_after: Some(_),
                ..
            })
        ),
        "{first:?}"
    );
    // The other process's next call waits for the Retry-After.
    let second = p2.get_client_by_external_id("someone").await;
    assert!(matches!(second, Ok(None)), "{second:?}");
    let j = app.sim().journal();
    assert_eq!(j.len(), 2);
    assert_eq!(j[0].status, Some(429));
    let gap = j[1].at - j[0].at;
    assert!(
        gap >= chrono::Duration::milliseconds(1900),
        "the second process called {gap:?} after the 429"
    );
}

/// Settings under which one call outlasts the lease: a lease of 3 s, calls allowed 5 s.
fn slow_call_config(app: &TestApp, owner: &str) -> EngineConfig {
    EngineConfig {
        owner: owner.to_owned(),
        lease: Duration::from_secs(3),
        request_timeout: Duration::from_secs(5),
        settle_delay: Duration::from_secs(6),
        ..app.engine_cfg.clone()
    }
}

fn engine_with(app: &TestApp, cfg: EngineConfig) -> Arc<Engine> {
    Arc::new(Engine::new(
        app.state.store.clone(),
        app.state.files.clone(),
        app.accloud.clone(),
        cfg,
    ))
}

#[tokio::test]
async fn a_send_whose_call_outlasts_the_lease_keeps_it_by_renewal() {
    let mut app = spawn_app_with(SimConfig::default(), false).await;
    let id = approved(&app).await;
    // The client's create takes 3.5 s, longer than the 3 s lease; a second worker waits for
    // the lease to run out.
    app.sim().push_scripted_fault(ScriptedFault::new(
        Endpoint::ClientCreate,
        FaultKind::Latency { ms: 3500 },
        1,
    ));
    app.start_worker(engine_with(&app, slow_call_config(&app, "worker-a")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.start_worker(engine_with(&app, slow_call_config(&app, "worker-b")));
    app.wait_status(ID, &["sent"], Duration::from_secs(30))
        .await;

    let job = app.state.store.send_job(id).await.unwrap().unwrap();
    assert_eq!(job.fence, 1, "claimed once: the lease was never taken over");
    assert!(app.sim().duplicates().is_empty());
}

#[tokio::test]
async fn a_restarted_sqlite_worker_takes_its_predecessors_leases_over_at_once() {
    let mut app = spawn_app_with(SimConfig::default(), false).await;
    if app.state.store.backend() != Backend::Sqlite {
        return; // several processes share PostgreSQL: its leases are waited out
    }
    let id = approved(&app).await;
    // A worker process claimed the send for a minute, then died.
    let dead = app
        .state
        .store
        .claim_send_job("dead-worker", Duration::from_secs(60), "worker")
        .await
        .unwrap()
        .expect("claimed");
    let started = std::time::Instant::now();
    app.start_worker(app.engine("worker-a"));
    app.wait_status(ID, &["sent"], Duration::from_secs(20))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "sent in {:?}, not after the dead worker's minute",
        started.elapsed()
    );
    let job = app.state.store.send_job(id).await.unwrap().unwrap();
    assert!(job.fence > dead.fence);
    // The dead worker's writes are refused.
    assert!(matches!(
        app.state.store.finish_send(&dead, "dead-worker").await,
        Err(SendError::LeaseLost)
    ));
}

#[tokio::test]
async fn a_worker_stops_a_send_as_soon_as_its_lease_is_lost() {
    let app = spawn_app_with(SimConfig::default(), false).await;
    if app.state.store.backend() != Backend::Sqlite {
        return; // the lever below is SQLite's take-over
    }
    let id = approved(&app).await;
    app.sim().push_scripted_fault(ScriptedFault::new(
        Endpoint::ClientCreate,
        FaultKind::Latency { ms: 4000 },
        1,
    ));
    let a = engine_with(&app, slow_call_config(&app, "worker-a"));
    let running = tokio::spawn(async move { a.run_once().await });
    // Once A is in its slow call, a new process takes the workers over and releases A's lease.
    let store = &app.state.store;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store
        .send_job(id)
        .await
        .unwrap()
        .unwrap()
        .lease_owner
        .is_none()
    {
        assert!(std::time::Instant::now() < deadline, "A never claimed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_guard, released) = store
        .take_over_as_sole_worker()
        .await
        .unwrap()
        .expect("the workers' lock");
    assert_eq!(released, 1);
    let stopped = std::time::Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(3), running)
        .await
        .expect("A stops within a third of its lease, not after its 4 s call")
        .unwrap();
    assert!(
        matches!(
            outcome,
            Err(refbridge_saga::EngineError::Send(SendError::LeaseLost))
        ),
        "{outcome:?}"
    );
    assert!(stopped.elapsed() < Duration::from_millis(1500));
    // Nothing A did after losing its lease was recorded: the client step is still in flight.
    let steps = store.send_steps(id).await.unwrap();
    assert_eq!(steps[0].state, StepState::InFlight);
}
