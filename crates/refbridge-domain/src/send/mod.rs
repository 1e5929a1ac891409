//! The send vocabulary: what a send to ACCloud is made of, defined once.
//!
//! A send is an ordered list of [`Step`]s, one per ACCloud object or call, grouped in
//! changes ([`ChangeKind`]): the approval's first send, then each change asked after it. Each
//! step has a [`StepState`]; the referral's send job has a [`JobState`]. What a step commits
//! before its call is its natural key ([`keys`]); what it keeps of ACCloud's answer is a typed
//! [`StepResult`]. The planners ([`plan`]) turn an approval, a change of terms, a
//! cancellation, new documents or a withdrawal into steps; they are pure, so the API, the
//! storage and the workers share one set of rules.
//!
//! Adding a step kind: a [`StepKind`] variant (its name and its ACCloud call), a [`Step`]
//! variant, and the module that runs it in `refbridge-saga` (see `docs/ARCHITECTURE.md`).

pub mod files;
pub mod keys;
pub mod plan;
mod result;

use serde::{Deserialize, Serialize};

use crate::FileId;
use crate::ReferralStatus;

pub use keys::NaturalKey;
pub use result::{
    AttachmentResult, AuthorizationResult, ClientResult, ReferralResult, ResultError,
    ServiceResult, StepResult,
};

/// What a step does, without the item it does it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Create the client (or reuse the patient's existing one).
    Client,
    /// Create the service.
    Service,
    /// Create one authorization.
    Authorization,
    /// Create the referral approval.
    Referral,
    /// Upload one file to the referral's client attachments.
    Attachment,
    /// After the send: the client's demographics changed.
    ClientUpdate,
    /// After the send: the service's instructions changed.
    ServiceUpdate,
    /// After the send: fields ACCloud lets us update changed.
    AuthorizationUpdate,
    /// After the send: an authorization goes (replaced or removed).
    AuthorizationDelete,
    /// A new revision of the referral with the current authorizations, dates and reasons.
    ReferralUpdate,
    /// Cancel the latest revision.
    ReferralCancel,
    /// An authorization withdrawn mid-send (its plan was archived): delete it if ACCloud has
    /// it (created, or landing from an interrupted call).
    AuthorizationWithdraw,
}

names!(StepKind {
    Client => "client",
    Service => "service",
    Authorization => "authorization",
    Referral => "referral",
    Attachment => "attachment",
    ClientUpdate => "client_update",
    ServiceUpdate => "service_update",
    AuthorizationUpdate => "authorization_update",
    AuthorizationDelete => "authorization_delete",
    ReferralUpdate => "referral_update",
    ReferralCancel => "referral_cancel",
    AuthorizationWithdraw => "authorization_withdraw",
});

impl StepKind {
    /// The ACCloud call the step makes, as a person reads it in a plan.
    pub fn call(self) -> &'static str {
        match self {
            Self::Client => "POST /ext/api/v2/patients/clients",
            Self::Service => "POST /ext/api/v2/scheduler/services",
            Self::Authorization => "POST /ext/api/v2/scheduler/authorizations",
            Self::Referral => "POST /api/v1/alayamarket/outbox/referrals/from_service/{service_id}",
            Self::Attachment => {
                "POST /api/v1/alayamarket/outbox/referrals/{referral_id}/client_attachment"
            }
            Self::ClientUpdate => "PUT /ext/api/v2/patients/clients/{id}",
            Self::ServiceUpdate => "PUT /ext/api/v2/scheduler/services/{id}",
            Self::AuthorizationUpdate => "PUT /ext/api/v2/scheduler/authorizations/{id}",
            Self::AuthorizationDelete | Self::AuthorizationWithdraw => {
                "DELETE /ext/api/v2/scheduler/authorizations/{id}"
            }
            Self::ReferralUpdate => {
                "POST /api/v1/alayamarket/outbox/referrals/from_service/{service_id}/update/{latest_referral_id}"
            }
            Self::ReferralCancel => {
                "POST /api/v1/alayamarket/outbox/referrals/{latest_referral_id}/cancel"
            }
        }
    }

    /// A call that gives the same result when repeated (PUT, DELETE): after an unknown
    /// outcome it is sent again instead of looked up.
    pub fn is_repeatable(self) -> bool {
        matches!(
            self,
            Self::ClientUpdate
                | Self::ServiceUpdate
                | Self::AuthorizationUpdate
                | Self::AuthorizationDelete
                | Self::AuthorizationWithdraw
        )
    }

    /// Whether the ACCloud id of the step's object may be logged: an attachment's is its
    /// path, which carries the file's name (personal data, as file names can be).
    pub fn id_may_be_logged(self) -> bool {
        !matches!(self, Self::Attachment)
    }

    /// Whether the step's lookup must pass over the uploads other steps recorded for the
    /// client (`Input::claimed_files` in the saga).
    pub fn finds_among_uploads(self) -> bool {
        matches!(self, Self::Attachment)
    }

    /// In plain words, for messages: "authorization update".
    pub fn label(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Service => "service",
            Self::Authorization => "authorization",
            Self::Referral => "referral",
            Self::Attachment => "attachment",
            Self::ClientUpdate => "client update",
            Self::ServiceUpdate => "service update",
            Self::AuthorizationUpdate => "authorization update",
            Self::AuthorizationDelete => "authorization delete",
            Self::ReferralUpdate => "referral update",
            Self::ReferralCancel => "referral cancel",
            Self::AuthorizationWithdraw => "authorization withdraw",
        }
    }
}

