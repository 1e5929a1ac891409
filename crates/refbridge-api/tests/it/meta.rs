use crate::helpers::spawn_app;

#[tokio::test]
async fn healthz_and_readyz_answer() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("x-request-id"));

    app.store.close().await;
    let res = app
        .client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/referral_request",
        "/v1/referral-requests",
        "/v1/referral-requests/{request_id}",
        "/v1/referral-requests/{request_id}/files/{file_id}",
        "/v1/referral-requests/{request_id}/deny",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(p), "missing {p}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["ReferralDetail"].is_object());
    // The generated document and the served one agree.
    assert_eq!(serde_json::to_value(refbridge_api::openapi()).unwrap(), doc);
}

#[tokio::test]
async fn the_api_reference_is_browsable_with_its_script_served_locally() {
    let app = crate::helpers::spawn_app().await;
    let res = app.get("/docs").await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("/openapi.json"), "it reads our document");
    assert!(
        html.contains("src=\"/docs/scalar.js\""),
        "its script is ours"
    );
    assert!(!html.contains("https://"), "nothing from a CDN");
    let res = app.get("/docs/scalar.js").await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/javascript")
    );
    let js = res.bytes().await.unwrap();
    assert!(js.len() > 100_000, "the whole bundle");
    assert!(
        String::from_utf8_lossy(&js).contains("createApiReference"),
        "Scalar's API reference"
    );
}
