//! IANA time zones.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IANA time zone name known to the tz database (`America/Denver`), never an
/// abbreviation (`MST`) or an offset (`-07:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeZone(chrono_tz::Tz);

impl TimeZone {
    pub fn parse(s: &str) -> Result<Self, TimeZoneError> {
        // chrono-tz also knows legacy aliases such as "EST" or "UTC"; an IANA name has a
        // region and a city, except the zones below that AlayaCare also accepts.
        let tz = chrono_tz::Tz::from_str(s).map_err(|_| TimeZoneError)?;
        if s.contains('/') || s == "UTC" {
            Ok(Self(tz))
        } else {
            Err(TimeZoneError)
        }
    }

    /// Every name [`TimeZone::parse`] accepts.
    pub fn names() -> impl Iterator<Item = &'static str> {
        chrono_tz::TZ_VARIANTS
            .iter()
            .map(|tz| tz.name())
            .filter(|name| Self::parse(name).is_ok())
    }

    pub fn tz(&self) -> chrono_tz::Tz {
        self.0
    }

    pub fn name(&self) -> &'static str {
        self.0.name()
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for TimeZone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be an IANA time zone name such as America/Chicago")]
pub struct TimeZoneError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_iana_names() {
        for name in ["America/Denver", "America/Chicago", "Europe/Paris", "UTC"] {
            assert_eq!(TimeZone::parse(name).unwrap().name(), name);
        }
    }

    #[test]
    fn rejects_abbreviations_offsets_and_unknown_names() {
        for bad in [
            "MST",
            "EST",
            "-07:00",
            "America/Nowhere",
            "",
            "america/denver ",
        ] {
            assert!(TimeZone::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
