//! Media types and JSON strictness, the same on every route that reads a body.

use serde_json::{Value, json};

use crate::helpers::{EXAMPLE_ID, TestApp, example, spawn_app, status_json};

const SOME_ID: &str = "7b0a4a52-1c44-4f4b-9a55-0d1f3c6a2b10";

/// Every route that reads JSON: (method, path, whether the intake token is needed).
fn json_routes() -> Vec<(&'static str, String, bool)> {
    let r = format!("/v1/referral-requests/{SOME_ID}");
    vec![
        ("POST", "/referral_request".into(), true),
        ("POST", format!("{r}/approval"), false),
        ("PUT", format!("{r}/approval"), false),
        ("POST", format!("{r}/approval/resume"), false),
        ("POST", format!("{r}/cancel"), false),
        ("POST", format!("{r}/deny"), false),
        ("PUT", "/v1/patients".into(), false),
        ("PUT", "/v1/patient-plans".into(), false),
        ("PATCH", format!("/v1/patient-plans/{SOME_ID}"), false),
        ("PUT", "/v1/payors".into(), false),
    ]
}

async fn send_raw(
    app: &TestApp,
    method: &str,
    path: &str,
    intake: bool,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let token = if intake {
        &app.intake_token
    } else {
        &app.reviewer_token
    };
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(token);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    status_json(req.body(body).send().await.unwrap()).await
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415_naming_the_expected_type_on_every_route() {
    let app = spawn_app().await;
    let doc = serde_json::to_vec(&example()).unwrap();
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[("content-type", "text/plain")],
            "Content-Type must be application/json",
        ),
        (
            &[("content-type", "application/x-www-form-urlencoded")],
            "Content-Type must be application/json",
        ),
        (
            &[("content-type", "multipart/form-data; boundary=x")],
            "Content-Type must be application/json",
        ),
        (&[], "Content-Type must be application/json"),
        (
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            "Content-Encoding is not supported: send the body uncompressed",
        ),
    ];
    for (method, path, intake) in json_routes() {
        for (headers, message) in cases {
            let (s, b) = send_raw(&app, method, &path, intake, headers, doc.clone()).await;
            assert_eq!(s, 415, "{method} {path} {headers:?}: {b}");
            assert_eq!(b["error"], "unsupported_media_type", "{b}");
            assert_eq!(b["message"], message, "{method} {path}");
        }
    }
    // Nothing was recorded from any of them.
    assert_eq!(
        app.get(&format!("/v1/referral-requests/{EXAMPLE_ID}"))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn no_body_at_all_still_means_no_terms_where_the_body_is_optional() {
    let app = spawn_app().await;
    let r = format!("/v1/referral-requests/{SOME_ID}");
    for (method, path) in [
        ("POST", format!("{r}/approval/resume")),
        ("POST", format!("{r}/approval")),
        ("PUT", format!("{r}/approval")),
    ] {
        // Past the body: the referral is looked up (and is not there).
        let (s, b) = send_raw(&app, method, &path, false, &[], Vec::new()).await;
        assert_eq!(s, 404, "{method} {path}: {b}");
        // A body must say it is JSON.
        let (s, b) = send_raw(&app, method, &path, false, &[], b"{}".to_vec()).await;
        assert_eq!(s, 415, "{method} {path}: {b}");
        let text = [("content-type", "text/plain")];
        let (s, _) = send_raw(&app, method, &path, false, &text, b"{}".to_vec()).await;
        assert_eq!(s, 415, "{method} {path}");
    }
}

#[tokio::test]
async fn duplicate_keys_are_400_naming_the_key_on_every_route() {
    let app = spawn_app().await;
    let json = [("content-type", "application/json")];
    for (method, path, intake) in json_routes() {
        for (body, key) in [
            (r#"{"reason":"a","reason":"b"}"#, "reason"),
            (r#"{"x":{"k":1,"k":2}}"#, "x.k"),
        ] {
            let (s, b) = send_raw(&app, method, &path, intake, &json, body.into()).await;
            assert_eq!(s, 400, "{method} {path} {body}: {b}");
            assert_eq!(
                b["message"],
                format!("{key} is a duplicate key"),
                "{method} {path}"
            );
        }
    }
    // In a Referral Request, inside a section and inside a file.
    let text = serde_json::to_string(&example()).unwrap();
    let twice = text.replacen("\"agency\":{", "\"agency\":{\"name\":\"A\",", 1);
    let (s, b) = status_json(app.post_referral_bytes(twice.into_bytes()).await).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["message"], "agency.name is a duplicate key");
    let mut doc = example();
    doc["files"] = json!([{"file_name": "a.pdf", "file_value": "QUJD"}]);
    let text = serde_json::to_string(&doc).unwrap().replace(
        "\"file_name\":\"a.pdf\"",
        "\"file_name\":\"a.pdf\",\"file_name\":\"b.pdf\"",
    );
    let (s, b) = status_json(app.post_referral_bytes(text.into_bytes()).await).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["message"], "files[0].file_name is a duplicate key");
}

#[tokio::test]
async fn too_deep_nesting_says_it_is_too_deep() {
    let app = spawn_app().await;
    let json = [("content-type", "application/json")];
    let deep = |key: &str, n: usize| format!("{{\"{key}\":{}{}}}", "[".repeat(n), "]".repeat(n));
    for (method, path, intake) in json_routes() {
        for n in [100, 5000] {
            let body = deep("files", n).into_bytes();
            let (s, b) = send_raw(&app, method, &path, intake, &json, body).await;
            assert_eq!(s, 400, "{method} {path}: {b}");
            let message = b["message"].as_str().unwrap();
            assert!(
                message.contains("nested too deeply"),
                "{method} {path}: {message}"
            );
            assert!(!message.contains("shape"), "{message}");
        }
    }
}

#[tokio::test]
async fn wrong_types_name_the_field_and_never_the_value() {
    let app = spawn_app().await;
    let json = [("content-type", "application/json")];
    let r = format!("/v1/referral-requests/{SOME_ID}");
    for (path, body, field) in [
        (
            format!("{r}/approval"),
            json!({"service": {"funder_id": "SECRET-1"}}),
            "service.funder_id",
        ),
        (
            format!("{r}/approval"),
            json!({"colour": "SECRET-2"}),
            "colour",
        ),
        (
            format!("{r}/deny"),
            json!({"reason": ["SECRET-3"]}),
            "reason",
        ),
        (
            format!("{r}/cancel"),
            json!({"comment": {"SECRET-4": 1}}),
            "comment",
        ),
    ] {
        let body = serde_json::to_vec(&body).unwrap();
        let (s, b) = send_raw(&app, "POST", &path, false, &json, body).await;
        assert_eq!(s, 400, "{path}: {b}");
        assert_eq!(b["details"][0]["path"], field, "{b}");
        assert!(!b.to_string().contains("SECRET"), "{b}");
    }
}
