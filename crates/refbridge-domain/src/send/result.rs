//! What a done step keeps of ACCloud's answer: typed, stored as JSON, read back by kind.

use serde::{Deserialize, Serialize};

use super::StepKind;

fn is_false(b: &bool) -> bool {
    !*b
}

/// The client step (created, or an existing client reused) and the client update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientResult {
    pub client_id: i64,
    /// The patient's client existed already and was reused.
    #[serde(default, skip_serializing_if = "is_false")]
    pub reused: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub updated: bool,
}

/// The service step and the service update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceResult {
    pub service_id: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub updated: bool,
}

/// The authorization steps: create, update, delete and withdraw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationResult {
    /// Absent when a delete found nothing to delete.
    #[serde(default)]
    pub authorization_id: Option<i64>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub updated: bool,
    /// For a delete or withdrawal: whether an authorization was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
}

/// The referral steps: the referral, its revisions, its cancellation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferralResult {
    pub referral_id: String,
    #[serde(default)]
    pub revision_group_id: Option<String>,
    #[serde(default)]
    pub revision_number: Option<u32>,
    #[serde(default)]
    pub sequence_id: Option<String>,
    /// The agency's status of this revision (assigned, processed, cancelled).
    pub status: String,
    /// A revision: the agency's status of the revision it revised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_status: Option<String>,
    /// A revision: the reasons sent with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasons: Option<Vec<String>>,
    /// A cancellation: its reason code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
}

/// An uploaded file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachmentResult {
    /// Its path in ACCloud's Files API.
    pub filepath: String,
    pub file_name: String,
    pub size: i64,
    /// Found by the lookup after an unknown outcome rather than answered by the upload.
    #[serde(default, skip_serializing_if = "is_false")]
    pub found_by_lookup: bool,
}

/// What any done step keeps.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum StepResult {
    Client(ClientResult),
    Service(ServiceResult),
    Authorization(AuthorizationResult),
    Referral(ReferralResult),
    Attachment(AttachmentResult),
}

/// A stored result that does not fit its step's kind.
#[derive(Debug, thiserror::Error)]
#[error("the stored result of a {} step is unreadable: {source}", .kind.as_str())]
pub struct ResultError {
    kind: StepKind,
    source: serde_json::Error,
}

impl StepResult {
    /// Reads back what a step of `kind` stored.
    pub fn from_json(kind: StepKind, json: &str) -> Result<Self, ResultError> {
        use serde_json::from_str;
        let parsed = match kind {
            StepKind::Client | StepKind::ClientUpdate => from_str(json).map(Self::Client),
            StepKind::Service | StepKind::ServiceUpdate => from_str(json).map(Self::Service),
            StepKind::Authorization
            | StepKind::AuthorizationUpdate
            | StepKind::AuthorizationDelete
            | StepKind::AuthorizationWithdraw => from_str(json).map(Self::Authorization),
            StepKind::Referral | StepKind::ReferralUpdate | StepKind::ReferralCancel => {
                from_str(json).map(Self::Referral)
            }
            StepKind::Attachment => from_str(json).map(Self::Attachment),
        };
        parsed.map_err(|source| ResultError { kind, source })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a step result is plain data")
    }

    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a step result is plain data")
    }

    pub fn referral(&self) -> Option<&ReferralResult> {
        match self {
            Self::Referral(r) => Some(r),
            _ => None,
        }
    }

    /// What the agency shows of the referral, as ACCloud answered this step: the status of
    /// the revision the step created, read or cancelled (a new revision is `assigned` again,
    /// whatever the agency had done with the one it revised).
    pub fn agency_status(&self) -> Option<&str> {
        Some(&self.referral()?.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_round_trip_by_kind() {
        let referral = StepResult::Referral(ReferralResult {
            referral_id: "r".into(),
            revision_group_id: Some("g".into()),
            revision_number: Some(2),
            sequence_id: None,
            status: "assigned".into(),
            base_status: Some("processed".into()),
            reasons: Some(vec!["Authorization end date changed".into()]),
            reason_code: None,
        });
        let json = referral.to_json();
        assert_eq!(
            StepResult::from_json(StepKind::ReferralUpdate, &json).unwrap(),
            referral
        );
        assert_eq!(referral.agency_status(), Some("assigned"));
        let client = StepResult::Client(ClientResult {
            client_id: 7,
            reused: true,
            updated: false,
        });
        assert_eq!(client.to_json(), r#"{"client_id":7,"reused":true}"#);
        assert_eq!(
            StepResult::from_json(StepKind::Client, &client.to_json()).unwrap(),
            client
        );
        assert!(StepResult::from_json(StepKind::Attachment, &client.to_json()).is_err());
    }

    #[test]
    fn a_delete_that_found_nothing_reads_back() {
        let r = StepResult::from_json(
            StepKind::AuthorizationWithdraw,
            r#"{"deleted":null,"found":false}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            StepResult::Authorization(AuthorizationResult {
                authorization_id: None,
                updated: false,
                deleted: None,
            })
        );
    }
}
