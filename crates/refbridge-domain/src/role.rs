//! What an API token or a console user may do.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May only post Referral Requests (AlayaConnector).
    Intake,
    /// Reads referrals and decides on them (a reviewer, or CPR+).
    Reviewer,
    /// Keeps the sends moving (the engineer on call): sees ids and states, no personal data.
    Operator,
    /// Everything.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Intake, Role::Reviewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Intake => "intake",
            Role::Reviewer => "reviewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether a token with this role may act as `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self == Role::Admin || self == needed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_allows_everything_others_only_themselves() {
        for needed in Role::ALL {
            assert!(Role::Admin.allows(needed));
            assert_eq!(Role::Intake.allows(needed), needed == Role::Intake);
            assert_eq!(Role::Reviewer.allows(needed), needed == Role::Reviewer);
            assert_eq!(Role::Operator.allows(needed), needed == Role::Operator);
        }
    }

    #[test]
    fn names_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