/// One step of a send: its kind and the item it acts on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Step {
    Client,
    Service,
    /// The index of the authorization in the terms in force.
    Authorization(usize),
    Referral,
    /// The referral request file to upload.
    Attachment(FileId),
    ClientUpdate,
    ServiceUpdate,
    AuthorizationUpdate(usize),
    AuthorizationDelete(usize),
    ReferralUpdate,
    ReferralCancel(CancelReason),
    AuthorizationWithdraw(usize),
}

impl Step {
    pub fn kind(&self) -> StepKind {
        match self {
            Self::Client => StepKind::Client,
            Self::Service => StepKind::Service,
            Self::Authorization(_) => StepKind::Authorization,
            Self::Referral => StepKind::Referral,
            Self::Attachment(_) => StepKind::Attachment,
            Self::ClientUpdate => StepKind::ClientUpdate,
            Self::ServiceUpdate => StepKind::ServiceUpdate,
            Self::AuthorizationUpdate(_) => StepKind::AuthorizationUpdate,
            Self::AuthorizationDelete(_) => StepKind::AuthorizationDelete,
            Self::ReferralUpdate => StepKind::ReferralUpdate,
            Self::ReferralCancel(_) => StepKind::ReferralCancel,
            Self::AuthorizationWithdraw(_) => StepKind::AuthorizationWithdraw,
        }
    }

    /// The stored item: the authorization's index, the file's id, the cancel reason, or
    /// empty.
    pub fn item(&self) -> String {
        match self {
            Self::Authorization(i)
            | Self::AuthorizationUpdate(i)
            | Self::AuthorizationDelete(i)
            | Self::AuthorizationWithdraw(i) => i.to_string(),
            Self::Attachment(f) => f.to_string(),
            Self::ReferralCancel(r) => r.as_str().to_owned(),
            Self::Client
            | Self::Service
            | Self::Referral
            | Self::ClientUpdate
            | Self::ServiceUpdate
            | Self::ReferralUpdate => String::new(),
        }
    }

    /// The step stored as `kind` and `item`; `None` when they do not name a step.
    pub fn parse(kind: &str, item: &str) -> Option<Step> {
        let index = || item.parse::<usize>().ok();
        Some(match StepKind::parse(kind)? {
            StepKind::Client => Self::Client,
            StepKind::Service => Self::Service,
            StepKind::Authorization => Self::Authorization(index()?),
            StepKind::Referral => Self::Referral,
            StepKind::Attachment => Self::Attachment(FileId::parse(item).ok()?),
            StepKind::ClientUpdate => Self::ClientUpdate,
            StepKind::ServiceUpdate => Self::ServiceUpdate,
            StepKind::AuthorizationUpdate => Self::AuthorizationUpdate(index()?),
            StepKind::AuthorizationDelete => Self::AuthorizationDelete(index()?),
            StepKind::ReferralUpdate => Self::ReferralUpdate,
            StepKind::ReferralCancel => Self::ReferralCancel(CancelReason::parse(item)?),
            StepKind::AuthorizationWithdraw => Self::AuthorizationWithdraw(index()?),
        })
    }
}

/// The state of one step of a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Not tried yet, or safe to try again (nothing was created).
    Pending,
    /// The intent is committed and the call may be under way.
    InFlight,
    /// The last call's outcome is unknown: look the object up before creating again.
    Unknown,
    Done,
    /// Stopped: a definite rejection or exhausted retries. A human resumes it.
    Failed,
    /// Not to be done any more (its authorization was withdrawn).
    Skipped,
    /// Skipped by a withdrawal, then planned again, after it, by a resume.
    Replanned,
}

names!(StepState {
    Pending => "pending",
    InFlight => "in_flight",
    Unknown => "unknown",
    Done => "done",
    Failed => "failed",
    Skipped => "skipped",
    Replanned => "replanned",
});

impl StepState {
    /// A call may have been made and may have landed: the object may exist in ACCloud.
    pub fn may_exist(self) -> bool {
        matches!(self, Self::InFlight | Self::Unknown | Self::Done)
    }

