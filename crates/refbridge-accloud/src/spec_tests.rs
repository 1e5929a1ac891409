//! Wire mapping checked against the documented examples: the integration guide's payloads
//! (requests) and the OpenAPI examples (responses). Deviations from a guide example are the
//! documented resolutions of the README's table, and each is asserted explicitly.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate};
use serde_json::{Value, json};

use crate::wire::{AnyPage, FolderListing, UploadAnswer};
use crate::*;

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn to_value<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap()
}

fn supply() -> SupplyPersonaId {
    SupplyPersonaId("91c79089-a3ca-4cca-acf4-52fc1f1302c6".parse().unwrap())
}

fn jane() -> CaseManager {
    CaseManager {
        name: Some("Jane Smith".into()),
        phone_number: Some("515-111-2233".into()),
        fax_number: None,
        email: Some("jane.smith@email.com".into()),
    }
}

#[test]
fn new_client_matches_guide_step_1() {
    let guide = json!({
       "demographics":{
          "first_name":"Frank", "last_name":"Smith", "address":"3000 Lakeside Dr",
          "city":"Bannockburn", "state":"IL", "zip":"60015", "country":"US",
          "birthday":"1999-01-31", "email":"john.smith@example.com",
          "phone_main":"515-223-4455", "gender":"M"
       },
       "external_id":"client_external_id_1",
       "branch_id":1000,
       "language":"en",
       "groups":[ { "id":1008 } ],
       "timezone":"America/Chicago"
    });
    let ours = NewClient {
        external_id: "client_external_id_1".into(),
        branch_id: Some(BranchId(1000)),
        demographics: Demographics::new("Frank", "Smith")
            .with("address", "3000 Lakeside Dr")
            .with("city", "Bannockburn")
            .with("state", "IL")
            .with("zip", "60015")
            .with("country", "US")
            .with("birthday", "1999-01-31")
            .with("email", "john.smith@example.com")
            .with("phone_main", "515-223-4455")
            .with("gender", "M"),
        language: Some("en".into()),
        groups: vec![GroupId(1008)],
        timezone: Some("America/Chicago".into()),
    };
    assert_eq!(to_value(&ours), guide);
    // Demographics never show their values through Debug.
    assert!(!format!("{ours:?}").contains("Frank"));
}

#[test]
fn new_service_matches_guide_step_2_with_the_documented_fixes() {
    // The guide's example sends both client ids and `is_primary: true`; the spec allows one
    // client id and types `is_primary` as an integer (notes 4.7, 6.5).
    let expected = json!({
       "service_id":"service_external_id_1",
       "name":"Skilled Nursing",
       "client":{ "alayacare_client_id":1060 },
       "start_date":"2023-04-01",
       "projected_end_date":"2023-06-30",
       "funding_methodology":"single_funder",
       "guid_funder_breakdowns": [ { "funder_id":9, "is_primary": 1, "percentage": 100 } ],
       "service_code_id":48,
       "service_instructions":"Please use buzz code 203",
       "use_client_address":true,
       "profile": { "target_agency": "Gem City Home Care" }
    });
    let mut profile = BTreeMap::new();
    profile.insert("target_agency".to_owned(), json!("Gem City Home Care"));
    let ours = NewService {
        service_id: "service_external_id_1".into(),
        name: "Skilled Nursing".into(),
        client: ServiceClientRef::AlayaCare(ClientId(1060)),
        start_date: Some(date("2023-04-01")),
        projected_end_date: Some(date("2023-06-30")),
        funding_methodology: FundingMethodology::SingleFunder,
        funders: vec![FunderShare {
            funder_id: FunderId(9),
            is_primary: true,
            percentage: 100,
        }],
        service_code: ServiceCodeRef::Id(ServiceCodeId(48)),
        service_instructions: Some("Please use buzz code 203".into()),
        notes: None,
        use_client_address: Some(true),
        profile,
    };
    assert_eq!(to_value(&ours), expected);

    let by_external = NewService {
        client: ServiceClientRef::External("client_external_id_1".into()),
        service_code: ServiceCodeRef::Name("SN".into()),
        ..ours
    };
    let v = to_value(&by_external);
    assert_eq!(v["client"], json!({ "client_id": "client_external_id_1" }));
    assert_eq!(v["service_code_name"], json!("SN"));
    assert!(v.get("service_code_id").is_none());
}

