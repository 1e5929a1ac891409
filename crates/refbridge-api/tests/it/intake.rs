use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::helpers::{EXAMPLE_ID, example, spawn_app, status_json};

#[tokio::test]
async fn example_payload_is_accepted_and_every_value_parsed() {
    let app = spawn_app().await;
    let (status, body) = status_json(app.post_referral(&example()).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["request_id"], EXAMPLE_ID);
    assert_eq!(body["status"], "received");
    assert_eq!(
        body["warnings"],
        json!([{"field": "Physician NPI", "code": "invalid_npi", "message": "must be 10 digits"}])
    );

    let d = app
        .get_json(&format!("/v1/referral-requests/{EXAMPLE_ID}"))
        .await;
    assert_eq!(d["agency"]["name"], "Gem City Home Care");
    assert_eq!(d["agency"]["branch_id"], 1050);
    assert_eq!(d["agency"]["timezone"], "America/Denver");
    assert_eq!(
        d["agency"]["alayamarket_org_id"],
        "91c79089-a3ca-4cca-acf4-52fc1f1302c6"
    );
    assert_eq!(d["client"]["id"], 1094);
    assert_eq!(d["client"]["birthday"], "1998-05-07");
    assert_eq!(d["form"]["form_name"], "CSI New Referral Request");
    assert_eq!(d["patient"]["matched_by"], "created");

    let r = &d["referral"];
    assert_eq!(
        r["service"],
        json!({"requested": "PT", "start_date": "2023-05-31", "end_date": "2023-07-31",
               "frequency": "Twice a week", "authorizations": "10 visits total"})
    );
    assert_eq!(
        r["physician"],
        json!({"first_name": "Jeremy", "last_name": "Smith", "npi": "12234567",
               "phone": "555-444-1111",
               "order_link": "https://csi.uat.alayacare.com/api/v1/files/form/submissions/1094/14/5f2bfe25-d273-431d-8d0d-c46de8448069/1pixel.png"})
    );
    assert_eq!(
        r["diagnoses"],
        json!([
            {"code": "A000", "description": "Cholera due to Vibrio cholerae 01, biovar cholerae",
             "treatment": "None", "start_date": "2023-05-11", "end_date": null,
             "notes": "Condition is ongoing"},
            {"code": "E0800",
             "description": "Diabetes mellitus due to underlying condition with hyperosmolarity without nonketotic hyperglycemic-hyperosmolar coma (NKHHC)",
             "treatment": null, "start_date": null, "end_date": null, "notes": null}
        ])
    );
    assert_eq!(
        r["primary_insurance"],
        json!({"name": "ABC Insurers", "phone": "555-111-1111", "group": "AB Insurers grop",
               "subscriber_id": "1111111", "subscriber_name": "William Smith",
               "subscriber_birthday": "2003-05-23"})
    );
    assert_eq!(r["secondary_insurance_needed"], true);
    assert_eq!(
        r["secondary_insurance"],
        json!({"name": "XYZ Insurers", "phone": "555-222-2222", "group": "XYZ Insurers group",
               "subscriber_id": "2222222", "subscriber_name": "Amy Smith",
               "subscriber_birthday": "2004-05-13"})
    );
    assert_eq!(
        r["demographics"],
        json!({"first_name": null, "last_name": null, "phone_main": "555-123-4567",
               "email": "janesmithers@example.com", "birthday": "1998-05-07", "gender": "F",
               "address": "1700 Lyons Road", "city": "Dayton", "state": "OH", "zip": "45458",
               "country": null})
    );
    assert_eq!(r["unknown_fields"], json!([]));
    assert_eq!(d["fields"].as_array().unwrap().len(), 32);

    let files = d["files"].as_array().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["name"], "physician_order_form.pdf");
    // The bytes are a PNG whatever the name says: the type comes from the magic bytes.
    assert_eq!(files[0]["media_type"], "image/png");
    let original = STANDARD
        .decode(example()["files"][0]["file_value"].as_str().unwrap())
        .unwrap();
    assert_eq!(files[0]["size"], original.len());
}

