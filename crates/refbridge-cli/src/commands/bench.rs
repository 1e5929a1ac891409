//! `refbridge bench`: the figures issues 2 and 4 ask for, measured on loopback with what the
//! binary starts itself (a throwaway embedded store, the API, the send engine, the built-in
//! ACCloud simulator). It reports; it asserts nothing about timings.
//!
//! - `intake`: `POST /referral_request` with the example payload (each request a fresh
//!   `request_id` and a distinct agency client and patient): requests/s and latency per
//!   concurrency level, each level on a fresh database.
//! - `intake-memory`: the peak resident memory (`VmHWM`) of a separate `refbridge serve`
//!   process while one large file is posted, next to its idle resident memory.
//! - `send`: approvals per second end to end (approve, then the send until every referral is
//!   `sent`) against the simulator with faults off, next to a baseline that makes the same
//!   ACCloud creates with the same concurrency and no persistence; and the ACCloud calls per
//!   approval, counted from the simulator's journal.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::{Args, Subcommand};
use refbridge_accloud::{AcCloudConfig, BranchId, HttpAcCloud, SecretString};
use refbridge_accloud_sim::{Endpoint, RunningSim, SimConfig};
use refbridge_api::AppState;
use refbridge_domain::approval::ApprovalTerms;
use refbridge_domain::send;
use refbridge_domain::{ReferralStatus, RequestId, Role};
use refbridge_saga::steps::{self, Input};
use refbridge_saga::{EngineConfig, Resolver};
use refbridge_storage::{ListFilter, ReferralRecord};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, DatabaseUrl};
use crate::runtime;

pub mod console;
pub mod scale;

const PAYLOAD: &str = include_str!("../../assets/example_referral_request.json");
const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// POST /referral_request throughput and latency with the example payload.
    Intake(IntakeArgs),
    /// Peak resident memory of a separate `refbridge serve` while one large file is posted.
    IntakeMemory(MemoryArgs),
    /// Approvals per second end to end against the simulator, next to a no-persistence
    /// baseline, and ACCloud calls per approval.
    Send(SendArgs),
    /// The console's inbox and referral pages rendered with many referrals in the store.
    Console(console::ConsoleArgs),
    /// The hot reads and the worker's claim on a store of a few referrals, then on one
    /// filled with a million (cloned from referrals made by the real path), side by side.
    Scale(scale::ScaleArgs),
}

#[derive(Debug, Clone, Args)]
pub struct IntakeArgs {
    /// Requests measured per concurrency level.
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Requests in flight; a comma-separated list runs one level each (fresh database each).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 8, 32])]
    pub concurrency: Vec<usize>,
    /// Requests sent before measuring, per level.
    #[arg(long, default_value_t = 50)]
    pub warmup: usize,
}

#[derive(Debug, Clone, Args)]
pub struct MemoryArgs {
    /// Size of the file, in MiB (decoded); 50 is ACCloud's attachment limit.
    #[arg(long, default_value_t = 50)]
    pub file_mb: u64,
    /// Write every `/` of the base64 as `\/` (what PHP's json_encode does by default).
    #[arg(long)]
    pub escape_slashes: bool,
    /// The server's database (an empty one; default: a throwaway SQLite file). The blob
    /// backend is the server's configuration: `REFBRIDGE_BLOBS__*` pass through.
    #[arg(long)]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    /// Referrals posted and approved.
    #[arg(long, default_value_t = 500)]
    pub approvals: usize,
    /// Sends at once (the engine's worker.concurrency), approval calls at once, and the
    /// baseline's referrals at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Give up when the sends are not all done after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
}

pub async fn run(cfg: Config, cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Intake(args) => {
            let levels = intake(&cfg, &args).await?;
            println!("{}", IntakeTable(&levels));
        }
        BenchCommand::IntakeMemory(args) => {
            let exe = std::env::current_exe().context("cannot find the refbridge executable")?;
            println!("{}", intake_memory(&exe, &args).await?);
        }
        BenchCommand::Send(args) => println!("{}", send(&cfg, &args).await?),
        BenchCommand::Console(args) => println!("{}", console::console(&cfg, &args).await?),
        BenchCommand::Scale(args) => println!("{}", scale::scale(&cfg, &args).await?),
    }
    Ok(())
}

// ---------------------------------------------------------------- shared pieces

/// `cfg` with its store and files moved under `dir` (always the embedded SQLite store).
fn scratch_config(cfg: &Config, dir: &Path) -> Config {
    let mut c = cfg.clone();
    c.database_url = DatabaseUrl::new(format!("sqlite://{}", dir.join("bench.db").display()));
    c.files_dir = dir.join("files");
    c
}

fn request_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

