//! One test per fault kind: is the object committed or not, and what does
//! the caller see.

use std::time::{Duration, Instant};

use refbridge_accloud_sim::{
    Endpoint, FaultConfig, FaultKind, FaultProbabilities, Outcome, ScriptedFault,
};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{client_body, guide_config, spawn, spawn_with};

fn script(sim: &crate::helpers::TestSim, endpoint: Endpoint, fault: FaultKind) {
    sim.handle
        .push_scripted_fault(ScriptedFault::new(endpoint, fault, 1));
}

async fn client_exists(sim: &crate::helpers::TestSim, ext: &str) -> bool {
    sim.get(&format!("/ext/api/v2/patients/clients/by_id/{ext}"))
        .await
        .status
        == StatusCode::OK
}

#[tokio::test]
async fn latency_delays_the_answer_and_the_request_still_commits() {
    let sim = spawn().await;
    script(&sim, Endpoint::ClientCreate, FaultKind::Latency { ms: 300 });
    let t = Instant::now();
    let r = sim
        .post("/ext/api/v2/patients/clients", client_body("lat"))
        .await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(client_exists(&sim, "lat").await);
    let entry = sim
        .handle
        .journal()
        .into_iter()
        .find(|e| e.endpoint == Some(Endpoint::ClientCreate))
        .unwrap();
    assert_eq!(entry.latency_ms, Some(300));
}