fn renumbered_and_shuffled(mut doc: Value) -> Value {
    let fields = doc["form_data"]["fields"].as_array_mut().unwrap();
    for (i, f) in fields.iter_mut().enumerate() {
        f["field_id"] = json!(90_000 + (i * 7919) % 1000);
    }
    fields.reverse();
    let n = fields.len();
    fields.swap(0, n / 2);
    doc
}

#[tokio::test]
async fn renumbered_field_ids_and_shuffled_order_parse_identically() {
    let app = spawn_app().await;
    assert_eq!(app.post_referral(&example()).await.status(), 200);
    let mut other = renumbered_and_shuffled(example());
    let other_id = "5b1f6a52-3c1e-4a51-9d4a-0c2a1f0f7e11";
    other["request_id"] = json!(other_id);
    assert_eq!(app.post_referral(&other).await.status(), 200);

    let a = app
        .get_json(&format!("/v1/referral-requests/{EXAMPLE_ID}"))
        .await;
    let b = app
        .get_json(&format!("/v1/referral-requests/{other_id}"))
        .await;
    assert_eq!(a["referral"], b["referral"]);
    assert_eq!(a["warnings"], b["warnings"]);
    assert_ne!(a["fields"], b["fields"], "the raw fields really differ");
    // Same agency client: same patient.
    assert_eq!(a["patient"]["id"], b["patient"]["id"]);
    assert_eq!(b["patient"]["matched_by"], "agency_client");
}

