#![doc = include_str!("../README.md")]

pub mod approval;
pub mod error;
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

pub use error::{Violation, Violations};
pub use ids::{ContentHash, FileId, PatientId, PayorId, PlanId, RequestId};
pub use role::Role;
pub use status::ReferralStatus;
pub use timezone::TimeZone;
