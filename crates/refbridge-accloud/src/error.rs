//! The one error type of the ACCloud client, shaped for the send protocol
//! (`docs/SEND-PROTOCOL.md`): the caller must know whether the call *may have had an
//! effect*.
//!
//! # Classification
//!
//! | outcome | variant | effect on ACCloud | what the caller does |
//! |---|---|---|---|
//! | connect failed (DNS, refused, TLS, connect timeout) | [`Unavailable`](AcCloudError::Unavailable) | none: the request never left | retry with backoff |
//! | 429, or 503 **with** `Retry-After` | [`RateLimited`](AcCloudError::RateLimited) | none | wait `retry_after` (or back off) and retry |
//! | timeout after connecting, connection reset/closed, body I/O error, 500/502/504, 503 without `Retry-After`, 408, any other 5xx | [`Ambiguous`](AcCloudError::Ambiguous) | **unknown** | look the object up by its natural key before creating again |
//! | 2xx with a body we cannot read | [`Decode`](AcCloudError::Decode) | **happened**, result unknown | look up; do not blindly retry (not retryable) |
//! | 404 | [`NotFound`](AcCloudError::NotFound) | none | lookups return `Ok(None)` instead; a DELETE retried after an ambiguous outcome may treat it as done |
//! | 409 | [`Conflict`](AcCloudError::Conflict) | none | e.g. duplicate client `external_id`: look up and reuse; "Multiple clients found": needs a human |
//! | any other 4xx, 3xx | [`Rejected`](AcCloudError::Rejected) | none | definite: pause as "needs attention" with [`message`](AcCloudError::message) |
//! | the request could not be built (bad file, oversize, invalid input) | [`InvalidRequest`](AcCloudError::InvalidRequest) | none: nothing was sent | fix the input |
//!
//! 503 without `Retry-After` is classified as ambiguous (retryable after a lookup): a 503 from
//! a proxy usually means nothing happened, but the application behind it may have committed
//! before failing, and the protocol's lookup is cheap while a duplicate is not.
//!
//! # PHI
//!
//! ACCloud's error messages may echo input values (names, dates, external ids). `Display`
//! and `Debug` therefore print only the status, ACCloud's `code` and the reason kind, never
//! the message or the body. [`AcCloudError::message`] and [`AcCloudError::body`] give them to
//! callers that store them for reviewers (the "needs attention" record), not for logs.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

/// Longest response body kept in an error (bytes). Longer bodies are cut at a char boundary.
pub const MAX_ERROR_BODY_BYTES: usize = 8 * 1024;

/// Why an outcome is ambiguous.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmbiguousReason {
    /// The deadline passed after the connection was made (request or answer in flight).
    Timeout,
    /// The connection broke (reset, closed without an answer, I/O error) after sending began.
    ConnectionLost,
    /// Reading the answer's body failed.
    BodyRead,
    /// The server answered with a status that does not tell whether the effect happened
    /// (5xx other than 503-with-`Retry-After`, or 408).
    ServerError,
}

impl AmbiguousReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::ConnectionLost => "connection lost",
            Self::BodyRead => "body read failed",
            Self::ServerError => "server error",
        }
    }
}

