//! Typed identifiers. Each is built only through `parse` (or `new` for ids we mint), so a
//! value of these types is always well formed.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Parses the hyphenated UUID form (any case).
            pub fn parse(s: &str) -> Result<Self, IdError> {
                Uuid::parse_str(s.trim())
                    .map(Self)
                    .map_err(|_| IdError::NotAUuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.as_hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// The agency's `request_id`: the key of a Referral Request, and later the ACCloud
    /// service's external `service_id`.
    RequestId
);
uuid_id!(
    /// Our stable patient id; ACCloud sees it as the client's `external_id`.
    PatientId
);
uuid_id!(
    /// One file attached to one Referral Request.
    FileId
);
uuid_id!(
    /// One insurance plan of one patient.
    PlanId
);
uuid_id!(
    /// A payor (insurer) as refbridge knows it, mapped to an ACCloud funder.
    PayorId
);

impl PlanId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for PlanId {
    fn default() -> Self {
        Self::new()
    }
}

impl PayorId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for PayorId {
    fn default() -> Self {
        Self::new()
    }
}

impl PatientId {
    /// A new, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for PatientId {
    fn default() -> Self {
        Self::new()
    }
}

impl FileId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for FileId {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must be a UUID")]
    NotAUuid,
    #[error("must be 64 lowercase hexadecimal characters (a SHA-256 digest)")]
    NotASha256,
}

/// SHA-256 of a file's bytes, lowercase hex: the key of the content-addressed file store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContentHash(String);

impl ContentHash {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::NotASha256)
        }
    }

    /// From a raw 32-byte digest.
    pub fn from_digest(digest: &[u8; 32]) -> Self {
        use fmt::Write;
        let mut s = String::with_capacity(64);
        for b in digest {
            let _ = write!(s, "{b:02x}");
        }
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_parses_any_case_and_prints_lowercase() {
        let id = RequestId::parse("0E1D5E34-63D7-4BB2-8E22-9376943AB56F").unwrap();
        assert_eq!(id.to_string(), "0e1d5e34-63d7-4bb2-8e22-9376943ab56f");
    }

    #[test]
    fn request_id_rejects_non_uuid() {
        assert_eq!(RequestId::parse("42"), Err(IdError::NotAUuid));
        assert_eq!(RequestId::parse(""), Err(IdError::NotAUuid));
    }

    #[test]
    fn content_hash_requires_64_lowercase_hex() {
        let d = [0xabu8; 32];
        let h = ContentHash::from_digest(&d);
        assert_eq!(h.as_str().len(), 64);
        assert_eq!(ContentHash::parse(h.as_str()).unwrap(), h);
        assert!(ContentHash::parse(&h.as_str().to_uppercase()).is_err());
        assert!(ContentHash::parse("abc").is_err());
    }
}
