//! Typed ACCloud identifiers.
//!
//! ACCloud's integer ids are typed inconsistently across its specs (notes section 2 and 6.3:
//! a service id is an integer in lists and create responses but a string in details; an
//! authorization id is a JSON `number`). The integer newtypes here therefore *deserialize*
//! leniently from an integer, an integral float (`21.0`) or a string of digits (`"21"`), and
//! always *serialize* as a JSON integer.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

macro_rules! int_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub i64);

        impl $name {
            /// The raw integer.
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl From<i64> for $name {
            fn from(v: i64) -> Self {
                Self(v)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_i64(self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(LenientI64).map(Self)
            }
        }
    };
}

int_id!(
    /// ACCloud (internal) client id, e.g. `1060`. The Services API calls it
    /// `alayacare_client_id`, the Authorizations and Files APIs `client_id` / `id`.
    ClientId
);
int_id!(
    /// ACCloud (internal) service id (`id` on create, `alayacare_service_id` elsewhere).
    ServiceId
);
int_id!(
    /// ACCloud authorization id.
    AuthorizationId
);
int_id!(
    /// ACCloud funder (payor) id.
    FunderId
);
int_id!(
    /// ACCloud service code id.
    ServiceCodeId
);
int_id!(
    /// ACCloud client group id (the `CSI` group is looked up by name).
    GroupId
);
int_id!(
    /// ACCloud branch id (the CSI HQ branch, e.g. `1000`).
    BranchId
);

/// Accepts an integer, an integral float or a decimal string.
struct LenientI64;

impl Visitor<'_> for LenientI64 {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer id (number or string of digits)")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::custom("integer id out of range"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        // i64::MAX as f64 rounds up to 2^63, so compare with a strict upper bound.
        if v.fract() == 0.0 && v >= i64::MIN as f64 && v < i64::MAX as f64 {
            #[allow(clippy::cast_possible_truncation)]
            Ok(v as i64)
        } else {
            Err(E::custom("id is not an integral number"))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
        v.trim()
            .parse::<i64>()
            .map_err(|_| E::custom("id string is not an integer"))
    }
}

macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// The raw UUID.
            pub fn get(self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl From<Uuid> for $name {
            fn from(v: Uuid) -> Self {
                Self(v)
            }
        }
    };
}

uuid_id!(
    /// One referral revision (each revision is a new referral UUID).
    ReferralId
);
uuid_id!(
    /// Shared by all revisions of one referral (`revision.revision_group_id`).
    RevisionGroupId
);
uuid_id!(
    /// All referrals of one client/service/supply pair (`referral.sequence_id`).
    SequenceId
);
uuid_id!(
    /// A supply organization in the trusted network (`supply_persona_id`, `supply.id`);
    /// equals the inbound payload's `agency.alayamarket_org_id`.
    SupplyPersonaId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_ids_accept_int_float_and_string() {
        let a: ServiceId = serde_json::from_str("347").unwrap();
        let b: ServiceId = serde_json::from_str("\"347\"").unwrap();
        let c: AuthorizationId = serde_json::from_str("8.0").unwrap();
        assert_eq!(a, ServiceId(347));
        assert_eq!(b, ServiceId(347));
        assert_eq!(c, AuthorizationId(8));
    }

    #[test]
    fn int_ids_reject_non_integers() {
        assert!(serde_json::from_str::<ServiceId>("8.5").is_err());
        assert!(serde_json::from_str::<ServiceId>("\"abc\"").is_err());
        assert!(serde_json::from_str::<ServiceId>("null").is_err());
        assert!(serde_json::from_str::<ServiceId>("1e300").is_err());
    }

    #[test]
    fn int_ids_serialize_as_integers() {
        assert_eq!(serde_json::to_string(&ClientId(1060)).unwrap(), "1060");
    }

    #[test]
    fn uuid_ids_are_transparent() {
        let s = "\"91c79089-a3ca-4cca-acf4-52fc1f1302c6\"";
        let id: SupplyPersonaId = serde_json::from_str(s).unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), s);
    }
}
