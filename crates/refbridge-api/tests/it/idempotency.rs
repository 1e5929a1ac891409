//! `Idempotency-Key` on POST, PUT and PATCH.

use serde_json::{Value, json};

use crate::helpers::{EXAMPLE_ID, TestApp, example, spawn_app, spawn_app_with, status_json};
use crate::plans::{new_patient, new_payor, plan, plans_of};

async fn keyed(
    app: &TestApp,
    token: &str,
    key: &str,
    path: &str,
    body: &Value,
) -> (u16, Option<String>, Value) {
    let res = app
        .client
        .put(format!("{}{path}", app.base))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let replayed = res
        .headers()
        .get("idempotent-replayed")
        .map(|v| v.to_str().unwrap().to_owned());
    let (s, b) = status_json(res).await;
    (s, replayed, b)
}

#[tokio::test]
async fn the_same_key_and_body_replays_the_first_answer() {
    let app = spawn_app().await;
    let p = new_patient(&app, "e1").await;
    let x = new_payor(&app, "X").await;
    let body = plan(&p, "s1", "M1", &x, 1);
    let tok = app.reviewer_token.clone();
    let (s1, r1, b1) = keyed(&app, &tok, "k-1", "/v1/patient-plans", &body).await;
    assert_eq!((s1, r1), (201, None), "{b1}");
    // Delete the plan: a replay must not run the PUT again.
    let id = b1["patient_plan_id"].as_str().unwrap();
    let res = app
        .client
        .delete(format!("{}/v1/patient-plans/{id}", app.base))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (s2, r2, b2) = keyed(&app, &tok, "k-1", "/v1/patient-plans", &body).await;
    assert_eq!((s2, r2.as_deref()), (201, Some("true")));
    assert_eq!(b2, b1);
    assert_eq!(plans_of(&app, &p, true).await.len(), 1);
    // Without the key, the PUT runs.
    let res = app
        .client
        .put(format!("{}/v1/patient-plans", app.base))
        .bearer_auth(&tok)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused_with_422() {
    let app = spawn_app().await;
    let p = new_patient(&app, "e1").await;
    let x = new_payor(&app, "X").await;
    let tok = app.reviewer_token.clone();
    let (s, _, _) = keyed(
        &app,
        &tok,
        "k-2",
        "/v1/patient-plans",
        &plan(&p, "s1", "M1", &x, 1),
    )
    .await;
    assert_eq!(s, 201);
    let (s, r, b) = keyed(
        &app,
        &tok,
        "k-2",
        "/v1/patient-plans",
        &plan(&p, "s2", "M2", &x, 2),
    )
    .await;
    assert_eq!((s, r), (422, None), "{b}");
    assert_eq!(b["error"], "idempotency_key_mismatch");
    // Another path under the same key is another request too.
    let (s, _, _) = keyed(&app, &tok, "k-2", "/v1/payors", &json!({"name": "Y"})).await;
    assert_eq!(s, 422);
    assert_eq!(plans_of(&app, &p, true).await.len(), 1);
}

#[tokio::test]
async fn keys_are_scoped_per_caller() {
    let app = spawn_app().await;
    let (s, _, b) = keyed(
        &app,
        &app.reviewer_token.clone(),
        "k-3",
        "/v1/payors",
        &json!({"name": "X"}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, r, b) = keyed(
        &app,
        &app.admin_token.clone(),
        "k-3",
        "/v1/payors",
        &json!({"name": "Y"}),
    )
    .await;
    assert_eq!((s, r), (201, None), "{b}");
}

#[tokio::test]
async fn a_malformed_key_is_a_400() {
    let app = spawn_app().await;
    let tok = app.reviewer_token.clone();
    let long = "k".repeat(256);
    let (s, _, b) = keyed(&app, &tok, &long, "/v1/payors", &json!({"name": "X"})).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["details"][0]["path"], "Idempotency-Key");
    let res = app
        .client
        .get(format!("{}/v1/payors", app.base))
        .bearer_auth(&tok)
        .header("Idempotency-Key", &long)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "GET ignores the header");
}