/// The example payload as referral `i`: its own request id, agency client and patient, and
/// files of its own (each gains a trailing line), so every request stores new blobs as real
/// referrals do instead of finding them already stored.
fn referral_payload(base: &Value, i: usize) -> Value {
    let mut p = referral_identity(base, i);
    if let Some(files) = p["files"].as_array_mut() {
        for f in files {
            if let Some(value) = f["file_value"].as_str() {
                let mut bytes = BASE64.decode(value).unwrap_or_default();
                bytes.extend_from_slice(format!("\nbench {i}\n").as_bytes());
                f["file_value"] = json!(BASE64.encode(bytes));
            }
        }
    }
    p
}

/// The example payload under referral `i`'s own request id, agency client and patient name,
/// its files as they are.
fn referral_identity(base: &Value, i: usize) -> Value {
    let mut p = base.clone();
    p["request_id"] = json!(request_id(i));
    p["client"]["id"] = json!(1_000_000 + i as i64);
    p["client"]["last_name"] = json!(format!("Bench{i}"));
    p
}

async fn new_token(state: &AppState, name: &str, role: Role) -> anyhow::Result<String> {
    let token = refbridge_api::new_token().context("the operating system's random source")?;
    state
        .store
        .create_token(name, role, &refbridge_api::hash_token(&token))
        .await
        .with_context(|| format!("cannot create the {name} token"))?;
    Ok(token)
}

/// A reviewer's console session cookie (`name` the user), as a sign-in would set it.
async fn console_session(state: &AppState, name: &str) -> anyhow::Result<String> {
    let hash = refbridge_api::console::session::hash_password("bench password")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let user = state.store.create_user(name, Role::Reviewer, &hash).await?;
    let set = refbridge_api::console::session::start_session(state, &user, &Default::default())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let set = set.to_str().context("the session cookie")?;
    Ok(set.split(';').next().unwrap_or_default().to_owned())
}

/// `GET path` through `app` in this process (no socket), with one header (a token, a
/// cookie): an error unless it answers 200 with a body.
async fn get_in_process(
    app: &axum::Router,
    path: &str,
    (name, value): (axum::http::HeaderName, &str),
) -> anyhow::Result<()> {
    use tower::ServiceExt;
    let mut req = axum::http::Request::get(path)
        .header(name, value)
        .body(axum::body::Body::empty())?;
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            1,
        ))));
    let res = app.clone().oneshot(req).await?;
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), 64 << 20).await?;
    anyhow::ensure!(
        status == axum::http::StatusCode::OK && !body.is_empty(),
        "{path} answered {status}: {}",
        String::from_utf8_lossy(&body[..body.len().min(300)])
    );
    Ok(())
}

/// The API served in this process on a free loopback port.
struct Api {
    base: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Api {
    async fn start(state: AppState) -> anyhow::Result<Api> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot listen on loopback for the API")?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, mut rx) = watch::channel(false);
        let task = tokio::spawn(crate::serve(state, listener, async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        Ok(Api { base, stop, task })
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// Runs `f(0..n)` with `concurrency` calls in flight; each result with its latency.
async fn drive<F, Fut>(
    n: usize,
    concurrency: usize,
    f: F,
) -> anyhow::Result<Vec<(Duration, anyhow::Result<()>)>>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let (f, next) = (f.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                let r = f(i).await;
                out.push((t.elapsed(), r));
            }
            out
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.context("a bench task panicked")?);
    }
    Ok(all)
}

/// Fails with the first error and how many there were.
fn all_ok(what: &str, results: &[(Duration, anyhow::Result<()>)]) -> anyhow::Result<()> {
    let failed: Vec<&anyhow::Error> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().err())
        .collect();
    if let Some(first) = failed.first() {
        bail!(
            "{} of {} {what} failed; the first: {first:#}",
            failed.len(),
            results.len()
        );
    }
    Ok(())
}

