//! The events refbridge tells other systems about (the feed `GET /v1/events` and the
//! webhooks): one vocabulary, defined once.
//!
//! An event says *that* something happened to a referral request (or a payor, or a webhook
//! endpoint), with ids and statuses only: never personal data. The receiver reads the
//! referral with its own token when it needs more.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What happened. Stored and sent by its dotted name ([`EventType::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// A new Referral Request was recorded (not on a replay of the same document).
    ReferralReceived,
    /// A reviewer denied it (terminal).
    ReferralDenied,
    /// A reviewer (or CPR+) approved it; the send is queued.
    ReferralApproved,
    /// The agency's status of the sent referral in ACCloud changed (assigned, processed,
    /// cancelled).
    AgencyStatusChanged,
    /// The approval's first send reached ACCloud: every object is there.
    SendCompleted,
    /// The send stopped for a reviewer; `data.reason` says why.
    SendNeedsAttention,
    /// A reviewer resumed a send that needed attention.
    SendResumed,
    /// A change of terms reached ACCloud (a new revision, updates).
    SendChangeSent,
    /// New documents were uploaded to ACCloud.
    SendDocumentsDelivered,
    /// The referral approval is cancelled in ACCloud (`data.by`: `reviewer` or `agency`).
    SendCancelled,
    /// A patient plan was archived while its authorizations were being sent: they are
    /// withdrawn, and the send needs attention.
    AuthorizationWithdrawn,
    /// Intake created a payor without an ACCloud funder, or a reviewer cleared its funder.
    PayorUnmapped,
    /// A webhook endpoint failed for so long that it was disabled.
    WebhookEndpointDisabled,
}

names!(EventType {
    ReferralReceived => "referral_request.received",
    ReferralDenied => "referral_request.denied",
    ReferralApproved => "referral_request.approved",
    AgencyStatusChanged => "referral_request.agency_status_changed",
    SendCompleted => "send.completed",
    SendNeedsAttention => "send.needs_attention",
    SendResumed => "send.resumed",
    SendChangeSent => "send.change_sent",
    SendDocumentsDelivered => "send.documents_delivered",
    SendCancelled => "send.cancelled",
    AuthorizationWithdrawn => "send.authorization_withdrawn",
    PayorUnmapped => "payor.unmapped",
    WebhookEndpointDisabled => "webhook_endpoint.disabled",
});

/// Why a send needs attention, as `send.needs_attention` says it (`data.reason`). The
/// message itself (ACCloud's words, which may quote what was sent) stays on the referral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionReason {
    /// ACCloud refused a call, or something no retry can fix stopped the step.
    Rejected,
    /// Transient failures went on until the step's attempts ran out.
    RetriesExhausted,
    /// A patient plan was archived mid-send: its authorizations were withdrawn.
    AuthorizationWithdrawn,
}

names!(AttentionReason {
    Rejected => "rejected",
    RetriesExhausted => "retries_exhausted",
    AuthorizationWithdrawn => "authorization_withdrawn",
});

/// A list of event types that did not parse: the first unknown name's position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("item {index} is not an event type (see EventType names)")]
pub struct UnknownEventType {
    pub index: usize,
}

impl EventType {
    /// A comma-separated list (`a,b`), as the feed's `types` parameter takes it. Empty items
    /// are ignored; duplicates are removed; the result is sorted.
    pub fn parse_list(s: &str) -> Result<Vec<EventType>, UnknownEventType> {
        Self::parse_all(s.split(',').map(str::trim).filter(|t| !t.is_empty()))
    }

    /// Names, each one an event type; sorted, without duplicates.
    pub fn parse_all<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<EventType>, UnknownEventType> {
        let mut out = names
            .into_iter()
            .enumerate()
            .map(|(index, n)| EventType::parse(n).ok_or(UnknownEventType { index }))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort();
        out.dedup();
        Ok(out)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        EventType::parse(&s).ok_or_else(|| serde::de::Error::custom("not an event type"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_dotted_lowercase() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(*t));
            let json = serde_json::to_string(t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(serde_json::from_str::<EventType>(&json).unwrap(), *t);
            let (subject, what) = t.as_str().split_once('.').unwrap();
            assert!(!subject.is_empty() && !what.is_empty());
            assert!(
                t.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.')
            );
        }
    }

    #[test]
    fn lists_parse_sorted_without_duplicates_and_name_the_bad_item() {
        assert_eq!(
            EventType::parse_list("send.completed, referral_request.received,send.completed,"),
            Ok(vec![EventType::ReferralReceived, EventType::SendCompleted])
        );
        assert_eq!(EventType::parse_list(""), Ok(vec![]));
        assert_eq!(
            EventType::parse_list("send.completed,send.done"),
            Err(UnknownEventType { index: 1 })
        );
    }
}
