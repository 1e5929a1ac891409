//! Several `refbridge worker` processes over one PostgreSQL database (run by
//! `scripts/chaos-postgres.sh` and `scripts/bench-workers.sh`; `#[ignore]`d in the plain suite
//! because they restart the database or load the machine).
//!
//! - The chaos test: three worker processes, many approvals with mixed ambiguous faults,
//!   workers SIGKILLed and restarted at random, the database restarted once. Every referral
//!   must end sent, with exactly one object per natural key in ACCloud (the simulator's
//!   duplicates report), nothing left in the queue, and the shared rate budget never exceeded
//!   in any one-second window of the simulator's journal.
//! - The benchmark: approvals per second with N worker processes, faults off.
//!
//! The API and the simulator run in the test process (on loopback ports); the workers are
//! the real binary, configured by environment as an operator would.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use refbridge_accloud_sim::{FaultConfig, FaultProbabilities, SimConfig};
use refbridge_storage::Backend;

use crate::helpers::{TestApp, sample_terms, spawn_app_with};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The worker processes, killed when dropped (a failed test leaves none behind).
struct Workers {
    env: Vec<(String, String)>,
    logs: PathBuf,
    children: Vec<Option<Child>>,
    started: usize,
}

impl Workers {
    fn new(app: &TestApp, count: usize, per_second: u32, logs: PathBuf) -> Workers {
        Self::with_lease(app, count, per_second, 3, logs)
    }

    fn with_lease(
        app: &TestApp,
        count: usize,
        per_second: u32,
        lease_secs: u64,
        logs: PathBuf,
    ) -> Workers {
        let cred = SimConfig::default().credentials.api[0].clone();
        let env = [
            ("REFBRIDGE_DATABASE_URL", app.db_url.clone()),
            (
                "REFBRIDGE_FILES_DIR",
                app.state.files.local().root().display().to_string(),
            ),
            ("REFBRIDGE_ACCLOUD__TARGET", "url".into()),
            ("REFBRIDGE_ACCLOUD__URL", app.sim.base_url()),
            ("REFBRIDGE_ACCLOUD__API_KEY", cred.key),
            ("REFBRIDGE_ACCLOUD__API_SECRET", cred.secret),
            ("REFBRIDGE_ACCLOUD__REQUEST_TIMEOUT_MS", "1000".into()),
            (
                "REFBRIDGE_ACCLOUD__MAX_REQUESTS_PER_SECOND",
                per_second.to_string(),
            ),
            ("REFBRIDGE_WORKER__LEASE_SECS", lease_secs.to_string()),
            ("REFBRIDGE_WORKER__SETTLE_DELAY_MS", "1500".into()),
            ("REFBRIDGE_WORKER__POLL_INTERVAL_MS", "500".into()),
            ("REFBRIDGE_WORKER__MAX_ATTEMPTS", "40".into()),
            ("REFBRIDGE_WORKER__CONCURRENCY", "8".into()),
            // Agency checks run beside the sends (read-only calls under the same budget).
            ("REFBRIDGE_WORKER__AGENCY_CHECK_SECS", "2".into()),
            ("REFBRIDGE_LOG__FILTER", "warn".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut w = Workers {
            env,
            logs,
            children: (0..count).map(|_| None).collect(),
            started: 0,
        };
        for i in 0..count {
            w.start(i);
        }
        w
    }

    fn start(&mut self, i: usize) {
        self.started += 1;
        let log = std::fs::File::create(self.logs.join(format!("worker-{}.log", self.started)))
            .expect("worker log");
        let child = Command::new(env!("CARGO_BIN_EXE_refbridge"))
            .arg("worker")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("REFBRIDGE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start refbridge worker");
        self.children[i] = Some(child);
    }

    /// The owner name worker `i` claims under (`<host>-<pid>`), while it runs.
    fn owner_suffix(&self, i: usize) -> Option<String> {
        self.children[i].as_ref().map(|c| format!("-{}", c.id()))
    }

    /// SIGKILL: the process stops wherever it is.
    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn kill_all(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Posts and approves `n` referrals (each its own patient).
async fn approve_many(app: &TestApp, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n)
        .map(|i| format!("00000000-0000-4000-9000-{i:012}"))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let mut p = app.payload(id, 20_000 + i as i64);
        p["client"]["last_name"] = serde_json::json!(format!("Multi{i}"));
        app.post_referral(&p).await;
        let (s, b) = app.approve(id, &sample_terms()).await;
        assert_eq!(s, 202, "{b}");
    }
    ids
}

/// Referrals sent, from the database (tolerates a database restart: `None` while it is down).
async fn count_sent(app: &TestApp) -> Option<(i64, i64)> {
    let store = &app.state.store;
    let unfinished = store.count_unfinished_sends().await.ok()?;
    let m = store.queue_metrics().await.ok()?;
    Some((unfinished, m.paused))
}

/// The most calls the simulator received within any one second (a sliding window), and the
/// most within one calendar second.
fn peaks(at: &[DateTime<Utc>]) -> (usize, usize) {
    let mut at = at.to_vec();
    at.sort();
    let (mut sliding, mut first) = (0, 0);
    for last in 0..at.len() {
        while at[last] - at[first] >= chrono::Duration::seconds(1) {
            first += 1;
        }
        sliding = sliding.max(last - first + 1);
    }
    let mut per_second = std::collections::HashMap::new();
    for t in &at {
        *per_second.entry(t.timestamp()).or_insert(0usize) += 1;
    }
    (sliding, per_second.values().copied().max().unwrap_or(0))
}

/// Restarts the test PostgreSQL server (`scripts/start-postgres.sh`'s `refbridge_pg_restart`).
fn restart_database() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/start-postgres.sh"
    );
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!("source '{script}' && refbridge_pg_restart"))
        .status()
        .expect("run pg_ctl restart");
    assert!(status.success(), "pg_ctl restart failed");
}

