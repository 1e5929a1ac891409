//! Retention: `refbridge prune` (and the service's scheduled prune) removes what the policy
//! allows and nothing else, on the test's backend (the folder on SQLite, the database's own
//! blob tables on PostgreSQL); the event feed answers a cursor before what was removed with
//! 410, never a silent gap.

use std::process::Command;
use std::time::Duration;

use refbridge_domain::ContentHash;
use refbridge_storage::{Backend, Blobs, RetentionPolicy, format_ts, now};
use sqlx::AnyPool;

use refbridge_accloud_sim::SimConfig;
use refbridge_domain::Role;
use serde_json::Value;

use crate::helpers::{TestApp, metrics, sample, sample_terms, spawn_app, spawn_app_with, sql};

async fn count(db: &AnyPool, query: &str) -> i64 {
    sqlx::query_scalar(query).fetch_one(db).await.expect(query)
}

fn hours_ago(h: i64) -> chrono::DateTime<chrono::Utc> {
    now() - chrono::Duration::hours(h)
}

/// Stores a body as an intake would, and none refers to it.
async fn orphan(blobs: &Blobs, bytes: &[u8]) -> ContentHash {
    let mut w = blobs.writer(1 << 20).expect("writer");
    w.write(bytes).expect("write");
    blobs
        .commit(w.finish().expect("finish"))
        .await
        .expect("commit")
        .hash
}

/// Makes the body look stored `h` hours ago.
async fn backdate(app: &TestApp, db: &AnyPool, hash: &ContentHash, h: i64) {
    let at = hours_ago(h);
    match app.state.store.backend() {
        Backend::Sqlite => {
            let path = app.state.files.local().path_of(hash);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(at.into()))
                .expect("set mtime");
        }
        Backend::Postgres => {
            sqlx::query("UPDATE blob_contents SET stored_at = $1 WHERE sha256 = $2")
                .bind(format_ts(at))
                .bind(hash.as_str())
                .execute(db)
                .await
                .expect("backdate");
        }
    }
}

async fn natural_keys(db: &AnyPool, id: &str) -> (i64, i64) {
    let keyed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM send_steps WHERE request_id = $1 AND natural_key IS NOT NULL",
    )
    .bind(id)
    .fetch_one(db)
    .await
    .expect("keys");
    let results: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM send_steps WHERE request_id = $1 AND result_json IS NOT NULL",
    )
    .bind(id)
    .fetch_one(db)
    .await
    .expect("results");
    (keyed, results)
}

