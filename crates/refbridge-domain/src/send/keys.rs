//! The natural key of each object a send creates or changes: committed with the step's intent
//! before its call, and matched by the lookup after an unknown outcome. One function per kind.
//!
//! | step | natural key | found again by |
//! |---|---|---|
//! | client | `external_id` = patient id | the client by external id (a repeated create is 409) |
//! | service | `service_id` = request id | the service by external id |
//! | authorization | client + service + start + end + rule type + limits + first day + number | the authorizations of the client and service from the start date; exact match |
//! | referral | service + supplier + client | the outbox referrals by supplier and client; the service's outbox id, not cancelled |
//! | attachment | client + folder + file name + size + SHA-256 | the client's attachments folder |
//! | referral update | revision group + the revision revised + reasons + dates | a newer revision of the group with these reasons |
//! | referral cancel | revision group + reason | the latest revision is cancelled |
//! | updates and deletes | the object's id | nothing: they are sent again |

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};

use super::StepKind;
use crate::approval::{AuthorizationTerms, Limits, RuleType};

/// What a client is known by: our patient id as its external id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientKey {
    pub external_id: String,
}

/// What a service is known by: the referral request's id as its external id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceKey {
    pub service_id: String,
}

/// What tells two authorizations of one service apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationKey {
    pub client_id: Option<i64>,
    pub service_id: Option<i64>,
    pub start_at: NaiveDate,
    pub end_at: NaiveDate,
    pub rule_type: RuleType,
    pub limits: Limits,
    pub first_day_of_week: u8,
    pub authorization_number: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferralKey {
    pub service_id: Option<i64>,
    pub supply_persona_id: String,
    pub client_outbox_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachmentKey {
    pub client_id: Option<i64>,
    pub folder: String,
    pub file_name: String,
    pub size: i64,
    pub sha256: String,
}

/// A revision of the referral: the revision it revises and what it says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferralUpdateKey {
    pub revision_group_id: Option<String>,
    pub base_referral_id: String,
    pub base_revision_number: u32,
    pub reasons: Vec<String>,
    pub start_at: DateTime<FixedOffset>,
    pub end_at: DateTime<FixedOffset>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferralCancelKey {
    pub revision_group_id: Option<String>,
    pub reason_code: String,
}

/// An update or delete of an object whose ACCloud id is known: `{ "<object>_id": id }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ObjectKey {
    #[serde(rename = "client_id")]
    Client(Option<i64>),
    #[serde(rename = "service_id")]
    Service(Option<i64>),
    #[serde(rename = "authorization_id")]
    Authorization(Option<i64>),
}

/// The natural key of any step, as committed with its intent.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum NaturalKey {
    Client(ClientKey),
    Service(ServiceKey),
    Authorization(AuthorizationKey),
    Referral(ReferralKey),
    Attachment(AttachmentKey),
    ReferralUpdate(ReferralUpdateKey),
    ReferralCancel(ReferralCancelKey),
    Object(ObjectKey),
}

impl NaturalKey {
    /// Reads back the key a step of `kind` committed.
    pub fn from_json(kind: StepKind, json: &str) -> Result<Self, serde_json::Error> {
        use serde_json::from_str;
        Ok(match kind {
            StepKind::Client => Self::Client(from_str(json)?),
            StepKind::Service => Self::Service(from_str(json)?),
            StepKind::Authorization => Self::Authorization(from_str(json)?),
            StepKind::Referral => Self::Referral(from_str(json)?),
            StepKind::Attachment => Self::Attachment(from_str(json)?),
            StepKind::ReferralUpdate => Self::ReferralUpdate(from_str(json)?),
            StepKind::ReferralCancel => Self::ReferralCancel(from_str(json)?),
            StepKind::ClientUpdate
            | StepKind::ServiceUpdate
            | StepKind::AuthorizationUpdate
            | StepKind::AuthorizationDelete
            | StepKind::AuthorizationWithdraw => Self::Object(from_str(json)?),
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a natural key is plain data")
    }
}

pub fn client(patient_id: &str) -> ClientKey {
    ClientKey {
        external_id: patient_id.to_owned(),
    }
}

pub fn service(request_id: &str) -> ServiceKey {
    ServiceKey {
        service_id: request_id.to_owned(),
    }
}

/// The authorization's key from its terms, on the client and service when they are known.
pub fn authorization(
    client_id: Option<i64>,
    service_id: Option<i64>,
    a: &AuthorizationTerms,
) -> AuthorizationKey {
    AuthorizationKey {
        client_id,
        service_id,
        start_at: a.start_date,
        end_at: a.end_date,
        rule_type: a.rule_type,
        limits: a.limits.clone(),
        first_day_of_week: a.first_day_of_week,
        authorization_number: a.authorization_number.clone(),
    }
}

/// Two authorizations of one service that ACCloud could not tell apart.
pub fn same_authorization(a: &AuthorizationTerms, b: &AuthorizationTerms) -> bool {
    authorization(None, None, a) == authorization(None, None, b)
}

pub fn referral(
    service_id: Option<i64>,
    supply_persona_id: &str,
    client_id: Option<i64>,
) -> ReferralKey {
    ReferralKey {
        service_id,
        supply_persona_id: supply_persona_id.to_owned(),
        client_outbox_id: client_id.map(|c| c.to_string()),
    }
}

pub fn attachment(
    client_id: Option<i64>,
    folder: &str,
    file_name: &str,
    size: i64,
    sha256: &str,
) -> AttachmentKey {
    AttachmentKey {
        client_id,
        folder: folder.to_owned(),
        file_name: file_name.to_owned(),
        size,
        sha256: sha256.to_owned(),
    }
}