async fn post_json(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: Vec<u8>,
    want: u16,
) -> anyhow::Result<()> {
    let res = http
        .post(url)
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .context("request failed")?;
    let status = res.status().as_u16();
    if status != want {
        let text = res.text().await.unwrap_or_default();
        bail!(
            "HTTP {status}: {}",
            text.chars().take(300).collect::<String>()
        );
    }
    // Read the answer: the latency includes it.
    res.bytes().await.context("cannot read the answer")?;
    Ok(())
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    fn of(mut v: Vec<Duration>) -> Latency {
        if v.is_empty() {
            return Latency::default();
        }
        v.sort_unstable();
        let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Latency {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: v[v.len() - 1],
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------- intake throughput

/// One concurrency level of the intake benchmark.
#[derive(Debug, Clone)]
pub struct IntakeLevel {
    pub concurrency: usize,
    pub requests: usize,
    pub elapsed: Duration,
    pub latency: Latency,
    /// Referral requests in the database afterwards (warm-up included).
    pub stored: usize,
    /// The decode-only baseline at the same level, same bodies, same HTTP server: parse,
    /// validate and base64-decode the files; no store, no file written.
    pub baseline_elapsed: Duration,
    pub baseline_latency: Latency,
    /// SQLite: the writer's commits over the measured requests and the time they took in all.
    pub sqlite_commits: Option<(u64, Duration)>,
}

impl IntakeLevel {
    pub fn per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn baseline_per_sec(&self) -> f64 {
        self.requests as f64 / self.baseline_elapsed.as_secs_f64()
    }

    /// Throughput as a share of the decode-only baseline's.
    pub fn ratio(&self) -> f64 {
        self.per_sec() / self.baseline_per_sec()
    }
}

pub async fn intake(cfg: &Config, args: &IntakeArgs) -> anyhow::Result<Vec<IntakeLevel>> {
    let mut out = Vec::new();
    for &c in &args.concurrency {
        out.push(
            intake_level(cfg, args.requests, c.max(1), args.warmup)
                .await
                .with_context(|| format!("intake at concurrency {c}"))?,
        );
    }
    Ok(out)
}

async fn intake_level(
    cfg: &Config,
    requests: usize,
    concurrency: usize,
    warmup: usize,
) -> anyhow::Result<IntakeLevel> {
    let dir = tempfile::tempdir().context("cannot make a temporary folder")?;
    let cfg = scratch_config(cfg, dir.path());
    let state = crate::open_state(&cfg).await?;
    let token = new_token(&state, "bench-intake", Role::Intake).await?;
    let api = Api::start(state.clone()).await?;
    let url = format!("{}/referral_request", api.base);

    // Bodies are serialised before the clock starts: the client's JSON work is not measured.
    let base: Value = serde_json::from_str(PAYLOAD).context("the example payload")?;
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..warmup + requests)
            .map(|i| serde_json::to_vec(&referral_payload(&base, i)))
            .collect::<Result<_, _>>()?,
    );
    let http = reqwest::Client::new();
    let post = |offset: usize| {
        let (http, url, token, bodies) = (http.clone(), url.clone(), token.clone(), bodies.clone());
        move |i: usize| {
            let (http, url, token, bodies) =
                (http.clone(), url.clone(), token.clone(), bodies.clone());
            async move { post_json(&http, &url, &token, bodies[offset + i].clone(), 200).await }
        }
    };
    let warm = drive(warmup, concurrency, post(0)).await?;
    all_ok("warm-up requests", &warm)?;
    let commits_before = state.store.sqlite_commit_time();
    let started = Instant::now();
    let results = drive(requests, concurrency, post(warmup)).await?;
    let elapsed = started.elapsed();
    let sqlite_commits = commits_since(&state, commits_before);
    all_ok("requests", &results)?;
    let stored = count_status(&state, ReferralStatus::Received).await?;
    api.stop().await;

    // The baseline: the same bodies to the decode-only endpoint, same server, same client.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on loopback for the decode-only endpoint")?;
    let decode_url = format!("http://{}/referral_request", listener.local_addr()?);
    let (stop, mut rx) = watch::channel(false);
    let server = tokio::spawn(crate::server::serve(
        refbridge_api::decode_only_router(state.config.max_body_bytes, state.config.max_file_bytes),
        listener,
        crate::server::Limits::default(),
        async move {
            let _ = rx.wait_for(|s| *s).await;
        },
    ));
    let decode = |offset: usize| {
        let (http, url, bodies) = (http.clone(), decode_url.clone(), bodies.clone());
        move |i: usize| {
            let (http, url, bodies) = (http.clone(), url.clone(), bodies.clone());
            async move { post_json(&http, &url, "-", bodies[offset + i].clone(), 200).await }
        }
    };
    let warm = drive(warmup, concurrency, decode(0)).await?;
    all_ok("decode-only warm-up requests", &warm)?;
    let started = Instant::now();
    let baseline = drive(requests, concurrency, decode(warmup)).await?;
    let baseline_elapsed = started.elapsed();
    all_ok("decode-only requests", &baseline)?;
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;

    drop(http);
    state.store.close().await;
    Ok(IntakeLevel {
        concurrency,
        requests,
        elapsed,
        latency: Latency::of(results.into_iter().map(|(d, _)| d).collect()),
        stored,
        baseline_elapsed,
        baseline_latency: Latency::of(baseline.into_iter().map(|(d, _)| d).collect()),
        sqlite_commits,
    })
}

/// SQLite's writer commits, and the time they took, since `before` (`None` on PostgreSQL).
fn commits_since(state: &AppState, before: Option<(u64, Duration)>) -> Option<(u64, Duration)> {
    let (after, took) = state.store.sqlite_commit_time()?;
    let (before, took_before) = before?;
    Some((after - before, took - took_before))
}

/// Referral requests with this status (pages through the review list).
async fn count_status(state: &AppState, status: ReferralStatus) -> anyhow::Result<usize> {
    let mut n = 0;
    let mut filter = ListFilter {
        status: Some(status),
        limit: 1000,
        ..ListFilter::default()
    };
    loop {
        let page = state.store.list_referrals(&filter).await?;
        n += page.len();
        match page.last() {
            Some(last) if page.len() == 1000 => {
                filter.before = Some((last.received_at, last.request_id))
            }
            _ => return Ok(n),
        }
    }
}

pub struct IntakeTable<'a>(pub &'a [IntakeLevel]);

