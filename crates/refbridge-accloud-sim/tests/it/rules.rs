//! The documented business rules.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    SUPPLIER, authorization_body, guide_config, referral_body, revision_body, service_body, spawn,
    spawn_with,
};

#[tokio::test]
async fn services_need_exactly_one_service_code_reference() {
    let sim = spawn().await;
    let client = sim.create_client("c").await;
    let mut both = service_body(client, "s1");
    both["service_code_name"] = json!("Skilled Nursing");
    let r = sim.post("/ext/api/v2/scheduler/services", both).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let mut neither = service_body(client, "s1");
    neither.as_object_mut().unwrap().remove("service_code_id");
    let r = sim.post("/ext/api/v2/scheduler/services", neither).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let mut by_name = service_body(client, "s1");
    by_name.as_object_mut().unwrap().remove("service_code_id");
    by_name["service_code_name"] = json!("Skilled Nursing");
    by_name["client"] = json!({"client_id": "c"});
    let r = sim.post("/ext/api/v2/scheduler/services", by_name).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(sim.handle.state().services.len(), 1);
    assert_eq!(sim.handle.state().services[0].client_id, client);
}

#[tokio::test]
async fn service_list_defaults_to_active_and_duplicate_service_id_conflicts() {
    let sim = spawn().await;
    let client = sim.create_client("c").await;
    sim.create_service(client, "req-1").await;
    let r = sim.get("/ext/api/v2/scheduler/services").await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    let r = sim
        .get("/ext/api/v2/scheduler/services?status=on_hold")
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 0);
    let r = sim
        .post(
            "/ext/api/v2/scheduler/services",
            service_body(client, "req-1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.body["code"], 409);
    assert!(sim.handle.duplicates().is_empty());
}

#[tokio::test]
async fn duplicate_service_ids_show_in_the_report_when_the_tenant_allows_them() {
    let mut config = guide_config();
    config.rules.reject_duplicate_service_id = false;
    let sim = spawn_with(config).await;
    let client = sim.create_client("c").await;
    sim.create_service(client, "req-1").await;
    sim.create_service(client, "req-1").await;
    let report = sim.handle.duplicates();
    assert_eq!(report.services.len(), 1);
    assert_eq!(report.services[0].count, 2);
    assert!(!report.is_empty());
    let r = sim.get("/ext/api/v2/scheduler/services/by_id/req-1").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn authorization_rules_reject_invalid_combinations() {
    let sim = spawn().await;
    let client = sim.create_client("c").await;
    let service = sim.create_service(client, "s").await;
    let base = || authorization_body(client, service, "2023-04-01", "2023-04-30");
    let cases: Vec<(Value, &str)> = vec![
        (
            {
                let mut b = base();
                b["rule_daily"] = json!(1);
                b["rule_sunday"] = json!(0);
                b
            },
            "rule_daily",
        ),
        (
            {
                let mut b = base();
                b["methodology"] = json!("custom");
                b
            },
            "methodology",
        ),
        (
            {
                let mut b = base();
                b["rule_type"] = json!("RATE");
                b
            },
            "rule_type",
        ),
        (
            {
                let mut b = base();
                b["first_day_of_week"] = json!(7);
                b
            },
            "first_day_of_week",
        ),
        (
            {
                let mut b = base();
                b.as_object_mut().unwrap().remove("first_day_of_week");
                b
            },
            "first_day_of_week",
        ),
        (
            {
                let mut b = base();
                b["start_at"] = json!("04/01/2023");
                b
            },
            "start_at",
        ),
    ];
    for (body, field) in cases {
        let r = sim.post("/ext/api/v2/scheduler/authorizations", body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{field}: {}", r.body);
        assert!(r.body["code"].is_string());
        assert!(
            r.body["message"].as_str().unwrap().contains(field),
            "{}",
            r.body
        );
    }
    let mut daily = base();
    daily["rule_daily"] = json!(2);
    let r = sim
        .post("/ext/api/v2/scheduler/authorizations", daily)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(sim.handle.state().authorizations.len(), 1);
}

#[tokio::test]
async fn authorization_update_accepts_only_the_mutable_fields() {
    let sim = spawn().await;
    let client = sim.create_client("c").await;
    let service = sim.create_service(client, "s").await;
    let id = sim
        .create_authorization(client, service, "2023-04-01", "2023-04-30")
        .await;
    for body in [
        json!({"start_at": "2023-04-02"}),
        json!({"rule_type": "VISITS"}),
        json!({"rule_weekly": 5}),
    ] {
        let r = sim
            .put(&format!("/ext/api/v2/scheduler/authorizations/{id}"), body)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    }
    let a = &sim.handle.state().authorizations[0];
    assert_eq!(a.start_at.to_string(), "2023-04-01");
    assert_eq!(a.rule_type, "HOURS");
    let r = sim
        .put(
            &format!("/ext/api/v2/scheduler/authorizations/{id}"),
            json!({"notes": "n", "authorization_number": "X-1"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["authorization_number"], "X-1");
}

#[tokio::test]
async fn authorization_list_requires_the_start_window_and_hides_deleted_ones() {
    let sim = spawn().await;
    let client = sim.create_client("c").await;
    let service = sim.create_service(client, "s").await;
    let id = sim
        .create_authorization(client, service, "2023-04-01", "2023-04-30")
        .await;
    let r = sim
        .get("/ext/api/v2/scheduler/authorizations?start_at_to=2023-12-31")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let list = "/ext/api/v2/scheduler/authorizations?start_at_from=2023-04-01&start_at_to=2023-04-01&authorization_number=23-4";
    assert_eq!(
        sim.get(list).await.body["items"].as_array().unwrap().len(),
        1
    );
    assert_eq!(
        sim.delete(&format!("/ext/api/v2/scheduler/authorizations/{id}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        sim.get(list).await.body["items"].as_array().unwrap().len(),
        0
    );
    assert_eq!(
        sim.delete(&format!("/ext/api/v2/scheduler/authorizations/{id}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn referral_enums_and_trusted_network_are_enforced() {
    let sim = spawn().await;
    let client = sim.create_client("c").await;
    let service = sim.create_service(client, "s").await;
    let path = format!("/api/v1/alayamarket/outbox/referrals/from_service/{service}");
    let mut bodies = Vec::new();
    let mut b = referral_body(&[]);
    b["care_type"] = json!("homemaking");
    bodies.push(b);
    let mut b = referral_body(&[]);
    b["referral_type"] = json!("shift");
    bodies.push(b);
    let mut b = referral_body(&[]);
    b["supply_persona_id"] = json!("00000000-0000-4000-8000-000000000000");
    bodies.push(b);
    let mut b = referral_body(&[]);
    b.as_object_mut().unwrap().remove("end_at");
    bodies.push(b);
    for body in bodies {
        let r = sim.post(&path, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(r.content_type(), "application/problem+json");
    }
    let r = sim
        .post(
            "/api/v1/alayamarket/outbox/referrals/from_service/9999",
            referral_body(&[]),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(sim.handle.state().referrals.is_empty());
}

#[tokio::test]
async fn authorization_dates_are_compared_in_the_clients_time_zone() {
    let sim = spawn().await;
    let chicago = sim.create_client("chicago").await;
    let mut utc_client = crate::helpers::client_body("utc");
    utc_client["timezone"] = json!("UTC");
    let utc = sim
        .post("/ext/api/v2/patients/clients", utc_client)
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    // 02:00 UTC on April 1st is still March 31st in Chicago.
    let body = |auth: i64| {
        let mut b = referral_body(&[auth]);
        b["start_at"] = json!("2023-04-01T02:00:00+00:00");
        b["end_at"] = json!("2023-04-30T02:00:00Z");
        b
    };
    for (client, expected) in [
        (chicago, StatusCode::BAD_REQUEST),
        (utc, StatusCode::CREATED),
    ] {
        let service = sim.create_service(client, &format!("s-{client}")).await;
        let auth = sim
            .create_authorization(client, service, "2023-04-01", "2023-04-30")
            .await;
        let r = sim
            .post(
                &format!("/api/v1/alayamarket/outbox/referrals/from_service/{service}"),
                body(auth),
            )
            .await;
        assert_eq!(r.status, expected, "{}", r.body);
    }
}

#[tokio::test]
async fn authorizations_of_another_service_are_rejected() {
    let sim = spawn().await;
    let client = sim.create_client("c").await;
    let s1 = sim.create_service(client, "s1").await;
    let s2 = sim.create_service(client, "s2").await;
    let auth = sim
        .create_authorization(client, s1, "2023-04-01", "2023-04-30")
        .await;
    let r = sim
        .post(
            &format!("/api/v1/alayamarket/outbox/referrals/from_service/{s2}"),
            referral_body(&[auth]),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn revisions_get_a_new_id_in_the_same_group_and_only_the_latest_can_change() {
    let sim = spawn().await;
    let (_, service, auth, first) = sim.referral_chain("r").await;
    let first_id = first["referral"]["id"].as_str().unwrap().to_owned();
    let group = first["revision"]["revision_group_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(first["revision"]["revision_number"], 1);
    assert_eq!(first["revision"]["is_latest_revision"], true);

    let update = |rid: String| {
        let sim = &sim;
        async move {
            sim.post(
                &format!(
                    "/api/v1/alayamarket/outbox/referrals/from_service/{service}/update/{rid}"
                ),
                revision_body(&[auth], "Updated authorization end date"),
            )
            .await
        }
    };
    let r = update(first_id.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let second_id = r.body["referral"]["id"].as_str().unwrap().to_owned();
    assert_ne!(second_id, first_id);
    assert_eq!(r.body["revision"]["revision_group_id"], group.as_str());
    assert_eq!(r.body["revision"]["revision_number"], 2);
    assert_eq!(
        r.body["revision"]["revision_reasons"],
        json!(["Updated authorization end date"])
    );
    assert_eq!(
        r.body["referral"]["sequence_id"],
        first["referral"]["sequence_id"]
    );

    let old = sim
        .get(&format!("/api/v1/alayamarket/outbox/referrals/{first_id}"))
        .await;
    assert_eq!(old.body["revision"]["is_latest_revision"], false);

    // Not the latest any more: update and cancel are refused.
    assert_eq!(update(first_id.clone()).await.status, StatusCode::CONFLICT);
    let r = sim
        .post(
            &format!("/api/v1/alayamarket/outbox/referrals/{first_id}/cancel"),
            json!({"reason_code": "other"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    let list = |q: &str| {
        let sim = &sim;
        let url = format!("/api/v1/alayamarket/outbox/referrals?revision_group_id={group}{q}");
        async move { sim.get(&url).await.body }
    };
    assert_eq!(list("").await["total_items"], 1);
    assert_eq!(
        list("").await["items"][0]["referral"]["id"],
        second_id.as_str()
    );
    assert_eq!(list("&revisions=all").await["total_items"], 2);
    assert_eq!(
        list("&revisions=archived").await["items"][0]["referral"]["id"],
        first_id.as_str()
    );
    let asc =
        list("&revisions=all&sort_by=revision_number&sort_order=asc&items_per_page=1&page=2").await;
    assert_eq!(asc["items"][0]["revision"]["revision_number"], 2);
    assert_eq!(asc["total_pages"], 2);

    // The agency processes it: still updatable.
    sim.handle
        .mark_processed(second_id.parse().unwrap())
        .unwrap();
    let r = update(second_id.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["referral"]["status"], "assigned");
    assert_eq!(r.body["revision"]["revision_number"], 3);
    assert!(sim.handle.duplicates().is_empty());
}

#[tokio::test]
async fn cancel_needs_one_of_the_seven_reason_codes_and_works_once() {
    let sim = spawn().await;
    let (_, service, auth, referral) = sim.referral_chain("c").await;
    let rid = referral["referral"]["id"].as_str().unwrap().to_owned();
    let cancel = |body: Value| {
        let sim = &sim;
        let url = format!("/api/v1/alayamarket/outbox/referrals/{rid}/cancel");
        async move { sim.post(&url, body).await }
    };
    assert_eq!(
        cancel(json!({"reason_code": "changed_mind"})).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(cancel(json!({})).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        cancel(json!({"reason_code": "other", "comment": "x".repeat(1001)}))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let r = cancel(json!({"reason_code": "client_passed_away", "comment": "sorry"})).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        cancel(json!({"reason_code": "other"})).await.status,
        StatusCode::CONFLICT
    );
    let r = sim
        .get(&format!("/api/v1/alayamarket/outbox/referrals/{rid}"))
        .await;
    assert_eq!(r.body["referral"]["reason_code"], "client_passed_away");
    assert_eq!(r.body["referral"]["cancellation_comment"], "sorry");
    let r = sim
        .post(
            &format!("/api/v1/alayamarket/outbox/referrals/from_service/{service}/update/{rid}"),
            revision_body(&[auth], "late"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    for code in [
        "datetime_change",
        "client_request",
        "client_hospitalization",
        "client_refused_service",
        "processing_error",
    ] {
        let (_, _, _, r) = sim.referral_chain(code).await;
        let id = r["referral"]["id"].as_str().unwrap();
        let r = sim
            .post(
                &format!("/api/v1/alayamarket/outbox/referrals/{id}/cancel"),
                json!({"reason_code": code}),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{code}");
    }
}

#[tokio::test]
async fn referral_list_filters_by_supplier_client_and_status() {
    let sim = spawn().await;
    let (client, ..) = sim.referral_chain("a").await;
    sim.referral_chain("b").await;
    let base = "/api/v1/alayamarket/outbox/referrals";
    assert_eq!(sim.get(base).await.body["total_items"], 2);
    assert_eq!(
        sim.get(&format!("{base}?client_outbox_id={client}"))
            .await
            .body["total_items"],
        1
    );
    assert_eq!(
        sim.get(&format!("{base}?supply_persona_id={SUPPLIER}"))
            .await
            .body["total_items"],
        2
    );
    assert_eq!(
        sim.get(&format!("{base}?status=cancelled")).await.body["total_items"],
        0
    );
    assert_eq!(
        sim.get(&format!("{base}?revisions=sometimes")).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn attachments_over_50_mb_are_rejected_and_others_land_in_the_files_api() {
    let sim = spawn().await;
    let (client, _, _, referral) = sim.referral_chain("f").await;
    let rid = referral["referral"]["id"].as_str().unwrap().to_owned();
    let r = sim.upload(&rid, "big.pdf", vec![0u8; 52_428_801]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert!(sim.handle.state().attachments.is_empty());

    let r = sim.upload(&rid, "max.bin", vec![7u8; 52_428_800]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    let r = sim.upload(&rid, "orders.pdf", b"one".to_vec()).await;
    assert_eq!(
        r.body["filepath"],
        format!("client/{client}/Marketplace Documents/orders.pdf")
    );
    // Same name again: stored beside it, and the duplicates report sees
    // the same content twice in the group.
    let r = sim.upload(&rid, "orders.pdf", b"one".to_vec()).await;
    assert_eq!(
        r.body["filepath"],
        format!("client/{client}/Marketplace Documents/orders (1).pdf")
    );
    assert_eq!(sim.handle.duplicates().attachments.len(), 1);

    let listing = sim
        .get(&format!(
            "/ext/api/v2/files/client/{client}/Marketplace%20Documents/"
        ))
        .await;
    assert_eq!(listing.body.as_array().unwrap().len(), 3);
    let root = sim
        .get(&format!("/ext/api/v2/files/client/{client}/"))
        .await;
    assert_eq!(
        root.body[0]["name"],
        format!("client/{client}/Marketplace Documents/")
    );
    let file = sim
        .get(&format!(
            "/ext/api/v2/files/client/{client}/Marketplace%20Documents/orders%20(1).pdf"
        ))
        .await;
    assert_eq!(file.status, StatusCode::OK);
    assert_eq!(file.bytes, b"one");

    // A part without a filename, or no `file` part, is refused.
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(b"x".to_vec()));
    let url = format!("/api/v1/alayamarket/outbox/referrals/{rid}/client_attachment");
    let r = sim
        .send(sim.request(reqwest::Method::POST, &url).multipart(form))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let form = reqwest::multipart::Form::new().text("other", "x");
    let r = sim
        .send(sim.request(reqwest::Method::POST, &url).multipart(form))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = sim
        .upload(
            "6f1c2a7e-0000-4000-8000-000000000000",
            "a.pdf",
            b"x".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
