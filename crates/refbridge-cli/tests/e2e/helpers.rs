//! `spawn_app`: each test gets its own database, file store, simulator, API server and send
//! engine (with short timeouts so that fault recovery is quick).

use std::sync::Arc;
use std::time::{Duration, Instant};

use refbridge_accloud::{AcCloudConfig, HttpAcCloud, SecretString};
use refbridge_accloud_sim::{RunningSim, SimConfig, SimHandle};
use refbridge_api::{ApiConfig, AppState};
use refbridge_domain::Role;
use refbridge_domain::approval::{Defaults, ServiceMapping};
use refbridge_saga::{Engine, EngineConfig, RetryPolicy};
use refbridge_storage::{Blobs, FileStore, Store, StoreOptions};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

pub const PAYLOAD: &str = include_str!("../../assets/example_referral_request.json");

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub intake: String,
    pub reviewer: String,
    pub admin: String,
    pub state: AppState,
    pub sim: RunningSim,
    pub accloud: Arc<HttpAcCloud>,
    pub engine_cfg: EngineConfig,
    /// The test's own database (SQLite or PostgreSQL: `REFBRIDGE_TEST_DATABASE`).
    pub db_url: String,
    workers: Vec<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// Engine settings for tests: a request deadline of 1 s, a settle delay of 1.5 s, a lease
