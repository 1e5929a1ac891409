//! Contract tests: the guide's and the specs' example requests, replayed
//! against the simulator, with every response checked against the
//! published response schema.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{SUPPLIER, spawn};
use crate::schema::Spec;

const CLIENT: &str = "alayacare-client-openapi.yml";
const SVC: &str = "alayacare-services-openapi.yml";
const ACCT: &str = "alayacare-accounting-openapi.yml";
const AUTHX: &str = "authorizations-external-api_openapi.json";
const REFI: &str = "internal.referral_approval.spec.yaml";
const MKT: &str = "openapi.offers.yaml";
const ORG: &str = "openapi.organizations.yaml";
const FILES: &str = "alayacare-files-openapi.yml";

/// AUTHX's response enum for `methodology` omits `service`, which create
/// accepts and CSI uses (notes section 4.8 / 5).
const AUTH_EXTRA: &[(&str, &[&str])] = &[("methodology", &["service"])];

fn guide_client() -> Value {
    json!({
        "demographics": {
            "first_name": "Frank", "last_name": "Smith", "address": "3000 Lakeside Dr",
            "city": "Bannockburn", "state": "IL", "zip": "60015", "country": "US",
            "birthday": "1999-01-31", "email": "john.smith@example.com",
            "phone_main": "515-223-4455", "gender": "M"
        },
        "external_id": "client_external_id_1",
        "branch_id": 1000,
        "language": "en",
        "groups": [{"id": 1008}],
        "timezone": "America/Chicago"
    })
}

fn guide_service() -> Value {
    json!({
        "service_id": "service_external_id_1",
        "name": "Skilled Nursing",
        "client": {"alayacare_client_id": 1060, "client_id": "client_external_id_1"},
        "start_date": "2023-04-01",
        "projected_end_date": "2023-06-30",
        "funding_methodology": "single_funder",
        "guid_funder_breakdowns": [{"funder_id": 9, "is_primary": true, "percentage": 100}],
        "service_code_id": 48,
        "service_instructions": "Please use buzz code 203",
        "use_client_address": true,
        "profile": {"target_agency": "Gem City Home Care"}
    })
}

fn guide_authorization() -> Value {
    json!({
        "client_id": 1060, "service_ids": [21], "start_at": "2023-10-01", "end_at": "2023-10-30",
        "methodology": "service", "authorization_number": "123-456", "member_number": "123-456",
        "program_id": "123-456", "notes": "", "rule_type": "HOURS", "rule_daily": 2,
        "rule_weekly": 10, "rule_monthly": 40, "rule_period": 50, "rule_monday": 1,
        "rule_tuesday": 1, "rule_wednesday": 1, "rule_thursday": 1, "rule_friday": 1,
        "rule_saturday": 0, "rule_sunday": 0, "first_day_of_week": 6,
        "case_manager_name": "Jane Smith", "case_manager_phone": "515-111-2222",
        "case_manager_fax": "515-111-3333", "case_manager_email": "jane.smith@email.com"
    })
}

fn guide_referral() -> Value {
    json!({
        "authorization_ids": [8],
        "supply_persona_id": SUPPLIER,
        "referral_type": "service",
        "care_type": "nursing",
        "start_at": "2023-04-01T05:00:00+00:00",
        "end_at": "2023-04-30T05:00:00+00:00",
        "comment": "",
        "case_manager": {"name": "Jane Smith", "phone_number": "515-111-2233", "fax_number": null, "email": "jane.smith@email.com"}
    })
}

fn guide_referral_update() -> Value {
    json!({
        "authorization_ids": [8],
        "supply_persona_id": SUPPLIER,
        "start_at": "2023-04-01T05:00:00+00:00",
        "end_at": "2023-04-30T05:00:00+00:00",
        "comment": "",
        "case_manager": {"name": "Jane Smith", "phone_number": "515-111-2233", "fax_number": null, "email": "jane.smith@email.com"},
        "revision": {"reasons": ["Updated authorization end date"], "comment": ""}
    })
}

fn without(mut v: Value, path: &[&str]) -> Value {
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut cur = &mut v;
    for p in parents {
        cur = &mut cur[*p];
    }
    if let Some(obj) = cur.as_object_mut() {
        obj.remove(*last);
    }
    v
}