#[tokio::test]
async fn same_body_again_replays_and_stores_nothing_twice() {
    let app = spawn_app().await;
    let (s1, b1) = status_json(app.post_referral(&example()).await).await;
    // Key order and whitespace differ; the document is the same.
    let pretty = serde_json::to_vec_pretty(&example()).unwrap();
    let (s2, b2) = status_json(app.post_referral_bytes(pretty).await).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(b1, b2);

    let list = app.get_json("/v1/referral-requests").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let d = app
        .get_json(&format!("/v1/referral-requests/{EXAMPLE_ID}"))
        .await;
    assert_eq!(d["files"].as_array().unwrap().len(), 1);
    assert_eq!(d["history"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn different_body_under_a_known_request_id_is_409_naming_it() {
    let app = spawn_app().await;
    assert_eq!(app.post_referral(&example()).await.status(), 200);
    let mut changed = example();
    changed["client"]["city"] = json!("Kettering");
    let (status, body) = status_json(app.post_referral(&changed).await).await;
    assert_eq!(status, 409);
    assert_eq!(body["error"], "conflict");
    assert_eq!(
        body["message"],
        format!("request_id {EXAMPLE_ID} was already received with a different body")
    );
    let d = app
        .get_json(&format!("/v1/referral-requests/{EXAMPLE_ID}"))
        .await;
    assert_eq!(d["client"]["city"], "Dayton", "the first document is kept");
}

#[tokio::test]
async fn concurrent_identical_posts_record_one_referral() {
    let app = spawn_app().await;
    let body = example();
    let results = futures_join(&app, &body, 8).await;
    assert!(results.iter().all(|s| *s == 200), "{results:?}");
    let list = app.get_json("/v1/referral-requests").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

async fn futures_join(app: &crate::helpers::TestApp, body: &Value, n: usize) -> Vec<u16> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let client = app.client.clone();
        let url = format!("{}/referral_request", app.base);
        let token = app.intake_token.clone();
        let body = body.clone();
        set.spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out
}

#[tokio::test]
async fn every_violation_is_reported_at_once_with_its_path() {
    let app = spawn_app().await;
    let mut doc = example();
    doc.as_object_mut().unwrap().remove("request_id");
    doc["agency"]["timezone"] = json!("Mountain Time");
    doc["agency"].as_object_mut().unwrap().remove("host");
    doc["client"]["first_name"] = json!("");
    doc["client"]["timezone"] = json!("-07:00");
    doc["files"][0].as_object_mut().unwrap().remove("file_name");
    let (status, body) = status_json(app.post_referral(&doc).await).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(
        body["details"],
        json!([
            {"path": "request_id", "problem": "is required"},
            {"path": "agency.host", "problem": "is required"},
            {"path": "agency.timezone", "problem": "must be an IANA time zone name such as America/Chicago"},
            {"path": "client.first_name", "problem": "must not be empty"},
            {"path": "client.timezone", "problem": "must be an IANA time zone name such as America/Chicago"},
            {"path": "files[0].file_name", "problem": "is required"},
        ])
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("6 problems: request_id is required;")
    );
    let list = app.get_json("/v1/referral-requests").await;
    assert_eq!(list["items"], json!([]), "nothing is stored");
}

#[tokio::test]
async fn each_required_field_is_named_when_missing() {
    let app = spawn_app().await;
    let cases = [
        ("agency", "name"),
        ("agency", "host"),
        ("agency", "branch_id"),
        ("agency", "alayamarket_org_id"),
        ("agency", "timezone"),
        ("client", "id"),
        ("client", "first_name"),
        ("client", "last_name"),
        ("client", "timezone"),
    ];
    for (section, key) in cases {
        let mut doc = example();
        doc[section].as_object_mut().unwrap().remove(key);
        let (status, body) = status_json(app.post_referral(&doc).await).await;
        assert_eq!(status, 400, "{section}.{key}");
        assert_eq!(body["message"], format!("{section}.{key} is required"));
    }
    let mut doc = example();
    doc.as_object_mut().unwrap().remove("form_data");
    let (status, body) = status_json(app.post_referral(&doc).await).await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (400, "form_data is required")
    );
}

#[tokio::test]
async fn wrong_types_and_formats_are_400_without_echoing_values() {
    let app = spawn_app().await;
    let mut doc = example();
    doc["request_id"] = json!("not-a-uuid");
    doc["agency"]["name"] = json!(1);
    doc["agency"]["alayamarket_org_id"] = json!("gem-city");
    doc["client"]["id"] = json!("1094x");
    doc["client"]["birthday"] = json!("May 7th 1998");
    let (status, body) = status_json(app.post_referral(&doc).await).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["details"],
        json!([
            {"path": "request_id", "problem": "must be a UUID"},
            {"path": "agency.name", "problem": "must be a string"},
            {"path": "agency.alayamarket_org_id", "problem": "must be a UUID"},
            {"path": "client.id", "problem": "must be an integer"},
            {"path": "client.birthday", "problem": "must be a date in the form YYYY-MM-DD"},
        ])
    );
    let text = body.to_string();
    assert!(
        !text.contains("May 7th") && !text.contains("gem-city"),
        "{text}"
    );
}

#[tokio::test]
async fn malformed_json_is_400_invalid_json() {
    let app = spawn_app().await;
    let (status, body) =
        status_json(app.post_referral_bytes(b"{\"request_id\": ".to_vec()).await).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_json");
    assert_eq!(
        body["message"],
        "the body ends before the JSON document does"
    );

    let (status, body) = status_json(app.post_referral_bytes(b"[1,2]".to_vec()).await).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_json");

    let mut doc = example();
    doc["files"] = json!("Jane Smithers");
    let (status, body) = status_json(app.post_referral(&doc).await).await;
    assert_eq!(status, 400);
    assert!(!body.to_string().contains("Jane"), "{body}");
}

#[tokio::test]
async fn undecodable_base64_is_400_naming_the_file_by_index_not_by_name() {
    let app = spawn_app().await;
    let mut doc = example();
    doc["files"] = json!([
        {"file_name": "ok.txt", "file_value": STANDARD.encode("fine")},
        {"file_name": "order.pdf", "file_value": "this is *not* base64!"}
    ]);
    let (status, body) = status_json(app.post_referral(&doc).await).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");
    // The file is named by its index: its name is the agency's data.
    assert_eq!(body["message"], "files[1].file_value is not valid base64");
    assert!(!body.to_string().contains("order.pdf"), "{body}");
    assert_eq!(
        app.get(&format!("/v1/referral-requests/{EXAMPLE_ID}"))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn base64_without_padding_and_with_line_breaks_is_accepted() {
    let app = spawn_app().await;
    let bytes: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
    let enc = STANDARD.encode(&bytes);
    let wrapped: String = enc
        .trim_end_matches('=')
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
        .collect();
    let mut doc = example();
    doc["files"] = json!([{"file_name": "a.bin", "file_value": wrapped}]);
    assert_eq!(app.post_referral(&doc).await.status(), 200);
    let d = app
        .get_json(&format!("/v1/referral-requests/{EXAMPLE_ID}"))
        .await;
    let href = d["files"][0]["href"].as_str().unwrap().to_owned();
    let got = app.get(&href).await.bytes().await.unwrap();
    assert_eq!(got.as_ref(), bytes.as_slice());
}

/// PHP's `json_encode` sends every `/` as `\/`: the document means the same, and the file's
/// bytes are the same.
#[tokio::test]
async fn slashes_escaped_everywhere_change_nothing() {
    let app = spawn_app().await;
    let bytes: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
    let mut doc = example();
    doc["files"] = json!([{"file_name": "scan/1.bin", "file_value": STANDARD.encode(&bytes)}]);
    let text = serde_json::to_string(&doc).unwrap();
    assert!(text.contains('/'));
    let escaped = text.replace('/', "\\/");
    let res = app.post_referral_bytes(escaped.into_bytes()).await;
    assert_eq!(res.status(), 200);
    let d = app
        .get_json(&format!("/v1/referral-requests/{EXAMPLE_ID}"))
        .await;
    assert_eq!(d["files"][0]["name"], "scan/1.bin");
    let href = d["files"][0]["href"].as_str().unwrap().to_owned();
    let got = app.get(&href).await.bytes().await.unwrap();
    assert_eq!(got.as_ref(), bytes.as_slice());
    // The same document unescaped is a replay, not a conflict.
    assert_eq!(app.post_referral(&doc).await.status(), 200);
}

/// A `\u` escape of a character outside base64's alphabet is bad base64, named.
#[tokio::test]
async fn an_escaped_non_base64_character_is_400_naming_the_file_by_index() {
    let app = spawn_app().await;
    let mut doc = example();
    doc["files"] = json!([{"file_name": "a.bin", "file_value": "QUJD@@"}]);
    let text = serde_json::to_string(&doc)
        .unwrap()
        .replace("@@", "\\u00e9A");
    let res = app.post_referral_bytes(text.into_bytes()).await;
    let (s, b) = status_json(res).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["message"], "files[0].file_value is not valid base64");
    assert!(!b.to_string().contains("a.bin"), "{b}");
}

#[tokio::test]
async fn a_file_of_50_mb_plus_one_byte_is_413_naming_the_file_by_index() {
    let app = spawn_app().await;
    let limit = 50 * 1024 * 1024;
    let mut doc = example();
    doc["files"] =
        json!([{"file_name": "scan.tiff", "file_value": STANDARD.encode(vec![7u8; limit + 1])}]);
    let (status, body) = status_json(app.post_referral(&doc).await).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"], "payload_too_large");
    assert_eq!(
        body["message"],
        format!("files[0] is larger than {limit} bytes once decoded")
    );
    assert!(!body.to_string().contains("scan.tiff"), "{body}");

    // Exactly 50 MB is fine.
    doc["files"] =
        json!([{"file_name": "scan.tiff", "file_value": STANDARD.encode(vec![7u8; limit])}]);
    let (status, body) = status_json(app.post_referral(&doc).await).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_body_over_the_configured_limit_is_413() {
    let app = crate::helpers::spawn_app_with(refbridge_api::ApiConfig {
        max_body_bytes: 20_000,
        max_file_bytes: 10_000,
        ..refbridge_api::ApiConfig::default()
    })
    .await;
    let mut doc = example();
    doc["files"] =
        json!([{"file_name": "big.bin", "file_value": STANDARD.encode(vec![1u8; 30_000])}]);
    let (status, body) = status_json(app.post_referral(&doc).await).await;
    assert_eq!(status, 413);
    assert_eq!(body["message"], "request body is larger than 20000 bytes");
}

#[tokio::test]
async fn the_same_file_twice_is_stored_once() {
    let app = spawn_app().await;
    let mut doc = example();
    let v = STANDARD.encode("same bytes");
    doc["files"] =
        json!([{"file_name": "a.txt", "file_value": v}, {"file_name": "b.txt", "file_value": v}]);
    assert_eq!(app.post_referral(&doc).await.status(), 200);
    let d = app
        .get_json(&format!("/v1/referral-requests/{EXAMPLE_ID}"))
        .await;
    let files = d["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["sha256"], files[1]["sha256"]);
    let stored = walk_files(&app.files.local().root().join("sha256"));
    assert_eq!(stored, 1);
}

fn walk_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() { walk_files(&p) } else { 1 }
        })
        .sum()
}

#[tokio::test]
async fn unknown_form_fields_and_top_level_keys_are_kept() {
    let app = spawn_app().await;
    let mut doc = example();
    doc["form_data"]["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "field_id": 999, "field_type": "text", "field_label": "Preferred visit time",
            "field_value": "Mornings", "type": null
        }));
    doc["connector_version"] = json!("2.4.1");
    let (status, body) = status_json(app.post_referral(&doc).await).await;
    assert_eq!(status, 200, "{body}");
    let d = app
        .get_json(&format!("/v1/referral-requests/{EXAMPLE_ID}"))
        .await;
    assert_eq!(
        d["referral"]["unknown_fields"],
        json!([{"field_id": 999, "field_tag": null, "field_label": "Preferred visit time",
                "field_type": "text", "field_value": "Mornings"}])
    );
    assert_eq!(d["extra"], json!({"connector_version": "2.4.1"}));
}