#[test]
fn new_authorization_matches_guide_step_3_without_rule_daily() {
    // The guide's example also sets `rule_daily: 2`, which its own rule forbids next to the
    // weekday rules (notes 4.8, 6.8): the corrected payload of the notes is the reference.
    let expected = json!({
       "client_id":1060, "service_ids":[21], "start_at":"2023-10-01", "end_at":"2023-10-30",
       "methodology":"service", "authorization_number": "123-456", "member_number": "123-456",
       "program_id": "123-456", "notes":"", "rule_type":"HOURS",
       "rule_weekly":10, "rule_monthly":40, "rule_period":50,
       "rule_monday":1, "rule_tuesday":1, "rule_wednesday":1, "rule_thursday":1, "rule_friday":1,
       "rule_saturday":0, "rule_sunday":0, "first_day_of_week":6,
       "case_manager_name": "Jane Smith", "case_manager_phone": "515-111-2222",
       "case_manager_fax": "515-111-3333", "case_manager_email": "jane.smith@email.com"
    });
    let ours = NewAuthorization {
        client_id: ClientId(1060),
        service_ids: vec![ServiceId(21)],
        start_at: date("2023-10-01"),
        end_at: Some(date("2023-10-30")),
        methodology: AuthorizationMethodology::Service,
        rule_type: RuleType::Hours,
        limits: AuthorizationLimits {
            daily: None,
            weekly: Some(10.0),
            monthly: Some(40.0),
            period: Some(50.0),
            monday: Some(1.0),
            tuesday: Some(1.0),
            wednesday: Some(1.0),
            thursday: Some(1.0),
            friday: Some(1.0),
            saturday: Some(0.0),
            sunday: Some(0.0),
        },
        first_day_of_week: 6,
        authorization_number: Some("123-456".into()),
        member_number: Some("123-456".into()),
        program_id: Some("123-456".into()),
        notes: Some(String::new()),
        case_manager: AuthorizationCaseManager {
            name: Some("Jane Smith".into()),
            phone: Some("515-111-2222".into()),
            fax: Some("515-111-3333".into()),
            email: Some("jane.smith@email.com".into()),
        },
    };
    // Numbers compare by value: 10.0 and 10 are the same JSON number for ACCloud, but
    // serde_json keeps the float form, so compare as f64.
    let ours = to_value(&ours);
    let (Value::Object(ours), Value::Object(expected)) = (ours, expected) else {
        unreachable!()
    };
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (k, v) in &expected {
        match v {
            Value::Number(n) => assert_eq!(ours[k].as_f64(), n.as_f64(), "{k}"),
            _ => assert_eq!(&ours[k], v, "{k}"),
        }
    }
}

#[test]
fn authorization_update_matches_guide_step_3_1() {
    let expected = json!({
       "end_at":"2023-11-30", "notes":"", "authorization_number": "123-456",
       "member_number": "123-456", "program_id": "123-456",
       "case_manager_name": "Jane Smith", "case_manager_phone": "515-111-2233",
       "case_manager_fax": "515-111-3333", "case_manager_email": "jane.smith@email.com"
    });
    let ours = AuthorizationUpdate {
        end_at: Some(date("2023-11-30")),
        authorization_number: Some("123-456".into()),
        member_number: Some("123-456".into()),
        program_id: Some("123-456".into()),
        notes: Some(String::new()),
        case_manager: AuthorizationCaseManager {
            name: Some("Jane Smith".into()),
            phone: Some("515-111-2233".into()),
            fax: Some("515-111-3333".into()),
            email: Some("jane.smith@email.com".into()),
        },
    };
    assert_eq!(to_value(&ours), expected);
    assert_eq!(
        to_value(&AuthorizationUpdate {
            end_at: Some(date("2023-11-30")),
            ..Default::default()
        }),
        json!({ "end_at": "2023-11-30" })
    );
}