/// of 3 s, quick retries.
pub fn test_engine_config(owner: &str) -> EngineConfig {
    EngineConfig {
        owner: owner.to_owned(),
        lease: Duration::from_secs(3),
        request_timeout: Duration::from_millis(1000),
        settle_delay: Duration::from_millis(1500),
        poll_interval: Duration::from_millis(20),
        concurrency: 8,
        retry: RetryPolicy {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(400),
            max_attempts: 40,
        },
        // Tests read the trusted network when they mean to (it costs a call).
        trusted_network_every: None,
        ..EngineConfig::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(SimConfig::default(), true).await
}

/// `run_worker`: start one background engine (tests that drive the engine by hand say no).
pub async fn spawn_app_with(sim_cfg: SimConfig, run_worker: bool) -> TestApp {
    spawn_app_configured(sim_cfg, run_worker, |_| {}).await
}

/// [`spawn_app_with`], with the API's settings changed by `tweak` (the console's timeouts, say).
pub async fn spawn_app_configured(
    sim_cfg: SimConfig,
    run_worker: bool,
    tweak: impl FnOnce(&mut ApiConfig),
) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = refbridge_storage::test_util::fresh_database_url(dir.path()).await;
    let store = Store::open(&url, &StoreOptions::default())
        .await
        .expect("store");
    // The service's default: the folder on SQLite, the database itself on PostgreSQL.
    let files = Blobs::open(
        &refbridge_storage::BlobTarget::Auto,
        FileStore::open(dir.path().join("files")).expect("files"),
        &store,
    )
    .expect("blobs");
    let cred = sim_cfg.credentials.api[0].clone();
    let sim = refbridge_accloud_sim::start(sim_cfg)
        .await
        .expect("simulator");
    let mut ac_cfg = AcCloudConfig::new(
        &sim.base_url(),
        SecretString::from(cred.key),
        SecretString::from(cred.secret),
    )
    .expect("accloud config");
    ac_cfg.timeout = Duration::from_secs(1);
    let accloud = Arc::new(HttpAcCloud::new(ac_cfg).expect("client"));

    let approval = Defaults {
        services: [(
            "PT".to_owned(),
            ServiceMapping {
                name: "Physical Therapy".into(),
                service_code: "Physical Therapy".into(),
            },
        )]
        .into(),
        funders: [(
            "ABC Insurers".to_owned(),
            "Blue Cross Blue Shield".to_owned(),
        )]
        .into(),
        ..Defaults::default()
    };
    let state = AppState {
        store: store.clone(),
        files: files.clone(),
        config: {
            let mut c = ApiConfig {
                approval,
                // The webhook tests' receiver listens on loopback.
                webhooks_allow_private_targets: true,
                ..ApiConfig::default()
            };
            tweak(&mut c);
            c
        },
        wake: Default::default(),
    };
    let mut tokens = Vec::new();
    for (name, role) in [
        ("alayaconnector", Role::Intake),
        ("reviewer-1", Role::Reviewer),
        ("admin-1", Role::Admin),
    ] {
        let token = refbridge_api::new_token().expect("random token");
        store
            .create_token(name, role, &refbridge_api::hash_token(&token))
            .await
            .expect("token");
        tokens.push(token);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app_state = state.clone();
    tokio::spawn(async move {
        axum::serve(listener, refbridge_api::app(app_state))
            .await
            .expect("serve");
    });
    let mut app = TestApp {
        base,
        http: reqwest::Client::new(),
        intake: tokens[0].clone(),
        reviewer: tokens[1].clone(),
        admin: tokens[2].clone(),
        state,
        sim,
        accloud,
        engine_cfg: test_engine_config("worker-a"),
        db_url: url,
        workers: Vec::new(),
        _dir: dir,
    };
    if run_worker {
        let e = app.engine("worker-a");
        app.start_worker(e);
    }
    app
}

impl TestApp {
    pub fn sim(&self) -> SimHandle {
        self.sim.handle()
    }

    /// A new engine over this app's store and simulator.
    pub fn engine(&self, owner: &str) -> Arc<Engine> {
        Arc::new(
            Engine::new(
                self.state.store.clone(),
                self.state.files.clone(),
                self.accloud.clone(),
                EngineConfig {
                    owner: owner.to_owned(),
                    ..self.engine_cfg.clone()
                },
            )
            .with_wake_handle(self.state.wake.clone()),
        )
    }

    pub fn start_worker(&mut self, engine: Arc<Engine>) {
        self.workers
            .push(tokio::spawn(engine.run(std::future::pending())));
    }

    /// Kills every background worker at once, wherever it is (as a crashed process would).
    pub fn kill_workers(&mut self) {
        for w in self.workers.drain(..) {
            w.abort();
        }
    }

    /// The example payload under another request id (and agency client), so that many
    /// referrals can be posted.
    pub fn payload(&self, request_id: &str, client_id: i64) -> Value {
        let mut p: Value = serde_json::from_str(PAYLOAD).expect("payload");
        p["request_id"] = json!(request_id);
        p["client"]["id"] = json!(client_id);
        p
    }

    pub async fn post_referral(&self, body: &Value) {
        let res = self
            .http
            .post(format!("{}/referral_request", self.base))
            .bearer_auth(&self.intake)
            .json(body)
            .send()
            .await
            .expect("request");
        assert_eq!(
            res.status(),
            200,
            "intake: {}",
            res.text().await.unwrap_or_default()
        );
    }

    pub async fn approve(&self, id: &str, terms: &Value) -> (u16, Value) {
        let res = self
            .http
            .post(format!("{}/v1/referral-requests/{id}/approval", self.base))
            .bearer_auth(&self.reviewer)
            .json(terms)
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// `POST …/documents` with these files (name, bytes) as multipart file parts.
    pub async fn post_documents(&self, id: &str, files: &[(&str, Vec<u8>)]) -> (u16, Value) {
        let mut form = reqwest::multipart::Form::new();
        for (name, bytes) in files {
            form = form.part(
                "file",
                reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.to_string()),
            );
        }
        let res = self
            .http
            .post(format!("{}/v1/referral-requests/{id}/documents", self.base))
            .bearer_auth(&self.reviewer)
            .multipart(form)
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.reviewer);
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn detail(&self, id: &str) -> Value {
        let res = self
            .http
            .get(format!("{}/v1/referral-requests/{id}", self.base))
            .bearer_auth(&self.reviewer)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 200);
        res.json().await.expect("json")
    }

    /// The referral's events (type and data), in feed order.
    pub async fn events(&self, id: &str) -> Vec<(String, Value)> {
        let id = refbridge_domain::RequestId::parse(id).expect("request id");
        self.state
            .store
            .referral_events(id)
            .await
            .expect("events")
            .into_iter()
            .map(|e| (e.event_type.as_str().to_owned(), e.data))
            .collect()
    }

    /// The types of the referral's events, in feed order.
    pub async fn event_types(&self, id: &str) -> Vec<String> {
        self.events(id).await.into_iter().map(|e| e.0).collect()
    }

    /// Waits until the referral's status is one of `statuses`; panics with its timeline after
    /// `timeout`.
    pub async fn wait_status(&self, id: &str, statuses: &[&str], timeout: Duration) -> Value {
        let start = Instant::now();
        loop {
            let d = self.detail(id).await;
            if statuses.iter().any(|s| d["status"] == *s) {
                return d;
            }
            if start.elapsed() > timeout {
                panic!("{id} is {} after {timeout:?}: {:#}", d["status"], d["send"]);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Terms that pass every rule: one VISITS authorization starting next week.
pub fn sample_terms() -> Value {
    let today = chrono::Utc::now().date_naive();
    json!({
        "authorizations": [{
            "start_date": (today + chrono::Duration::days(7)).to_string(),
            "end_date": (today + chrono::Duration::days(67)).to_string(),
            "rule_type": "VISITS", "rule_weekly": 2, "rule_period": 10,
            "authorization_number": "A-1"
        }],
        "referral": { "case_manager": { "name": "Case Manager" } }
    })
}

/// What ACCloud holds, without ids and timestamps that differ between runs: so a run with
/// faults can be compared to a run without.
pub fn sim_summary(sim: &SimHandle) -> Value {
    let s = sim.state();
    let v = serde_json::to_value(&s).expect("state");
    let pick = |arr: &Value, keys: &[&str]| -> Vec<Value> {
        arr.as_array()
            .into_iter()
            .flatten()
            .map(|o| {
                let mut m = serde_json::Map::new();
                for k in keys {
                    m.insert((*k).to_owned(), o.get(*k).cloned().unwrap_or(Value::Null));
                }
                Value::Object(m)
            })
            .collect()
    };
    json!({
        "clients": pick(&v["clients"], &["branch_id", "groups", "demographics", "timezone"]),
        "services": pick(&v["services"], &["service_id", "name", "service_code_id", "funding_methodology", "profile", "funders"]),
        "authorizations": pick(&v["authorizations"], &["start_at", "end_at", "rule_type", "rules", "first_day_of_week", "methodology", "authorization_number", "member_number", "deleted"]),
        "referrals": pick(&v["referrals"], &["status", "revision_number", "is_latest_revision", "care_type", "referral_type", "start_at", "end_at"]),
        "attachments": pick(&v["attachments"], &["filename", "size", "sha256"]),
    })
}

/// `GET /metrics`: the Prometheus text (checked to be one).
pub async fn metrics(app: &TestApp) -> String {
    let res = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    res.text().await.unwrap()
}

/// The value of the first sample of `family` whose labels include every one of `labels`.
pub fn sample(text: &str, family: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(family)
                && l[family.len()..].starts_with(['{', ' '])
                && labels.iter().all(|x| l.contains(x))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// A connection of the test's own to the app's database, beside the app's store.
pub async fn sql(app: &TestApp) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&app.db_url)
        .await
        .expect("a second connection to the test database")
}