/// An ACCloud call failed. See the module docs for the classification rules.
#[derive(thiserror::Error)]
pub enum AcCloudError {
    /// A definite rejection (4xx other than 404/409, or an unexpected 3xx): nothing was
    /// done and retrying the same request will not help. A human must look.
    #[error("ACCloud rejected the request: HTTP {status}{}", fmt_code(code))]
    Rejected {
        /// HTTP status.
        status: u16,
        /// ACCloud's `code`, when the body had one.
        code: Option<String>,
        /// ACCloud's message (may echo input values: store, do not log).
        message: Option<String>,
        /// The raw body, cut at [`MAX_ERROR_BODY_BYTES`].
        body: String,
    },
    /// 409: a uniqueness or state conflict (duplicate `external_id`, several clients sharing
    /// one external id, ...). Nothing was done.
    #[error("ACCloud reported a conflict: HTTP 409{}", fmt_code(code))]
    Conflict {
        /// ACCloud's `code`.
        code: Option<String>,
        /// ACCloud's message (store, do not log).
        message: Option<String>,
        /// The raw body, cut.
        body: String,
    },
    /// 404 (or the Files API's documented "400 with code 404").
    #[error("ACCloud found no such object: HTTP {status}")]
    NotFound {
        /// HTTP status.
        status: u16,
        /// ACCloud's message.
        message: Option<String>,
        /// The raw body, cut.
        body: String,
    },
    /// 429, or 503 with `Retry-After`: nothing was done; wait and retry.
    #[error("ACCloud is rate limiting: HTTP {status}{}", fmt_retry(*retry_after))]
    RateLimited {
        /// 429 or 503.
        status: u16,
        /// The server's `Retry-After`, when given and readable.
        retry_after: Option<Duration>,
    },
    /// The request may or may not have taken effect: look the object up before retrying.
    #[error("ACCloud outcome unknown: {}{}", reason.as_str(), fmt_status(*status))]
    Ambiguous {
        /// What happened.
        reason: AmbiguousReason,
        /// The HTTP status, when there was an answer.
        status: Option<u16>,
        /// ACCloud's message, when there was an answer with one.
        message: Option<String>,
    },
    /// The connection could not be made: the request was definitely not sent.
    #[error("ACCloud unreachable: {kind}")]
    Unavailable {
        /// Short cause, without the URL.
        kind: &'static str,
    },
    /// A 2xx answer whose body does not have the expected shape. The call took effect.
    #[error("ACCloud answered HTTP {status} with an unexpected body at {path}: {category}")]
    Decode {
        /// HTTP status.
        status: u16,
        /// JSON path of the offending field (field names only, no values).
        path: String,
        /// Kind of problem (syntax, data, eof), without the offending value.
        category: &'static str,
    },
    /// The request could not be built; nothing was sent.
    #[error("invalid ACCloud request: {reason}")]
    InvalidRequest {
        /// What is wrong (no PHI: names of fields and limits only).
        reason: String,
    },
}

fn fmt_code(code: &Option<String>) -> String {
    match code {
        Some(c) => format!(" (code {c})"),
        None => String::new(),
    }
}

fn fmt_retry(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!(", retry after {}s", d.as_secs()),
        None => String::new(),
    }
}

fn fmt_status(s: Option<u16>) -> String {
    match s {
        Some(s) => format!(" (HTTP {s})"),
        None => String::new(),
    }
}

/// `Debug` is `Display`: the message and body may hold PHI and must not reach logs through
/// `{:?}` either.
impl fmt::Debug for AcCloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AcCloudError({self})")
    }
}