impl fmt::Display for IntakeTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "POST /referral_request, example payload (1 file), embedded SQLite, {} CPUs",
            cpus()
        )?;
        writeln!(
            f,
            "{:>11} {:>9} {:>10} {:>9} {:>9} {:>9} | {:>12} {:>11} {:>11} | {:>6} | {:>11} {:>11}",
            "concurrency",
            "requests",
            "req/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "decode req/s",
            "decode p50",
            "decode p99",
            "ratio",
            "commits/req",
            "in COMMIT"
        )?;
        for l in self.0 {
            let (commits, in_commit) = match l.sqlite_commits {
                Some((n, took)) => (
                    format!("{:.2}", n as f64 / l.requests.max(1) as f64),
                    format!(
                        "{:.0} %",
                        100.0 * took.as_secs_f64() / l.elapsed.as_secs_f64().max(1e-9)
                    ),
                ),
                None => ("-".to_owned(), "-".to_owned()),
            };
            writeln!(
                f,
                "{:>11} {:>9} {:>10.0} {:>9.2} {:>9.2} {:>9.2} | {:>12.0} {:>11.2} {:>11.2} | {:>6.2} | {:>11} {:>11}",
                l.concurrency,
                l.requests,
                l.per_sec(),
                ms(l.latency.p50),
                ms(l.latency.p99),
                ms(l.latency.max),
                l.baseline_per_sec(),
                ms(l.baseline_latency.p50),
                ms(l.baseline_latency.p99),
                l.ratio(),
                commits,
                in_commit
            )?;
        }
        write!(
            f,
            "decode-only: the same bodies and HTTP server, parse + validate + base64-decode the files; \
             no store, no file written; ratio = req/s over decode req/s; commits/req and in COMMIT: \
             SQLite's writer (one fsync a commit, shared by a group) and its share of the run"
        )
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

// ---------------------------------------------------------------- intake memory

#[derive(Debug, Clone)]
pub struct MemoryReport {
    pub file_bytes: u64,
    pub body_bytes: u64,
    pub escaped_slashes: bool,
    pub status: u16,
    pub elapsed: Duration,
    /// Resident memory of the idle server (after one small intake), KiB.
    pub idle_rss_kib: u64,
    /// `VmHWM` after the large request, KiB.
    pub peak_hwm_kib: u64,
    /// The highest `VmRSS` seen while sampling every few milliseconds, KiB.
    pub sampled_peak_rss_kib: u64,
    /// `VmRSS` once the answer is in, KiB.
    pub after_rss_kib: u64,
    /// `embedded SQLite` or `PostgreSQL`, and the blob backend setting the server ran with.
    pub database: &'static str,
    pub blobs: String,
}

impl MemoryReport {
    /// Peak resident memory above the idle server's.
    pub fn peak_above_idle_bytes(&self) -> u64 {
        self.peak_hwm_kib.saturating_sub(self.idle_rss_kib) * 1024
    }

    /// The aim: under 3 times the file's size.
    pub fn within_aim(&self) -> bool {
        self.peak_above_idle_bytes() < 3 * self.file_bytes
    }
}

impl fmt::Display for MemoryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |kib: u64| kib as f64 / 1024.0;
        writeln!(
            f,
            "One file posted to a separate `refbridge serve` (worker off), {}, blobs: {}",
            self.database, self.blobs
        )?;
        writeln!(
            f,
            "  file (decoded)            {:>8.1} MiB",
            self.file_bytes as f64 / MIB
        )?;
        writeln!(
            f,
            "  request body (base64 JSON){:>8.1} MiB{}",
            self.body_bytes as f64 / MIB,
            if self.escaped_slashes {
                "  (every / written \\/)"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "  answer                    HTTP {} in {:.2} s",
            self.status,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  idle RSS                  {:>8.1} MiB",
            mib(self.idle_rss_kib)
        )?;
        writeln!(
            f,
            "  peak RSS (VmHWM)          {:>8.1} MiB  (sampled VmRSS max {:.1} MiB)",
            mib(self.peak_hwm_kib),
            mib(self.sampled_peak_rss_kib)
        )?;
        writeln!(
            f,
            "  peak above idle           {:>8.1} MiB  = {:.2} x the file; aim < 3 x ({:.0} MiB): {}",
            self.peak_above_idle_bytes() as f64 / MIB,
            self.peak_above_idle_bytes() as f64 / self.file_bytes.max(1) as f64,
            3.0 * self.file_bytes as f64 / MIB,
            if self.within_aim() { "met" } else { "MISSED" }
        )?;
        write!(
            f,
            "  RSS after the answer      {:>8.1} MiB",
            mib(self.after_rss_kib)
        )
    }
}

