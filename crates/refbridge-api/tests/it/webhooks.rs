//! Webhook endpoints through the API: admins only, an upsert by URL with the secret shown
//! once, addresses refbridge never sends to refused, bad bodies named.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, status_json};

async fn admin(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(&app.admin_token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    status_json(req.send().await.unwrap()).await
}

async fn put(app: &TestApp, body: Value) -> (u16, Value) {
    admin(
        app,
        reqwest::Method::PUT,
        "/v1/webhook-endpoints",
        Some(body),
    )
    .await
}

#[tokio::test]
async fn put_creates_with_a_secret_shown_once_and_updates_by_url() {
    let app = spawn_app().await;
    let (status, created) = put(
        &app,
        json!({"url": "https://cpr.example.com/hooks", "event_types": ["send.completed", "send.needs_attention"]}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap();
    let key = secret.strip_prefix("whsec_").expect("whsec_ prefix");
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key)
        .unwrap();
    assert_eq!(bytes.len(), 32);
    assert_eq!(created["enabled"], true);
    assert_eq!(
        created["event_types"],
        json!(["send.completed", "send.needs_attention"])
    );
    let id = created["id"].as_str().unwrap().to_owned();

    // The same URL again: the same endpoint, its types replaced, no secret.
    let (status, updated) = put(&app, json!({"url": "https://cpr.example.com/hooks"})).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["id"], json!(id));
    assert_eq!(updated["event_types"], Value::Null, "every type");
    assert!(updated.get("secret").is_none());

    let (_, list) = admin(&app, reqwest::Method::GET, "/v1/webhook-endpoints", None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(list["items"][0].get("secret").is_none());
    let (status, one) = admin(
        &app,
        reqwest::Method::GET,
        &format!("/v1/webhook-endpoints/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(one["url"], "https://cpr.example.com/hooks");

    let (status, off) = admin(
        &app,
        reqwest::Method::POST,
        &format!("/v1/webhook-endpoints/{id}/disable"),
        None,
    )
    .await;
    assert_eq!((status, off["enabled"].clone()), (200, json!(false)));
    assert_eq!(off["disabled_reason"], "disabled by an admin");
    let (_, on) = admin(
        &app,
        reqwest::Method::POST,
        &format!("/v1/webhook-endpoints/{id}/enable"),
        None,
    )
    .await;
    assert_eq!(on["enabled"], true);

    let (status, rotated) = admin(
        &app,
        reqwest::Method::POST,
        &format!("/v1/webhook-endpoints/{id}/rotate-secret"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_ne!(rotated["secret"], json!(secret));
    let until: chrono::DateTime<chrono::Utc> = rotated["previous_secret_valid_until"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let hours = (until - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((23.9..=24.0).contains(&hours), "{hours}");

    // Replay: the one event, or everything since a time.
    assert_eq!(
        app.post_referral(&crate::helpers::example()).await.status(),
        200
    );
    let feed = app.get_json("/v1/events").await;
    let event = feed["items"][0]["id"].as_str().unwrap();
    let (status, q) = admin(
        &app,
        reqwest::Method::POST,
        &format!("/v1/webhook-endpoints/{id}/replay"),
        Some(json!({"event_id": event})),
    )
    .await;
    assert_eq!((status, q["queued"].clone()), (202, json!(1)));
    let (status, q) = admin(
        &app,
        reqwest::Method::POST,
        &format!("/v1/webhook-endpoints/{id}/replay"),
        Some(json!({"since": "2020-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(
        q["queued"].as_u64().unwrap(),
        feed["items"].as_array().unwrap().len() as u64
    );
    let (_, one) = admin(
        &app,
        reqwest::Method::GET,
        &format!("/v1/webhook-endpoints/{id}"),
        None,
    )
    .await;
    assert_eq!(one["pending_deliveries"], q["queued"]);

    let (status, _) = admin(
        &app,
        reqwest::Method::DELETE,
        &format!("/v1/webhook-endpoints/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = admin(
        &app,
        reqwest::Method::GET,
        &format!("/v1/webhook-endpoints/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = admin(
        &app,
        reqwest::Method::DELETE,
        &format!("/v1/webhook-endpoints/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn loopback_private_and_link_local_targets_are_refused() {
    let app = spawn_app().await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.0.0.5/hook",
        "http://192.168.1.20/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[fd12:3456::1]/hook",
        "http://[fe80::1]/hook",
        "http://[::ffff:10.0.0.1]/hook",
    ] {
        let (status, body) = put(&app, json!({ "url": url })).await;
        assert_eq!(status, 400, "{url}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.starts_with("url names a loopback, private"),
            "{message}"
        );
        assert!(
            !message.contains(url),
            "the message does not repeat the URL"
        );
    }
    let (_, list) = admin(&app, reqwest::Method::GET, "/v1/webhook-endpoints", None).await;
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn bad_bodies_are_400s_naming_the_field_and_only_admins_may() {
    let app = spawn_app().await;
    for (body, field) in [
        (json!({}), "missing field `url`"),
        (
            json!({"url": "ftp://x.example.com/"}),
            "url must use http or https",
        ),
        (
            json!({"url": "https://u:p@x.example.com/"}),
            "url must not carry",
        ),
        (json!({"url": "not a url"}), "url must be an absolute"),
        (
            json!({"url": "https://x.example.com/", "event_types": []}),
            "event_types must name",
        ),
        (
            json!({"url": "https://x.example.com/", "event_types": ["send.completed", "nope"]}),
            "event_types[1] is not",
        ),
        (
            json!({"url": "https://x.example.com/", "colour": "red"}),
            "colour is not a known field",
        ),
        (json!({"url": 5}), "url has the wrong type"),
    ] {
        let (status, res) = put(&app, body.clone()).await;
        assert_eq!(status, 400, "{body}: {res}");
        let message = res["message"].as_str().unwrap();
        assert!(message.contains(field), "{body}: {message}");
    }
    let (status, _) = put(&app, json!({"url": "https://x.example.com/"})).await;
    assert_eq!(status, 201);
    let (_, list) = admin(&app, reqwest::Method::GET, "/v1/webhook-endpoints", None).await;
    let id = list["items"][0]["id"].as_str().unwrap().to_owned();
    for (body, field) in [
        (json!({}), "event_id or since is required"),
        (json!({"event_id": "x"}), "event_id must be a UUID"),
        (json!({"since": "yesterday"}), "since must be an RFC 3339"),
        (
            json!({"event_id": "01a233fa-4fde-77cb-a785-beb05f3b32ae", "since": "2020-01-01T00:00:00Z"}),
            "cannot both",
        ),
    ] {
        let (status, res) = admin(
            &app,
            reqwest::Method::POST,
            &format!("/v1/webhook-endpoints/{id}/replay"),
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body}: {res}");
        assert!(res["message"].as_str().unwrap().contains(field), "{res}");
    }
    let (status, res) = admin(
        &app,
        reqwest::Method::GET,
        "/v1/webhook-endpoints/not-a-uuid",
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(res["message"], "endpoint_id must be a UUID");
    let (status, _) = admin(
        &app,
        reqwest::Method::GET,
        &format!("/v1/webhook-endpoints/{id}/attempts?limit=0"),
        None,
    )
    .await;
    assert_eq!(status, 400);

    // A reviewer reads the feed but does not manage endpoints.
    let res = app
        .client
        .put(format!("{}/v1/webhook-endpoints", app.base))
        .bearer_auth(&app.reviewer_token)
        .json(&json!({"url": "https://y.example.com/"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = app
        .client
        .get(format!("{}/v1/webhook-endpoints", app.base))
        .bearer_auth(&app.reviewer_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}