#[test]
fn new_referral_matches_guide_step_4() {
    let expected = json!({
       "authorization_ids":[8],
       "supply_persona_id":"91c79089-a3ca-4cca-acf4-52fc1f1302c6",
       "referral_type":"service",
       "care_type":"nursing",
       "start_at":"2023-04-01T05:00:00+00:00",
       "end_at":"2023-04-30T05:00:00+00:00",
       "comment": "",
       "case_manager": {
         "name": "Jane Smith", "phone_number": "515-111-2233",
         "fax_number": null, "email": "jane.smith@email.com"
       }
    });
    let ours = NewReferral {
        care_type: CareType::Nursing,
        referral_type: ReferralType::Service,
        start_at: DateTime::parse_from_rfc3339("2023-04-01T05:00:00+00:00").unwrap(),
        end_at: DateTime::parse_from_rfc3339("2023-04-30T05:00:00+00:00").unwrap(),
        supply_persona_id: supply(),
        authorization_ids: vec![AuthorizationId(8)],
        comment: Some(String::new()),
        case_manager: Some(jane()),
    };
    assert_eq!(to_value(&ours), expected);

    // Local midnight keeps its offset on the wire (notes 3.4).
    let chicago = NewReferral {
        start_at: DateTime::parse_from_rfc3339("2023-04-01T00:00:00-05:00").unwrap(),
        ..ours
    };
    assert_eq!(
        to_value(&chicago)["start_at"],
        json!("2023-04-01T00:00:00-05:00")
    );
}

#[test]
fn referral_update_matches_guide_step_4_1_without_supply_persona_id() {
    let expected = json!({
       "authorization_ids":[8],
       "start_at":"2023-04-01T05:00:00+00:00",
       "end_at":"2023-04-30T05:00:00+00:00",
       "comment": "",
       "case_manager": {
         "name": "Jane Smith", "phone_number": "515-111-2233",
         "fax_number": null, "email": "jane.smith@email.com"
       },
       "revision": { "reasons": [ "Updated authorization end date" ], "comment": "" }
    });
    let ours = ReferralUpdate {
        start_at: DateTime::parse_from_rfc3339("2023-04-01T05:00:00+00:00").unwrap(),
        end_at: DateTime::parse_from_rfc3339("2023-04-30T05:00:00+00:00").unwrap(),
        authorization_ids: vec![AuthorizationId(8)],
        comment: Some(String::new()),
        case_manager: Some(jane()),
        revision: RevisionRequest {
            reasons: vec!["Updated authorization end date".into()],
            comment: Some(String::new()),
        },
    };
    assert_eq!(to_value(&ours), expected);
}

#[test]
fn cancel_matches_guide_step_4_2() {
    let ours = CancelReferral {
        reason_code: CancelReason::ProcessingError,
        comment: None,
    };
    assert_eq!(
        to_value(&ours),
        json!({ "reason_code": "processing_error" })
    );
    let with_comment = CancelReferral {
        reason_code: CancelReason::Other,
        comment: Some("moved".into()),
    };
    assert_eq!(
        to_value(&with_comment),
        json!({ "reason_code": "other", "comment": "moved" })
    );
}

#[test]
fn client_update_sends_only_what_is_set() {
    let u = ClientUpdate {
        groups: Some(vec![GroupId(1008), GroupId(3)]),
        timezone: Some("America/Chicago".into()),
        ..Default::default()
    };
    assert_eq!(
        to_value(&u),
        json!({ "groups": [{"id": 1008}, {"id": 3}], "timezone": "America/Chicago" })
    );
    assert_eq!(
        to_value(&ServiceUpdate {
            service_instructions: Some("x".into()),
            ..Default::default()
        }),
        json!({ "service_instructions": "x" })
    );
}