async fn add_key(db: &AnyPool, key: &str, age_hours: i64) {
    sqlx::query(
        "INSERT INTO idempotency_keys (caller, idem_key, method, path, body_sha256, status, created_at) \
         VALUES ('alayaconnector', $1, 'POST', '/referral_request', 'x', 200, $2)",
    )
    .bind(key)
    .bind(format_ts(hours_ago(age_hours)))
    .execute(db)
    .await
    .expect("key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_removes_only_what_the_policy_allows() {
    let app = spawn_app().await;
    let db = sql(&app).await;
    let blobs = &app.state.files;
    let (old_send, new_send, received) = (
        "00000000-0000-4000-a000-000000000001",
        "00000000-0000-4000-a000-000000000002",
        "00000000-0000-4000-a000-000000000003",
    );
    for (i, id) in [old_send, new_send, received].into_iter().enumerate() {
        app.post_referral(&app.payload(id, 7_000 + i as i64)).await;
    }
    for id in [old_send, new_send] {
        let (s, b) = app.approve(id, &sample_terms()).await;
        assert_eq!(s, 202, "{b}");
        app.wait_status(id, &["sent"], Duration::from_secs(30))
            .await;
    }
    let detail = app.detail(received).await;
    let referenced = ContentHash::parse(detail["files"][0]["sha256"].as_str().unwrap()).unwrap();

    // What the policy allows to go: a body no referral refers to, stored two days ago; a key
    // of yesterday; the steps of a send finished 100 days ago.
    let gone_body = orphan(blobs, b"%PDF-1.4 an intake that failed").await;
    backdate(&app, &db, &gone_body, 48).await;
    add_key(&db, "old", 25).await;
    sqlx::query("UPDATE send_jobs SET updated_at = $1 WHERE request_id = $2")
        .bind(format_ts(hours_ago(100 * 24)))
        .bind(old_send)
        .execute(&db)
        .await
        .unwrap();
    // What stays: a body of a referral (stored as long ago), an unreferenced body within its
    // grace period (an intake in flight), a key of today, a send finished today.
    backdate(&app, &db, &referenced, 48).await;
    let in_flight = orphan(blobs, b"%PDF-1.4 an intake in flight").await;
    backdate(&app, &db, &in_flight, 23).await;
    add_key(&db, "new", 1).await;
    // A killed process's leftover in the working folder, and a write under way.
    let tmp = app.state.files.local().root().join("tmp");
    let stale = tmp.join("killed-mid-intake");
    std::fs::write(&stale, b"partial").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .and_then(|f| f.set_modified(hours_ago(48).into()))
        .unwrap();
    let writing = tmp.join("being-written");
    std::fs::write(&writing, b"partial").unwrap();

    let kept_tables = [
        "SELECT COUNT(*) FROM referral_requests",
        "SELECT COUNT(*) FROM referral_files",
        "SELECT COUNT(*) FROM audit_events",
        "SELECT COUNT(*) FROM phi_access",
        "SELECT COUNT(*) FROM status_history",
        "SELECT COUNT(*) FROM send_steps",
    ];
    let mut before = Vec::new();
    for q in kept_tables {
        before.push(count(&db, q).await);
    }
    let (old_keys, old_results) = natural_keys(&db, old_send).await;
    assert!(old_keys > 0 && old_results > 0);
    let new_keys = natural_keys(&db, new_send).await;

    // `refbridge prune --dry-run`, as an operator runs it: says, removes nothing.
    let out = Command::new(env!("CARGO_BIN_EXE_refbridge"))
        .args(["prune", "--dry-run"])
        .env_remove("REFBRIDGE_CONFIG")
        .env("REFBRIDGE_DATABASE_URL", &app.db_url)
        .env("REFBRIDGE_FILES_DIR", app.state.files.local().root())
        .env("REFBRIDGE_LOG__FILTER", "warn")
        .output()
        .expect("refbridge prune");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(
            "would remove: 1 idempotency keys, 1 unreferenced file bodies, 1 stale scratch files"
        ),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("blob {gone_body}")), "{stdout}");
    assert!(stdout.contains(&format!("send {old_send}")), "{stdout}");
    assert!(
        !stdout.contains(new_send) && !stdout.contains(in_flight.as_str()),
        "{stdout}"
    );
    assert!(blobs.contains(&gone_body).await.unwrap(), "dry run deleted");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM idempotency_keys").await, 2);
    assert_eq!(natural_keys(&db, old_send).await.0, old_keys);

    let policy = RetentionPolicy {
        idempotency_keys: Duration::from_secs(24 * 3600),
        step_payloads: Some(Duration::from_secs(90 * 86_400)),
        unreferenced_blobs: Duration::from_secs(24 * 3600),
        ..RetentionPolicy::default()
    };
    let report = app
        .state
        .store
        .prune(blobs, &policy, false)
        .await
        .expect("prune");
    assert_eq!(report.idempotency_keys, 1);
    assert_eq!(report.blobs, vec![gone_body.clone()]);
    assert_eq!(report.compacted_requests, vec![old_send.to_owned()]);
    assert_eq!(report.compacted_steps as i64, old_keys);
    assert_eq!(report.scratch_files, 1);
    assert!(!stale.exists() && writing.exists());

    // What a scheduled prune removed shows in /metrics.
    refbridge_cli::commands::prune::record_metrics(&report);
    removed_counted(
        &app,
        &[
            "blobs",
            "idempotency_keys",
            "scratch_files",
            "compacted_steps",
        ],
    )
    .await;

    assert!(
        !blobs.contains(&gone_body).await.unwrap(),
        "unreferenced, old: gone"
    );
    assert!(
        blobs.contains(&in_flight).await.unwrap(),
        "within its grace: kept"
    );
    assert!(
        blobs.contains(&referenced).await.unwrap(),
        "referenced: kept"
    );
    let keys: Vec<String> = sqlx::query_scalar("SELECT idem_key FROM idempotency_keys")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(keys, vec!["new".to_owned()]);
    assert_eq!(
        natural_keys(&db, old_send).await,
        (0, old_results),
        "keys dropped, results kept"
    );
    assert_eq!(
        natural_keys(&db, new_send).await,
        new_keys,
        "recent send whole"
    );
    for (q, n) in kept_tables.iter().zip(before) {
        assert_eq!(count(&db, q).await, n, "{q}: kept");
    }
    // The referenced body still downloads; the compacted send still reads.
    let href = detail["files"][0]["href"].as_str().unwrap();
    let res = app
        .http
        .get(format!("{}{href}", app.base))
        .bearer_auth(&app.reviewer)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(app.detail(old_send).await["status"], "sent");

    // Nothing more to do.
    let again = app.state.store.prune(blobs, &policy, false).await.unwrap();
    assert_eq!(
        (
            again.idempotency_keys,
            again.blobs.len(),
            again.compacted_steps,
            again.scratch_files
        ),
        (0, 0, 0, 0)
    );
}