/// Recovery from a killed worker, on either backend: worker processes (two on PostgreSQL; on
/// SQLite one, restarted at once by its supervisor) with the default 10 s lease and slow
/// ACCloud calls; the one holding sends is SIGKILLed, and the time until each of its sends is
/// claimed again is printed. Every send must move again within 15 s, and all end sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "kills worker processes: run by scripts/chaos-recovery.sh"]
async fn the_sends_of_a_killed_worker_move_again_within_15_seconds() {
    let n: usize = env_or("RECOVERY_APPROVALS", 24);
    let lease: u64 = env_or("RECOVERY_LEASE_SECS", 10);
    let faults = FaultConfig {
        default: FaultProbabilities {
            latency: 1.0,
            latency_min_ms: 200,
            latency_max_ms: 500,
            ..FaultProbabilities::default()
        },
        ..FaultConfig::none()
    };
    let sim_cfg = SimConfig {
        faults,
        ..SimConfig::default()
    };
    let app = spawn_app_with(sim_cfg, false).await;
    let backend = app.state.store.backend();
    let processes = match backend {
        Backend::Postgres => 2,
        Backend::Sqlite => 1,
    };
    let logs = tempfile::tempdir().expect("logs");
    let ids = approve_many(&app, n).await;
    let mut workers = Workers::with_lease(&app, processes, 0, lease, logs.path().to_owned());
    let store = &app.state.store;
    let request_ids: Vec<_> = ids
        .iter()
        .map(|id| refbridge_domain::RequestId::parse(id).expect("id"))
        .collect();

    // Wait until worker 0 holds sends, then kill it.
    let victim = workers.owner_suffix(0).expect("worker 0 runs");
    let waited = Instant::now();
    let held = loop {
        let mut held = Vec::new();
        for id in &request_ids {
            if let Some(job) = store.send_job(*id).await.expect("job") {
                if job
                    .lease_owner
                    .as_deref()
                    .is_some_and(|o| o.ends_with(&victim))
                    && job.lease_until.is_some_and(|u| u > Utc::now())
                {
                    held.push((*id, job.fence));
                }
            }
        }
        if held.len() >= 2 {
            break held;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "worker 0 never held two sends"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    workers.kill(0);
    let killed = Instant::now();
    if backend == Backend::Sqlite {
        workers.start(0); // its supervisor restarts it
    }

    let mut moved: Vec<Option<Duration>> = vec![None; held.len()];
    while moved.iter().any(Option::is_none) {
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "sends still held by the killed worker after a minute"
        );
        for (k, (id, fence)) in held.iter().enumerate() {
            if moved[k].is_some() {
                continue;
            }
            let job = store.send_job(*id).await.expect("job").expect("job");
            if job.fence > *fence {
                moved[k] = Some(killed.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut times: Vec<Duration> = moved.into_iter().flatten().collect();
    times.sort();
    let worst = *times.last().expect("held sends");
    println!(
        "\nrecovery ({:?}): a worker holding {} sends SIGKILLed; every one claimed again after at most {:.1?} (first after {:.1?}); lease {lease} s, {processes} worker process(es){}",
        backend,
        times.len(),
        worst,
        times[0],
        if backend == Backend::Sqlite {
            ", restarted at once"
        } else {
            ""
        },
    );
    assert!(worst <= Duration::from_secs(15), "recovery took {worst:?}");

    // And everything ends sent, once.
    let start = Instant::now();
    while count_sent(&app).await != Some((0, 0)) {
        assert!(start.elapsed() < Duration::from_secs(120), "not all sent");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    workers.kill_all();
    assert!(app.sim().duplicates().is_empty());
    assert_eq!(app.sim().state().referrals.len(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts the database: run by scripts/chaos-postgres.sh"]
async fn worker_processes_killed_at_random_and_a_database_restart_lose_and_duplicate_nothing() {
    let n: usize = env_or("CHAOS_APPROVALS", 500);
    let seed: u64 = env_or("CHAOS_SEED", 11);
    let budget: u32 = env_or("CHAOS_MAX_RPS", 60);
    let processes: usize = 3;
    let faults = FaultConfig {
        default: FaultProbabilities {
            latency: 0.10,
            latency_min_ms: 5,
            latency_max_ms: 40,
            error_before_commit: 0.02,
            error_after_commit: 0.03,
            drop_after_commit: 0.03,
            hang_after_commit: 0.02,
            hang_ms: 1500,
            // Each 429 pauses every process for its Retry-After: keep them rare.
            rate_limited: 0.01,
            retry_after_secs: 1,
            indexing_lag: 0.03,
            indexing_lag_ms: 600,
            ..FaultProbabilities::default()
        },
        ..FaultConfig::none()
    };
    let sim_cfg = SimConfig {
        faults,
        rng_seed: seed,
        journal_capacity: 10_000_000,
        ..SimConfig::default()
    };
    let app = spawn_app_with(sim_cfg, false).await;
    assert_eq!(
        app.state.store.backend(),
        Backend::Postgres,
        "run with REFBRIDGE_TEST_DATABASE=postgres (scripts/chaos-postgres.sh)"
    );
    let can_restart = std::env::var_os("REFBRIDGE_PG_DIR").is_some();
    let logs = tempfile::tempdir().expect("logs");
    let start = Instant::now();
    let ids = approve_many(&app, n).await;
    let approved_in = start.elapsed();
    let mut workers = Workers::new(&app, processes, budget, logs.path().to_owned());

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut kills = 0;
    let mut restarted = false;
    let mut next_kill = Instant::now() + Duration::from_millis(rng.random_range(1000..4000));
    let deadline = Duration::from_secs(env_or("CHAOS_TIMEOUT_SECS", 900));
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Some((unfinished, paused)) = count_sent(&app).await else {
            continue;
        };
        assert_eq!(paused, 0, "a send needs attention: see the worker logs");
        if unfinished == 0 {
            break;
        }
        assert!(
            start.elapsed() < deadline,
            "{unfinished} of {n} not sent after {deadline:?}"
        );
        if Instant::now() >= next_kill {
            let i = rng.random_range(0..processes);
            workers.kill(i);
            kills += 1;
            // Restart at once or a little later: sometimes two are down together.
            if rng.random_bool(0.7) {
                workers.start(i);
            }
            for j in 0..processes {
                if workers.children[j].is_none() && j != i {
                    workers.start(j);
                }
            }
            next_kill = Instant::now() + Duration::from_millis(rng.random_range(1000..4000));
        }
        if !restarted && can_restart && (unfinished as usize) < n * 2 / 3 {
            println!("chaos: restarting PostgreSQL with {unfinished} sends to go");
            restart_database();
            restarted = true;
        }
    }
    let elapsed = start.elapsed();
    workers.kill_all();

    // Every referral is sent, once.
    for id in &ids {
        let d = app.detail(id).await;
        assert_eq!(d["status"], "sent", "{id}: {:#}", d["send"]);
    }
    let dups = app.sim().duplicates();
    assert!(dups.is_empty(), "duplicates: {dups:?}");
    let s = app.sim().state();
    assert_eq!(s.clients.len(), n);
    assert_eq!(s.services.len(), n);
    assert_eq!(s.authorizations.iter().filter(|a| !a.deleted).count(), n);
    assert_eq!(s.referrals.len(), n);
    assert_eq!(s.attachments.len(), n);
    assert_eq!(app.state.store.count_unfinished_sends().await.unwrap(), 0);

    // The shared budget held across the processes.
    let journal = app.sim().journal();
    let at: Vec<_> = journal.iter().map(|j| j.at).collect();
    let (sliding, calendar) = peaks(&at);
    let faulted = journal.iter().filter(|j| j.fault.is_some()).count();
    let limited = journal.iter().filter(|j| j.status == Some(429)).count();
    println!(
        "chaos-postgres: {n} approvals (approved in {approved_in:.1?}) sent exactly once by {processes} worker \
         processes in {elapsed:.1?}; {} ACCloud calls, {faulted} faulted ({limited} answered 429); \
         {kills} worker kills ({} processes started); database restarted: {restarted}; \
         peak calls in one second: {sliding} sliding, {calendar} calendar (budget {budget}/s); seed {seed}",
        journal.len(),
        workers.started,
    );
    assert!(faulted > 0, "faults were injected");
    assert!(kills > 0, "workers were killed");
    assert!(restarted || !can_restart, "the database was restarted once");
    assert!(
        sliding <= budget as usize,
        "{sliding} calls within one second; the budget is {budget}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by scripts/bench-workers.sh"]
async fn bench_approvals_per_second_with_worker_processes() {
    let n: usize = env_or("BENCH_APPROVALS", 300);
    let processes: usize = env_or("BENCH_WORKERS", 1);
    let sim_cfg = SimConfig {
        journal_capacity: 10_000_000,
        ..SimConfig::default()
    };
    let app = spawn_app_with(sim_cfg, false).await;
    let backend = app.state.store.backend();
    let logs = tempfile::tempdir().expect("logs");
    let t0 = Instant::now();
    approve_many(&app, n).await;
    let approved_in = t0.elapsed();
    app.sim().clear_journal();

    let start = Instant::now();
    let mut workers = Workers::new(&app, processes, 0, logs.path().to_owned());
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some((0, _)) = count_sent(&app).await {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "not all sent after 600 s"
        );
    }
    let elapsed = start.elapsed();
    workers.kill_all();
    let calls = app.sim().journal().len();
    assert!(app.sim().duplicates().is_empty());
    println!(
        "bench-workers: {backend:?}, {processes} worker process(es): {n} approvals sent in {:.2} s = {:.1} approvals/s \
         ({calls} ACCloud calls, {:.1} per approval; intake + approval of all {n} took {:.1} s before the workers started)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        calls as f64 / n as f64,
        approved_in.as_secs_f64(),
    );
}

/// A `refbridge` process of its own, configured by environment, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Env of a process on the test's database and simulator, with its own working folder.
fn process_env(app: &TestApp, files_dir: &std::path::Path) -> Vec<(String, String)> {
    let cred = SimConfig::default().credentials.api[0].clone();
    [
        ("REFBRIDGE_DATABASE_URL", app.db_url.clone()),
        ("REFBRIDGE_FILES_DIR", files_dir.display().to_string()),
        ("REFBRIDGE_ACCLOUD__TARGET", "url".into()),
        ("REFBRIDGE_ACCLOUD__URL", app.sim.base_url()),
        ("REFBRIDGE_ACCLOUD__API_KEY", cred.key),
        ("REFBRIDGE_ACCLOUD__API_SECRET", cred.secret),
        ("REFBRIDGE_ACCLOUD__REQUEST_TIMEOUT_MS", "1000".into()),
        ("REFBRIDGE_WORKER__SETTLE_DELAY_MS", "1500".into()),
        ("REFBRIDGE_WORKER__POLL_INTERVAL_MS", "200".into()),
        ("REFBRIDGE_LOG__FILTER", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn spawn_process(
    args: &[&str],
    env: &[(String, String)],
    extra: &[(&str, String)],
    log: PathBuf,
) -> Process {
    let log = std::fs::File::create(log).expect("log");
    Process(
        Command::new(env!("CARGO_BIN_EXE_refbridge"))
            .args(args)
            // The environment's choices first, so that `extra` decides.
            .env_remove("REFBRIDGE_CONFIG")
            .env_remove("REFBRIDGE_BLOBS__BACKEND")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start refbridge"),
    )
}

/// The bodies under a working folder's `sha256/` (the folder backend's store).
fn bodies_in(files_dir: &std::path::Path) -> usize {
    std::fs::read_dir(files_dir.join("sha256"))
        .map(|dirs| {
            dirs.flatten()
                .map(|d| std::fs::read_dir(d.path()).map_or(0, |f| f.count()))
                .sum()
        })
        .unwrap_or(0)
}

/// The must-show of blobs that follow the database: on PostgreSQL, a `refbridge serve` with a
/// working folder of its own takes the intake (its file into the database, `blobs.backend =
/// "auto"`); two `refbridge worker` processes, each with another folder and nothing shared
/// but the database, send it; ACCloud receives the file's exact bytes; the intake process
/// serves the file back from the database; no working folder keeps a body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_on_other_machines_send_the_files_another_process_took_in() {
    let app = spawn_app_with(SimConfig::default(), false).await;
    if app.state.store.backend() != Backend::Postgres {
        return;
    }
    let dirs = tempfile::tempdir().expect("dirs");
    let folder = |name: &str| dirs.path().join(name);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let intake_base = format!("http://127.0.0.1:{port}");
    let _intake = spawn_process(
        &["serve"],
        &process_env(&app, &folder("intake")),
        &[
            ("REFBRIDGE_LISTEN", format!("127.0.0.1:{port}")),
            ("REFBRIDGE_WORKER__ENABLED", "false".into()),
        ],
        folder("intake.log"),
    );
    let ready = Instant::now();
    while app
        .http
        .get(format!("{intake_base}/healthz"))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(
            ready.elapsed() < Duration::from_secs(30),
            "serve did not start: {}",
            std::fs::read_to_string(folder("intake.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let id = "00000000-0000-4000-9000-00000000f11e";
    let payload = app.payload(id, 31_337);
    let res = app
        .http
        .post(format!("{intake_base}/referral_request"))
        .bearer_auth(&app.intake)
        .json(&payload)
        .send()
        .await
        .expect("intake");
    assert_eq!(
        res.status(),
        200,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let (s, b) = app.approve(id, &sample_terms()).await;
    assert_eq!(s, 202, "{b}");

    let _workers: Vec<Process> = (0..2)
        .map(|i| {
            spawn_process(
                &["worker"],
                &process_env(&app, &folder(&format!("worker-{i}"))),
                &[],
                folder(&format!("worker-{i}.log")),
            )
        })
        .collect();
    let detail = app
        .wait_status(id, &["sent"], Duration::from_secs(60))
        .await;

    // ACCloud holds the bytes intake received.
    use base64::Engine as _;
    let sent: Vec<u8> = base64::engine::general_purpose::STANDARD
        .decode(payload["files"][0]["file_value"].as_str().expect("file"))
        .expect("base64");
    let hash = detail["files"][0]["sha256"]
        .as_str()
        .expect("hash")
        .to_owned();
    let attachments = app.sim().state().attachments;
    assert_eq!(attachments.len(), 1, "{attachments:?}");
    assert_eq!(attachments[0].sha256, hash);
    assert_eq!(attachments[0].size, sent.len() as u64);

    // The intake process serves it back, from the database.
    let href = detail["files"][0]["href"].as_str().expect("href");
    let got = app
        .http
        .get(format!("{intake_base}{href}"))
        .bearer_auth(&app.reviewer)
        .send()
        .await
        .expect("download");
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.expect("bytes").as_ref(), sent.as_slice());

    // No process kept the body in its folder: it lives in the database only.
    for name in ["intake", "worker-0", "worker-1"] {
        assert_eq!(bodies_in(&folder(name)), 0, "{name} holds a body");
    }
    let rows: i64 =
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM blob_chunks WHERE sha256 = $1")
            .bind(&hash)
            .fetch_one(
                &mut <sqlx::PgConnection as sqlx::Connection>::connect(&app.db_url)
                    .await
                    .expect("pg"),
            )
            .await
            .expect("chunks");
    assert_eq!(rows, 1, "one chunk for a small file");
}

/// The `s3` blob backend end to end: a `refbridge serve` (API and workers) whose files live in
/// the test S3 bucket (`scripts/start-s3.sh`) takes an intake, sends it (the upload reads the
/// body back from the bucket) and serves the file from there; its working folder keeps none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_on_s3_takes_in_sends_and_serves_files_from_the_bucket() {
    let Ok(endpoint) = std::env::var("REFBRIDGE_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the S3 tests: scripts/test.sh starts scripts/start-s3.sh"
        );
        eprintln!("REFBRIDGE_TEST_S3_ENDPOINT unset: the s3 backend is not tested");
        return;
    };
    let bucket =
        std::env::var("REFBRIDGE_TEST_S3_BUCKET").unwrap_or_else(|_| "refbridge-test".into());
    let prefix = format!("e2e-{}/", refbridge_domain::FileId::new());
    let app = spawn_app_with(SimConfig::default(), false).await;
    let dirs = tempfile::tempdir().expect("dirs");
    let work = dirs.path().join("work");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let _serve = spawn_process(
        &["serve"],
        &process_env(&app, &work),
        &[
            ("REFBRIDGE_LISTEN", format!("127.0.0.1:{port}")),
            ("REFBRIDGE_BLOBS__BACKEND", "s3".into()),
            ("REFBRIDGE_BLOBS__S3__BUCKET", bucket.clone()),
            ("REFBRIDGE_BLOBS__S3__PREFIX", prefix.clone()),
            ("REFBRIDGE_BLOBS__S3__ENDPOINT", endpoint.clone()),
            ("REFBRIDGE_BLOBS__S3__ALLOW_HTTP", "true".into()),
            ("REFBRIDGE_BLOBS__S3__ACCESS_KEY_ID", "test-key".into()),
            (
                "REFBRIDGE_BLOBS__S3__SECRET_ACCESS_KEY",
                "test-secret".into(),
            ),
        ],
        dirs.path().join("serve.log"),
    );
    let ready = Instant::now();
    while app
        .http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(
            ready.elapsed() < Duration::from_secs(30),
            "serve did not start: {}",
            std::fs::read_to_string(dirs.path().join("serve.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let id = "00000000-0000-4000-9000-0000000005e3";
    let payload = app.payload(id, 31_338);
    let res = app
        .http
        .post(format!("{base}/referral_request"))
        .bearer_auth(&app.intake)
        .json(&payload)
        .send()
        .await
        .expect("intake");
    assert_eq!(
        res.status(),
        200,
        "{}",
        res.text().await.unwrap_or_default()
    );
    // Approved through the test's API (its funder mappings); the serve process's workers send.
    let (s, b) = app.approve(id, &sample_terms()).await;
    assert_eq!(s, 202, "{b}");
    let detail = app
        .wait_status(id, &["sent"], Duration::from_secs(60))
        .await;

    use base64::Engine as _;
    let sent: Vec<u8> = base64::engine::general_purpose::STANDARD
        .decode(payload["files"][0]["file_value"].as_str().expect("file"))
        .expect("base64");
    let hash = detail["files"][0]["sha256"]
        .as_str()
        .expect("hash")
        .to_owned();
    let attachments = app.sim().state().attachments;
    assert_eq!(attachments.len(), 1, "{attachments:?}");
    assert_eq!(attachments[0].sha256, hash);

    let href = detail["files"][0]["href"].as_str().expect("href");
    let got = app
        .http
        .get(format!("{base}{href}"))
        .bearer_auth(&app.reviewer)
        .send()
        .await
        .expect("download");
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.expect("bytes").as_ref(), sent.as_slice());

    // In the bucket, under the prefix; not in the working folder.
    let listing = app
        .http
        .get(format!("{endpoint}/{bucket}?list-type=2&prefix={prefix}"))
        .send()
        .await
        .expect("list the bucket")
        .text()
        .await
        .expect("listing");
    assert!(
        listing.contains(&format!("<Key>{prefix}sha256/{hash}</Key>")),
        "{listing}"
    );
    assert_eq!(bodies_in(&work), 0);
}
