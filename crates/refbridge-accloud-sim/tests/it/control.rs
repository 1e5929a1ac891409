//! The control API under `/_sim/`, the seed file, and start/stop.

use std::time::Duration;

use refbridge_accloud_sim::{DuplicatesReport, JournalEntry, SimConfig, StateSnapshot, start_on};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{client_body, guide_config, spawn, spawn_with};

#[tokio::test]
async fn control_api_needs_its_own_credential() {
    let sim = spawn().await;
    let r = sim.get("/_sim/state").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = sim.send(sim.control(Method::GET, "/_sim/state")).await;
    assert_eq!(r.status, StatusCode::OK);
    // And the control credential opens no API route.
    let r = sim
        .send(sim.control(Method::GET, "/ext/api/v2/patients/groups"))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn state_duplicates_and_journal_are_served_as_json() {
    let sim = spawn().await;
    sim.referral_chain("j").await;
    let r = sim.send(sim.control(Method::GET, "/_sim/state")).await;
    let state: StateSnapshot = serde_json::from_value(r.body).unwrap();
    assert_eq!(
        (
            state.clients.len(),
            state.services.len(),
            state.referrals.len()
        ),
        (1, 1, 1)
    );
    let r = sim.send(sim.control(Method::GET, "/_sim/duplicates")).await;
    let report: DuplicatesReport = serde_json::from_value(r.body).unwrap();
    assert!(report.is_empty());
    let r = sim
        .send(sim.control(Method::GET, "/_sim/journal?clear=true"))
        .await;
    let journal: Vec<JournalEntry> = serde_json::from_value(r.body).unwrap();
    let shape: Vec<(String, u16)> = journal
        .iter()
        .map(|e| (e.endpoint.unwrap().to_string(), e.status.unwrap()))
        .collect();
    assert_eq!(
        shape,
        [
            ("client_create", 201),
            ("service_create", 200),
            ("authorization_create", 201),
            ("referral_create", 201)
        ]
        .map(|(e, s)| (e.to_owned(), s))
    );
    assert_eq!(journal[0].method, "POST");
    assert_eq!(journal[0].path, "/ext/api/v2/patients/clients");
    assert!(sim.handle.journal().is_empty());
}

#[tokio::test]
async fn duplicates_report_counts_referral_sequences_per_service_and_supplier() {
    let sim = spawn().await;
    let (_, service, auth, _) = sim.referral_chain("d").await;
    sim.create_referral(service, &[auth]).await;
    let report = sim.handle.duplicates();
    assert_eq!(report.referral_sequences.len(), 1);
    assert_eq!(report.referral_sequences[0].count, 2);
    // A second identical authorization is a duplicate too.
    let client = sim.handle.state().clients[0].id;
    sim.create_authorization(client, service, "2023-04-01", "2023-04-30")
        .await;
    assert_eq!(sim.handle.duplicates().authorizations.len(), 1);
}

#[tokio::test]
async fn marking_a_referral_processed_goes_through_the_control_api() {
    let sim = spawn().await;
    let (.., referral) = sim.referral_chain("p").await;
    let id = referral["referral"]["id"].as_str().unwrap();
    let r = sim
        .send(sim.control(Method::POST, &format!("/_sim/referrals/{id}/process")))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = sim
        .get(&format!("/api/v1/alayamarket/outbox/referrals/{id}"))
        .await;
    assert_eq!(r.body["referral"]["status"], "processed");
    let r = sim
        .send(sim.control(Method::POST, &format!("/_sim/referrals/{id}/process")))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = sim
        .send(sim.control(
            Method::POST,
            "/_sim/referrals/6f1c2a7e-0000-4000-8000-000000000000/process",
        ))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn reset_returns_to_the_seed_and_hands_out_the_same_ids_again() {
    let sim = spawn().await;
    assert_eq!(sim.create_client("a").await, 1060);
    let r = sim.send(sim.control(Method::POST, "/_sim/reset")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(sim.handle.state().clients.is_empty());
    assert!(sim.handle.journal().is_empty());
    assert_eq!(sim.create_client("a").await, 1060);
}

#[tokio::test]
async fn seed_data_is_read_from_json_and_toml_files() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("seed.json");
    std::fs::write(
        &json_path,
        json!({
            "branches": [{"id": 7, "name": "North", "timezone": "America/New_York"}],
            "groups": [{"id": 70, "name": "CSI", "branch_id": 7}],
            "funders": [],
            "service_codes": [],
            "trusted_network": [{"id": "11111111-2222-4333-8444-555555555555", "name": "Acme Care"}],
            "first_ids": {"client": 5000}
        })
        .to_string(),
    )
    .unwrap();
    let toml_path = dir.path().join("seed.toml");
    std::fs::write(
        &toml_path,
        "funders = []\nservice_codes = []\n\n[[branches]]\nid = 8\nname = \"South\"\ntimezone = \"America/Denver\"\n\n[[groups]]\nid = 80\nname = \"CSI\"\nbranch_id = 8\n",
    )
    .unwrap();
    for (path, group) in [(json_path, 70), (toml_path, 80)] {
        let mut config = guide_config();
        config.seed_file = Some(path);
        let sim = spawn_with(config).await;
        let r = sim.get("/ext/api/v2/patients/groups").await;
        assert_eq!(r.body["items"][0]["id"], group);
        assert_eq!(r.body["items"][0]["name"], "CSI");
    }
    let mut config = guide_config();
    config.seed_file = Some(dir.path().join("missing.json"));
    assert!(refbridge_accloud_sim::start(config).await.is_err());
}

#[tokio::test]
async fn start_on_serves_until_the_shutdown_future_completes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let sim = start_on(listener, SimConfig::default(), async {
        let _ = rx.await;
    })
    .await
    .unwrap();
    let url = format!("{}/ext/api/v2/patients/groups", sim.base_url());
    let http = reqwest::Client::new();
    let ok = http
        .get(&url)
        .basic_auth("sim-api-key", Some("sim-api-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    tx.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fresh = reqwest::Client::new();
    assert!(fresh.get(&url).send().await.is_err());
}

#[tokio::test]
async fn unknown_paths_answer_404_in_the_family_shape() {
    let sim = spawn().await;
    let r = sim
        .post("/ext/api/v2/patients/nothing", client_body("x"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["code"], 404);
}