    /// The states a withdrawal leaves alone; every other step is skipped.
    pub const SETTLED: [StepState; 3] = [Self::Done, Self::Skipped, Self::Replanned];
}

/// The state of a referral's send job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Workers run it when it is due.
    Ready,
    /// Stopped until a person resumes it.
    Paused,
    /// Every step is done.
    Done,
}

names!(JobState {
    Ready => "ready",
    Paused => "paused",
    Done => "done",
});

/// What was asked of a send: its approval, then each change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The approval: the first send (change 0).
    Approval,
    /// New terms after the send (stored as `change`).
    #[serde(rename = "change")]
    Terms,
    Cancel,
    Documents,
    /// A plan archived during the first send withdrew authorizations.
    Withdrawal,
    /// The first send planned again after a withdrawal.
    Resume,
}

/// How a send run ends once every step of its latest change is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The referral is at the agency as approved (or as changed).
    Sent,
    /// The referral was cancelled in ACCloud.
    Cancelled,
    /// The withdrawn authorizations are gone; the referral stays with a reviewer, paused
    /// with this reason, until a resume sends it.
    AwaitingResume(&'static str),
}

/// Why a send finished after a withdrawal waits for a person.
pub const WITHDRAWN_PAUSE_REASON: &str = "authorization withdrawn: resume, with corrected terms if the plan changed, to send the referral";

names!(ChangeKind {
    Approval => "approval",
    Terms => "change",
    Cancel => "cancel",
    Documents => "documents",
    Withdrawal => "withdrawal",
    Resume => "resume",
});

impl ChangeKind {
    /// Part of the first send: the approval, and the withdrawals and resumes that interrupt
    /// and plan it again. A referral whose changes are all of these has not been sent yet.
    pub fn is_first_send(self) -> bool {
        matches!(self, Self::Approval | Self::Withdrawal | Self::Resume)
    }

    /// How a run whose latest change is of this kind ends.
    pub fn run_end(self) -> RunEnd {
        match self {
            Self::Withdrawal => RunEnd::AwaitingResume(WITHDRAWN_PAUSE_REASON),
            Self::Cancel => RunEnd::Cancelled,
            Self::Approval | Self::Terms | Self::Documents | Self::Resume => RunEnd::Sent,
        }
    }
}

/// The statuses of a referral whose send is under way or stopped (not yet sent, or being
/// changed).
pub const SEND_OPEN_STATUSES: [ReferralStatus; 3] = [
    ReferralStatus::Approved,
    ReferralStatus::Sending,
    ReferralStatus::NeedsAttention,
];

/// The agency's statuses after which it does nothing more with a referral: the workers stop
/// re-reading it.
pub const AGENCY_SETTLED_STATUSES: [&str; 2] = ["processed", AGENCY_CANCELLED];

/// ACCloud's status of a cancelled referral.
pub const AGENCY_CANCELLED: &str = "cancelled";

/// Why a change cannot be recorded now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeRefused {
    /// The first send or another change is under way: try again once it is sent.
    InProgress,
    /// The referral is in a state no change applies to (received, denied, cancelled).
    NotChangeable(ReferralStatus),
}

/// Whether a change (new terms, a cancellation, documents) may be recorded for a referral in
/// `status` whose send job is in `job`: only once everything asked before has been sent.
pub fn may_change(status: ReferralStatus, job: Option<JobState>) -> Result<(), ChangeRefused> {
    match (status, job) {
        (ReferralStatus::Sent, Some(JobState::Done)) => Ok(()),
        (s, _) if SEND_OPEN_STATUSES.contains(&s) => Err(ChangeRefused::InProgress),
        (s, _) => Err(ChangeRefused::NotChangeable(s)),
    }
}

/// The reasons a referral approval can be cancelled for (ACCloud's seven `reason_code`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    DatetimeChange,
    ClientRequest,
    ClientHospitalization,
    ClientPassedAway,
    ClientRefusedService,
    ProcessingError,
    Other,
}

names!(CancelReason {
    DatetimeChange => "datetime_change",
    ClientRequest => "client_request",
    ClientHospitalization => "client_hospitalization",
    ClientPassedAway => "client_passed_away",
    ClientRefusedService => "client_refused_service",
    ProcessingError => "processing_error",
    Other => "other",
});

/// The longest cancellation comment ACCloud keeps, in characters.
pub const MAX_CANCEL_COMMENT_CHARS: usize = 1000;

/// A cancellation as asked: the reason and an optional comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancellation {
    pub reason: CancelReason,
    pub comment: Option<String>,
}