/// A child process killed (and reaped) when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `VmRSS` and `VmHWM` of a process, KiB.
fn proc_memory(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Posts one `args.file_mb` MiB file to a `refbridge serve` started from `exe` and reads that
/// process's resident memory. Linux only (`/proc`).
pub async fn intake_memory(exe: &Path, args: &MemoryArgs) -> anyhow::Result<MemoryReport> {
    let dir = tempfile::tempdir().context("cannot make a temporary folder")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("cannot find a free port")?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let log_path = dir.path().join("serve.log");
    let database_url = args.database_url.clone();
    let command = |args: &[&str]| -> anyhow::Result<Command> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .context("cannot open the server log")?;
        let mut c = Command::new(exe);
        c.args(args)
            .env_remove("REFBRIDGE_CONFIG")
            .env(
                "REFBRIDGE_DATABASE_URL",
                database_url.clone().unwrap_or_else(|| {
                    format!("sqlite://{}", dir.path().join("bench.db").display())
                }),
            )
            .env("REFBRIDGE_FILES_DIR", dir.path().join("files"))
            .env("REFBRIDGE_LISTEN", &listen)
            .env("REFBRIDGE_WORKER__ENABLED", "false")
            .env("REFBRIDGE_ACCLOUD__TARGET", "simulator")
            .stdin(Stdio::null())
            .stderr(log);
        Ok(c)
    };

    let mut token_cmd = command(&["token", "create", "--name", "bench", "--role", "intake"])?;
    let out = tokio::task::spawn_blocking(move || token_cmd.output())
        .await?
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if !out.status.success() {
        bail!("`refbridge token create` failed: {}", log_tail(&log_path));
    }
    let token = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_owned())
        .context("`refbridge token create` printed no token")?;

    let mut serve = command(&["serve"])?;
    serve.stdout(Stdio::null());
    let mut child = ChildGuard(serve.spawn().context("cannot start `refbridge serve`")?);
    let pid = child.0.id();
    let base = format!("http://{listen}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let ready_by = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.0.try_wait()? {
            bail!(
                "`refbridge serve` exited ({status}): {}",
                log_tail(&log_path)
            );
        }
        match http.get(format!("{base}/healthz")).send().await {
            Ok(r) if r.status().is_success() => break,
            _ if Instant::now() > ready_by => {
                bail!("`refbridge serve` did not answer: {}", log_tail(&log_path))
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }

    // One small intake first, so that the idle figure includes a warm store and pools.
    let url = format!("{base}/referral_request");
    let base_payload: Value = serde_json::from_str(PAYLOAD).context("the example payload")?;
    post_json(
        &http,
        &url,
        &token,
        serde_json::to_vec(&referral_payload(&base_payload, 0))?,
        200,
    )
    .await
    .context("the warm-up intake")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (idle_rss_kib, _) = proc_memory(pid)?;

    let file_bytes = args.file_mb * 1024 * 1024;
    let body = large_body(&base_payload, file_bytes, args.escape_slashes)?;
    let body_bytes = body.len() as u64;

    let (stop, mut stopped) = watch::channel(false);
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        loop {
            if let Ok((rss, _)) = proc_memory(pid) {
                peak = peak.max(rss);
            }
            tokio::select! {
                _ = stopped.wait_for(|s| *s) => return peak,
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
    });
    let started = Instant::now();
    let res = http
        .post(&url)
        .bearer_auth(&token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .context("the large request failed")?;
    let status = res.status().as_u16();
    let answer = res.text().await.unwrap_or_default();
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    let sampled_peak_rss_kib = sampler.await.unwrap_or(0);
    let (after_rss_kib, peak_hwm_kib) = proc_memory(pid)?;
    if status != 200 {
        bail!(
            "the large request answered HTTP {status}: {}",
            answer.chars().take(300).collect::<String>()
        );
    }
    drop(child);
    Ok(MemoryReport {
        file_bytes,
        body_bytes,
        escaped_slashes: args.escape_slashes,
        status,
        elapsed,
        idle_rss_kib,
        peak_hwm_kib,
        sampled_peak_rss_kib,
        after_rss_kib,
        database: match args.database_url.as_deref() {
            Some(u) if u.starts_with("postgres") => "PostgreSQL",
            _ => "embedded SQLite",
        },
        // The server's own setting, passed through the environment (default "auto").
        blobs: std::env::var("REFBRIDGE_BLOBS__BACKEND").unwrap_or_else(|_| "auto".into()),
    })
}

/// The example payload with one file of `size` pseudo-random bytes (a PDF header first) in
/// place of its files.
fn large_body(base: &Value, size: u64, escape_slashes: bool) -> anyhow::Result<Vec<u8>> {
    let size = usize::try_from(size).context("file too large for this machine")?;
    let mut data = Vec::with_capacity(size);
    data.extend_from_slice(b"%PDF-1.7\n".get(..size.min(9)).unwrap_or_default());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while data.len() < size {
        // splitmix64: incompressible enough, and the same every run.
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let take = (size - data.len()).min(8);
        data.extend_from_slice(&z.to_le_bytes()[..take]);
    }
    let mut p = referral_payload(base, 1);
    p["files"] = json!([{ "file_name": "large_scan.pdf", "file_value": "@FILE@" }]);
    let text = serde_json::to_string(&p)?;
    let (head, tail) = text
        .split_once("\"@FILE@\"")
        .context("the file placeholder is missing")?;
    let mut body = Vec::with_capacity(head.len() + tail.len() + size / 3 * 4 + size / 10 + 8);
    body.extend_from_slice(head.as_bytes());
    body.push(b'"');
    base64_into(&data, escape_slashes, &mut body);
    body.push(b'"');
    body.extend_from_slice(tail.as_bytes());
    Ok(body)
}

fn base64_into(data: &[u8], escape_slashes: bool, out: &mut Vec<u8>) {
    let text = BASE64.encode(data);
    if escape_slashes {
        out.extend_from_slice(text.replace('/', "\\/").as_bytes());
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

// ---------------------------------------------------------------- send

#[derive(Debug, Clone)]
pub struct SendReport {
    pub approvals: usize,
    pub concurrency: usize,
    /// From the first approval call to the last referral `sent`.
    pub elapsed: Duration,
    /// From the first approval call to the last 202.
    pub approve_elapsed: Duration,
    pub approve_latency: Latency,
    pub sent: usize,
    /// ACCloud calls refbridge made, per endpoint (from the simulator's journal).
    pub calls: BTreeMap<&'static str, usize>,
    pub duplicates_empty: bool,
    /// The baseline: the same creates, same concurrency, no persistence.
    pub baseline_elapsed: Duration,
    pub baseline_calls: BTreeMap<&'static str, usize>,
    /// SQLite: the writer's commits (one fsync each) over the measured span, and the time
    /// they took in all; `None` on PostgreSQL.
    pub sqlite_commits: Option<(u64, Duration)>,
}

/// The endpoints that create an object.
fn is_create(endpoint: &str) -> bool {
    matches!(
        endpoint,
        "client_create"
            | "service_create"
            | "authorization_create"
            | "referral_create"
            | "attachment_upload"
    )
}

impl SendReport {
    pub fn per_sec(&self) -> f64 {
        self.approvals as f64 / self.elapsed.as_secs_f64()
    }

    pub fn baseline_per_sec(&self) -> f64 {
        self.approvals as f64 / self.baseline_elapsed.as_secs_f64()
    }

    pub fn total_calls(&self) -> usize {
        self.calls.values().sum()
    }

    pub fn creates(&self) -> usize {
        self.calls
            .iter()
            .filter(|(k, _)| is_create(k))
            .map(|(_, v)| v)
            .sum()
    }

    pub fn calls_per_approval(&self) -> f64 {
        self.total_calls() as f64 / self.approvals.max(1) as f64
    }

    pub fn creates_per_approval(&self) -> f64 {
        self.creates() as f64 / self.approvals.max(1) as f64
    }
}

impl fmt::Display for SendReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Approve and send {} referrals, concurrency {}, simulator faults off, embedded SQLite, {} CPUs",
            self.approvals,
            self.concurrency,
            cpus()
        )?;
        writeln!(
            f,
            "  refbridge (approve + durable send) {:>8.1} approvals/s  ({:.2} s; approval calls p50 {:.1} ms, p99 {:.1} ms, all 202 after {:.2} s)",
            self.per_sec(),
            self.elapsed.as_secs_f64(),
            ms(self.approve_latency.p50),
            ms(self.approve_latency.p99),
            self.approve_elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  baseline (same creates, no store)  {:>8.1} referrals/s  ({:.2} s)",
            self.baseline_per_sec(),
            self.baseline_elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  ratio refbridge / baseline         {:>8.2}",
            self.per_sec() / self.baseline_per_sec()
        )?;
        writeln!(
            f,
            "  ACCloud calls per approval         {:>8.2}  (creates {:.2}; minimum 5: client, service, authorization, referral, attachment)",
            self.calls_per_approval(),
            self.creates_per_approval()
        )?;
        if let Some((commits, took)) = self.sqlite_commits {
            writeln!(
                f,
                "  SQLite commits per approval        {:>8.2}  (one fsync each, shared by the writes of a group)",
                commits as f64 / self.approvals.max(1) as f64
            )?;
            writeln!(
                f,
                "  SQLite writer in COMMIT            {:>7.0} %  of the run ({:.0} µs a commit: the fsync, mostly)",
                100.0 * took.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9),
                took.as_secs_f64() * 1e6 / commits.max(1) as f64
            )?;
        }
        let calls: Vec<String> = self.calls.iter().map(|(k, v)| format!("{k} {v}")).collect();
        writeln!(
            f,
            "  calls by endpoint                  {}",
            calls.join(", ")
        )?;
        let base: Vec<String> = self
            .baseline_calls
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(
            f,
            "  baseline calls by endpoint         {}",
            base.join(", ")
        )?;
        write!(
            f,
            "  referrals sent {} of {}; simulator duplicates report {}",
            self.sent,
            self.approvals,
            if self.duplicates_empty {
                "empty"
            } else {
                "NOT EMPTY"
            }
        )
    }
}