#[tokio::test]
async fn an_error_answer_is_replayed_too() {
    let app = spawn_app().await;
    let tok = app.reviewer_token.clone();
    let (s, _, b1) = keyed(&app, &tok, "k-4", "/v1/payors", &json!({"name": ""})).await;
    assert_eq!(s, 400);
    let (s, r, b2) = keyed(&app, &tok, "k-4", "/v1/payors", &json!({"name": ""})).await;
    assert_eq!((s, r.as_deref()), (400, Some("true")));
    assert_eq!(b1, b2);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_run_once() {
    let app = spawn_app().await;
    let p = new_patient(&app, "e1").await;
    let x = new_payor(&app, "X").await;
    let tok = app.reviewer_token.clone();
    let body = plan(&p, "s1", "M1", &x, 1);
    let results = futures::future::join_all(
        (0..20).map(|_| keyed(&app, &tok, "k-5", "/v1/patient-plans", &body)),
    )
    .await;
    for (s, _, b) in &results {
        assert!(*s == 201 || *s == 409, "{s} {b}");
        if *s == 409 {
            assert_eq!(b["error"], "idempotency_key_in_use");
        }
    }
    assert!(results.iter().any(|(s, _, _)| *s == 201));
    assert_eq!(plans_of(&app, &p, true).await.len(), 1);
}

/// A keyed body larger than what is held in memory (1 MiB) is spooled, fingerprinted whole
/// and handed on intact.
#[tokio::test]
async fn a_large_keyed_intake_is_stored_intact_and_fingerprinted_whole() {
    use base64::Engine;
    let app = spawn_app().await;
    let mut file: Vec<u8> = b"%PDF-1.7\n".to_vec();
    file.extend((0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    let post = |file: &[u8]| {
        let mut body = example();
        body["files"][0]["file_value"] =
            json!(base64::engine::general_purpose::STANDARD.encode(file));
        app.client
            .post(format!("{}/referral_request", app.base))
            .bearer_auth(&app.intake_token)
            .header("Idempotency-Key", "big-1")
            .json(&body)
            .send()
    };
    let res = post(&file).await.unwrap();
    assert_eq!(res.headers().get("idempotent-replayed"), None);
    let (s, first) = status_json(res).await;
    assert_eq!(s, 200, "{first}");
    let d = app
        .get_json(&format!("/v1/referral-requests/{EXAMPLE_ID}"))
        .await;
    let stored = app.get(d["files"][0]["href"].as_str().unwrap()).await;
    assert_eq!(stored.bytes().await.unwrap().as_ref(), file.as_slice());

    let res = post(&file).await.unwrap();
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    assert_eq!(status_json(res).await, (200, first));
    // One byte changed near the end, far past the first MiB: another body.
    let last = file.len() - 2;
    file[last] ^= 1;
    let (s, b) = status_json(post(&file).await.unwrap()).await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["error"], "idempotency_key_mismatch");
}

/// The documents route takes more than the general body limit; a key must not lower it.
#[tokio::test]
async fn a_keyed_documents_upload_may_exceed_the_general_body_limit() {
    let app = spawn_app_with(refbridge_api::ApiConfig {
        max_body_bytes: 1024 * 1024,
        max_file_bytes: 2 * 1024 * 1024,
        ..Default::default()
    })
    .await;
    assert_eq!(app.post_referral(&example()).await.status(), 200);
    // A fixed boundary, so that the retry sends the same bytes.
    let mut form = b"--b0undary\r\nContent-Disposition: form-data; name=\"file\"; \
        filename=\"scan.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        .to_vec();
    form.extend(std::iter::repeat_n(7u8, 1_500_000));
    form.extend_from_slice(b"\r\n--b0undary--\r\n");
    let upload = || {
        app.client
            .post(format!(
                "{}/v1/referral-requests/{EXAMPLE_ID}/documents",
                app.base
            ))
            .bearer_auth(&app.reviewer_token)
            .header("Idempotency-Key", "docs-1")
            .header("content-type", "multipart/form-data; boundary=b0undary")
            .body(form.clone())
            .send()
    };
    let res = upload().await.unwrap();
    assert_eq!(res.headers().get("idempotent-replayed"), None);
    let (s, first) = status_json(res).await;
    // The handler ran: the referral is not approved yet.
    assert_eq!(s, 409, "{first}");
    assert_ne!(first["error"], "payload_too_large");
    let res = upload().await.unwrap();
    assert_eq!(res.headers()["idempotent-replayed"], "true");
}

#[tokio::test]
async fn expired_keys_are_purged_and_then_run_again() {
    let app = spawn_app().await;
    let tok = app.reviewer_token.clone();
    let body = json!({"name": "Purged Payor"});
    let (s, _, _) = keyed(&app, &tok, "k-purge", "/v1/payors", &body).await;
    assert_eq!(s, 201);
    let (_, replayed, _) = keyed(&app, &tok, "k-purge", "/v1/payors", &body).await;
    assert_eq!(replayed.as_deref(), Some("true"));

    // A day-long TTL keeps it.
    let keep = tokio::spawn(refbridge_api::purge_expired_keys(
        app.store.clone(),
        std::time::Duration::from_millis(10),
        refbridge_api::IDEMPOTENCY_TTL,
    ));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    keep.abort();
    let (_, replayed, _) = keyed(&app, &tok, "k-purge", "/v1/payors", &body).await;
    assert_eq!(replayed.as_deref(), Some("true"));

    // A zero TTL: the key is gone, and the PUT runs again (an update of the payor now).
    let purge = tokio::spawn(refbridge_api::purge_expired_keys(
        app.store.clone(),
        std::time::Duration::from_millis(10),
        std::time::Duration::ZERO,
    ));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    purge.abort();
    let (s, replayed, _) = keyed(&app, &tok, "k-purge", "/v1/payors", &body).await;
    assert_eq!((s, replayed), (200, None));
}
