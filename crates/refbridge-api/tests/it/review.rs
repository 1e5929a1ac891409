use serde_json::json;

use crate::helpers::{EXAMPLE_ID, example, spawn_app, status_json};

async fn post_n(app: &crate::helpers::TestApp, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let mut doc = example();
        let id = format!("00000000-0000-4000-8000-{:012}", i);
        doc["request_id"] = json!(id);
        assert_eq!(app.post_referral(&doc).await.status(), 200);
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn list_is_newest_first_and_pages_with_a_cursor() {
    let app = spawn_app().await;
    let ids = post_n(&app, 5).await;
    let page1 = app.get_json("/v1/referral-requests?limit=2").await;
    let got: Vec<&str> = page1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[4].as_str(), ids[3].as_str()]);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2 = app
        .get_json(&format!("/v1/referral-requests?limit=2&cursor={cursor}"))
        .await;
    let page3 = app
        .get_json(&format!(
            "/v1/referral-requests?limit=2&cursor={}",
            page2["next_cursor"].as_str().unwrap()
        ))
        .await;
    let rest: Vec<&str> = page2["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page3["items"].as_array().unwrap())
        .map(|i| i["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        rest,
        vec![ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]
    );
    assert_eq!(page3["next_cursor"], json!(null));
    let item = &page1["items"][0];
    assert_eq!(item["status"], "received");
    assert_eq!(item["agency_name"], "Gem City Home Care");
    assert_eq!(item["service_requested"], "PT");
    assert_eq!(item["warning_count"], 1);
}

#[tokio::test]
async fn list_filters_by_status_agency_and_time() {
    let app = spawn_app().await;
    let ids = post_n(&app, 3).await;
    let mut other = example();
    other["request_id"] = json!(EXAMPLE_ID);
    other["agency"]["alayamarket_org_id"] = json!("0d6b1c2e-1111-4222-8333-444455556666");
    assert_eq!(app.post_referral(&other).await.status(), 200);
    assert_eq!(
        app.deny(&ids[0], &json!({"reason": "out of area"}))
            .await
            .status(),
        200
    );

    let denied = app.get_json("/v1/referral-requests?status=denied").await;
    assert_eq!(denied["items"].as_array().unwrap().len(), 1);
    assert_eq!(denied["items"][0]["request_id"], ids[0].as_str());

    let by_agency = app
        .get_json("/v1/referral-requests?agency=0d6b1c2e-1111-4222-8333-444455556666")
        .await;
    assert_eq!(by_agency["items"].as_array().unwrap().len(), 1);
    assert_eq!(by_agency["items"][0]["request_id"], EXAMPLE_ID);

    let future = app
        .get_json("/v1/referral-requests?received_from=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(future["items"], json!([]));
    let past = app
        .get_json("/v1/referral-requests?received_to=2000-01-01T00:00:00Z")
        .await;
    assert_eq!(past["items"], json!([]));
    let all = app
        .get_json("/v1/referral-requests?received_from=2000-01-01T00:00:00%2B00:00")
        .await;
    assert_eq!(all["items"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn bad_list_parameters_are_400_each_named() {
    let app = spawn_app().await;
    let (status, body) = status_json(
        app.get("/v1/referral-requests?status=lost&agency=gem&received_from=yesterday&limit=0&cursor=zzz").await,
    )
    .await;
    assert_eq!(status, 400);
    let paths: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        vec!["status", "agency", "received_from", "limit", "cursor"]
    );
}

#[tokio::test]
async fn detail_of_an_unknown_or_malformed_id() {
    let app = spawn_app().await;
    let (status, body) = status_json(
        app.get(&format!("/v1/referral-requests/{EXAMPLE_ID}"))
            .await,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["message"], format!("no referral request {EXAMPLE_ID}"));
    let (status, body) = status_json(app.get("/v1/referral-requests/42").await).await;
    assert_eq!(status, 400);
    assert_eq!(body["message"], "request_id must be a UUID");
}

#[tokio::test]
async fn file_download_returns_the_bytes_with_the_detected_type() {
    let app = spawn_app().await;
    assert_eq!(app.post_referral(&example()).await.status(), 200);
    let d = app
        .get_json(&format!("/v1/referral-requests/{EXAMPLE_ID}"))
        .await;
    let file = &d["files"][0];
    let res = app.get(file["href"].as_str().unwrap()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/png");
    assert_eq!(
        res.headers()["content-disposition"],
        "attachment; filename=\"physician_order_form.pdf\"; filename*=UTF-8''physician_order_form.pdf"
    );
    let bytes = res.bytes().await.unwrap();
    use base64::Engine;
    let expected = base64::engine::general_purpose::STANDARD
        .decode(example()["files"][0]["file_value"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes.as_ref(), expected.as_slice());

    let missing = app
        .get(&format!(
            "/v1/referral-requests/{EXAMPLE_ID}/files/00000000-0000-4000-8000-000000000000"
        ))
        .await;
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn deny_is_terminal_audited_and_needs_a_reason() {
    let app = spawn_app().await;
    assert_eq!(app.post_referral(&example()).await.status(), 200);

    let (status, body) = status_json(app.deny(EXAMPLE_ID, &json!({"reason": "  "})).await).await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (400, "reason is required")
    );
    let (status, body) = status_json(
        app.deny(EXAMPLE_ID, &json!({"reason": "x".repeat(2001)}))
            .await,
    )
    .await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (400, "reason must be at most 2000 characters")
    );

    let (status, d) = status_json(
        app.deny(
            EXAMPLE_ID,
            &json!({"reason": "Patient outside service area"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(d["status"], "denied");
    assert_eq!(d["denial_reason"], "Patient outside service area");
    let history: Vec<(&str, &str)> = d["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["status"].as_str().unwrap(), h["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        history,
        vec![("received", "alayaconnector"), ("denied", "reviewer-1")]
    );
    let audit: Vec<(&str, &str)> = d["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["action"].as_str().unwrap(), a["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        audit,
        vec![
            ("referral_request.received", "alayaconnector"),
            ("referral_request.denied", "reviewer-1")
        ]
    );

    let (status, body) = status_json(app.deny(EXAMPLE_ID, &json!({"reason": "again"})).await).await;
    assert_eq!(status, 409);
    assert_eq!(
        body["message"],
        format!("referral request {EXAMPLE_ID} is denied and cannot be denied")
    );

    // A replay of the original document still answers with the record as it now stands.
    let (status, body) = status_json(app.post_referral(&example()).await).await;
    assert_eq!((status, body["status"].as_str().unwrap()), (200, "denied"));
}

#[tokio::test]
async fn review_endpoints_need_the_reviewer_role() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(format!("{}/v1/referral-requests", app.base))
        .bearer_auth(&app.intake_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = app
        .client
        .get(format!("{}/v1/referral-requests", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}
