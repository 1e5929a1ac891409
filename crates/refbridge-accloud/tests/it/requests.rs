//! Request shapes, exactly: method, path, query, Basic auth, JSON body, and answer mapping.

use std::time::Duration;

use refbridge_accloud::*;
use serde_json::json;

use crate::helpers::{Peer, Recorded, Reply};
use crate::samples::*;

const BASIC: &str = "Basic a2V5OnNlY3JldA=="; // key:secret

fn assert_common(r: &Recorded) {
    assert_eq!(r.header("authorization"), Some(BASIC));
    assert!(
        r.header("user-agent")
            .is_some_and(|ua| ua.starts_with("refbridge-accloud/")),
        "{:?}",
        r.header("user-agent")
    );
    assert!(r.header("x-alayacare-identity").is_none());
}

fn assert_json_request(r: &Recorded, method: &str, path: &str, body: serde_json::Value) {
    assert_common(r);
    assert_eq!((r.method.as_str(), r.path.as_str()), (method, path));
    assert_eq!(r.query, None);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), body);
}

fn t() -> Duration {
    Duration::from_secs(5)
}

#[tokio::test]
async fn create_client_posts_the_client_with_basic_auth() {
    let peer = Peer::always(Reply::json(
        201,
        json!({"id": 1060, "external_id": "patient-42"}),
    ))
    .await;
    let created = peer.client(t()).create_client(&new_client()).await.unwrap();
    assert_eq!(created.id, ClientId(1060));
    assert_eq!(created.external_id.as_deref(), Some("patient-42"));
    assert_json_request(
        &peer.only_request(),
        "POST",
        "/ext/api/v2/patients/clients",
        new_client_json(),
    );
}