#[tokio::test]
async fn guide_walkthrough_is_accepted_and_every_response_matches_its_published_schema() {
    let sim = spawn().await;
    let (client_spec, svc, acct, authx, refi, mkt, org, files) = (
        Spec::load(CLIENT),
        Spec::load(SVC),
        Spec::load(ACCT),
        Spec::load(AUTHX),
        Spec::load(REFI),
        Spec::load(MKT),
        Spec::load(ORG),
        Spec::load(FILES),
    );

    // Lookups.
    let r = sim.get("/ext/api/v2/patients/groups").await;
    assert_eq!(r.status, StatusCode::OK);
    client_spec.assert_valid("/groups", "get", "200", &r.body, &[]);
    assert!(
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "CSI" && g["id"] == 1008)
    );
    let r = sim.get("/ext/api/v2/accounting/funders").await;
    acct.assert_valid("/funders", "get", "200", &r.body, &[]);
    let r = sim.get("/ext/api/v2/accounting/funders/9").await;
    acct.assert_valid("/funders/{funder_id}", "get", "200", &r.body, &[]);
    let r = sim.get("/ext/api/v2/scheduler/service_codes").await;
    svc.assert_valid("/service_codes", "get", "200", &r.body, &[]);
    assert!(
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == 48)
    );
    let r = sim
        .get("/api/v1/alayamarket/outbox/organizations/trusted_network")
        .await;
    org.assert_valid(
        "/v1/demand_persona/trusted_network",
        "get",
        "200",
        &r.body,
        &[],
    );
    assert!(
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == SUPPLIER && s["name"] == "Gem City Home Care")
    );

    // Step 1: the guide's client, as is.
    let r = sim
        .post("/ext/api/v2/patients/clients", guide_client())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    client_spec.assert_valid("/clients", "post", "201", &r.body, &[]);
    assert_eq!(
        r.body,
        json!({"id": 1060, "external_id": "client_external_id_1"})
    );
    let r = sim.get("/ext/api/v2/patients/clients/1060").await;
    client_spec.assert_valid("/clients/{client_id}", "get", "200", &r.body, &[]);
    assert_eq!(r.body["status"], "pending");
    let r = sim
        .get("/ext/api/v2/patients/clients/by_id/client_external_id_1")
        .await;
    client_spec.assert_valid(
        "/clients/by_id/{external_client_id}",
        "get",
        "200",
        &r.body,
        &[],
    );
    assert_eq!(r.body["id"], 1060);
    let r = sim.get("/ext/api/v2/patients/clients").await;
    client_spec.assert_valid("/clients", "get", "200", &r.body, &[]);
    let r = sim
        .put(
            "/ext/api/v2/patients/clients/by_id/client_external_id_1",
            json!({"timezone": "America/Chicago"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    client_spec.assert_valid(
        "/clients/by_id/{external_client_id}",
        "put",
        "200",
        &r.body,
        &[],
    );

    // Step 2: the guide's service sends both client ids, which the spec and
    // the guide's own note forbid: rejected. With one of them: accepted.
    let r = sim
        .post("/ext/api/v2/scheduler/services", guide_service())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    svc.assert_valid("/services", "post", "400", &r.body, &[]);
    let fixed = without(guide_service(), &["client", "client_id"]);
    let r = sim.post("/ext/api/v2/scheduler/services", fixed).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    svc.assert_valid("/services", "post", "200", &r.body, &[]);
    assert_eq!(
        r.body,
        json!({"id": 21, "external_id": "service_external_id_1"})
    );
    for path in [
        "/ext/api/v2/scheduler/services/21",
        "/ext/api/v2/scheduler/services/by_id/service_external_id_1",
    ] {
        let r = sim.get(path).await;
        assert_eq!(r.status, StatusCode::OK);
        svc.assert_valid("/services/by_id/{service_id}", "get", "200", &r.body, &[]);
        assert_eq!(r.body["alayacare_service_id"], "21");
    }
    let r = sim.get("/ext/api/v2/scheduler/services").await;
    svc.assert_valid("/services", "get", "200", &r.body, &[]);
    assert_eq!(r.body["items"][0]["alayacare_service_id"], 21);
    let r = sim
        .put(
            "/ext/api/v2/scheduler/services/21",
            json!({"service_instructions": "Ring twice"}),
        )
        .await;
    svc.assert_valid(
        "/services/{alayacare_service_id}",
        "put",
        "200",
        &r.body,
        &[],
    );

    // Step 3: the guide's authorization sets rule_daily with rule_<day>,
    // against its own rule: rejected. Without rule_daily: accepted.
    let r = sim
        .post(
            "/ext/api/v2/scheduler/authorizations",
            guide_authorization(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    authx.assert_valid("/authorizations", "post", "400", &r.body, &[]);
    // First an April authorization (gets id 8, as in the guide's referral)...
    let mut april = without(guide_authorization(), &["rule_daily"]);
    april["start_at"] = json!("2023-04-01");
    april["end_at"] = json!("2023-04-30");
    let r = sim
        .post("/ext/api/v2/scheduler/authorizations", april)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    authx.assert_valid("/authorizations", "post", "201", &r.body, AUTH_EXTRA);
    assert_eq!(r.body["id"], 8);
    // ...then the guide's own dates (id 9).
    let r = sim
        .post(
            "/ext/api/v2/scheduler/authorizations",
            without(guide_authorization(), &["rule_daily"]),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["id"], 9);
    let r = sim
        .get("/ext/api/v2/scheduler/authorizations?start_at_from=2023-01-01&start_at_to=2023-12-31&client_id=1060&service_id=21")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    authx.assert_valid("/authorizations", "get", "200", &r.body, AUTH_EXTRA);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);

    // Step 3.1: the guide's update.
    let update = json!({
        "end_at": "2023-11-30", "notes": "", "authorization_number": "123-456",
        "member_number": "123-456", "program_id": "123-456", "case_manager_name": "Jane Smith",
        "case_manager_phone": "515-111-2233", "case_manager_fax": "515-111-3333",
        "case_manager_email": "jane.smith@email.com"
    });
    let r = sim
        .put("/ext/api/v2/scheduler/authorizations/9", update)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    authx.assert_valid(
        "/authorizations/{authorization_id}",
        "put",
        "200",
        &r.body,
        AUTH_EXTRA,
    );
    assert_eq!(r.body["end_at"], "2023-11-30");

    // Step 4: the guide's referral (authorization 8, April, client in Chicago).
    let r = sim
        .post(
            "/api/v1/alayamarket/outbox/referrals/from_service/21",
            guide_referral(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    refi.assert_valid(
        "/outbox/referrals/from_service/{service_id}",
        "post",
        "201",
        &r.body,
        &[],
    );
    let first = r.body["referral"]["id"].as_str().unwrap().to_owned();
    let group = r.body["revision"]["revision_group_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(r.body["referral"]["status"], "assigned");
    assert_eq!(r.body["client"]["outbox_id"], "1060");
    assert_eq!(r.body["service"]["outbox_id"], "21");
    let r = sim
        .get(&format!("/api/v1/alayamarket/outbox/referrals/{first}"))
        .await;
    mkt.assert_valid(
        "/v1/outbox/referrals/{referral_id}",
        "get",
        "200",
        &r.body,
        &[],
    );

    // Step 4.1: the guide's update (it also sends supply_persona_id, unchanged).
    let r = sim
        .post(
            &format!("/api/v1/alayamarket/outbox/referrals/from_service/21/update/{first}"),
            guide_referral_update(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    refi.assert_valid(
        "/outbox/referrals/from_service/{service_id}/update/{referral_id}",
        "post",
        "201",
        &r.body,
        &[],
    );
    let second = r.body["referral"]["id"].as_str().unwrap().to_owned();
    let r = sim
        .get(&format!(
            "/api/v1/alayamarket/outbox/referrals?revision_group_id={group}&revisions=all"
        ))
        .await;
    mkt.assert_valid("/v1/outbox/referrals", "get", "200", &r.body, &[]);
    assert_eq!(r.body["total_items"], 2);

    // Step 5: the guide's attachment upload (multipart part `file`).
    let r = sim
        .upload(&second, "file.ext", b"%PDF-1.4 test".to_vec())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    refi.assert_valid(
        "/outbox/referrals/{referral_id}/client_attachment",
        "post",
        "201",
        &r.body,
        &[],
    );
    let r = sim
        .get("/ext/api/v2/files/client/1060/Marketplace%20Documents/")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    files.assert_valid("/client/{id}/{path}/", "get", "200", &r.body, &[]);

    // Step 4.2: the guide's cancel, then the cancelled referral still matches.
    let r = sim
        .post(
            &format!("/api/v1/alayamarket/outbox/referrals/{second}/cancel"),
            json!({"reason_code": "processing_error"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = sim
        .get(&format!("/api/v1/alayamarket/outbox/referrals/{second}"))
        .await;
    mkt.assert_valid(
        "/v1/outbox/referrals/{referral_id}",
        "get",
        "200",
        &r.body,
        &[],
    );
    assert_eq!(r.body["referral"]["status"], "cancelled");

    // Step 3.2: delete.
    let r = sim.delete("/ext/api/v2/scheduler/authorizations/9").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.bytes.is_empty());

    assert!(
        sim.handle.duplicates().is_empty(),
        "{:?}",
        sim.handle.duplicates()
    );
}

#[tokio::test]
async fn guide_referral_is_rejected_when_its_authorization_has_other_dates() {
    let sim = spawn().await;
    sim.post("/ext/api/v2/patients/clients", guide_client())
        .await;
    sim.post(
        "/ext/api/v2/scheduler/services",
        without(guide_service(), &["client", "client_id"]),
    )
    .await;
    // The guide's authorization as written (October) gets id 8.
    let r = sim
        .post(
            "/ext/api/v2/scheduler/authorizations",
            without(guide_authorization(), &["rule_daily"]),
        )
        .await;
    assert_eq!(r.body["id"], 8);
    let r = sim
        .post(
            "/api/v1/alayamarket/outbox/referrals/from_service/21",
            guide_referral(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.content_type(), "application/problem+json");
    assert_eq!(r.body["status"], 400);
    assert!(r.body["detail"].as_str().unwrap().contains("must match"));
    assert!(sim.handle.state().referrals.is_empty());
}

#[tokio::test]
async fn the_services_spec_request_examples_are_rejected_because_they_name_no_client_or_service_code()
 {
    // The SVC examples use `client.id` and `service_code.id`, which the
    // schema does not define: neither client id nor service code is given.
    let sim = spawn().await;
    sim.create_client("ext-1861").await;
    let spec = Spec::load(SVC);
    let examples = spec.request_examples("/services", "post");
    assert_eq!(examples.len(), 3);
    for example in examples {
        let r = sim.post("/ext/api/v2/scheduler/services", example).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        spec.assert_valid("/services", "post", "400", &r.body, &[]);
    }
    assert!(sim.handle.state().services.is_empty());
}