impl Cancellation {
    /// Checks a cancellation request: `reason_code` one of the seven codes, `comment` (blank
    /// is none) at most [`MAX_CANCEL_COMMENT_CHARS`] characters. Every problem is reported.
    pub fn parse(
        reason_code: Option<&str>,
        comment: Option<&str>,
    ) -> Result<Self, crate::Violations> {
        let mut v = crate::Violations::default();
        let reason = CancelReason::parse(reason_code.map(str::trim).unwrap_or_default());
        if reason.is_none() {
            let codes: Vec<&str> = CancelReason::ALL.iter().map(|r| r.as_str()).collect();
            v.push(
                "reason_code",
                format!("must be one of {}", codes.join(", ")),
            );
        }
        let comment = comment.map(str::trim).filter(|c| !c.is_empty());
        if comment.is_some_and(|c| c.chars().count() > MAX_CANCEL_COMMENT_CHARS) {
            v.push(
                "comment",
                format!("must be at most {MAX_CANCEL_COMMENT_CHARS} characters"),
            );
        }
        match reason {
            Some(reason) if v.is_empty() => Ok(Self {
                reason,
                comment: comment.map(str::to_owned),
            }),
            _ => Err(v),
        }
    }

    /// The reason recorded with the change (and shown in its timeline).
    pub fn reason_text(&self) -> String {
        format!("Cancelled: {}", self.reason.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip_through_kind_and_item() {
        let file = FileId::new();
        for s in [
            Step::Client,
            Step::Service,
            Step::Authorization(3),
            Step::Referral,
            Step::Attachment(file),
            Step::ClientUpdate,
            Step::ServiceUpdate,
            Step::AuthorizationUpdate(1),
            Step::AuthorizationDelete(2),
            Step::ReferralUpdate,
            Step::ReferralCancel(CancelReason::ClientRequest),
            Step::AuthorizationWithdraw(0),
        ] {
            assert_eq!(Step::parse(s.kind().as_str(), &s.item()), Some(s));
        }
        assert_eq!(Step::parse("authorization", "x"), None);
        assert_eq!(Step::parse("referral_cancel", "bored"), None);
        assert_eq!(Step::parse("teleport", ""), None);
    }

    /// Each stored name parses back, and is the value's serde name too.
    fn names_agree<T>(all: &[T], as_str: fn(T) -> &'static str, parse: fn(&str) -> Option<T>)
    where
        T: Copy + PartialEq + std::fmt::Debug + Serialize,
    {
        for &v in all {
            assert_eq!(parse(as_str(v)), Some(v));
            assert_eq!(
                serde_json::to_value(v).unwrap(),
                serde_json::Value::String(as_str(v).into())
            );
        }
        assert_eq!(parse("no such name"), None);
    }

    #[test]
    fn names_round_trip() {
        names_agree(StepKind::ALL, StepKind::as_str, StepKind::parse);
        names_agree(StepState::ALL, StepState::as_str, StepState::parse);
        names_agree(JobState::ALL, JobState::as_str, JobState::parse);
        names_agree(ChangeKind::ALL, ChangeKind::as_str, ChangeKind::parse);
        names_agree(CancelReason::ALL, CancelReason::as_str, CancelReason::parse);
        assert!(StepKind::ALL.iter().all(|k| !k.call().is_empty()));
    }

    #[test]
    fn a_run_ends_by_its_latest_change() {
        assert_eq!(ChangeKind::Cancel.run_end(), RunEnd::Cancelled);
        assert_eq!(ChangeKind::Terms.run_end(), RunEnd::Sent);
        assert_eq!(ChangeKind::Resume.run_end(), RunEnd::Sent);
        assert!(matches!(
            ChangeKind::Withdrawal.run_end(),
            RunEnd::AwaitingResume(_)
        ));
    }

    #[test]
    fn changes_wait_for_the_send() {
        assert_eq!(
            may_change(ReferralStatus::Sent, Some(JobState::Done)),
            Ok(())
        );
        assert_eq!(
            may_change(ReferralStatus::Sending, Some(JobState::Ready)),
            Err(ChangeRefused::InProgress)
        );
        assert_eq!(
            may_change(ReferralStatus::NeedsAttention, Some(JobState::Paused)),
            Err(ChangeRefused::InProgress)
        );
        assert_eq!(
            may_change(ReferralStatus::Cancelled, Some(JobState::Done)),
            Err(ChangeRefused::NotChangeable(ReferralStatus::Cancelled))
        );
    }

    #[test]
    fn cancellations_are_checked_at_once() {
        let ok = Cancellation::parse(Some(" client_request "), Some("  ")).unwrap();
        assert_eq!(ok.reason, CancelReason::ClientRequest);
        assert_eq!(ok.comment, None);
        let err = Cancellation::parse(Some("bored"), Some(&"x".repeat(1001))).unwrap_err();
        let fields: Vec<&str> = err.0.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(fields, ["reason_code", "comment"]);
    }
}