#[tokio::test]
async fn client_lookup_and_update_use_the_documented_paths() {
    let details = json!({
        "id": 1060, "ac_id": "AC1060", "external_id": "patient/42", "profile_id": 1,
        "demographics": {"first_name": "Frank"}, "branch_id": 1000, "status": "pending",
        "contacts": [], "care_team": [], "groups": [{"id": 1008, "name": "CSI"}]
    });
    let peer = Peer::start(move |r| match r.method.as_str() {
        "GET" => Reply::json(200, details.clone()),
        _ => Reply::json(200, json!({"id": 1060, "external_id": "patient/42"})),
    })
    .await;
    let client = peer.client(t());
    let got = client
        .get_client_by_external_id("patient/42")
        .await
        .unwrap()
        .unwrap();
    assert!(got.has_group(GroupId(1008)));
    client.get_client(ClientId(1060)).await.unwrap().unwrap();
    client
        .update_client(
            ClientId(1060),
            &ClientUpdate {
                groups: Some(vec![GroupId(1008), GroupId(7)]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let reqs = peer.requests();
    assert_eq!(reqs[0].method, "GET");
    // The external id is one path segment: its `/` is encoded.
    assert_eq!(
        reqs[0].path,
        "/ext/api/v2/patients/clients/by_id/patient%2F42"
    );
    assert_common(&reqs[0]);
    assert_eq!(reqs[1].path, "/ext/api/v2/patients/clients/1060");
    assert_json_request(
        &reqs[2],
        "PUT",
        "/ext/api/v2/patients/clients/1060",
        json!({"groups": [{"id": 1008}, {"id": 7}]}),
    );
}

#[tokio::test]
async fn empty_external_ids_are_refused_before_sending() {
    let peer = Peer::always(Reply::empty(200)).await;
    let client = peer.client(t());
    let err = client.get_client_by_external_id(" ").await.unwrap_err();
    assert!(matches!(err, AcCloudError::InvalidRequest { .. }), "{err}");
    let err = client.get_service_by_external_id("").await.unwrap_err();
    assert!(matches!(err, AcCloudError::InvalidRequest { .. }), "{err}");
    assert!(peer.requests().is_empty());
}

#[tokio::test]
async fn lists_send_paging_and_filters() {
    let peer = Peer::always(Reply::json(
        200,
        json!({"count": 0, "page": 2, "total_pages": 3, "items": []}),
    ))
    .await;
    let client = peer.client(t());
    let page = client
        .list_client_groups(
            Some(BranchId(1000)),
            PageRequest {
                page: 2,
                per_page: 50,
            },
        )
        .await
        .unwrap();
    assert!(page.has_next());
    client
        .list_funders(&FunderFilter {
            name: Some("Blue Cross".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    client
        .list_service_codes(None, PageRequest::default())
        .await
        .unwrap();
    client
        .list_services(&ServiceFilter {
            client: Some(ServiceClientRef::AlayaCare(ClientId(1060))),
            external_ids: vec!["a".into(), "b".into()],
            status: Some(ServiceStatus::OnHold),
            page: PageRequest::default(),
        })
        .await
        .unwrap();
    let mut filter = AuthorizationFilter::new(date("2023-10-01"), date("2023-10-01"));
    filter.client_id = Some(ClientId(1060));
    filter.service_ids = vec![ServiceId(21), ServiceId(22)];
    filter.authorization_number = Some("123-456".into());
    client.list_authorizations(&filter).await.unwrap();

    let got: Vec<(String, String, Option<String>)> = peer
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path, r.query))
        .collect();
    let q = |s: &str| Some(s.to_owned());
    assert_eq!(
        got,
        vec![
            (
                "GET".into(),
                "/ext/api/v2/patients/groups".into(),
                q("page=2&count=50&branch_id=1000")
            ),
            (
                "GET".into(),
                "/ext/api/v2/accounting/funders".into(),
                q("funder_name=Blue+Cross&page=1&count=100")
            ),
            (
                "GET".into(),
                "/ext/api/v2/scheduler/service_codes".into(),
                q("page=1&count=100")
            ),
            (
                "GET".into(),
                "/ext/api/v2/scheduler/services".into(),
                q(
                    "alayacare_client_id=1060&external_ids=a&external_ids=b&status=on_hold&page=1&count=100"
                )
            ),
            (
                "GET".into(),
                "/ext/api/v2/scheduler/authorizations".into(),
                q(
                    "start_at_from=2023-10-01&start_at_to=2023-10-01&client_id=1060&service_id=21&service_id=22&authorization_number=123-456&page=1&count=100"
                )
            ),
        ]
    );
}

#[tokio::test]
async fn service_calls_use_the_documented_paths_and_bodies() {
    let peer = Peer::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("POST", _) | ("PUT", _) => Reply::json(200, json!({"id": 21, "external_id": "8f14e45f-ceea-4c67-a1b2-3c4d5e6f7a8b"})),
        _ => Reply::json(200, json!({"alayacare_service_id": "21", "service_name": "Skilled Nursing",
                                      "service_status": "active", "service_id": "8f14e45f-ceea-4c67-a1b2-3c4d5e6f7a8b"})),
    })
    .await;
    let client = peer.client(t());
    let created = client.create_service(&new_service()).await.unwrap();
    assert_eq!(created.id, ServiceId(21));
    let found = client
        .get_service_by_external_id("8f14e45f-ceea-4c67-a1b2-3c4d5e6f7a8b")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, ServiceId(21));
    client.get_service(ServiceId(21)).await.unwrap().unwrap();
    client
        .update_service(
            ServiceId(21),
            &ServiceUpdate {
                service_instructions: Some("Ring twice".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let reqs = peer.requests();
    assert_json_request(
        &reqs[0],
        "POST",
        "/ext/api/v2/scheduler/services",
        json!({
            "service_id": "8f14e45f-ceea-4c67-a1b2-3c4d5e6f7a8b", "name": "Skilled Nursing",
            "client": {"alayacare_client_id": 1060}, "funding_methodology": "single_funder",
            "guid_funder_breakdowns": [{"funder_id": 9, "is_primary": 1, "percentage": 100}],
            "service_code_id": 48, "service_instructions": "Please use buzz code 203",
            "use_client_address": true, "profile": {"target_agency": "Gem City Home Care"}
        }),
    );
    assert_eq!(
        reqs[1].path,
        "/ext/api/v2/scheduler/services/by_id/8f14e45f-ceea-4c67-a1b2-3c4d5e6f7a8b"
    );
    assert_eq!(reqs[2].path, "/ext/api/v2/scheduler/services/21");
    assert_json_request(
        &reqs[3],
        "PUT",
        "/ext/api/v2/scheduler/services/21",
        json!({"service_instructions": "Ring twice"}),
    );
}

#[tokio::test]
async fn authorization_calls_use_the_documented_paths_and_bodies() {
    let answer = json!({"id": 8, "client_id": 1060, "start_at": "2023-10-01", "end_at": "2023-11-30",
                        "rule_type": "VISITS", "rule_weekly": 3, "methodology": "service"});
    let peer = Peer::start(move |r| match r.method.as_str() {
        "DELETE" => Reply::empty(204),
        "POST" => Reply::json(201, answer.clone()),
        _ => Reply::json(200, answer.clone()),
    })
    .await;
    let client = peer.client(t());
    let created = client
        .create_authorization(&new_authorization())
        .await
        .unwrap();
    assert_eq!(created.id, AuthorizationId(8));
    let updated = client
        .update_authorization(
            AuthorizationId(8),
            &AuthorizationUpdate {
                end_at: Some(date("2023-11-30")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.end_at, Some(date("2023-11-30")));
    client
        .delete_authorization(AuthorizationId(8))
        .await
        .unwrap();
    let reqs = peer.requests();
    assert_json_request(
        &reqs[0],
        "POST",
        "/ext/api/v2/scheduler/authorizations",
        json!({"client_id": 1060, "service_ids": [21], "start_at": "2023-10-01",
               "end_at": "2023-10-30", "methodology": "service", "rule_type": "VISITS",
               "rule_weekly": 3.0, "first_day_of_week": 6, "authorization_number": "123-456"}),
    );
    assert_json_request(
        &reqs[1],
        "PUT",
        "/ext/api/v2/scheduler/authorizations/8",
        json!({"end_at": "2023-11-30"}),
    );
    assert_common(&reqs[2]);
    assert_eq!(
        (reqs[2].method.as_str(), reqs[2].path.as_str()),
        ("DELETE", "/ext/api/v2/scheduler/authorizations/8")
    );
    assert!(reqs[2].body.is_empty());
}

#[tokio::test]
async fn referral_calls_use_the_documented_paths_and_bodies() {
    let rid = referral_id();
    let peer = Peer::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("POST", p) if p.ends_with("/cancel") => Reply::empty(204),
        ("POST", p) if p.contains("/update/") => Reply::json(
            201,
            referral_answer("1b7e8f6a-1111-4a3c-9d7e-2f4a5b6c7d8e", 2),
        ),
        ("POST", _) => Reply::json(201, referral_answer(&rid.to_string(), 1)),
        ("GET", "/api/v1/alayamarket/outbox/organizations/trusted_network") => Reply::json(
            200,
            json!({"page": 1, "items_per_page": 100, "total_items": 1, "total_pages": 1,
                   "items": [{"id": "91c79089-a3ca-4cca-acf4-52fc1f1302c6", "name": "Gem City Home Care"}]}),
        ),
        ("GET", "/api/v1/alayamarket/outbox/referrals") => Reply::json(
            200,
            json!({"page": 1, "items_per_page": 100, "total_items": 1, "total_pages": 1,
                   "items": [referral_answer(&rid.to_string(), 1)]}),
        ),
        _ => Reply::json(200, referral_answer(&rid.to_string(), 1)),
    })
    .await;
    let client = peer.client(t());

    let created = client
        .create_referral(ServiceId(21), &new_referral())
        .await
        .unwrap();
    assert_eq!(created.id(), rid);
    assert_eq!(created.revision_group_id(), Some(revision_group()));

    let update = ReferralUpdate {
        start_at: new_referral().start_at,
        end_at: chrono::DateTime::parse_from_rfc3339("2023-11-30T00:00:00-06:00").unwrap(),
        authorization_ids: vec![AuthorizationId(8)],
        comment: None,
        case_manager: None,
        revision: RevisionRequest {
            reasons: vec!["Authorization end date changed from 2023-10-30 to 2023-11-30".into()],
            comment: None,
        },
    };
    let revised = client
        .update_referral(ServiceId(21), rid, &update)
        .await
        .unwrap();
    assert_eq!(revised.revision.unwrap().revision_number, 2);

    client
        .cancel_referral(
            revised.referral.id,
            &CancelReferral {
                reason_code: CancelReason::ClientHospitalization,
                comment: Some("In hospital".into()),
            },
        )
        .await
        .unwrap();

    let listed = client
        .list_referrals(&ReferralFilter {
            revision_group_id: Some(revision_group()),
            revisions: Some(Revisions::All),
            supply_persona_id: Some(supply()),
            sort_by: Some(ReferralSortBy::RevisionNumber),
            sort_order: Some(SortOrder::Desc),
            page: Some(PageRequest {
                page: 1,
                per_page: 20,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((listed.items.len(), listed.total_items), (1, Some(1)));
    client.get_referral(rid).await.unwrap().unwrap();
    let tn = client
        .list_trusted_network(&TrustedNetworkFilter {
            supply_persona_ids: vec![supply()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(tn.items[0].id, supply());

    let reqs = peer.requests();
    assert_json_request(
        &reqs[0],
        "POST",
        "/api/v1/alayamarket/outbox/referrals/from_service/21",
        json!({"care_type": "nursing", "referral_type": "service",
               "start_at": "2023-10-01T00:00:00-05:00", "end_at": "2023-10-30T00:00:00-05:00",
               "supply_persona_id": "91c79089-a3ca-4cca-acf4-52fc1f1302c6",
               "authorization_ids": [8]}),
    );
    assert_json_request(
        &reqs[1],
        "POST",
        "/api/v1/alayamarket/outbox/referrals/from_service/21/update/0b7e8f6a-1111-4a3c-9d7e-2f4a5b6c7d8e",
        json!({"start_at": "2023-10-01T00:00:00-05:00", "end_at": "2023-11-30T00:00:00-06:00",
               "authorization_ids": [8],
               "revision": {"reasons": ["Authorization end date changed from 2023-10-30 to 2023-11-30"]}}),
    );
    assert_json_request(
        &reqs[2],
        "POST",
        "/api/v1/alayamarket/outbox/referrals/1b7e8f6a-1111-4a3c-9d7e-2f4a5b6c7d8e/cancel",
        json!({"reason_code": "client_hospitalization", "comment": "In hospital"}),
    );
    assert_eq!(reqs[3].path, "/api/v1/alayamarket/outbox/referrals");
    assert_eq!(
        reqs[3].query.as_deref(),
        Some(
            "revision_group_id=6e5f4a3b-5555-4e7f-9a0b-2c3d4e5f6a7b&revisions=all&supply_persona_id=91c79089-a3ca-4cca-acf4-52fc1f1302c6&sort_by=revision_number&sort_order=desc&page=1&items_per_page=20"
        )
    );
    assert_common(&reqs[3]);
    assert_eq!(
        reqs[4].path,
        "/api/v1/alayamarket/outbox/referrals/0b7e8f6a-1111-4a3c-9d7e-2f4a5b6c7d8e"
    );
    assert_eq!(
        reqs[5].query.as_deref(),
        Some("supply_persona_id=91c79089-a3ca-4cca-acf4-52fc1f1302c6")
    );
}

#[tokio::test]
async fn invalid_referral_changes_are_refused_before_sending() {
    let peer = Peer::always(Reply::empty(204)).await;
    let client = peer.client(t());
    let update = ReferralUpdate {
        start_at: new_referral().start_at,
        end_at: new_referral().end_at,
        authorization_ids: vec![],
        comment: None,
        case_manager: None,
        revision: RevisionRequest {
            reasons: vec![],
            comment: None,
        },
    };
    let err = client
        .update_referral(ServiceId(21), referral_id(), &update)
        .await
        .unwrap_err();
    assert!(matches!(err, AcCloudError::InvalidRequest { .. }), "{err}");
    let err = client
        .cancel_referral(
            referral_id(),
            &CancelReferral {
                reason_code: CancelReason::Other,
                comment: Some("x".repeat(MAX_CANCEL_COMMENT_CHARS + 1)),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AcCloudError::InvalidRequest { .. }), "{err}");
    // Exactly at the limit is fine.
    client
        .cancel_referral(
            referral_id(),
            &CancelReferral {
                reason_code: CancelReason::Other,
                comment: Some("é".repeat(MAX_CANCEL_COMMENT_CHARS)),
            },
        )
        .await
        .unwrap();
    assert_eq!(peer.requests().len(), 1);
}

#[tokio::test]
async fn files_api_lists_a_folder_and_downloads_a_file() {
    let peer = Peer::start(|r| {
        if r.path.ends_with('/') {
            Reply::json(
                200,
                json!([{"last_modified": "2024-05-01T10:00:00+00:00",
                        "name": "client/1060/Marketplace Documents/rb-1-care plan.pdf", "size": 5}]),
            )
        } else {
            Reply {
                status: 200,
                headers: vec![("content-type", "application/pdf".into())],
                body: "%PDF-".into(),
                delay: None,
            }
        }
    })
    .await;
    let client = peer.client(t());
    let entries = client
        .list_client_files(ClientId(1060), "Marketplace Documents")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entries[0].basename(), "rb-1-care plan.pdf");
    assert_eq!(entries[0].size, Some(5));
    let bytes = client
        .download_client_file(ClientId(1060), "Marketplace Documents/rb-1-care plan.pdf")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&bytes[..], b"%PDF-");
    let reqs = peer.requests();
    assert_eq!(
        reqs[0].path,
        "/ext/api/v2/files/client/1060/Marketplace%20Documents/"
    );
    assert_eq!(
        reqs[1].path,
        "/ext/api/v2/files/client/1060/Marketplace%20Documents/rb-1-care%20plan.pdf"
    );
    assert_common(&reqs[1]);
}