#[tokio::test]
async fn values_that_do_not_parse_become_warnings_not_rejections() {
    let app = spawn_app().await;
    let mut doc = example();
    for f in doc["form_data"]["fields"].as_array_mut().unwrap() {
        match f["field_label"].as_str().unwrap() {
            "Service start date" => f["field_value"] = json!("next Tuesday"),
            "Physician NPI" => f["field_value"] = json!("1234567893"),
            _ => {}
        }
    }
    let (status, body) = status_json(app.post_referral(&doc).await).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["warnings"],
        json!([
            {"field": "Service start date", "code": "invalid_date", "message": "is not a date (expected YYYY-MM-DD)"},
            {"field": "Service start date", "code": "missing", "message": "no valid service start date"},
        ])
    );
}

#[tokio::test]
async fn intake_needs_a_valid_token_with_the_intake_role() {
    let app = spawn_app().await;
    let url = format!("{}/referral_request", app.base);
    let res = app.client.post(&url).json(&example()).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    let (_, body) = status_json(res).await;
    assert_eq!(
        body,
        json!({"error": "unauthorized", "message": "missing or invalid bearer token"})
    );

    let res = app
        .client
        .post(&url)
        .bearer_auth("rbt_forged")
        .json(&example())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    let res = app
        .client
        .post(&url)
        .bearer_auth(&app.reviewer_token)
        .json(&example())
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(res).await;
    assert_eq!(status, 403);
    assert_eq!(
        body["message"],
        "this token's role may not do this (needs intake)"
    );

    let res = app
        .client
        .post(&url)
        .bearer_auth(&app.admin_token)
        .json(&example())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "admin may do everything");
}

