//! Inputs shaped like the guide's examples.

use chrono::{DateTime, NaiveDate};
use refbridge_accloud::*;
use serde_json::{Value, json};

pub fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

pub fn supply() -> SupplyPersonaId {
    SupplyPersonaId("91c79089-a3ca-4cca-acf4-52fc1f1302c6".parse().unwrap())
}

pub fn referral_id() -> ReferralId {
    ReferralId("0b7e8f6a-1111-4a3c-9d7e-2f4a5b6c7d8e".parse().unwrap())
}

pub fn revision_group() -> RevisionGroupId {
    RevisionGroupId("6e5f4a3b-5555-4e7f-9a0b-2c3d4e5f6a7b".parse().unwrap())
}

pub fn new_client() -> NewClient {
    NewClient {
        external_id: "patient-42".into(),
        branch_id: Some(BranchId(1000)),
        demographics: Demographics::new("Frank", "Smith").with("birthday", "1999-01-31"),
        language: Some("en".into()),
        groups: vec![GroupId(1008)],
        timezone: Some("America/Chicago".into()),
    }
}

pub fn new_client_json() -> Value {
    json!({
        "external_id": "patient-42",
        "branch_id": 1000,
        "demographics": { "first_name": "Frank", "last_name": "Smith", "birthday": "1999-01-31" },
        "language": "en",
        "groups": [{ "id": 1008 }],
        "timezone": "America/Chicago"
    })
}

pub fn new_service() -> NewService {
    NewService {
        service_id: "8f14e45f-ceea-4c67-a1b2-3c4d5e6f7a8b".into(),
        name: "Skilled Nursing".into(),
        client: ServiceClientRef::AlayaCare(ClientId(1060)),
        start_date: None,
        projected_end_date: None,
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
        profile: [("target_agency".to_owned(), json!("Gem City Home Care"))]
            .into_iter()
            .collect(),
    }
}

pub fn new_authorization() -> NewAuthorization {
    NewAuthorization {
        client_id: ClientId(1060),
        service_ids: vec![ServiceId(21)],
        start_at: date("2023-10-01"),
        end_at: Some(date("2023-10-30")),
        methodology: AuthorizationMethodology::Service,
        rule_type: RuleType::Visits,
        limits: AuthorizationLimits {
            weekly: Some(3.0),
            ..Default::default()
        },
        first_day_of_week: 6,
        authorization_number: Some("123-456".into()),
        member_number: None,
        program_id: None,
        notes: None,
        case_manager: AuthorizationCaseManager::default(),
    }
}

pub fn new_referral() -> NewReferral {
    NewReferral {
        care_type: CareType::Nursing,
        referral_type: ReferralType::Service,
        start_at: DateTime::parse_from_rfc3339("2023-10-01T00:00:00-05:00").unwrap(),
        end_at: DateTime::parse_from_rfc3339("2023-10-30T00:00:00-05:00").unwrap(),
        supply_persona_id: supply(),
        authorization_ids: vec![AuthorizationId(8)],
        comment: None,
        case_manager: None,
    }
}

pub fn referral_answer(id: &str, revision_number: u32) -> Value {
    json!({
        "referral": {
            "id": id, "status": "assigned", "care_type": "nursing", "referral_type": "service",
            "start_at": "2023-10-01T05:00:00+00:00", "end_at": "2023-10-30T05:00:00+00:00",
            "created_at": "2023-09-20T14:00:00+00:00"
        },
        "supply": { "id": "91c79089-a3ca-4cca-acf4-52fc1f1302c6", "name": "Gem City Home Care" },
        "price": { "rate": 0, "unit": "per_visit" },
        "client": { "id": "3c2d1e0f-3333-4c5d-9e8f-7a6b5c4d3e2f", "outbox_id": "1060" },
        "service": { "id": "4d3e2f1a-4444-4d6e-8f9a-1b2c3d4e5f6a", "outbox_id": "21",
                     "name": "Skilled Nursing" },
        "revision": { "revision_group_id": "6e5f4a3b-5555-4e7f-9a0b-2c3d4e5f6a7b",
                      "revision_number": revision_number, "is_latest_revision": true }
    })
}
