//! `PUT /v1/patients` (B14 of the notes).

use serde_json::{Value, json};

use crate::helpers::{example, spawn_app, status_json};
use crate::plans::send;

fn ana(source: &str, dob: &str) -> Value {
    json!({"source_id": source, "first_name": "Ana", "last_name": "Lee", "date_of_birth": dob})
}

#[tokio::test]
async fn put_patient_creates_then_updates_by_source_id() {
    let app = spawn_app().await;
    let (s, b) = send(&app, "PUT", "/v1/patients", Some(&ana("e1", "2015-03-02"))).await;
    assert_eq!((s, b["outcome"].as_str()), (201, Some("created")), "{b}");
    let q = b["patient_id"].as_str().unwrap().to_owned();
    let mut body = ana("e1", "2015-03-02");
    body["city"] = json!("Denver");
    body["first_name"] = json!("Anna");
    let (s, b) = send(&app, "PUT", "/v1/patients", Some(&body)).await;
    assert_eq!(
        (s, b["outcome"].as_str()),
        (200, Some("source_id_match")),
        "{b}"
    );
    assert_eq!(b["patient_id"], q.as_str());
    let rec = app
        .store
        .get_patient(refbridge_domain::PatientId::parse(&q).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.first_name, "Anna");
    assert_eq!(rec.city.as_deref(), Some("Denver"));
}

#[tokio::test]
async fn put_patient_deduplicates_by_name_and_birthday_and_takes_the_new_source_id() {
    let app = spawn_app().await;
    let (_, b) = send(&app, "PUT", "/v1/patients", Some(&ana("e1", "2015-03-02"))).await;
    let q = b["patient_id"].as_str().unwrap().to_owned();
    let mut body = ana("e2", "2015-03-02");
    body["first_name"] = json!(" ANA ");
    let (s, b) = send(&app, "PUT", "/v1/patients", Some(&body)).await;
    assert_eq!(
        (s, b["outcome"].as_str()),
        (200, Some("deduplicated")),
        "{b}"
    );
    assert_eq!(b["patient_id"], q.as_str());
    let id = refbridge_domain::PatientId::parse(&q).unwrap();
    assert_eq!(
        app.store.patient_source_id(id).await.unwrap().as_deref(),
        Some("e2")
    );
    // Another birthday is another patient.
    let (s, b) = send(&app, "PUT", "/v1/patients", Some(&ana("e3", "2015-03-03"))).await;
    assert_eq!((s, b["outcome"].as_str()), (201, Some("created")));
    assert_ne!(b["patient_id"], q.as_str());
}

#[tokio::test]
async fn put_patient_links_to_the_patient_intake_created() {
    let app = spawn_app().await;
    let (_, b) = status_json(app.post_referral(&example()).await).await;
    let d = app
        .get_json(&format!(
            "/v1/referral-requests/{}",
            b["request_id"].as_str().unwrap()
        ))
        .await;
    let client = &example()["client"];
    let body = json!({"source_id": "cpr-77", "first_name": client["first_name"],
        "last_name": client["last_name"], "date_of_birth": client["birthday"]});
    let (s, b) = send(&app, "PUT", "/v1/patients", Some(&body)).await;
    assert_eq!(
        (s, b["outcome"].as_str()),
        (200, Some("deduplicated")),
        "{b}"
    );
    assert_eq!(b["patient_id"], d["patient"]["id"]);
}

#[tokio::test]
async fn put_patient_names_every_invalid_field_without_echoing_values() {
    let app = spawn_app().await;
    let body = json!({"source_id": "", "first_name": "Zed", "date_of_birth": "02/03/2015"});
    let (s, b) = send(&app, "PUT", "/v1/patients", Some(&body)).await;
    assert_eq!(s, 400);
    let paths: Vec<_> = b["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["source_id", "last_name", "date_of_birth"]);
    assert!(!b.to_string().contains("02/03/2015"));
    assert!(!b.to_string().contains("Zed"));
}