#[tokio::test]
async fn patients_are_matched_by_agency_client_then_by_person() {
    let app = spawn_app().await;
    assert_eq!(app.post_referral(&example()).await.status(), 200);

    // Another agency, same person (name spelled differently, same birthday): same patient.
    let mut other = example();
    other["request_id"] = json!("11111111-2222-4333-8444-555555555555");
    other["agency"]["alayamarket_org_id"] = json!("0d6b1c2e-1111-4222-8333-444455556666");
    other["client"]["id"] = json!(77);
    other["client"]["first_name"] = json!("  JANE ");
    assert_eq!(app.post_referral(&other).await.status(), 200);

    // Same name, another birthday: another patient.
    let mut third = example();
    third["request_id"] = json!("99999999-2222-4333-8444-555555555555");
    third["client"]["id"] = json!(78);
    third["client"]["birthday"] = json!("1990-01-01");
    assert_eq!(app.post_referral(&third).await.status(), 200);

    let a = app
        .get_json(&format!("/v1/referral-requests/{EXAMPLE_ID}"))
        .await;
    let b = app
        .get_json("/v1/referral-requests/11111111-2222-4333-8444-555555555555")
        .await;
    let c = app
        .get_json("/v1/referral-requests/99999999-2222-4333-8444-555555555555")
        .await;
    assert_eq!(b["patient"]["matched_by"], "person");
    assert_eq!(a["patient"]["id"], b["patient"]["id"]);
    assert_eq!(c["patient"]["matched_by"], "created");
    assert_ne!(a["patient"]["id"], c["patient"]["id"]);
}

