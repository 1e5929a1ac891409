//! `spawn_app`: each test gets its own database, file store, tokens and server on port 0.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use refbridge_api::{ApiConfig, AppState};
use refbridge_domain::Role;
use refbridge_storage::{Blobs, FileStore, Store, StoreOptions};
use serde_json::Value;

pub const PAYLOAD: &str = include_str!("../fixtures/new_referral_request_payload.json");
pub const EXAMPLE_ID: &str = "0e1d5e34-63d7-4bb2-8e22-9376943ab56f";

pub fn example() -> Value {
    serde_json::from_str(PAYLOAD).expect("fixture is JSON")
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub intake_token: String,
    pub reviewer_token: String,
    pub admin_token: String,
    pub store: Store,
    pub files: Blobs,
    _dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(ApiConfig::default()).await
}

pub async fn spawn_app_with(config: ApiConfig) -> TestApp {
    spawn_app_on(refbridge_storage::test_util::test_backend(), config).await
}

/// An app on the given backend, whichever the run tests (to compare the two).
pub async fn spawn_app_on(backend: refbridge_storage::Backend, config: ApiConfig) -> TestApp {
    capture_logs();
    let dir = tempfile::tempdir().expect("temp dir");
    let url = refbridge_storage::test_util::fresh_database_url_on(backend, dir.path()).await;
    let store = Store::open(&url, &StoreOptions::default())
        .await
        .expect("store");
    let files = Blobs::folder(FileStore::open(dir.path().join("files")).expect("file store"));
    let mut tokens = Vec::new();
    for (name, role) in [
        ("alayaconnector", Role::Intake),
        ("reviewer-1", Role::Reviewer),
        ("ops", Role::Admin),
    ] {
        let token = refbridge_api::new_token().expect("random token");
        store
            .create_token(name, role, &refbridge_api::hash_token(&token))
            .await
            .expect("token");
        tokens.push(token);
    }
    let state = AppState {
        store: store.clone(),
        files: files.clone(),
        config,
        wake: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(
            listener,
            refbridge_api::app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .expect("serve");
    });
    let [intake_token, reviewer_token, admin_token]: [String; 3] =
        tokens.try_into().expect("3 tokens");
    TestApp {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        intake_token,
        reviewer_token,
        admin_token,
        store,
        files,
        _dir: dir,
    }
}

impl TestApp {
    pub async fn post_referral_bytes(&self, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(format!("{}/referral_request", self.base))
            .bearer_auth(&self.intake_token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_referral(&self, body: &Value) -> reqwest::Response {
        self.post_referral_bytes(serde_json::to_vec(body).expect("json"))
            .await
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.reviewer_token)
            .send()
            .await
            .expect("request")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let res = self.get(path).await;
        assert_eq!(res.status(), 200, "GET {path}");
        res.json().await.expect("json")
    }

    pub async fn deny(&self, id: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/referral-requests/{id}/deny", self.base))
            .bearer_auth(&self.reviewer_token)
            .json(body)
            .send()
            .await
            .expect("request")
    }
}

/// Reads a response as (status, JSON body).
pub async fn status_json(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let body = res.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// Every log line written by any test of this binary, at trace level.
/// sqlx's timings (`elapsed=1.45458ms`) are left out: their digits could look like a value.
pub fn logs() -> String {
    let buf = LOGS.get().expect("logs captured").lock().expect("lock");
    String::from_utf8_lossy(&buf)
        .lines()
        .map(|l| {
            l.split(' ')
                .filter(|w| !w.starts_with("elapsed=") && !w.starts_with("elapsed_secs="))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Buf(buf.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("refbridge_api=trace,refbridge_storage=trace,tower_http=trace,sqlx=trace,axum=trace")
            .with_ansi(false)
            // Timestamps are random digits as far as the PHI check is concerned.
            .without_time()
            .with_writer(move || writer.clone())
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buf
    });
}