#[tokio::test]
async fn error_before_commit_answers_5xx_and_creates_nothing() {
    let sim = spawn().await;
    script(
        &sim,
        Endpoint::ClientCreate,
        FaultKind::ErrorBeforeCommit { status: 503 },
    );
    let r = sim
        .post("/ext/api/v2/patients/clients", client_body("ebc"))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body["code"], 503);
    assert!(!client_exists(&sim, "ebc").await);
    assert!(sim.handle.state().clients.is_empty());
    let entry = &sim.handle.journal()[0];
    assert_eq!(entry.handler_status, None);
    assert!(!entry.committed());
    // The fault was for one call only: the retry succeeds.
    let r = sim
        .post("/ext/api/v2/patients/clients", client_body("ebc"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn error_after_commit_answers_5xx_but_the_object_exists() {
    let sim = spawn().await;
    script(
        &sim,
        Endpoint::AuthorizationCreate,
        FaultKind::ErrorAfterCommit { status: 500 },
    );
    let client = sim.create_client("eac").await;
    let service = sim.create_service(client, "eac-s").await;
    let r = sim
        .post(
            "/ext/api/v2/scheduler/authorizations",
            crate::helpers::authorization_body(client, service, "2023-04-01", "2023-04-30"),
        )
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    // Authorizations API error shape: code as a string.
    assert_eq!(r.body["code"], "500");
    assert_eq!(sim.handle.state().authorizations.len(), 1);
    let entry = sim.handle.journal().into_iter().last().unwrap();
    assert_eq!(entry.handler_status, Some(201));
    assert_eq!(entry.status, Some(500));
    assert!(entry.committed());
}

#[tokio::test]
async fn drop_after_commit_is_a_transport_error_for_reqwest_and_the_object_exists() {
    let sim = spawn().await;
    script(&sim, Endpoint::ClientCreate, FaultKind::DropAfterCommit);
    let err = sim
        .request(Method::POST, "/ext/api/v2/patients/clients")
        .json(&client_body("drop"))
        .send()
        .await
        .expect_err("the response never arrives");
    assert!(!err.is_timeout() && err.status().is_none(), "{err:?}");
    assert!(client_exists(&sim, "drop").await);
    let entry = sim
        .handle
        .journal()
        .into_iter()
        .find(|e| e.endpoint == Some(Endpoint::ClientCreate))
        .unwrap();
    assert_eq!(entry.outcome, Outcome::Dropped);
    assert_eq!(entry.status, None);
    assert!(entry.committed());
    // A retry of the create sees the documented 409.
    let r = sim
        .post("/ext/api/v2/patients/clients", client_body("drop"))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn drop_after_commit_on_an_attachment_leaves_the_file_in_the_files_api() {
    let sim = spawn().await;
    let (client, _, _, referral) = sim.referral_chain("att").await;
    let rid = referral["referral"]["id"].as_str().unwrap().to_owned();
    script(&sim, Endpoint::AttachmentUpload, FaultKind::DropAfterCommit);
    let part = reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name("a.pdf");
    let result = sim
        .request(
            Method::POST,
            &format!("/api/v1/alayamarket/outbox/referrals/{rid}/client_attachment"),
        )
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await;
    assert!(result.is_err());
    let r = sim
        .get(&format!(
            "/ext/api/v2/files/client/{client}/Marketplace%20Documents/"
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body[0]["name"],
        format!("client/{client}/Marketplace Documents/a.pdf")
    );
    assert_eq!(r.body[0]["size"], 5);
}

#[tokio::test]
async fn hang_after_commit_outlasts_the_callers_timeout_and_the_object_exists() {
    let sim = spawn().await;
    script(
        &sim,
        Endpoint::ClientCreate,
        FaultKind::HangAfterCommit { ms: 5_000 },
    );
    let t = Instant::now();
    let err = sim
        .request(Method::POST, "/ext/api/v2/patients/clients")
        .timeout(Duration::from_millis(300))
        .json(&client_body("hang"))
        .send()
        .await
        .expect_err("times out");
    assert!(err.is_timeout(), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(client_exists(&sim, "hang").await);
    let entry = sim
        .handle
        .journal()
        .into_iter()
        .find(|e| e.endpoint == Some(Endpoint::ClientCreate))
        .unwrap();
    assert_eq!(entry.outcome, Outcome::Hung);
}

#[tokio::test]
async fn rate_limited_answers_429_with_retry_after_and_creates_nothing() {
    let sim = spawn().await;
    script(
        &sim,
        Endpoint::ReferralCreate,
        FaultKind::RateLimited {
            retry_after_secs: 7,
        },
    );
    let client = sim.create_client("rl").await;
    let service = sim.create_service(client, "rl-s").await;
    let r = sim
        .post(
            &format!("/api/v1/alayamarket/outbox/referrals/from_service/{service}"),
            crate::helpers::referral_body(&[]),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers.get("retry-after").unwrap(), "7");
    assert_eq!(r.content_type(), "application/problem+json");
    assert_eq!(r.body["status"], 429);
    assert!(sim.handle.state().referrals.is_empty());
}

// The lags are long enough that the "not yet visible" checks hold on a
// loaded CI machine.
#[tokio::test]
async fn indexing_lag_hides_a_new_object_from_lookups_for_a_while() {
    let sim = spawn().await;
    script(
        &sim,
        Endpoint::ServiceCreate,
        FaultKind::IndexingLag { ms: 2_000 },
    );
    let client = sim.create_client("lag").await;
    let id = sim.create_service(client, "lag-s").await;
    let r = sim.get("/ext/api/v2/scheduler/services/by_id/lag-s").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = sim
        .get(&format!("/ext/api/v2/scheduler/services/{id}"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = sim
        .get("/ext/api/v2/scheduler/services?external_ids=lag-s")
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 0);
    // Committed all the same: a second create with the same id conflicts.
    let r = sim
        .post(
            "/ext/api/v2/scheduler/services",
            crate::helpers::service_body(client, "lag-s"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let r = sim.get("/ext/api/v2/scheduler/services/by_id/lag-s").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn configured_indexing_lag_applies_to_every_create() {
    let mut config = guide_config();
    config.indexing_lag_ms = 2_000;
    let sim = spawn_with(config).await;
    sim.create_client("always-lag").await;
    assert!(!client_exists(&sim, "always-lag").await);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert!(client_exists(&sim, "always-lag").await);
}

#[tokio::test]
async fn probabilistic_faults_are_reproducible_from_the_seed() {
    let faults = FaultConfig {
        default: FaultProbabilities {
            error_before_commit: 0.2,
            error_after_commit: 0.2,
            rate_limited: 0.2,
            ..FaultProbabilities::default()
        },
        ..FaultConfig::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut config = guide_config();
        config.faults = faults.clone();
        config.rng_seed = 42;
        let sim = spawn_with(config).await;
        let mut statuses = Vec::new();
        for i in 0..40 {
            let r = sim
                .post(
                    "/ext/api/v2/patients/clients",
                    client_body(&format!("p{i}")),
                )
                .await;
            statuses.push(r.status.as_u16());
        }
        let committed = sim
            .handle
            .journal()
            .iter()
            .filter(|e| e.committed())
            .count();
        assert_eq!(committed, sim.handle.state().clients.len());
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].contains(&201) && runs[0].iter().any(|s| *s != 201));
}

#[tokio::test]
async fn per_endpoint_faults_leave_other_endpoints_alone() {
    let mut config = guide_config();
    config.faults.endpoints.insert(
        Endpoint::ServiceCreate,
        FaultProbabilities {
            error_before_commit: 1.0,
            ..FaultProbabilities::default()
        },
    );
    let sim = spawn_with(config).await;
    let client = sim.create_client("pe").await;
    let r = sim
        .post(
            "/ext/api/v2/scheduler/services",
            crate::helpers::service_body(client, "pe-s"),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn faults_can_be_set_and_scripted_through_the_control_api() {
    let sim = spawn().await;
    let r = sim
        .send(sim.control(Method::POST, "/_sim/faults/scripted").json(&json!({
            "endpoint": "client_create", "fault": {"kind": "error_before_commit", "status": 502}, "count": 2
        })))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for _ in 0..2 {
        let r = sim
            .post("/ext/api/v2/patients/clients", client_body("cx"))
            .await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    }
    let r = sim
        .post("/ext/api/v2/patients/clients", client_body("cx"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);

    let r = sim
        .send(sim.control(Method::PUT, "/_sim/faults").json(&json!({
            "endpoints": {"client_get": {"rate_limited": 1.0, "retry_after_secs": 3}}
        })))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = sim.get("/ext/api/v2/patients/clients/1060").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers.get("retry-after").unwrap(), "3");

    let r = sim
        .send(
            sim.control(Method::PUT, "/_sim/faults")
                .json(&json!({"default": {"drop_after_commit": 2.0}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let r = sim.send(sim.control(Method::DELETE, "/_sim/faults")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = sim.get("/ext/api/v2/patients/clients/1060").await;
    assert_eq!(r.status, StatusCode::OK);
}
