//! Timestamps are stored as UTC RFC 3339 text with microseconds and a `Z`, a form that sorts
//! in time order on every backend.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::{StorageError, corrupt};

pub fn now() -> DateTime<Utc> {
    // Microsecond precision, as stored, so a value read back equals the value written.
    let t = Utc::now();
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

pub fn format_ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn parse_ts(s: &str) -> Result<DateTime<Utc>, StorageError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt("timestamp", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_sorts_as_text() {
        let a = now();
        let b = a + chrono::Duration::microseconds(1);
        assert_eq!(parse_ts(&format_ts(a)).unwrap(), a);
        assert!(format_ts(a) < format_ts(b));
        assert!(format_ts(a).ends_with('Z'));
    }
}
