//! The OpenAPI document is the contract: what it states of every operation, checked against
//! the served document and against what the server answers.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, status_json};

async fn doc(app: &TestApp) -> Value {
    app.client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Every (path, method, operation) of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((path.clone(), method.clone(), op.clone()));
        }
    }
    assert!(out.len() > 20, "the document lists the API: {}", out.len());
    out
}

fn needs_token(op: &Value) -> bool {
    op["security"].as_array().is_some_and(|s| !s.is_empty())
}

/// The path with each `{parameter}` replaced by a UUID no record has.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        out.push_str("00000000-0000-4000-8000-000000000000");
        rest = &rest[rest[start..].find('}').unwrap() + start + 1..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn every_operation_that_needs_a_token_documents_401_and_403_and_answers_401() {
    let app = spawn_app().await;
    let doc = doc(&app).await;
    let mut authenticated = 0;
    for (path, method, op) in operations(&doc) {
        let url = format!("{}{}", app.base, concrete(&path));
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let res = app
            .client
            .request(method.clone(), &url)
            .send()
            .await
            .unwrap();
        let answered_401 = res.status() == 401;
        assert_eq!(
            needs_token(&op),
            answered_401,
            "{method} {path}: documented security and the answer without a token disagree"
        );
        if !needs_token(&op) {
            continue;
        }
        authenticated += 1;
        let www = res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        let (_, body) = status_json(res).await;
        assert_eq!(body["error"], "unauthorized", "{method} {path}");
        assert_eq!(www, "Bearer");
        for status in ["401", "403", "503"] {
            assert!(
                op["responses"][status].is_object(),
                "{method} {path} does not document {status}"
            );
        }
        assert!(
            op["responses"]["401"]["headers"]["WWW-Authenticate"].is_object(),
            "{method} {path}: 401 without its WWW-Authenticate header"
        );
    }
    assert!(authenticated >= 20, "{authenticated}");
}

#[tokio::test]
async fn every_error_response_in_the_document_is_the_one_error_schema() {
    let app = spawn_app().await;
    let doc = doc(&app).await;
    assert!(doc["components"]["schemas"]["ErrorBody"]["properties"]["error"].is_object());
    let mut errors = 0;
    for (path, method, op) in operations(&doc) {
        for (status, response) in op["responses"].as_object().unwrap() {
            if !(status.starts_with('4') || status.starts_with('5')) {
                continue;
            }
            errors += 1;
            let content = response["content"].as_object().unwrap_or_else(|| {
                panic!("{method} {path} {status}: no content");
            });
            assert_eq!(
                content.keys().collect::<Vec<_>>(),
                ["application/json"],
                "{method} {path} {status}"
            );
            assert_eq!(
                content["application/json"]["schema"],
                json!({"$ref": "#/components/schemas/ErrorBody"}),
                "{method} {path} {status}"
            );
        }
        // What the shared layers answer, on every operation they apply to.
        let has_body = op["requestBody"].is_object();
        for status in ["408", "413", "415"] {
            assert_eq!(
                op["responses"][status].is_object(),
                has_body,
                "{method} {path} {status}"
            );
        }
        if matches!(method.as_str(), "post" | "put" | "patch") {
            for status in ["409", "422"] {
                assert!(
                    op["responses"][status].is_object(),
                    "{method} {path} {status}"
                );
            }
            let key = op["parameters"]
                .as_array()
                .and_then(|p| p.iter().find(|p| p["name"] == "Idempotency-Key"));
            assert_eq!(
                key.map(|k| k["in"].clone()),
                Some(json!("header")),
                "{method} {path}"
            );
        }
    }
    assert!(errors > 100, "{errors}");
}

#[tokio::test]
async fn bad_query_and_path_parameters_answer_the_json_error_naming_them() {
    let app = spawn_app().await;
    let id = crate::helpers::EXAMPLE_ID;
    let cases = [
        (
            reqwest::Method::PUT,
            format!("/v1/referral-requests/{id}/approval?dry_run=abc"),
            "dry_run",
        ),
        (
            reqwest::Method::PUT,
            "/v1/patient-plans?dry_run=".to_owned(),
            "dry_run",
        ),
        (
            reqwest::Method::GET,
            "/v1/payors?unmapped=1".to_owned(),
            "unmapped",
        ),
        (
            reqwest::Method::GET,
            format!("/v1/patients/{id}/patient-plans?include_archived=yes"),
            "include_archived",
        ),
        (
            reqwest::Method::GET,
            "/v1/audit/access?limit=many".to_owned(),
            "limit",
        ),
        (
            reqwest::Method::GET,
            "/v1/referral-requests?cursor=abc".to_owned(),
            "cursor",
        ),
        (
            reqwest::Method::GET,
            "/v1/referral-requests/%FF%FE".to_owned(),
            "request_id",
        ),
        (
            reqwest::Method::GET,
            format!("/v1/referral-requests/{id}/files/%C3%28"),
            "file_id",
        ),
    ];
    for (method, path, param) in cases {
        let res = app
            .client
            .request(method.clone(), format!("{}{path}", app.base))
            .bearer_auth(&app.admin_token)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        let (status, body) = status_json(res).await;
        assert_eq!(status, 400, "{method} {path}: {body}");
        assert!(ct.starts_with("application/json"), "{method} {path}: {ct}");
        assert_eq!(body["error"], "invalid_request", "{method} {path}");
        assert_eq!(body["details"][0]["path"], param, "{method} {path}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.starts_with(param), "{method} {path}: {message}");
        for value in ["abc", "many", "yes"] {
            assert!(!message.contains(value), "{message} quotes the value");
        }
    }
}

#[tokio::test]
async fn the_document_states_what_the_bodies_must_be() {
    let app = spawn_app().await;
    let doc = doc(&app).await;
    let schemas = &doc["components"]["schemas"];
    let paths = &doc["paths"];

    // Cancel: reason_code required, one of the seven codes.
    let cancel = &schemas["CancelRequest"];
    assert!(
        cancel["required"]
            .as_array()
            .unwrap()
            .contains(&json!("reason_code"))
    );
    assert_eq!(
        cancel["properties"]["reason_code"]["$ref"],
        "#/components/schemas/CancelReason"
    );
    assert_eq!(schemas["CancelReason"]["enum"].as_array().unwrap().len(), 7);
    // PATCH: source_id required (null clears it), 1 to 255 characters; nothing else.
    let patch = &schemas["PatientPlanPatch"];
    assert_eq!(patch["required"], json!(["source_id"]));
    assert_eq!(patch["properties"]["source_id"]["maxLength"], 255);
    assert_eq!(patch["additionalProperties"], false);
    // Resume: an optional body that is an object, never null.
    let resume =
        &paths["/v1/referral-requests/{request_id}/approval/resume"]["post"]["requestBody"];
    assert_ne!(resume["required"], true);
    assert_eq!(
        resume["content"]["application/json"]["schema"],
        json!({"$ref": "#/components/schemas/ApprovalInput"})
    );
    // Names are not blank; time zones are the IANA names.
    for (schema, field) in [
        ("AgencyDoc", "name"),
        ("ClientDoc", "first_name"),
        ("PatientPutDoc", "last_name"),
        ("DenyRequest", "reason"),
    ] {
        assert!(
            schemas[schema]["properties"][field]["pattern"].is_string(),
            "{schema}.{field}"
        );
    }
    let zones = schemas["TimeZoneName"]["enum"].as_array().unwrap();
    assert!(zones.contains(&json!("America/Chicago")) && !zones.contains(&json!("EST")));
    // Flags are booleans; the list's limit is bounded.
    let list = paths["/v1/referral-requests"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let limit = list.iter().find(|p| p["name"] == "limit").unwrap();
    assert_eq!(
        (
            limit["schema"]["minimum"].clone(),
            limit["schema"]["maximum"].clone()
        ),
        (json!(1), json!(200))
    );
    let payors = paths["/v1/payors"]["get"]["parameters"].as_array().unwrap();
    assert_eq!(payors[0]["schema"]["type"], "boolean");

    // And the server refuses what the document does not allow.
    let id = crate::helpers::EXAMPLE_ID;
    let post = |path: String, body: &'static str| {
        app.client
            .post(format!("{}{path}", app.base))
            .bearer_auth(&app.reviewer_token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let (status, body) = status_json(
        post(format!("/v1/referral-requests/{id}/cancel"), "{}")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["details"][0]["path"].clone()),
        (400, json!("reason_code"))
    );
    let (status, body) = status_json(
        post(
            format!("/v1/referral-requests/{id}/approval/resume"),
            "null",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid_request"))
    );
    let (status, body) = status_json(
        app.client
            .patch(format!("{}/v1/patient-plans/{id}", app.base))
            .bearer_auth(&app.reviewer_token)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["details"][0]["path"].clone()),
        (400, json!("source_id"))
    );
}

#[tokio::test]
async fn a_number_with_a_zero_fraction_is_the_integer() {
    let app = spawn_app().await;
    let res = app
        .client
        .put(format!("{}/v1/payors", app.base))
        .bearer_auth(&app.reviewer_token)
        .header("content-type", "application/json")
        .body(r#"{"name": "Aetna", "accloud_funder_id": 12.0}"#)
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(res).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["accloud_funder_id"], 12);
}

#[tokio::test]
async fn a_method_the_route_does_not_have_is_405_even_with_an_idempotency_key() {
    let app = spawn_app().await;
    for body in ["{}", r#"{"other": 1}"#] {
        let res = app
            .client
            .patch(format!("{}/v1/payors", app.base))
            .bearer_auth(&app.reviewer_token)
            .header("idempotency-key", "same-key")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 405);
    }
}

#[tokio::test]
async fn cursors_are_of_the_documented_format() {
    let app = spawn_app().await;
    for n in 0..3 {
        let mut payload = crate::helpers::example();
        payload["request_id"] = json!(uuid::Uuid::new_v4().to_string());
        payload["client"]["id"] = json!(9000 + n);
        let res = app.post_referral(&payload).await;
        assert_eq!(res.status(), 200);
    }
    let page = app.get_json("/v1/referral-requests?limit=1").await;
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (micros, id) = cursor.split_once('_').unwrap();
    assert!(
        micros.len() <= 16 && micros.bytes().all(|b| b.is_ascii_digit()),
        "{cursor}"
    );
    assert_eq!(
        uuid::Uuid::parse_str(id).unwrap().hyphenated().to_string(),
        id
    );
    // Any position of that format is one the server reads.
    let page = app
        .get_json("/v1/referral-requests?cursor=1_00000000-0000-0000-0000-000000000000")
        .await;
    assert_eq!(page["items"], json!([]));
    let page = app
        .get_json(&format!(
            "/v1/referral-requests?cursor=9999999999999999_{}",
            uuid::Uuid::nil()
        ))
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
}
