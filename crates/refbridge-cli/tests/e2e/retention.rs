//! Retention: `refbridge prune` (and the service's scheduled prune) removes what the policy
//! allows and nothing else, on the test's backend (the folder on SQLite, the database's own
//! blob tables on PostgreSQL).

use std::process::Command;
use std::time::Duration;

use refbridge_domain::ContentHash;
use refbridge_storage::{Backend, Blobs, RetentionPolicy, format_ts, now};
use sqlx::AnyPool;

use crate::helpers::{TestApp, sample_terms, spawn_app};

async fn sql(app: &TestApp) -> AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&app.db_url)
        .await
        .expect("a second connection to the test database")
}

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
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for kind in [
        "blobs",
        "idempotency_keys",
        "scratch_files",
        "compacted_steps",
    ] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "refbridge_retention_removed_total{{kind=\"{kind}\"}}"
                ))
            })
            .unwrap_or_else(|| panic!("no {kind} count in\n{metrics}"));
        let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n >= 1.0, "{line}");
    }

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