#[test]
fn client_responses_parse() {
    let created: ClientRef =
        serde_json::from_value(json!({ "id": 1001, "external_id": "sor_client_external_id_1" }))
            .unwrap();
    assert_eq!(created.id, ClientId(1001));
    // ClientDetails with the spec's property examples.
    let details: ClientDetails = serde_json::from_value(json!({
        "demographics": { "first_name": "John", "last_name": "Smith", "gender": "M",
                          "location": { "lat": 45.5, "lon": -73.6, "zip": "H2W2R2" } },
        "id": 1001, "ac_id": "AC000000024", "external_id": "sor_client_external_id_1",
        "profile_id": 7890, "branch_id": 2001, "status": "pending",
        "contacts": [], "care_team": [{ "name": "John Smith", "id": 1001, "external_id": "e" }],
        "language": "en", "groups": [{ "id": 1, "name": "Group A" }],
        "cost_centre": null, "tags": [], "timezone": "America/Toronto"
    }))
    .unwrap();
    assert_eq!(details.id, ClientId(1001));
    assert_eq!(details.status, Some(ClientStatus::Pending));
    assert!(details.has_group(GroupId(1)) && !details.has_group(GroupId(1008)));
    assert_eq!(details.demographics.get_str("first_name"), Some("John"));
    assert_eq!(details.timezone.as_deref(), Some("America/Toronto"));
    // Nullable fields.
    let sparse: ClientDetails = serde_json::from_value(json!({
        "id": 5, "ac_id": "AC5", "external_id": null, "profile_id": 1, "demographics": null,
        "branch_id": 1000, "status": null, "contacts": [], "care_team": [], "groups": null
    }))
    .unwrap();
    assert_eq!(sparse.external_id, None);
    assert!(sparse.groups.is_empty() && sparse.demographics.is_empty());
}

#[test]
fn list_responses_parse() {
    let groups: AnyPage<ClientGroup> = serde_json::from_value(json!({
        "count": 1, "page": 1, "total_pages": 1,
        "items": [{ "branch": { "id": 1000, "name": "HQ" }, "description": "csi",
                    "id": 1008, "is_disabled": false, "name": "CSI" }]
    }))
    .unwrap();
    let groups = groups.into_page(1);
    assert_eq!(groups.items[0].id, GroupId(1008));
    assert_eq!(groups.items[0].branch.as_ref().unwrap().id, BranchId(1000));

    let funders: AnyPage<Funder> = serde_json::from_value(json!({
        "count": 1, "page": 1, "total_pages": 1,
        "items": [{ "id": 9, "external_id": "sor_funder_id_1", "name": "Insurance Company",
                    "code": "IC-1", "type": "funder_individual", "status": "enabled",
                    "organization": "Home Healthcare Agency", "organization_code": "HHC-0101",
                    "branch": { "id": 1000, "name": "HQ" } }]
    }))
    .unwrap();
    let f = &funders.into_page(1).items[0];
    assert_eq!(
        (f.id, f.name.as_str(), f.funder_type.as_deref()),
        (FunderId(9), "Insurance Company", Some("funder_individual"))
    );

    let codes: AnyPage<ServiceCode> = serde_json::from_value(json!({
        "count": 1, "page": 1, "total_pages": 2,
        "items": [{ "id": 48, "name": "SC1", "branch": { "id": 1000, "name": "Toronto branch" } }]
    }))
    .unwrap();
    let codes = codes.into_page(1);
    assert!(codes.has_next());
    assert_eq!(codes.items[0].id, ServiceCodeId(48));

    let services: AnyPage<ServiceSummary> = serde_json::from_value(json!({
        "count": 1, "page": 1, "total_pages": 1,
        "items": [{ "alayacare_service_code_id": 1, "alayacare_service_id": 1,
                    "service_code_name": "OTVISIT", "service_id": "sor_service_id_1",
                    "service_name": "PSW Home Visit", "service_start_date": "2021-03-19",
                    "service_status": "active", "service_reason": "hospitalization" }]
    }))
    .unwrap();
    let s = &services.into_page(1).items[0];
    assert_eq!(s.id, ServiceId(1));
    assert_eq!(s.external_id.as_deref(), Some("sor_service_id_1"));
    assert_eq!(s.status, Some(ServiceStatus::Active));
}

