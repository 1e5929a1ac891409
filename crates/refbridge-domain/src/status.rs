//! The status of a Referral Request and the transitions allowed between them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReferralStatus {
    /// Received from the agency, waiting for a reviewer.
    Received,
    /// Approved; the send to ACCloud has not started yet.
    Approved,
    /// The send to ACCloud is under way.
    Sending,
    /// Every object reached ACCloud.
    Sent,
    /// The send stopped on a definite rejection or exhausted retries; a human must look.
    NeedsAttention,
    /// Denied by a reviewer. Terminal.
    Denied,
    /// The referral approval was cancelled in ACCloud. Terminal.
    Cancelled,
}

impl ReferralStatus {
    pub const ALL: [ReferralStatus; 7] = [
        Self::Received,
        Self::Approved,
        Self::Sending,
        Self::Sent,
        Self::NeedsAttention,
        Self::Denied,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Approved => "approved",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::NeedsAttention => "needs_attention",
            Self::Denied => "denied",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether a reviewer may move a referral from `self` to `to`.
    pub fn can_become(self, to: ReferralStatus) -> bool {
        use ReferralStatus::*;
        matches!(
            (self, to),
            (Received, Approved)
                | (Received, Denied)
                | (Approved, Sending)
                | (Sending, Sent)
                | (Sending, NeedsAttention)
                | (NeedsAttention, Sending)
                // A change, a cancellation or more documents after the send.
                | (Sent, Sending)
                | (Sending, Cancelled)
        )
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Denied | Self::Cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for st in ReferralStatus::ALL {
            assert_eq!(ReferralStatus::parse(st.as_str()), Some(st));
            let json = serde_json::to_string(&st).unwrap();
            assert_eq!(json, format!("\"{}\"", st.as_str()));
        }
        assert_eq!(ReferralStatus::parse("bogus"), None);
    }

    #[test]
    fn denied_is_terminal_and_leads_nowhere() {
        for to in ReferralStatus::ALL {
            assert!(!ReferralStatus::Denied.can_become(to));
        }
        assert!(ReferralStatus::Denied.is_terminal());
    }

    #[test]
    fn only_a_received_referral_can_be_denied() {
        for from in ReferralStatus::ALL {
            assert_eq!(
                from.can_become(ReferralStatus::Denied),
                from == ReferralStatus::Received,
                "{from:?}"
            );
        }
    }
}
