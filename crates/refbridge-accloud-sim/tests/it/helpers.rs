//! `spawn()` and typed helpers: each test gets its own simulator on port 0.

use std::time::Duration;

use chrono::NaiveDate;
use refbridge_accloud_sim::{RunningSim, SimConfig, SimHandle, start};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

pub const SUPPLIER: &str = "91c79089-a3ca-4cca-acf4-52fc1f1302c6";
pub const CSI_GROUP: i64 = 1008;

pub struct TestSim {
    pub sim: RunningSim,
    pub http: reqwest::Client,
    pub handle: SimHandle,
    key: (String, String),
    control: (String, String),
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub bytes: Vec<u8>,
}

impl Resp {
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// The guide's examples are dated 2023: pin "today" so that the
/// one-year rule on `start_at` accepts them.
pub fn guide_config() -> SimConfig {
    SimConfig {
        today: NaiveDate::from_ymd_opt(2023, 9, 1),
        ..SimConfig::default()
    }
}

pub async fn spawn() -> TestSim {
    spawn_with(guide_config()).await
}

pub async fn spawn_with(config: SimConfig) -> TestSim {
    let api = config.credentials.api[0].clone();
    let control = config.credentials.control.clone();
    let sim = start(config).await.expect("simulator starts");
    let handle = sim.handle();
    TestSim {
        sim,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        handle,
        key: (api.key, api.secret),
        control: (control.username, control.password),
    }
}

pub async fn into_resp(r: reqwest::Response) -> Resp {
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = r.bytes().await.expect("body").to_vec();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
        bytes,
    }
}

impl TestSim {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.sim.base_url(), path)
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .basic_auth(&self.key.0, Some(&self.key.1))
    }

    pub async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        into_resp(rb.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(self.request(reqwest::Method::POST, path).json(&body))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.send(self.request(reqwest::Method::PUT, path).json(&body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    pub fn control(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .basic_auth(&self.control.0, Some(&self.control.1))
    }

    pub async fn upload(&self, referral_id: &str, filename: &str, data: Vec<u8>) -> Resp {
        let part = reqwest::multipart::Part::bytes(data).file_name(filename.to_owned());
        let form = reqwest::multipart::Form::new().part("file", part);
        self.send(
            self.request(
                reqwest::Method::POST,
                &format!("/api/v1/alayamarket/outbox/referrals/{referral_id}/client_attachment"),
            )
            .multipart(form),
        )
        .await
    }

    // ---- typed helpers for the happy path

    pub async fn create_client(&self, external_id: &str) -> i64 {
        let r = self
            .post("/ext/api/v2/patients/clients", client_body(external_id))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["id"].as_i64().expect("client id")
    }

    pub async fn create_service(&self, client_id: i64, service_id: &str) -> i64 {
        let r = self
            .post(
                "/ext/api/v2/scheduler/services",
                service_body(client_id, service_id),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["id"].as_i64().expect("service id")
    }

    pub async fn create_authorization(
        &self,
        client_id: i64,
        service_id: i64,
        start: &str,
        end: &str,
    ) -> i64 {
        let r = self
            .post(
                "/ext/api/v2/scheduler/authorizations",
                authorization_body(client_id, service_id, start, end),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["id"].as_i64().expect("authorization id")
    }

    pub async fn create_referral(&self, service_id: i64, authorization_ids: &[i64]) -> Value {
        let r = self
            .post(
                &format!("/api/v1/alayamarket/outbox/referrals/from_service/{service_id}"),
                referral_body(authorization_ids),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body
    }

    /// Client, service, April authorization and referral; returns
    /// (client id, service id, authorization id, referral body).
    pub async fn referral_chain(&self, tag: &str) -> (i64, i64, i64, Value) {
        let client = self.create_client(&format!("client-{tag}")).await;
        let service = self.create_service(client, &format!("request-{tag}")).await;
        let auth = self
            .create_authorization(client, service, "2023-04-01", "2023-04-30")
            .await;
        let referral = self.create_referral(service, &[auth]).await;
        (client, service, auth, referral)
    }
}

pub fn client_body(external_id: &str) -> Value {
    json!({
        "demographics": {"first_name": "Frank", "last_name": "Smith", "gender": "M"},
        "external_id": external_id,
        "branch_id": 1000,
        "groups": [{"id": CSI_GROUP}],
        "timezone": "America/Chicago"
    })
}

pub fn service_body(client_id: i64, service_id: &str) -> Value {
    json!({
        "service_id": service_id,
        "name": "Skilled Nursing",
        "client": {"alayacare_client_id": client_id},
        "funding_methodology": "single_funder",
        "guid_funder_breakdowns": [{"funder_id": 9, "is_primary": 1, "percentage": 100}],
        "service_code_id": 48
    })
}

pub fn authorization_body(client_id: i64, service_id: i64, start: &str, end: &str) -> Value {
    json!({
        "client_id": client_id,
        "service_ids": [service_id],
        "start_at": start,
        "end_at": end,
        "methodology": "service",
        "authorization_number": "123-456",
        "rule_type": "HOURS",
        "rule_weekly": 10,
        "rule_monthly": 40,
        "first_day_of_week": 6
    })
}

pub fn referral_body(authorization_ids: &[i64]) -> Value {
    json!({
        "authorization_ids": authorization_ids,
        "supply_persona_id": SUPPLIER,
        "referral_type": "service",
        "care_type": "nursing",
        "start_at": "2023-04-01T05:00:00+00:00",
        "end_at": "2023-04-30T05:00:00+00:00"
    })
}

pub fn revision_body(authorization_ids: &[i64], reason: &str) -> Value {
    json!({
        "authorization_ids": authorization_ids,
        "start_at": "2023-04-01T05:00:00+00:00",
        "end_at": "2023-04-30T05:00:00+00:00",
        "revision": {"reasons": [reason]}
    })
}
