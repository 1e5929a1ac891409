//! `refbridge backup` while intakes and sends run, then `refbridge restore` into an empty data
//! folder: the restored service has every referral, file and send state of the snapshot.
//! SQLite only (PostgreSQL is backed up with pg_dump: README).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use refbridge_domain::ContentHash;
use refbridge_storage::{Backend, Blobs, FileStore, Store, StoreOptions};
use sqlx::AnyPool;

use crate::helpers::{TestApp, sample_terms, spawn_app};

fn refbridge(args: &[&str], db_url: &str, files: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_refbridge"))
        .args(args)
        .env_remove("REFBRIDGE_CONFIG")
        .env("REFBRIDGE_DATABASE_URL", db_url)
        .env("REFBRIDGE_FILES_DIR", files)
        .env("REFBRIDGE_LOG__FILTER", "warn")
        .output()
        .expect("run refbridge")
}

async fn pool(url: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect(url)
}

async fn ids(db: &AnyPool) -> BTreeSet<String> {
    sqlx::query_scalar("SELECT request_id FROM referral_requests")
        .fetch_all(db)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn sent(db: &AnyPool) -> BTreeSet<String> {
    sqlx::query_scalar("SELECT request_id FROM send_jobs WHERE state = 'done'")
        .fetch_all(db)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// Referral `i` of the load, with a 64 KiB file of its own.
fn referral(app: &TestApp, i: usize) -> (String, serde_json::Value) {
    let id = format!("00000000-0000-4000-b000-{i:012}");
    let mut p = app.payload(&id, 50_000 + i as i64);
    p["client"]["last_name"] = serde_json::json!(format!("Backup{i}"));
    let mut bytes = format!("%PDF-1.4 load {i}\n").into_bytes();
    bytes.resize(64 * 1024, (i % 251) as u8);
    p["files"][0]["file_value"] =
        serde_json::json!(base64::engine::general_purpose::STANDARD.encode(&bytes));
    (id, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_every_referral_file_and_send_state() {
    let app = Arc::new(spawn_app().await);
    if app.state.store.backend() != Backend::Sqlite {
        return;
    }
    let live = pool(&app.db_url).await;
    let files_dir = app.state.files.local().root().to_owned();

    // Before the backup: some referrals, half of them sent.
    for i in 0..6 {
        let (id, p) = referral(&app, i);
        app.post_referral(&p).await;
        if i % 2 == 0 {
            let (s, b) = app.approve(&id, &sample_terms()).await;
            assert_eq!(s, 202, "{b}");
            app.wait_status(&id, &["sent"], Duration::from_secs(30))
                .await;
        }
    }
    let before = ids(&live).await;
    let sent_before = sent(&live).await;
    assert_eq!((before.len(), sent_before.len()), (6, 3));

    // The load: intakes one after another, every third approved, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let posted = Arc::new(AtomicUsize::new(0));
    let load = {
        let (app, stop, posted) = (app.clone(), stop.clone(), posted.clone());
        tokio::spawn(async move {
            let mut i = 100;
            while !stop.load(Ordering::Relaxed) {
                let (id, p) = referral(&app, i);
                app.post_referral(&p).await;
                if i % 3 == 0 {
                    let (s, b) = app.approve(&id, &sample_terms()).await;
                    assert_eq!(s, 202, "{b}");
                }
                posted.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };
    while posted.load(Ordering::Relaxed) < 10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let out_dir = tempfile::tempdir().expect("backup dir");
    let backup_dir = out_dir.path().join("backup");
    let (db_url, fdir, bdir) = (
        app.db_url.clone(),
        files_dir.clone(),
        backup_dir.display().to_string(),
    );
    let out =
        tokio::task::spawn_blocking(move || refbridge(&["backup", "--to", &bdir], &db_url, &fdir))
            .await
            .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let during = posted.load(Ordering::Relaxed);
    while posted.load(Ordering::Relaxed) < during + 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load");
    let after = ids(&live).await;

    // Restore into an empty data folder.
    let data = out_dir.path().join("restored");
    let restored_url = format!("sqlite://{}", data.join("refbridge.db").display());
    let restored_files = data.join("files");
    let b = backup_dir.display().to_string();
    let out = refbridge(&["restore", "--from", &b], &restored_url, &restored_files);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not over data.
    let again = refbridge(&["restore", "--from", &b], &restored_url, &restored_files);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("empty data folder"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let snapshot = pool(&format!(
        "sqlite://{}",
        backup_dir.join("refbridge.db").display()
    ))
    .await;
    let restored = pool(&restored_url).await;
    let in_snapshot = ids(&snapshot).await;
    let in_restored = ids(&restored).await;
    assert_eq!(in_restored, in_snapshot, "every referral of the snapshot");
    assert!(
        before.is_subset(&in_restored),
        "what was there before the backup"
    );
    assert!(
        in_restored.len() > before.len() + 5,
        "taken while intakes ran: {} before, {} in the backup",
        before.len(),
        in_restored.len()
    );
    assert!(in_restored.len() < after.len(), "intakes went on after it");
    assert!(
        sent_before.is_subset(&sent(&restored).await),
        "sends done before are done"
    );
    assert_eq!(sent(&restored).await, sent(&snapshot).await);
    let states = |db: AnyPool| async move {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT request_id, state FROM send_jobs ORDER BY request_id")
                .fetch_all(&db)
                .await
                .unwrap();
        rows
    };
    assert_eq!(
        states(restored.clone()).await,
        states(snapshot.clone()).await
    );

    // Every file of every restored referral, whole (checked against its hash).
    let store = Store::open(&restored_url, &StoreOptions::default())
        .await
        .expect("restored store");
    let blobs = Blobs::folder(FileStore::open(&restored_files).expect("files"));
    let files: Vec<(String, String)> =
        sqlx::query_as("SELECT request_id, sha256 FROM referral_files")
            .fetch_all(&restored)
            .await
            .unwrap();
    assert_eq!(files.len(), in_restored.len(), "one file each");
    for (id, sha) in &files {
        let hash = ContentHash::parse(sha).unwrap();
        let copy = blobs
            .local_copy(&hash)
            .await
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        let bytes = std::fs::read(copy.path()).unwrap();
        assert_eq!(bytes.len(), 64 * 1024, "{id}");
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::digest(&bytes).into();
        assert_eq!(ContentHash::from_digest(&digest), hash, "{id}");
    }
    // Only what the snapshot refers to was copied.
    let copied = std::fs::read_dir(backup_dir.join("files/sha256"))
        .unwrap()
        .flatten()
        .map(|d| std::fs::read_dir(d.path()).unwrap().count())
        .sum::<usize>();
    assert_eq!(copied, files.len());
    store.close().await;
}