fn accloud_for(sim: &RunningSim, cfg: &Config) -> anyhow::Result<Arc<HttpAcCloud>> {
    let cred = sim
        .handle()
        .config()
        .credentials
        .api
        .first()
        .cloned()
        .context("the simulator has no API credential")?;
    let mut ac = AcCloudConfig::new(
        &sim.base_url(),
        SecretString::from(cred.key),
        SecretString::from(cred.secret),
    )
    .map_err(|e| anyhow::anyhow!("accloud: {e}"))?;
    ac.timeout = Duration::from_millis(cfg.accloud.request_timeout_ms);
    Ok(Arc::new(
        HttpAcCloud::new(ac).map_err(|e| anyhow::anyhow!("accloud: {e}"))?,
    ))
}

async fn start_sim(approvals: usize) -> anyhow::Result<RunningSim> {
    refbridge_accloud_sim::start(SimConfig {
        journal_capacity: (approvals * 20).max(100_000),
        ..SimConfig::default()
    })
    .await
    .context("cannot start the ACCloud simulator")
}

fn count_calls(sim: &RunningSim) -> BTreeMap<&'static str, usize> {
    let mut calls = BTreeMap::new();
    for e in sim.handle().journal() {
        let name = e.endpoint.map(Endpoint::as_str).unwrap_or("unmatched");
        *calls.entry(name).or_insert(0) += 1;
    }
    calls
}