#[test]
fn service_responses_parse_with_string_ids() {
    let created: ServiceRef =
        serde_json::from_value(json!({ "id": 1, "external_id": "sor_service_external_id_1" }))
            .unwrap();
    assert_eq!(created.id, ServiceId(1));
    // ServiceDetails documents `alayacare_service_id` as a string with example 347, and
    // `service_id` with the numeric example 347 (notes 6.3).
    let d: ServiceDetails = serde_json::from_value(json!({
        "alayacare_service_code_id": 1, "alayacare_service_id": "347",
        "cost_centre": null, "employee": null,
        "funders": [{ "id": 1, "external_id": "sor_funder_id_1", "name": "Insurance Company",
                      "code": "IC-1", "organization": "Home Healthcare Agency",
                      "organization_code": "HHC-0101", "percentage": 100,
                      "billing_contact": null }],
        "patient": { "id": 1001, "external_id": "sor_client_id_1", "profile_id": 7890,
                     "full_name": "John Smith", "timezone": "America/Toronto" },
        "profile": { "target_agency": "Gem City Home Care" },
        "service_code_name": "OTVISIT", "service_id": 347,
        "service_instructions": "Call in the morning to confirm each visit",
        "service_name": "OT Home Visit", "service_start_date": "2021-03-19",
        "service_status": "active", "start_date": "2018-01-01",
        "status_end_date": "2021-03-21T13:30:00+00:00", "status_reason": "Hospitalized",
        "status_start_date": "2021-03-19T13:30:00+00:00", "use_client_address": true
    }))
    .unwrap();
    assert_eq!(d.id, ServiceId(347));
    assert_eq!(d.external_id.as_deref(), Some("347"));
    assert_eq!(d.patient.as_ref().unwrap().id, ClientId(1001));
    assert_eq!(d.funders[0].percentage, Some(100.0));
    assert_eq!(d.profile["target_agency"], json!("Gem City Home Care"));
}

#[test]
fn authorization_responses_parse() {
    // BaseAuthorization with the spec's property examples.
    let a: Authorization = serde_json::from_value(json!({
        "id": 1, "client_id": 2001, "authorization_number": "ABC123",
        "start_at": "2023-03-13", "end_at": "2023-03-20", "member_number": "AAAABBBB",
        "program_id": "AAAABBBB", "case_manager_name": "AAAABBBB",
        "case_manager_email": "AAAABBBB", "case_manager_fax": "AAAABBBB",
        "case_manager_phone": "AAAABBBB", "rule_type": "HOURS", "rule_daily": 5,
        "rule_weekly": 70, "rule_monthly": 160, "rule_period": 160, "rule_monday": 1,
        "rule_tuesday": 2, "rule_wednesday": 2, "rule_thursday": 3, "rule_friday": 2,
        "rule_saturday": 2, "rule_sunday": 2, "rule_custom": 2, "custom_number_of_days": 2,
        "notes": "Notes about the authorization.", "methodology": "payor_service",
        "state_type_id": 43, "authorization_status": "PROCESSED", "payor_id": 23,
        "payor_id_type": "FUNDER", "calculated_priority": 23, "first_day_of_week": 2,
        "import_id": "AAABBB123", "is_over_utilized": true, "include_non_visit_items": true
    }))
    .unwrap();
    assert_eq!(a.id, AuthorizationId(1));
    assert_eq!(a.client_id, Some(ClientId(2001)));
    assert_eq!(a.start_at, Some(date("2023-03-13")));
    assert_eq!(a.limits.weekly, Some(70.0));
    assert_eq!(a.limits.thursday, Some(3.0));
    assert_eq!(a.rule_type, Some(RuleType::Hours));
    assert_eq!(a.methodology, Some(AuthorizationMethodology::PayorService));
    assert_eq!(a.authorization_status, Some(AuthorizationStatus::Processed));
    assert_eq!(a.case_manager.name.as_deref(), Some("AAAABBBB"));
    assert!(a.service_ids.is_empty());

    // A list item adds service_ids; AUTHI-era date-times and float ids are accepted.
    let list: AnyPage<Authorization> = serde_json::from_value(json!({
        "count": 1, "page": 1, "total_pages": 1,
        "items": [{ "id": 8.0, "client_id": 1060, "service_ids": [21],
                    "start_at": "2023-10-01T00:00:00+00:00", "end_at": "2023-10-30",
                    "methodology": "service", "rule_type": "VISITS", "rule_daily": null }]
    }))
    .unwrap();
    let item = &list.into_page(1).items[0];
    assert_eq!(item.id, AuthorizationId(8));
    assert_eq!(item.service_ids, vec![ServiceId(21)]);
    assert_eq!(item.start_at, Some(date("2023-10-01")));
    assert_eq!(item.methodology, Some(AuthorizationMethodology::Service));
    assert_eq!(item.limits.daily, None);
}

