//! Path and query parameters, read the same way on every route.
//!
//! axum's own `Path` and `Query` answer a parameter that does not parse with a `400
//! text/plain` quoting serde's message (and the value). Ours answer the one error shape
//! ([`crate::ErrorBody`], `invalid_request`) naming the parameter and the problem, never the
//! value. Handlers import these instead of axum's.
//!
//! Keyset cursors are here too: one documented format for every paged list, so that every
//! cursor the document allows is one the server reads ([`Cursor`]).

use axum::extract::FromRequestParts;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Query parameters as `T`: 400 naming the parameter that does not parse.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                let message = e.inner().to_string();
                match e.path().to_string().as_str() {
                    // A missing parameter is reported at the root, with its name.
                    "." => match missing_field(&message) {
                        Some(name) => ApiError::field(name, "is required"),
                        None => ApiError::field("query", &problem(&message)),
                    },
                    name => ApiError::field(name, &problem(&message)),
                }
            })
    }
}

/// Path parameters as `T`: 400 naming the parameter that does not parse (a percent-encoded
/// segment that is not UTF-8, a number that is not one).
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(match e.kind() {
                ErrorKind::InvalidUtf8InPathParam { key } => {
                    ApiError::field(key, "must be UTF-8 once percent-decoded")
                }
                ErrorKind::ParseErrorAtKey {
                    key, expected_type, ..
                } => ApiError::field(
                    key,
                    &format!("has the wrong type or value (expected {expected_type})"),
                ),
                ErrorKind::DeserializeError { key, .. } => ApiError::field(key, "is invalid"),
                _ => ApiError::field("path", "is invalid"),
            }),
            // The route and the handler disagree: our bug, not the caller's.
            Err(other) => Err(ApiError::Internal(Box::new(other))),
        }
    }
}

fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")?
        .strip_suffix('`')
        .filter(|name| !name.is_empty())
}

/// A whole-number query parameter kept as text (so that its problem names it): `default`
/// when absent, else a number in `range`, or a 400 naming `field` and the range.
pub fn whole_number(
    field: &str,
    raw: Option<&str>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ApiError> {
    match raw {
        None => Ok(default),
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                ApiError::field(
                    field,
                    &format!(
                        "must be a whole number {} to {}",
                        range.start(),
                        range.end()
                    ),
                )
            }),
    }
}

/// serde_urlencoded's messages, as problems that quote no value.
fn problem(message: &str) -> String {
    if message.contains("provided string was not `true` or `false`") {
        return "must be true or false".into();
    }
    if message.starts_with("invalid digit") || message.starts_with("number too large") {
        return "must be a whole number in range".into();
    }
    if message.starts_with("cannot parse integer from empty string") {
        return "must be a whole number, not empty".into();
    }
    if message.starts_with("duplicate field") {
        return "is given more than once".into();
    }
    crate::json::problem(message)
}

/// A keyset cursor: the position after the last item of a page (its time and id). The one
/// format of every paged list's `cursor` and `next_cursor`: `{microseconds since the Unix
/// epoch}_{UUID, lowercase, hyphenated}`. Any value of that format is a position the server
/// reads (items before it); it need not be one the server returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: uuid::Uuid,
}

/// The cursor's format, as the OpenAPI document states it (a test checks every `cursor`).
#[cfg(test)]
pub const CURSOR_PATTERN: &str =
    "^[0-9]{1,16}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";

impl Cursor {
    /// Parses exactly [`CURSOR_PATTERN`]; anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        let (micros, id) = s.split_once('_')?;
        if micros.is_empty() || micros.len() > 16 || !micros.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let canonical = id.len() == 36
            && id.bytes().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => b == b'-',
                _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
            });
        if !canonical {
            return None;
        }
        Some(Cursor {
            at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: uuid::Uuid::parse_str(id).ok()?,
        })
    }

    pub fn new(at: DateTime<Utc>, id: uuid::Uuid) -> Self {
        Cursor { at, id }
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Times before the epoch do not occur: the clock is past it.
        write!(
            f,
            "{}_{}",
            self.at.timestamp_micros().max(0),
            self.id.hyphenated()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_only_the_documented_format_parses() {
        let at = DateTime::parse_from_rfc3339("2026-03-01T10:20:30.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let c = Cursor::new(at, uuid::Uuid::new_v4());
        assert_eq!(Cursor::parse(&c.to_string()), Some(c));
        let re_ok = "1_00000000-0000-0000-0000-000000000000";
        assert!(Cursor::parse(re_ok).is_some());
        assert!(Cursor::parse("9999999999999999_00000000-0000-0000-0000-000000000000").is_some());
        for bad in [
            "",
            "_00000000-0000-0000-0000-000000000000",
            "12345678901234567_00000000-0000-0000-0000-000000000000",
            "-1_00000000-0000-0000-0000-000000000000",
            "1_00000000-0000-0000-0000-00000000000A",
            "1_0000000000000000000000000000000000000",
            "1_00000000000000000000000000000000",
            "1",
        ] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_cursor_parameter_documents_the_cursor_format() {
        let doc = serde_json::to_value(crate::openapi()).unwrap();
        let mut seen = 0;
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                for p in op["parameters"].as_array().into_iter().flatten() {
                    if p["name"] == "cursor" {
                        assert_eq!(p["schema"]["pattern"], CURSOR_PATTERN);
                        seen += 1;
                    }
                }
            }
        }
        assert_eq!(seen, 2, "the referral list and the access log");
    }

    #[test]
    fn query_problems_quote_no_value() {
        assert_eq!(
            problem("provided string was not `true` or `false`"),
            "must be true or false"
        );
        assert_eq!(
            problem("unknown variant `SECRET`, expected `a` or `b`"),
            "is not one of the allowed values (expected `a` or `b`)"
        );
        assert_eq!(missing_field("missing field `dry_run`"), Some("dry_run"));
    }
}