/// Terms that pass every rule: one VISITS authorization starting next week, a named funder.
fn bench_terms() -> Value {
    let today = chrono::Utc::now().date_naive();
    json!({
        "service": { "funder_name": "Blue Cross Blue Shield", "instructions": "Ring the bell twice" },
        "authorizations": [{
            "start_date": (today + chrono::Duration::days(7)).to_string(),
            "end_date": (today + chrono::Duration::days(67)).to_string(),
            "rule_type": "VISITS", "rule_weekly": 2, "rule_period": 10,
            "authorization_number": "BENCH-0001"
        }],
        "referral": { "comment": "Approved by refbridge bench",
                      "case_manager": { "name": "Case Manager", "phone": "555-000-0000" } }
    })
}

pub async fn send(cfg: &Config, args: &SendArgs) -> anyhow::Result<SendReport> {
    let n = args.approvals.max(1);
    let c = args.concurrency.max(1);
    let dir = tempfile::tempdir().context("cannot make a temporary folder")?;
    let cfg = scratch_config(cfg, dir.path());
    let state = crate::open_state(&cfg).await?;
    let intake_token = new_token(&state, "bench-intake", Role::Intake).await?;
    let reviewer = new_token(&state, "bench-reviewer", Role::Reviewer).await?;
    let api = Api::start(state.clone()).await?;
    let http = reqwest::Client::new();

    // Not measured: the referral requests come in first.
    let base: Value = serde_json::from_str(PAYLOAD).context("the example payload")?;
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..n)
            .map(|i| serde_json::to_vec(&referral_payload(&base, i)))
            .collect::<Result<_, _>>()?,
    );
    {
        let (http, url, token, bodies) = (
            http.clone(),
            format!("{}/referral_request", api.base),
            intake_token.clone(),
            bodies.clone(),
        );
        let posted = drive(n, c, move |i| {
            let (http, url, token, bodies) =
                (http.clone(), url.clone(), token.clone(), bodies.clone());
            async move { post_json(&http, &url, &token, bodies[i].clone(), 200).await }
        })
        .await?;
        all_ok("intakes", &posted)?;
    }

    let sim = start_sim(n).await?;
    let accloud = accloud_for(&sim, &cfg)?;
    let engine = runtime::engine(
        &state,
        accloud.clone(),
        EngineConfig {
            concurrency: c,
            ..runtime::engine_config(&cfg)
        },
    );
    let (stop_engine, mut rx) = watch::channel(false);
    let worker = tokio::spawn(engine.run(async move {
        let _ = rx.wait_for(|s| *s).await;
    }));

    // Measured: approvals in, sends out, until every referral is sent.
    let terms = serde_json::to_vec(&bench_terms())?;
    let commits_before = state.store.sqlite_commit_time();
    let started = Instant::now();
    let approved = {
        let (http, base_url, token) = (http.clone(), api.base.clone(), reviewer.clone());
        drive(n, c, move |i| {
            let (http, token, body) = (http.clone(), token.clone(), terms.clone());
            let url = format!("{base_url}/v1/referral-requests/{}/approval", request_id(i));
            async move { post_json(&http, &url, &token, body, 202).await }
        })
        .await?
    };
    let approve_elapsed = started.elapsed();
    all_ok("approvals", &approved)?;
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let mut last_check = Instant::now();
    loop {
        if state.store.count_unfinished_sends().await? == 0 {
            break;
        }
        if last_check.elapsed() > Duration::from_secs(1) {
            last_check = Instant::now();
            let stuck = count_status(&state, ReferralStatus::NeedsAttention).await?;
            if stuck > 0 {
                bail!("{stuck} referrals need attention: the send did not go through");
            }
        }
        if Instant::now() > deadline {
            bail!("sends not finished after {} s", args.timeout_secs);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let sqlite_commits = commits_since(&state, commits_before);
    let _ = stop_engine.send(true);
    let _ = worker.await;
    let sent = count_status(&state, ReferralStatus::Sent).await?;
    let calls = count_calls(&sim);
    let duplicates_empty = sim.handle().duplicates().is_empty();
    sim.shutdown().await;

    // What the baseline sends: the same records and terms, read before its clock starts.
    let mut records = Vec::with_capacity(n);
    for i in 0..n {
        let id = RequestId::parse(&request_id(i)).context("bench request id")?;
        let rec = state
            .store
            .get_referral(id)
            .await?
            .context("a posted referral is missing")?;
        records.push(rec);
    }
    let approval = state
        .store
        .approval(records[0].request_id)
        .await?
        .context("the approval is missing")?;
    let terms = approval.terms;
    drop(http);
    api.stop().await;

    let sim = start_sim(n).await?;
    let baseline_elapsed = baseline(&sim, &cfg, &state, records, terms, c).await?;
    let baseline_calls = count_calls(&sim);
    sim.shutdown().await;
    state.store.close().await;

    Ok(SendReport {
        approvals: n,
        concurrency: c,
        elapsed,
        approve_elapsed,
        approve_latency: Latency::of(approved.into_iter().map(|(d, _)| d).collect()),
        sent,
        calls,
        duplicates_empty,
        baseline_elapsed,
        baseline_calls,
        sqlite_commits,
    })
}

/// The same ACCloud calls as the send, `concurrency` referrals at once, nothing persisted:
/// each referral's first send run by the saga's own steps (requests built, answers absorbed,
/// reference data resolved once and cached as the engine does), with no intent, no result
/// and no lookup recorded.
async fn baseline(
    sim: &RunningSim,
    cfg: &Config,
    state: &AppState,
    records: Vec<ReferralRecord>,
    terms: ApprovalTerms,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let ac = accloud_for(sim, cfg)?;
    let n = records.len();
    let shared = Arc::new((records, terms, Resolver::default(), state.files.clone()));
    let (hq, group, folder) = (
        BranchId(cfg.accloud.hq_branch_id),
        cfg.accloud.csi_group.clone(),
        cfg.accloud.attachments_folder.clone(),
    );
    let started = Instant::now();
    let results = drive(n, concurrency, move |i| {
        let (ac, shared, group, folder) =
            (ac.clone(), shared.clone(), group.clone(), folder.clone());
        async move {
            let (records, terms, resolver, files) = &*shared;
            let rec = &records[i];
            let input = Input {
                rec,
                changes: &[],
                current_change: 0,
                terms,
                hq_branch: hq,
                csi_group: &group,
                attachments_folder: &folder,
                files_root: files,
                claimed_files: &[],
            };
            let plan =
                send::plan::first_send(terms.authorizations.len(), rec.files.iter().map(|f| f.id));
            steps::run_unrecorded(ac.as_ref(), &input, resolver, &plan)
                .await
                .map(drop)
                .map_err(|e| anyhow::anyhow!("baseline send stopped: {e}"))
        }
    })
    .await?;
    let elapsed = started.elapsed();
    all_ok("baseline sends", &results)?;
    Ok(elapsed)
}