impl AcCloudError {
    /// A short class for metrics (`refbridge_accloud_calls_total{outcome}`): never a message.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Rejected { .. } => "rejected",
            Self::Conflict { .. } => "conflict",
            Self::NotFound { .. } => "not_found",
            Self::RateLimited { .. } => "rate_limited",
            Self::Ambiguous { .. } => "ambiguous",
            Self::Unavailable { .. } => "unavailable",
            Self::Decode { .. } => "decode",
            Self::InvalidRequest { .. } => "invalid_request",
        }
    }

    /// The request may have taken effect without us knowing the result: the caller must look
    /// the object up by its natural key before creating it again. True for
    /// [`Ambiguous`](Self::Ambiguous) and [`Decode`](Self::Decode).
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, Self::Ambiguous { .. } | Self::Decode { .. })
    }

    /// A later attempt may succeed: rate limiting, unreachable, or ambiguous (after the
    /// lookup). Definite answers (4xx), decode failures and invalid requests are not.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Unavailable { .. } | Self::Ambiguous { .. }
        )
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Rejected { status, .. }
            | Self::NotFound { status, .. }
            | Self::RateLimited { status, .. }
            | Self::Decode { status, .. } => Some(*status),
            Self::Conflict { .. } => Some(409),
            Self::Ambiguous { status, .. } => *status,
            Self::Unavailable { .. } | Self::InvalidRequest { .. } => None,
        }
    }

    /// ACCloud's error message, for storage with the step (reviewers see it). It may echo
    /// input values: do not log it.
    pub fn message(&self) -> Option<&str> {
        match self {
            Self::Rejected { message, .. }
            | Self::Conflict { message, .. }
            | Self::NotFound { message, .. }
            | Self::Ambiguous { message, .. } => message.as_deref(),
            _ => None,
        }
    }

    /// ACCloud's error `code` (an int or a string on the wire, kept as text).
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Rejected { code, .. } | Self::Conflict { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The raw error body (cut), for storage. Do not log it.
    pub fn body(&self) -> Option<&str> {
        match self {
            Self::Rejected { body, .. }
            | Self::Conflict { body, .. }
            | Self::NotFound { body, .. } => Some(body),
            _ => None,
        }
    }

    /// Classifies a non-2xx answer.
    pub(crate) fn from_status(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Self {
        let parsed = ErrorBody::parse(body);
        let body = truncate_body(body);
        match status {
            429 => Self::RateLimited {
                status,
                retry_after,
            },
            503 if retry_after.is_some() => Self::RateLimited {
                status,
                retry_after,
            },
            404 => Self::NotFound {
                status,
                message: parsed.message,
                body,
            },
            409 => Self::Conflict {
                code: parsed.code,
                message: parsed.message,
                body,
            },
            408 | 500..=599 => Self::Ambiguous {
                reason: AmbiguousReason::ServerError,
                status: Some(status),
                message: parsed.message,
            },
            _ => Self::Rejected {
                status,
                code: parsed.code,
                message: parsed.message,
                body,
            },
        }
    }

    /// Classifies a transport error from `reqwest` (the URL is dropped: it may contain an
    /// external id or a file name).
    pub(crate) fn from_transport(err: &reqwest::Error) -> Self {
        if err.is_connect() {
            // Connect errors (refused, DNS, TLS handshake, connect timeout) happen before a
            // byte of the request is written.
            return Self::Unavailable {
                kind: if err.is_timeout() {
                    "connect timeout"
                } else {
                    "connect failed"
                },
            };
        }
        if err.is_builder() {
            return Self::InvalidRequest {
                reason: "request could not be built".to_owned(),
            };
        }
        let reason = if err.is_timeout() {
            AmbiguousReason::Timeout
        } else if err.is_body() || err.is_decode() {
            AmbiguousReason::BodyRead
        } else {
            AmbiguousReason::ConnectionLost
        };
        Self::Ambiguous {
            reason,
            status: None,
            message: None,
        }
    }

    pub(crate) fn decode(status: u16, err: &serde_path_to_error::Error<serde_json::Error>) -> Self {
        use serde_json::error::Category;
        let category = match err.inner().classify() {
            Category::Io => "io",
            Category::Syntax => "invalid JSON",
            Category::Data => "unexpected type or missing field",
            Category::Eof => "truncated JSON",
        };
        Self::Decode {
            status,
            path: err.path().to_string(),
            category,
        }
    }
}

/// ACCloud's error bodies, parsed loosely (notes 3.2): `{code: int, message}` (clients,
/// services, funders), `{code: "string", message}` (authorizations), problem+json
/// `{type, title, status, detail}` or `{message, description}` or `{error, message}`
/// (outbox / gateway), and the Files API's `{message: {source: ..}}`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    pub(crate) code: Option<String>,
    pub(crate) message: Option<String>,
}