#[tokio::test]
async fn one_process_at_a_time_holds_the_retention_lease() {
    let app = spawn_app().await;
    let store = &app.state.store;
    let ttl = Duration::from_secs(60);
    assert!(
        store
            .take_maintenance_lease("retention", "a", ttl)
            .await
            .unwrap()
    );
    assert!(
        !store
            .take_maintenance_lease("retention", "b", ttl)
            .await
            .unwrap()
    );
    assert!(
        store
            .take_maintenance_lease("retention", "a", ttl)
            .await
            .unwrap(),
        "renewed"
    );
    // Expired: another process takes it.
    assert!(
        store
            .take_maintenance_lease("retention", "a", Duration::ZERO)
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(
        store
            .take_maintenance_lease("retention", "b", ttl)
            .await
            .unwrap()
    );
}

/// `refbridge prune --dry-run` against the test's database and working folder: its stdout.
fn dry_run(app: &TestApp) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_refbridge"))
        .args(["prune", "--dry-run"])
        .env_remove("REFBRIDGE_CONFIG")
        .env("REFBRIDGE_DATABASE_URL", &app.db_url)
        .env("REFBRIDGE_FILES_DIR", app.state.files.local().root())
        .env("REFBRIDGE_LOG__FILTER", "warn")
        .output()
        .expect("refbridge prune");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An event (not positioned yet) that occurred `age_hours` ago.
async fn add_event(db: &AnyPool, id: &str, age_hours: i64) {
    sqlx::query(
        "INSERT INTO events (id, position, event_type, occurred_at, request_id, patient_id, data_json) \
         VALUES ($1, NULL, 'payor.unmapped', $2, NULL, NULL, '{}')",
    )
    .bind(id)
    .bind(format_ts(hours_ago(age_hours)))
    .execute(db)
    .await
    .expect("event");
}

async fn add_attempt(db: &AnyPool, id: &str, endpoint: &str, event: &str, age_hours: i64) {
    sqlx::query(
        "INSERT INTO webhook_attempts (id, endpoint_id, event_id, attempt, at, outcome, status, latency_ms) \
         VALUES ($1, $2, $3, 1, $4, 'delivered', 200, 12)",
    )
    .bind(id)
    .bind(endpoint)
    .bind(event)
    .bind(format_ts(hours_ago(age_hours)))
    .execute(db)
    .await
    .expect("attempt");
}

/// A console session: begun, last seen and (`Some`) signed out so many hours ago.
async fn add_session(db: &AnyPool, user: &str, name: &str, ages: (f64, f64, Option<f64>)) {
    let ago = |h: f64| format_ts(now() - chrono::Duration::seconds((h * 3600.0) as i64));
    sqlx::query(
        "INSERT INTO console_sessions (id_hash, user_id, csrf_token, created_at, last_seen_at, ended_at) \
         VALUES ($1, $2, 'csrf', $3, $4, $5)",
    )
    .bind(name)
    .bind(user)
    .bind(ago(ages.0))
    .bind(ago(ages.1))
    .bind(ages.2.map(ago))
    .execute(db)
    .await
    .expect("session");
}

async fn strings(db: &AnyPool, query: &str) -> Vec<String> {
    sqlx::query_scalar(query).fetch_all(db).await.expect(query)
}

async fn positions(db: &AnyPool) -> Vec<(String, Option<i64>)> {
    sqlx::query_as("SELECT id, position FROM events ORDER BY id")
        .fetch_all(db)
        .await
        .expect("events")
}

async fn feed(app: &TestApp, query: &str) -> (u16, Value) {
    let res = app
        .http
        .get(format!("{}/v1/events?{query}", app.base))
        .bearer_auth(&app.reviewer)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

fn feed_positions(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_removes_old_events_attempts_and_ended_sessions_and_the_feed_says_what_went() {
    let app = spawn_app_with(SimConfig::default(), false).await;
    let db = sql(&app).await;
    let store = &app.state.store;
    let (endpoint, _) = store
        .put_webhook_endpoint(
            "https://receiver.example/hook",
            None,
            "whsec_dGVzdC1zZWNyZXQ=",
            "admin-1",
        )
        .await
        .expect("endpoint");
    let day = 24;
    // Positioned in id order: a 1, c 2, b 3, d 4. Old (100 days): a and b delivered, c still
    // pending; d delivered, of yesterday.
    let (a, c, b, d, unpositioned) = (
        "01900000-0000-7000-8000-000000000001",
        "01900000-0000-7000-8000-000000000002",
        "01900000-0000-7000-8000-000000000003",
        "01900000-0000-7000-8000-000000000004",
        "01900000-0000-7000-8000-000000000005",
    );
    for (id, age) in [(a, 100 * day), (c, 100 * day), (b, 100 * day), (d, day)] {
        add_event(&db, id, age).await;
    }
    assert_eq!(store.sequence_events().await.unwrap(), 4);
    sqlx::query(
        "UPDATE webhook_deliveries SET state = 'delivered', delivered_at = $1 WHERE event_id <> $2",
    )
    .bind(format_ts(now()))
    .bind(c)
    .execute(&db)
    .await
    .unwrap();
    // An old event not positioned yet (its transaction committed late): never taken.
    add_event(&db, unpositioned, 100 * day).await;
    // The delivery log: one attempt of 40 days ago goes, one of yesterday stays.
    add_attempt(
        &db,
        "01900000-0000-7000-8000-0000000000a1",
        &endpoint.id,
        a,
        40 * day,
    )
    .await;
    add_attempt(
        &db,
        "01900000-0000-7000-8000-0000000000a2",
        &endpoint.id,
        d,
        day,
    )
    .await;
    // Console sessions: gone a day after they ended (signed out, idle, past their lifetime).
    let user = store
        .create_user("ops-person", Role::Admin, "not-a-real-hash")
        .await
        .expect("user");
    for (name, ages) in [
        ("signed-out-2-days-ago", (50.0, 49.0, Some(48.0))),
        ("idle-since-2-days-ago", (49.0, 48.0, None)),
        ("begun-40-hours-ago", (40.0, 0.01, None)),
        ("signed-out-an-hour-ago", (2.0, 1.0, Some(1.0))),
        ("idle-since-20-hours-ago", (21.0, 20.0, None)),
        ("live", (1.0, 0.01, None)),
    ] {
        add_session(&db, &user.id, name, ages).await;
    }
    // Failed sign-ins: counted over 15 minutes; one of 20 minutes ago goes.
    for (id, minutes) in [
        ("00000000-0000-4000-8000-0000000000f1", 20),
        ("00000000-0000-4000-8000-0000000000f2", 5),
    ] {
        sqlx::query(
            "INSERT INTO sign_in_failures (id, user_name, address, at) VALUES ($1, 'ops-person', '127.0.0.1', $2)",
        )
        .bind(id)
        .bind(format_ts(now() - chrono::Duration::minutes(minutes)))
        .execute(&db)
        .await
        .unwrap();
    }

    // The dry run, as an operator runs it (the default settings): says, removes nothing.
    let before = positions(&db).await;
    let stdout = dry_run(&app);
    assert!(
        stdout.contains(
            "2 events, 2 finished webhook deliveries, 1 webhook attempts, 3 ended console sessions, \
             1 old sign-in failures"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("events up to position 3"), "{stdout}");
    let policy = RetentionPolicy::default();
    let dry = store.prune(&app.state.files, &policy, true).await.unwrap();
    assert_eq!(positions(&db).await, before, "a dry run deletes nothing");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM webhook_attempts").await, 2);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM console_sessions").await, 6);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM sign_in_failures").await, 2);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM webhook_deliveries").await,
        4
    );
    assert_eq!(store.events_pruned().await.unwrap().through, 0);

    let report = store.prune(&app.state.files, &policy, false).await.unwrap();
    assert_eq!(
        (
            report.events,
            report.events_through,
            report.webhook_deliveries,
            report.webhook_attempts,
            report.console_sessions,
            report.sign_in_failures
        ),
        (2, Some(3), 2, 1, 3, 1)
    );
    assert_eq!(
        (
            dry.events,
            dry.events_through,
            dry.webhook_deliveries,
            dry.webhook_attempts,
            dry.console_sessions,
            dry.sign_in_failures
        ),
        (
            report.events,
            report.events_through,
            report.webhook_deliveries,
            report.webhook_attempts,
            report.console_sessions,
            report.sign_in_failures
        ),
        "the dry run counted what the prune removed"
    );
    assert_eq!(
        positions(&db).await,
        vec![
            (c.to_owned(), Some(2)),
            (d.to_owned(), Some(4)),
            (unpositioned.to_owned(), None)
        ],
        "old and delivered: gone; pending, recent or unpositioned: kept"
    );
    assert_eq!(
        strings(
            &db,
            "SELECT event_id FROM webhook_deliveries ORDER BY event_id"
        )
        .await,
        vec![c.to_owned(), d.to_owned()]
    );
    assert_eq!(
        strings(&db, "SELECT event_id FROM webhook_attempts").await,
        vec![d.to_owned()]
    );
    assert_eq!(
        strings(&db, "SELECT id_hash FROM console_sessions ORDER BY id_hash").await,
        vec![
            "idle-since-20-hours-ago".to_owned(),
            "live".to_owned(),
            "signed-out-an-hour-ago".to_owned()
        ]
    );
    assert_eq!(
        strings(&db, "SELECT id FROM sign_in_failures").await,
        vec!["00000000-0000-4000-8000-0000000000f2".to_owned()]
    );
    let pruned = store.events_pruned().await.unwrap();
    assert_eq!((pruned.through, pruned.kept_days), (3, Some(90)));

    // What was removed shows in /metrics, by kind.
    refbridge_cli::commands::prune::record_metrics(&report);
    removed_counted(
        &app,
        &[
            "events",
            "webhook_deliveries",
            "webhook_attempts",
            "console_sessions",
            "sign_in_failures",
        ],
    )
    .await;

    // The feed: a cursor before what went is told so (410), naming `after`, the first
    // position kept and the setting; from the mark on, the feed is whole.
    for before_mark in ["0", "2"] {
        let (status, body) = feed(&app, &format!("after={before_mark}")).await;
        assert_eq!(status, 410, "after={before_mark}: {body}");
        assert_eq!(body["error"], "gone");
        assert_eq!(body["details"][0]["path"], "after");
        assert_eq!(body["resume_after"], "3");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("before position 4") && message.contains("retention.event_days = 90"),
            "{message}"
        );
    }
    // The feed sequences the late event (5) as it reads; the pending one below the mark (2)
    // stays for its webhook, not in the feed.
    let (status, page) = feed(&app, "after=3").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(feed_positions(&page), vec![4, 5]);
    let (status, page) = feed(&app, "").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        feed_positions(&page),
        vec![4, 5],
        "from the first event kept"
    );
    // The pending delivery still goes out.
    let claim = store
        .claim_webhook_delivery("worker-a", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("the pending delivery of the old event");
    assert_eq!(claim.event.id, c);

    // Everything removed (the endpoint and its queue gone, a retention of zero), more rows
    // than a batch: the next event still comes after every position given, and the mark
    // says what went.
    assert!(
        store
            .delete_webhook_endpoint(&endpoint.id, "admin-1")
            .await
            .unwrap()
    );
    let many = 1_200;
    let mut tx = db.begin().await.unwrap();
    for i in 0..many {
        sqlx::query(
            "INSERT INTO events (id, position, event_type, occurred_at, request_id, patient_id, data_json) \
             VALUES ($1, NULL, 'payor.unmapped', $2, NULL, NULL, '{}')",
        )
        .bind(format!("01900000-0000-7000-8001-{i:012}"))
        .bind(format_ts(hours_ago(1)))
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO sign_in_failures (id, user_name, address, at) VALUES ($1, 'ops-person', '127.0.0.1', $2)",
        )
        .bind(format!("00000000-0000-4000-8001-{i:012}"))
        .bind(format_ts(hours_ago(1)))
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let mut positioned = 0;
    while let n @ 1.. = store.sequence_events().await.unwrap() {
        positioned += n;
    }
    assert_eq!(positioned, many as u64);
    let all = RetentionPolicy {
        events: Some(Duration::ZERO),
        ..RetentionPolicy::default()
    };
    let report = store.prune(&app.state.files, &all, false).await.unwrap();
    let through = 5 + many;
    assert_eq!(
        (
            report.events,
            report.events_through,
            report.sign_in_failures
        ),
        (3 + many as u64, Some(through), many as u64),
        "every batch"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM events").await, 0);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM sign_in_failures").await, 1);
    add_event(&db, "01900000-0000-7000-8002-000000000000", 0).await;
    let (status, page) = feed(&app, &format!("after={through}")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        feed_positions(&page),
        vec![through + 1],
        "numbered after what was removed"
    );
    let (status, body) = feed(&app, "after=5").await;
    assert_eq!(
        (status, body["resume_after"].clone()),
        (410, Value::from(through.to_string()))
    );
}

/// Each of `kinds` shows in `/metrics` as removed at least once.
async fn removed_counted(app: &TestApp, kinds: &[&str]) {
    let text = metrics(app).await;
    for kind in kinds {
        let n = sample(
            &text,
            "refbridge_retention_removed_total",
            &[&format!("kind=\"{kind}\"")],
        );
        assert!(n.is_some_and(|n| n >= 1.0), "{kind}: {n:?} in\n{text}");
    }
}
