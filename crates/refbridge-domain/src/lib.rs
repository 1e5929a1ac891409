#![doc = include_str!("../README.md")]

/// `ALL`, `as_str` and `parse` of an enum whose values are stored by name: one table per
/// enum. The names are also its serde names (the tests check that they agree).
macro_rules! names {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$(Self::$variant),+];

            /// The stored name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name),+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($name => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

pub mod approval;
pub mod error;
pub mod event;
pub mod file_name;
pub mod form;
pub mod ids;
pub mod intake;
pub mod patient;
pub mod person;
pub mod plan;
pub mod role;
pub mod send;
pub mod status;
pub mod text;
pub mod timezone;
pub mod webhook;

pub use error::{Violation, Violations};
pub use ids::{ContentHash, FileId, PatientId, PayorId, PlanId, RequestId};
pub use role::Role;
pub use status::ReferralStatus;
pub use timezone::TimeZone;