fn referral_detail() -> Value {
    // REFI ReferralOutboxDetailResponse plus MKT's `revision` and `sequence_id`.
    json!({
        "referral": {
            "id": "0b7e8f6a-1111-4a3c-9d7e-2f4a5b6c7d8e",
            "sequence_id": "5a1f0c3e-2222-4b4d-8e9f-0a1b2c3d4e5f",
            "status": "assigned", "care_type": "nursing", "referral_type": "service",
            "start_at": "2023-04-01T05:00:00+00:00", "end_at": "2023-04-30T05:00:00+00:00",
            "created_at": "2023-03-20T14:00:00.123456+00:00", "updated_at": null,
            "comment": "", "offer_id": null, "shift_id": null, "demand_labels": null
        },
        "supply": { "id": "91c79089-a3ca-4cca-acf4-52fc1f1302c6", "name": "Gem City Home Care" },
        "alayacare": { "authorization": {} },
        "case_manager": { "name": "Jane Smith", "phone_number": "515-111-2233",
                          "fax_number": null, "email": "jane.smith@email.com" },
        "price": { "rate": 0, "unit": "per_visit" },
        "client": { "id": "3c2d1e0f-3333-4c5d-9e8f-7a6b5c4d3e2f", "outbox_id": "1060",
                    "demographics": { "first_name": "Frank", "last_name": "Smith" },
                    "address": {}, "contacts": [], "allergies": [], "risks": [],
                    "diagnoses": [], "surgeries": [], "custom_fields": [] },
        "service": { "id": "4d3e2f1a-4444-4d6e-8f9a-1b2c3d4e5f6a", "outbox_id": "21",
                     "name": "Skilled Nursing", "instructions": "Please use buzz code 203" },
        "visits": null,
        "revision": { "revision_group_id": "6e5f4a3b-5555-4e7f-9a0b-2c3d4e5f6a7b",
                      "revision_number": 1, "is_latest_revision": true }
    })
}

#[test]
fn referral_detail_parses_and_keeps_no_client_phi() {
    let r: Referral = serde_json::from_value(referral_detail()).unwrap();
    assert_eq!(r.referral.status, ReferralStatus::Assigned);
    assert_eq!(r.referral.care_type, Some(CareType::Nursing));
    assert_eq!(
        r.referral.start_at.unwrap().to_rfc3339(),
        "2023-04-01T05:00:00+00:00"
    );
    assert!(r.referral.sequence_id.is_some());
    assert_eq!(r.supply.as_ref().unwrap().id, supply());
    assert_eq!(
        r.client.as_ref().unwrap().outbox_id.as_deref(),
        Some("1060")
    );
    assert_eq!(r.service.as_ref().unwrap().outbox_id.as_deref(), Some("21"));
    let rev = r.revision.as_ref().unwrap();
    assert_eq!((rev.revision_number, rev.is_latest_revision), (1, true));
    assert_eq!(r.revision_group_id(), Some(rev.revision_group_id));
    assert!(!format!("{r:?}").contains("Frank"));

    // REFI's schema has no `revision` / `sequence_id`: still a referral.
    let mut bare = referral_detail();
    bare.as_object_mut().unwrap().remove("revision");
    bare["referral"]
        .as_object_mut()
        .unwrap()
        .remove("sequence_id");
    let r: Referral = serde_json::from_value(bare).unwrap();
    assert_eq!(r.revision_group_id(), None);
}

