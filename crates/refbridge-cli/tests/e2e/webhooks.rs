//! Webhooks end to end: a receiver in Python (`scripts/webhook-receiver.py`) verifies every
//! delivery with the PyPI `standardwebhooks` package, an implementation of the Standard
//! Webhooks specification other than ours, and records it. The demo flow's events (intake,
//! approval, send) must all arrive, signed, in order per referral, through a receiver outage,
//! a worker process SIGKILLed mid-delivery, a 503 with `Retry-After`, a secret rotation; an
//! endpoint failing for too long is disabled.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use refbridge_accloud_sim::SimConfig;
use refbridge_saga::{Deliverer, DeliveryConfig, RetryPolicy};
use serde_json::{Value, json};

use crate::helpers::{TestApp, sample_terms, spawn_app};

/// The Python with `standardwebhooks` (`scripts/webhook-deps.sh` installs it).
fn python() -> String {
    let path = std::env::var("WEBHOOK_PYTHON").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/webhook-deps/venv/bin/python"
        )
        .to_owned()
    });
    assert!(
        std::path::Path::new(&path).exists(),
        "no Python with standardwebhooks at {path}: run scripts/webhook-deps.sh (scripts/test.sh does)"
    );
    path
}

/// The test receiver, killed when dropped.
pub struct Receiver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Receiver {
    pub fn start() -> Receiver {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/webhook-receiver.py"
        );
        let mut child = Command::new(python())
            .arg(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the webhook receiver");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("receiver's port");
        let port: u16 = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("receiver said {line:?}"));
        Receiver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        }
    }

    pub fn hook_url(&self) -> String {
        format!("{}/hook", self.base)
    }

    pub async fn control(&self, v: Value) {
        let res = self
            .http
            .post(format!("{}/control", self.base))
            .json(&v)
            .send()
            .await
            .expect("control the receiver");
        assert_eq!(res.status(), 200);
    }

    pub async fn state(&self) -> Value {
        self.http
            .get(format!("{}/state", self.base))
            .send()
            .await
            .expect("receiver state")
            .json()
            .await
            .expect("json")
    }

    /// Waits until every event of `events` was answered 200 at least once.
    pub async fn wait_delivered(&self, events: &[Value], timeout: Duration) -> Value {
        let want: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
        let start = Instant::now();
        loop {
            let s = self.state().await;
            let got: HashSet<&str> = s["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["answered"] == 200)
                .map(|d| d["webhook_id"].as_str().unwrap())
                .collect();
            let missing: Vec<_> = want.difference(&got).collect();
            if missing.is_empty() {
                return s;
            }
            assert!(
                start.elapsed() < timeout,
                "{} of {} events not delivered after {timeout:?}: {missing:?}",
                missing.len(),
                want.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn admin(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app
        .http
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(&app.admin);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Creates an endpoint for the receiver (every event type) and gives the receiver its secret.
async fn subscribe(app: &TestApp, receiver: &Receiver) -> (String, String) {
    let (status, ep) = admin(
        app,
        reqwest::Method::PUT,
        "/v1/webhook-endpoints",
        Some(json!({ "url": receiver.hook_url() })),
    )
    .await;
    assert_eq!(status, 201, "{ep}");
    let secret = ep["secret"].as_str().expect("secret shown once").to_owned();
    assert!(secret.starts_with("whsec_"));
    receiver.control(json!({ "secrets": [secret] })).await;
    (ep["id"].as_str().unwrap().to_owned(), secret)
}

/// The whole feed, oldest first.
async fn feed(app: &TestApp) -> Vec<Value> {
    let res = app
        .http
        .get(format!("{}/v1/events?limit=1000", app.base))
        .bearer_auth(&app.reviewer)
        .send()
        .await
        .expect("feed");
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.expect("json");
    v["items"].as_array().unwrap().clone()
}

fn quick_delivery(owner: &str) -> DeliveryConfig {
    DeliveryConfig {
        owner: owner.to_owned(),
        concurrency: 4,
        request_timeout: Duration::from_secs(2),
        lease: Duration::from_secs(3),
        poll_interval: Duration::from_millis(50),
        sequence_every: Duration::from_millis(50),
        retry: RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(800),
            max_attempts: u32::MAX,
        },
        disable_after: Duration::from_secs(3600),
        allow_private_targets: true,
    }
}

fn start_deliverer(app: &TestApp, cfg: DeliveryConfig) -> tokio::task::JoinHandle<()> {
    let d = Arc::new(Deliverer::new(app.state.store.clone(), cfg).expect("client"));
    tokio::spawn(d.run(std::future::pending()))
}

/// Posts and approves a referral of its own patient, waits until it is sent.
async fn demo_flow(app: &TestApp, n: i64) -> String {
    let id = format!("00000000-0000-4000-a000-{n:012}");
    let mut p = app.payload(&id, 30_000 + n);
    p["client"]["last_name"] = json!(format!("Hook{n}"));
    app.post_referral(&p).await;
    let (status, body) = app.approve(&id, &sample_terms()).await;
    assert_eq!(status, 202, "{body}");
    id
}

/// Every delivery arrived after each earlier event of its referral had been answered 200
/// (events of no referral are ordered among themselves), and carried the event's id as its
/// `webhook-id`.
fn assert_in_order_per_referral(deliveries: &[Value], events: &[Value]) {
    let position: HashMap<&str, (i64, &str)> = events
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap(),
                (
                    e["position"].as_i64().unwrap(),
                    e["request_id"].as_str().unwrap_or(""),
                ),
            )
        })
        .collect();
    let mut done: HashSet<&str> = HashSet::new();
    for d in deliveries {
        let id = d["webhook_id"].as_str().unwrap();
        assert_eq!(d["id"], d["webhook_id"], "webhook-id is the event id");
        let Some(&(pos, referral)) = position.get(id) else {
            continue;
        };
        for (other, &(p, r)) in &position {
            if r == referral && p < pos {
                assert!(
                    done.contains(other),
                    "event {id} (position {pos}) was delivered before {other} (position {p}) of the same referral was"
                );
            }
        }
        if d["answered"] == 200 {
            done.insert(id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_of_the_demo_flow_arrives_signed_and_in_order_after_the_receiver_fails_for_a_while()
 {
    let outage = Duration::from_millis(
        std::env::var("WEBHOOK_OUTAGE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3000),
    );
    let app = spawn_app().await;
    let receiver = Receiver::start();
    receiver.control(json!({ "fail_status": 500 })).await;
    let (endpoint, _) = subscribe(&app, &receiver).await;
    let _deliverer = start_deliverer(&app, quick_delivery("webhooks-a"));

    let down = Instant::now();
    let ids = [demo_flow(&app, 1).await, demo_flow(&app, 2).await];
    for id in &ids {
        app.wait_status(id, &["sent"], Duration::from_secs(30))
            .await;
    }
    tokio::time::sleep(outage.saturating_sub(down.elapsed())).await;
    let failed = receiver.state().await["deliveries"]
        .as_array()
        .unwrap()
        .len();
    assert!(failed > 0, "deliveries were attempted during the outage");
    receiver.control(json!({ "fail_status": null })).await;
    let recovered = Instant::now();

    let events = feed(&app).await;
    let types: HashSet<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    for t in [
        "referral_request.received",
        "referral_request.approved",
        "send.completed",
    ] {
        assert!(types.contains(t), "{t} in {types:?}");
    }
    let state = receiver
        .wait_delivered(&events, Duration::from_secs(60))
        .await;
    let caught_up = recovered.elapsed();
    let deliveries = state["deliveries"].as_array().unwrap();
    assert_eq!(
        state["verify_failures"], 0,
        "standardwebhooks verified every delivery"
    );
    assert!(deliveries.iter().all(|d| d["verified_with"] == json!([0])));
    assert_in_order_per_referral(deliveries, &events);
    let answered_500 = deliveries.iter().filter(|d| d["answered"] == 500).count();
    assert!(answered_500 >= failed, "{answered_500}");
    // Each referral's events in the order of the feed.
    for id in &ids {
        let mine: Vec<&str> = events
            .iter()
            .filter(|e| e["request_id"] == json!(id))
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            mine,
            [
                "referral_request.received",
                "referral_request.approved",
                "send.completed"
            ],
            "{id}"
        );
    }

    // The delivery log: the failures with their status and the answer's first 256 bytes.
    let (status, log) = admin(
        &app,
        reqwest::Method::GET,
        &format!("/v1/webhook-endpoints/{endpoint}/attempts?limit=500"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let log = log["items"].as_array().unwrap();
    let failure = log
        .iter()
        .find(|a| a["status"] == 500)
        .expect("a 500 logged");
    assert_eq!(failure["outcome"], "http_error");
    let head = failure["response_head"].as_str().unwrap();
    assert!(head.starts_with("receiver is down"), "{head}");
    assert_eq!(head.len(), 256);
    assert!(log.iter().any(|a| a["outcome"] == "delivered"));
    let (_, ep) = admin(
        &app,
        reqwest::Method::GET,
        &format!("/v1/webhook-endpoints/{endpoint}"),
        None,
    )
    .await;
    assert_eq!(ep["pending_deliveries"], 0);
    assert_eq!(
        ep["failing_since"],
        Value::Null,
        "a success clears the failure"
    );
    assert!(ep.get("secret").is_none(), "the secret is shown once");

    // Metrics: deliveries by endpoint and outcome, latency, the oldest undelivered event.
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        format!(
            "refbridge_webhook_attempts_total{{endpoint=\"{endpoint}\",outcome=\"delivered\"}}"
        ),
        format!(
            "refbridge_webhook_attempts_total{{endpoint=\"{endpoint}\",outcome=\"http_error\"}}"
        ),
        format!("refbridge_webhook_latency_seconds_bucket{{endpoint=\"{endpoint}\",le=\"+Inf\"}}"),
        "refbridge_webhook_oldest_undelivered_event_age_seconds 0".to_owned(),
    ] {
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    println!(
        "webhooks: {} events delivered in order, {} attempts ({answered_500} answered 500), caught up {caught_up:?} after the receiver came back",
        events.len(),
        deliveries.len(),
    );
}

/// A `refbridge worker` process, configured by environment, killed when dropped.
struct WorkerProcess(Option<Child>);

impl WorkerProcess {
    fn start(app: &TestApp, logs: &std::path::Path, n: usize) -> WorkerProcess {
        let cred = SimConfig::default().credentials.api[0].clone();
        let log = std::fs::File::create(logs.join(format!("worker-{n}.log"))).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_refbridge"))
            .arg("worker")
            .env_remove("REFBRIDGE_CONFIG")
            .envs([
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
                ("REFBRIDGE_WORKER__LEASE_SECS", "3".into()),
                ("REFBRIDGE_WORKER__SETTLE_DELAY_MS", "1500".into()),
                ("REFBRIDGE_WORKER__POLL_INTERVAL_MS", "200".into()),
                ("REFBRIDGE_WORKER__TRUSTED_NETWORK_SECS", "0".into()),
                ("REFBRIDGE_WORKER__AGENCY_CHECK_SECS", "0".into()),
                ("REFBRIDGE_WEBHOOKS__REQUEST_TIMEOUT_MS", "5000".into()),
                ("REFBRIDGE_WEBHOOKS__LEASE_SECS", "6".into()),
                ("REFBRIDGE_WEBHOOKS__POLL_INTERVAL_MS", "100".into()),
                ("REFBRIDGE_WEBHOOKS__RETRY_BASE_MS", "100".into()),
                ("REFBRIDGE_WEBHOOKS__RETRY_CAP_MS", "500".into()),
                ("REFBRIDGE_WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true".into()),
                (
                    "REFBRIDGE_LOG__FILTER",
                    std::env::var("WEBHOOK_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
                ),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start refbridge worker");
        WorkerProcess(Some(child))
    }

    /// SIGKILL: the process stops wherever it is.
    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_killed_mid_delivery_loses_nothing_and_repeats_with_the_same_id() {
    let app = spawn_app().await;
    let receiver = Receiver::start();
    // The first delivery hangs: the worker is killed while it waits for the answer.
    receiver
        .control(json!({ "hang_count": 1, "hang_ms": 20000 }))
        .await;
    subscribe(&app, &receiver).await;
    let logs = tempfile::tempdir().expect("logs");
    let mut first = WorkerProcess::start(&app, logs.path(), 1);
    let ids = [demo_flow(&app, 11).await, demo_flow(&app, 12).await];
    let start = Instant::now();
    let hung = loop {
        let s = receiver.state().await;
        if s["in_flight"] == 1 {
            break s["deliveries"][0]["webhook_id"]
                .as_str()
                .unwrap()
                .to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no delivery reached the receiver: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.kill();
    let killed = Instant::now();
    let _second = WorkerProcess::start(&app, logs.path(), 2);
    for id in &ids {
        app.wait_status(id, &["sent"], Duration::from_secs(30))
            .await;
    }
    let events = feed(&app).await;
    let state = receiver
        .wait_delivered(&events, Duration::from_secs(60))
        .await;
    let deliveries = state["deliveries"].as_array().unwrap();
    assert_eq!(state["verify_failures"], 0);
    let of_hung: Vec<&Value> = deliveries
        .iter()
        .filter(|d| d["webhook_id"] == json!(hung))
        .collect();
    assert!(
        of_hung.len() >= 2,
        "the interrupted delivery was made again: {of_hung:?}"
    );
    assert!(of_hung.iter().any(|d| d["answered"] == 200));
    assert_in_order_per_referral(deliveries, &events);
    if std::env::var_os("WEBHOOK_SHOW_WORKER_LOGS").is_some() {
        for n in 1..=2 {
            let log = std::fs::read_to_string(logs.path().join(format!("worker-{n}.log")));
            println!("worker {n}: {}", log.unwrap_or_default());
        }
        for d in deliveries {
            println!("{d}");
        }
        let (_, eps) = admin(&app, reqwest::Method::GET, "/v1/webhook-endpoints", None).await;
        let ep = eps["items"][0]["id"].as_str().unwrap().to_owned();
        let (_, log) = admin(
            &app,
            reqwest::Method::GET,
            &format!("/v1/webhook-endpoints/{ep}/attempts"),
            None,
        )
        .await;
        println!("{log:#}");
    }
    let repeats = deliveries.len() - events.len();
    println!(
        "webhooks: worker SIGKILLed mid-delivery; all {} events delivered ({} deliveries, {repeats} repeats, same webhook-id), {:?} after the kill",
        events.len(),
        deliveries.len(),
        killed.elapsed()
    );
}

#[tokio::test]
async fn a_503_with_retry_after_waits_that_long_and_a_rotated_secret_signs_beside_the_new_one() {
    let app = spawn_app().await;
    let receiver = Receiver::start();
    receiver
        .control(json!({ "fail_status": 503, "retry_after": 2 }))
        .await;
    let (endpoint, old) = subscribe(&app, &receiver).await;
    let _deliverer = start_deliverer(&app, quick_delivery("webhooks-b"));
    let mut p = app.payload("00000000-0000-4000-a000-000000000021", 40_021);
    p["client"]["last_name"] = json!("Later");
    app.post_referral(&p).await;
    // Two attempts of one event (intake's events go out side by side: each its own).
    let start = Instant::now();
    let at = loop {
        let (_, log) = admin(
            &app,
            reqwest::Method::GET,
            &format!("/v1/webhook-endpoints/{endpoint}/attempts"),
            None,
        )
        .await;
        let items = log["items"].as_array().unwrap().clone();
        let first = items
            .last()
            .map(|a| a["event_id"].clone())
            .unwrap_or_default();
        let at: Vec<chrono::DateTime<chrono::Utc>> = items
            .iter()
            .filter(|a| a["event_id"] == first)
            .map(|a| a["at"].as_str().unwrap().parse().unwrap())
            .collect();
        if at.len() >= 2 {
            break at;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no retry");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let gap = at[0] - at[1];
    assert!(
        gap >= chrono::Duration::milliseconds(1900),
        "Retry-After: 2 honoured (backoff alone is under 1 s): {gap}"
    );

    // Rotation: the new secret is shown once; both sign for the overlap.
    let (status, rotated) = admin(
        &app,
        reqwest::Method::POST,
        &format!("/v1/webhook-endpoints/{endpoint}/rotate-secret"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(rotated["previous_secret_valid_until"].is_string());
    receiver
        .control(json!({ "secrets": [old, new], "fail_status": null }))
        .await;
    let events = feed(&app).await;
    let state = receiver
        .wait_delivered(&events, Duration::from_secs(30))
        .await;
    let last = state["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|d| d["answered"] == 200)
        .unwrap()
        .clone();
    assert_eq!(last["signatures"], 2, "{last}");
    assert_eq!(
        last["verified_with"],
        json!([0, 1]),
        "old and new secrets verify"
    );
}

#[tokio::test]
async fn an_endpoint_failing_too_long_is_disabled_with_an_event() {
    let app = spawn_app().await;
    let receiver = Receiver::start();
    receiver.control(json!({ "fail_status": 500 })).await;
    let (endpoint, _) = subscribe(&app, &receiver).await;
    let _deliverer = start_deliverer(
        &app,
        DeliveryConfig {
            disable_after: Duration::from_secs(1),
            ..quick_delivery("webhooks-c")
        },
    );
    let mut p = app.payload("00000000-0000-4000-a000-000000000031", 40_031);
    p["client"]["last_name"] = json!("Never");
    app.post_referral(&p).await;
    let start = Instant::now();
    let ep = loop {
        let (_, ep) = admin(
            &app,
            reqwest::Method::GET,
            &format!("/v1/webhook-endpoints/{endpoint}"),
            None,
        )
        .await;
        if ep["enabled"] == false {
            break ep;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{ep}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ep["disabled_reason"], "failing for too long");
    assert!(
        ep["pending_deliveries"].as_i64().unwrap() > 0,
        "kept for later"
    );
    let events = feed(&app).await;
    let disabled = events
        .iter()
        .find(|e| e["type"] == "webhook_endpoint.disabled")
        .expect("an event says so");
    assert_eq!(disabled["data"]["endpoint_id"], json!(endpoint));
    // Nothing more is attempted; enabling delivers what waited.
    let tried = receiver.state().await["deliveries"]
        .as_array()
        .unwrap()
        .len();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        receiver.state().await["deliveries"]
            .as_array()
            .unwrap()
            .len(),
        tried
    );
    receiver.control(json!({ "fail_status": null })).await;
    let (status, _) = admin(
        &app,
        reqwest::Method::POST,
        &format!("/v1/webhook-endpoints/{endpoint}/enable"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let before_disable: Vec<Value> = events
        .into_iter()
        .filter(|e| e["type"] != "webhook_endpoint.disabled")
        .collect();
    receiver
        .wait_delivered(&before_disable, Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn a_private_target_accepted_earlier_is_refused_at_delivery() {
    // The API here allows private targets (the receiver is on loopback); the worker does not.
    let app = spawn_app().await;
    let receiver = Receiver::start();
    let (endpoint, _) = subscribe(&app, &receiver).await;
    let _deliverer = start_deliverer(
        &app,
        DeliveryConfig {
            allow_private_targets: false,
            ..quick_delivery("webhooks-d")
        },
    );
    let mut p = app.payload("00000000-0000-4000-a000-000000000041", 40_041);
    p["client"]["last_name"] = json!("Inside");
    app.post_referral(&p).await;
    let start = Instant::now();
    let log = loop {
        let (_, log) = admin(
            &app,
            reqwest::Method::GET,
            &format!("/v1/webhook-endpoints/{endpoint}/attempts"),
            None,
        )
        .await;
        if log["items"].as_array().unwrap().len() >= 2 {
            break log;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for a in log["items"].as_array().unwrap() {
        assert_eq!(a["outcome"], "refused_target", "{a}");
        assert_eq!(a["status"], Value::Null);
    }
    assert_eq!(
        receiver.state().await["deliveries"],
        json!([]),
        "nothing reached the receiver"
    );
}

/// Figures, not assertions: events per second through the feed, and webhook delivery latency
/// (event committed → the receiver has it) with one in-process worker. Run with
/// `cargo test -p refbridge-cli --test e2e -- --ignored bench_events --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: figures for the README"]
async fn bench_events_feed_and_webhook_latency() {
    let n: i64 = std::env::var("BENCH_EVENTS_INTAKES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let app = spawn_app().await;
    let receiver = Receiver::start();
    subscribe(&app, &receiver).await;
    let _deliverer = start_deliverer(&app, quick_delivery("webhooks-bench"));
    let t0 = Instant::now();
    for i in 0..n {
        let id = format!("00000000-0000-4000-b000-{i:012}");
        let mut p = app.payload(&id, 50_000 + i);
        p["client"]["last_name"] = json!(format!("Bench{i}"));
        app.post_referral(&p).await;
    }
    let posted = t0.elapsed();
    let events = feed(&app).await;
    let state = receiver
        .wait_delivered(&events, Duration::from_secs(120))
        .await;
    let all_delivered = t0.elapsed();
    let at: HashMap<&str, f64> = events
        .iter()
        .map(|e| {
            let t: chrono::DateTime<chrono::Utc> =
                e["timestamp"].as_str().unwrap().parse().unwrap();
            (e["id"].as_str().unwrap(), t.timestamp_micros() as f64 / 1e6)
        })
        .collect();
    let mut latency: Vec<f64> = state["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["answered"] == 200)
        .filter_map(|d| Some(d["t"].as_f64()? - at.get(d["webhook_id"].as_str()?)?))
        .collect();
    latency.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| latency[((latency.len() as f64 - 1.0) * p) as usize] * 1000.0;

    // The feed: every event, pages of 1000, from the start.
    let t1 = Instant::now();
    let mut read = 0;
    let mut cursor = "0".to_owned();
    let rounds = 20;
    for _ in 0..rounds {
        cursor = "0".to_owned();
        loop {
            let res: Value = app
                .http
                .get(format!("{}/v1/events?after={cursor}&limit=1000", app.base))
                .bearer_auth(&app.reviewer)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let got = res["items"].as_array().unwrap().len();
            read += got;
            cursor = res["next_cursor"].as_str().unwrap().to_owned();
            if got < 1000 {
                break;
            }
        }
    }
    let feed_secs = t1.elapsed().as_secs_f64();
    println!(
        "bench-events ({:?}): {n} intakes in {posted:.2?} -> {} events, all delivered {all_delivered:.2?} after the first intake; \
         delivery latency (commit to receiver) p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         feed read {read} events in {feed_secs:.2} s = {:.0} events/s (cursor {cursor})",
        app.state.store.backend(),
        events.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0),
        read as f64 / feed_secs,
    );
}
