//! Closed value sets of the ACCloud APIs (notes section 5).
//!
//! Every enum keeps an `Other(String)` variant so that a value ACCloud adds later (or one
//! its specs disagree on, like `methodology: service` in responses, notes 6) deserializes
//! instead of failing the whole response. Requests only ever use the named variants;
//! [`CancelReason`] is the exception that is strict, because sending anything outside the
//! seven documented codes must be caught before the call.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value not documented at the time of writing, kept verbatim.
            Other(String),
        }

        impl $name {
            /// The wire value.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $wire,)+
                    Self::Other(s) => s.as_str(),
                }
            }

            /// Maps a wire value; unknown values become `Other`.
            pub fn from_wire(s: &str) -> Self {
                match s {
                    $($wire => Self::$variant,)+
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok(Self::from_wire(&s))
            }
        }
    };
}

string_enum!(
    /// Referral `care_type` (CSI uses `nursing`).
    CareType { Psw => "psw", Nursing => "nursing" }
);
string_enum!(
    /// Referral `referral_type` (CSI uses `service`).
    ReferralType { Visit => "visit", Service => "service" }
);
string_enum!(
    /// Referral `status`.
    ReferralStatus { Assigned => "assigned", Processed => "processed", Cancelled => "cancelled" }
);
string_enum!(
    /// Authorization `rule_type`: create accepts `HOURS` and `VISITS`; responses may show `RATE`.
    RuleType { Hours => "HOURS", Visits => "VISITS", Rate => "RATE" }
);
string_enum!(
    /// Authorization `methodology`. CSI creates with `service`.
    AuthorizationMethodology {
        Payor => "payor",
        PayorBillCode => "payor_bill_code",
        PayorService => "payor_service",
        Service => "service",
    }
);
string_enum!(
    /// Authorization `authorization_status`.
    AuthorizationStatus { New => "NEW", Pending => "PENDING", Processed => "PROCESSED" }
);
string_enum!(
    /// Client `status` (a new client is `pending`).
    ClientStatus {
        Active => "active",
        Pending => "pending",
        OnHold => "on_hold",
        Discharged => "discharged",
        WaitingList => "waiting_list",
        Unknown => "unknown",
    }
);
string_enum!(
    /// Service `status`. Note that `GET /services` filters on `active` unless told otherwise.
    ServiceStatus {
        Active => "active",
        OnHold => "on_hold",
        WaitingList => "waiting_list",
        Discharged => "discharged",
    }
);
string_enum!(
    /// Service `funding_methodology` (CSI uses `single_funder`).
    FundingMethodology {
        ClusterBilling => "cluster_billing",
        Cob => "cob",
        CoContribution => "co_contribution",
        CoPay => "co-pay",
        Ltci => "ltci",
        Medicaid => "medicaid",
        PayorInvoicing => "payor_invoicing",
        SingleFunder => "single_funder",
        SinglePayor => "single_payor",
        SplitFunders => "split_funders",
        SplitPercentage => "split_percentage",
    }
);

/// Which revisions the referral list returns (notes 4.10.4: the guide's "use `revisions=all`
/// or omit" for the latest is a typo; the default is `latest`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Revisions {
    /// Every revision of the group.
    All,
    /// Only the latest revision (the server default).
    Latest,
    /// Only the superseded revisions.
    Archived,
}

impl Revisions {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Latest => "latest",
            Self::Archived => "archived",
        }
    }
}

/// Referral list `sort_by` (Marketplace list, \[INF\] for ACCloud).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReferralSortBy {
    /// `last_modified` (the default).
    LastModified,
    /// `revision_number`.
    RevisionNumber,
}

impl ReferralSortBy {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LastModified => "last_modified",
            Self::RevisionNumber => "revision_number",
        }
    }
}

/// `sort_order` of the AlayaMarket-style lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SortOrder {
    /// Ascending.
    Asc,
    /// Descending.
    Desc,
}

impl SortOrder {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Asc => "asc",
            Self::Desc => "desc",
        }
    }
}

/// Cancel `reason_code`: exactly the seven values of the guide (2024-05) and the Marketplace
/// `ReferralReasonCodeCore` (notes 4.10.3; the internal spec's five-value list is stale,
/// notes 6.9). Strict on purpose: [`CancelReason::parse`] rejects anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// `datetime_change`
    DatetimeChange,
    /// `client_request`
    ClientRequest,
    /// `client_hospitalization`
    ClientHospitalization,
    /// `client_passed_away`
    ClientPassedAway,
    /// `client_refused_service`
    ClientRefusedService,
    /// `processing_error`
    ProcessingError,
    /// `other`
    Other,
}

impl CancelReason {
    /// All seven documented values, in the guide's order.
    pub const ALL: [CancelReason; 7] = [
        Self::DatetimeChange,
        Self::ClientRequest,
        Self::ClientHospitalization,
        Self::ClientPassedAway,
        Self::ClientRefusedService,
        Self::ProcessingError,
        Self::Other,
    ];

    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DatetimeChange => "datetime_change",
            Self::ClientRequest => "client_request",
            Self::ClientHospitalization => "client_hospitalization",
            Self::ClientPassedAway => "client_passed_away",
            Self::ClientRefusedService => "client_refused_service",
            Self::ProcessingError => "processing_error",
            Self::Other => "other",
        }
    }

    /// Parses one of the seven wire values; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_enums_round_trip_and_keep_unknown_values() {
        assert_eq!(
            serde_json::to_string(&FundingMethodology::CoPay).unwrap(),
            "\"co-pay\""
        );
        let m: AuthorizationMethodology = serde_json::from_str("\"service\"").unwrap();
        assert_eq!(m, AuthorizationMethodology::Service);
        let r: RuleType = serde_json::from_str("\"MINUTES\"").unwrap();
        assert_eq!(r, RuleType::Other("MINUTES".into()));
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"MINUTES\"");
    }

    #[test]
    fn cancel_reason_has_exactly_the_seven_documented_values() {
        let wire: Vec<&str> = CancelReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            wire,
            [
                "datetime_change",
                "client_request",
                "client_hospitalization",
                "client_passed_away",
                "client_refused_service",
                "processing_error",
                "other"
            ]
        );
        for r in CancelReason::ALL {
            assert_eq!(CancelReason::parse(r.as_str()), Some(r));
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
        assert_eq!(CancelReason::parse("client_moved"), None);
        assert!(serde_json::from_str::<CancelReason>("\"client_moved\"").is_err());
    }

    #[test]
    fn revisions_wire_values() {
        assert_eq!(
            serde_json::to_string(&Revisions::Latest).unwrap(),
            "\"latest\""
        );
        assert_eq!(Revisions::All.as_str(), "all");
        assert_eq!(Revisions::Archived.as_str(), "archived");
    }
}