#[test]
fn referral_collection_page_parses() {
    let page: AnyPage<Referral> = serde_json::from_value(json!({
        "page": 1, "items_per_page": 100, "total_items": 2, "total_pages": 1,
        "items": [
            { "referral": { "id": "0b7e8f6a-1111-4a3c-9d7e-2f4a5b6c7d8e",
                            "sequence_id": "5a1f0c3e-2222-4b4d-8e9f-0a1b2c3d4e5f",
                            "care_type": "nursing", "referral_type": "service",
                            "status": "cancelled", "reason_code": "processing_error",
                            "cancellation_comment": "dup",
                            "start_at": "2023-04-01T05:00:00+00:00",
                            "created_at": "2023-03-20T14:00:00+00:00" },
              "supply": { "id": "91c79089-a3ca-4cca-acf4-52fc1f1302c6", "name": "Gem" },
              "alayacare": { "has_authorization": true },
              "client": { "id": "3c2d1e0f-3333-4c5d-9e8f-7a6b5c4d3e2f", "outbox_id": "1060",
                          "demographics": { "first_name": "Frank", "last_name": "Smith" } },
              "service": { "id": "4d3e2f1a-4444-4d6e-8f9a-1b2c3d4e5f6a", "outbox_id": "21",
                           "name": "Skilled Nursing" },
              "revision": { "revision_group_id": "6e5f4a3b-5555-4e7f-9a0b-2c3d4e5f6a7b",
                            "revision_number": 2, "revision_reasons": ["End date changed"],
                            "revision_comment": "", "is_latest_revision": true } }
        ]
    }))
    .unwrap();
    let page = page.into_page(1);
    assert_eq!(page.total_items, Some(2));
    let r = &page.items[0];
    assert_eq!(r.referral.status, ReferralStatus::Cancelled);
    assert_eq!(r.referral.reason_code.as_deref(), Some("processing_error"));
    assert_eq!(r.referral.end_at, None);
    assert_eq!(
        r.revision.as_ref().unwrap().revision_reasons,
        ["End date changed"]
    );
}

#[test]
fn trusted_network_files_and_upload_answers_parse() {
    let tn: AnyPage<Organization> = serde_json::from_value(json!({
        "page": 1, "items_per_page": 100, "total_items": 1, "total_pages": 1,
        "items": [{ "name": "Gem City Home Care", "id": "91c79089-a3ca-4cca-acf4-52fc1f1302c6" }]
    }))
    .unwrap();
    assert_eq!(tn.into_page(1).items[0].id, supply());

    let bare: FolderListing = serde_json::from_value(json!([
        { "last_modified": "2016-01-14T18:58:44+00:00",
          "name": "client/1002/Physician Order/", "size": 0 },
        { "last_modified": "2016-08-24T18:45:29+00:00",
          "name": "client/1002/picture.jpg", "size": 5499 }
    ]))
    .unwrap();
    let entries = bare.into_entries();
    assert!(entries[0].is_dir());
    assert_eq!(entries[0].basename(), "Physician Order");
    assert_eq!(
        (entries[1].basename(), entries[1].size),
        ("picture.jpg", Some(5499))
    );
    let wrapped: FolderListing = serde_json::from_value(json!({
        "employee_id": 1, "employee_external_id": "e",
        "entries": [{ "name": "x.pdf", "last_modified": "2016-08-24T18:45:29+00:00", "size": 1 }]
    }))
    .unwrap();
    assert_eq!(wrapped.into_entries()[0].name, "x.pdf");

    let up: UploadAnswer =
        serde_json::from_value(json!({ "filepath": "client/1060/Marketplace Documents/x.pdf" }))
            .unwrap();
    assert!(up.filepath.ends_with("x.pdf"));
}