/// A hostile name: path separators, `..`, NUL, control characters, 300 characters.
fn hostile_name() -> String {
    format!("../..\\etc/pa\0ss\u{7}wd\r\n{}.pdf", "é".repeat(280))
}

#[tokio::test]
async fn any_file_name_is_accepted_kept_for_display_and_downloaded_under_rfc_6266() {
    let app = spawn_app().await;
    let mut doc = example();
    doc["files"] =
        json!([{"file_name": hostile_name(), "file_value": STANDARD.encode("%PDF-1.4 x")}]);
    let (s, b) = status_json(app.post_referral(&doc).await).await;
    assert_eq!(s, 200, "{b}");
    let d = app
        .get_json(&format!("/v1/referral-requests/{EXAMPLE_ID}"))
        .await;
    let shown = d["files"][0]["name"].as_str().unwrap();
    // Kept as given but for the control characters (NUL cannot be stored or shown).
    let expected = hostile_name().replace(['\0', '\u{7}', '\r', '\n'], "\u{FFFD}");
    assert_eq!(shown, expected);
    let res = app.get(d["files"][0]["href"].as_str().unwrap()).await;
    assert_eq!(res.status(), 200);
    let disposition = res.headers()["content-disposition"].to_str().unwrap();
    let fallback: String = expected
        .chars()
        .map(|c| match c {
            '\\' => '_',
            c if c.is_ascii_graphic() => c,
            _ => '_',
        })
        .collect();
    assert!(
        disposition.starts_with(&format!(
            "attachment; filename=\"{fallback}\"; filename*=UTF-8''..%2F..%5Cetc%2Fpa%EF%BF%BDss"
        )),
        "{disposition}"
    );
    assert!(disposition.ends_with("%C3%A9%C3%A9.pdf"), "{disposition}");
}

#[tokio::test]
async fn an_empty_or_overlong_file_name_is_400_naming_the_file() {
    let app = spawn_app().await;
    for (name, problem) in [
        ("   ".to_owned(), "is required"),
        ("n".repeat(1001), "must be at most 1000 characters"),
    ] {
        let mut doc = example();
        doc["files"] = json!([{"file_name": name, "file_value": STANDARD.encode("x")}]);
        let (s, b) = status_json(app.post_referral(&doc).await).await;
        assert_eq!(s, 400, "{b}");
        assert_eq!(b["message"], format!("files[0].file_name {problem}"));
        assert!(!b.to_string().contains("nnnnn"), "{b}");
    }
    let mut doc = example();
    doc["files"] = json!([{"file_name": "n".repeat(1000), "file_value": STANDARD.encode("x")}]);
    assert_eq!(app.post_referral(&doc).await.status(), 200);
}

#[tokio::test]
async fn an_empty_file_is_accepted_with_a_warning() {
    let app = spawn_app().await;
    let mut doc = example();
    doc["files"] = json!([
        {"file_name": "full.pdf", "file_value": STANDARD.encode("x")},
        {"file_name": "empty.pdf", "file_value": ""}
    ]);
    let (s, b) = status_json(app.post_referral(&doc).await).await;
    assert_eq!(s, 200, "{b}");
    let empty: Vec<&Value> = b["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["code"] == "empty_file")
        .collect();
    assert_eq!(empty.len(), 1, "{b}");
    assert_eq!(empty[0]["field"], "files[1]");
    assert!(!empty[0].to_string().contains("empty.pdf"));
}

#[tokio::test]
async fn a_nul_character_in_a_text_field_is_400_naming_it_not_a_500() {
    let app = spawn_app().await;
    let mut doc = example();
    doc["client"]["first_name"] = json!("Ja\u{0}ne");
    doc["agency"]["name"] = json!("Gem\u{0}City");
    let (s, b) = status_json(app.post_referral(&doc).await).await;
    assert_eq!(s, 400, "{b}");
    let paths: Vec<&str> = b["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["agency.name"], "{b}");
    assert!(!b.to_string().contains("Gem"), "{b}");
}