impl ErrorBody {
    pub(crate) fn parse(body: &[u8]) -> Self {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            return Self {
                code: None,
                message: (!text.is_empty() && !text.starts_with('<'))
                    .then(|| cut(text, MAX_ERROR_BODY_BYTES).to_owned()),
            };
        };
        let code = match map.get("code").or_else(|| map.get("error")) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let message = ["message", "detail", "description", "title", "error"]
            .iter()
            .filter_map(|k| map.get(*k))
            .find_map(|v| match v {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Object(_) | Value::Array(_) => Some(v.to_string()),
                _ => None,
            });
        Self { code, message }
    }
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn truncate_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    cut(&text, MAX_ERROR_BODY_BYTES).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_documented_error_shapes() {
        let a = ErrorBody::parse(
            br#"{"code":409,"message":"Client already exists with external ID: sor_client_external_id_1"}"#,
        );
        assert_eq!(a.code.as_deref(), Some("409"));
        assert_eq!(
            a.message.as_deref(),
            Some("Client already exists with external ID: sor_client_external_id_1")
        );
        let b = ErrorBody::parse(
            br#"{"code":"400","message":"`end_at` should be the same or after `start_at`"}"#,
        );
        assert_eq!(b.code.as_deref(), Some("400"));
        assert!(b.message.unwrap().contains("end_at"));
        let c = ErrorBody::parse(
            br#"{"type":"about:blank","title":"Bad Request","status":400,"detail":"'start_at' is a required property"}"#,
        );
        assert_eq!(
            c.message.as_deref(),
            Some("'start_at' is a required property")
        );
        let d = ErrorBody::parse(br#"{"message":"Invalid request body","description":"x"}"#);
        assert_eq!(d.message.as_deref(), Some("Invalid request body"));
        let e = ErrorBody::parse(br#"{"error":"bad_request","message":"nope"}"#);
        assert_eq!(
            (e.code.as_deref(), e.message.as_deref()),
            (Some("bad_request"), Some("nope"))
        );
        let f = ErrorBody::parse(br#"{"message":{"source":"The request cannot be processed"}}"#);
        assert!(f.message.unwrap().contains("cannot be processed"));
        let g = ErrorBody::parse(b"<html>502 Bad Gateway</html>");
        assert_eq!(g, ErrorBody::default());
        let h = ErrorBody::parse(b"plain text failure");
        assert_eq!(h.message.as_deref(), Some("plain text failure"));
    }

    #[test]
    fn status_classification() {
        let e = AcCloudError::from_status(429, Some(Duration::from_secs(7)), b"");
        assert!(matches!(e, AcCloudError::RateLimited { status: 429, .. }));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(e.is_retryable() && !e.is_ambiguous());

        let e = AcCloudError::from_status(503, Some(Duration::from_secs(2)), b"");
        assert!(matches!(e, AcCloudError::RateLimited { status: 503, .. }));

        for s in [500, 502, 503, 504, 408] {
            let e = AcCloudError::from_status(s, None, b"{}");
            assert!(e.is_ambiguous() && e.is_retryable(), "{s}");
            assert_eq!(e.status(), Some(s));
        }

        let e = AcCloudError::from_status(409, None, br#"{"code":409,"message":"dup"}"#);
        assert!(matches!(e, AcCloudError::Conflict { .. }));
        assert!(!e.is_retryable() && !e.is_ambiguous());

        let e =
            AcCloudError::from_status(404, None, br#"{"code":404,"message":"Client not found."}"#);
        assert!(matches!(e, AcCloudError::NotFound { .. }));

        for s in [400, 401, 403, 413, 422, 302] {
            let e = AcCloudError::from_status(s, None, b"{}");
            assert!(matches!(e, AcCloudError::Rejected { .. }), "{s}");
            assert!(!e.is_retryable() && !e.is_ambiguous());
        }
    }

    #[test]
    fn display_and_debug_never_show_the_message_or_body() {
        let e = AcCloudError::from_status(
            400,
            None,
            br#"{"code":400,"message":"Field first_name is required for Frank Smith"}"#,
        );
        assert_eq!(
            e.to_string(),
            "ACCloud rejected the request: HTTP 400 (code 400)"
        );
        assert!(!format!("{e:?}").contains("Frank"));
        assert_eq!(
            e.message(),
            Some("Field first_name is required for Frank Smith")
        );
        assert!(e.body().unwrap().contains("Frank"));
        let e = AcCloudError::from_status(409, None, br#"{"code":409,"message":"Frank"}"#);
        assert!(!e.to_string().contains("Frank") && !format!("{e:?}").contains("Frank"));
        let e = AcCloudError::from_status(500, None, br#"{"message":"Frank"}"#);
        assert!(!e.to_string().contains("Frank") && !format!("{e:?}").contains("Frank"));
    }

    #[test]
    fn long_bodies_are_cut_on_a_char_boundary() {
        let body = "é".repeat(MAX_ERROR_BODY_BYTES);
        let e = AcCloudError::from_status(400, None, body.as_bytes());
        assert!(e.body().unwrap().len() <= MAX_ERROR_BODY_BYTES);
    }
}
