//! The one error type at the HTTP boundary.
//!
//! Policy: every failure a caller can fix is a 4xx with a stable `error` code, a `message`
//! naming the field and the problem, and `details` listing each problem. Messages never repeat
//! a submitted value: payloads carry personal data and error bodies travel to other systems.
//! Failures the caller cannot fix are a 500 or 503 whose body says nothing of the cause; the
//! cause is logged here, by id only.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use refbridge_domain::{Role, Violation, Violations};
use refbridge_storage::StorageError;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("this token's role may not do this (needs {})", .0.as_str())]
    Forbidden(Role),
    #[error("{message}")]
    InvalidRequest {
        message: String,
        details: Vec<Violation>,
    },
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: the body's `Content-Type` or `Content-Encoding` is not one the route reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 408: the body did not arrive within the body read timeout.
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// 503 before routing: the server holds as many connections as it serves.
    #[error("too many open connections; retry shortly")]
    TooManyConnections,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A patient plan PUT refused by its conflict behaviour.
    #[error("{message}")]
    PlanConflict { message: String, plan_id: String },
    #[error("this Idempotency-Key was used with another request (method, path or body)")]
    IdempotencyKeyMismatch,
    #[error("a request with this Idempotency-Key is still being processed; retry shortly")]
    IdempotencyKeyInUse,
    /// 410: the event feed's cursor (`after`) is before what retention removed.
    #[error("{}", events_pruned_message(.0))]
    EventsPruned(refbridge_storage::PrunedEvents),
    #[error("the database is unavailable")]
    Unavailable,
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable code: `unauthorized`, `forbidden`, `invalid_request`, `invalid_json`,
    /// `payload_too_large`, `unsupported_media_type` (415), `request_timeout` (408),
    /// `too_many_connections` (503), `not_found`, `conflict`, `unavailable`, `internal`,
    /// `idempotency_key_mismatch` (422), `idempotency_key_in_use` (409), `gone` (410: the
    /// event feed's cursor is before what retention removed).
    pub error: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub details: Vec<Violation>,
    /// On a patient plan conflict: the active plan that holds the plan order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflicting_patient_plan_id: Option<String>,
    /// On a 410 from the event feed: the `after` from which the feed is whole (the events up
    /// to it were removed by retention). Reading from it skips what was removed: take it only
    /// once whatever the removed events would have told you is read another way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_after: Option<String>,
}

/// What a 410 of the event feed says: the cursor is before the first event kept, which
/// setting removed the ones before, and where the feed is whole.
fn events_pruned_message(p: &refbridge_storage::PrunedEvents) -> String {
    format!("after {}", events_pruned_problem(p))
}

fn events_pruned_problem(p: &refbridge_storage::PrunedEvents) -> String {
    let kept = match p.kept_days {
        Some(d) => format!("retention.event_days = {d}"),
        None => "retention.event_days".to_owned(),
    };
    format!(
        "is before position {}, the first event still kept: retention ({kept}) removed the \
         events up to position {}; read from after={} (what was removed is not in the feed)",
        p.first_kept(),
        p.through,
        p.through
    )
}

impl ApiError {
    /// One problem with one field.
    pub fn field(path: &str, problem: &str) -> Self {
        Self::from(Violations(vec![Violation::new(path, problem)]))
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::InvalidRequest { .. } => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::TooManyConnections => {
                (StatusCode::SERVICE_UNAVAILABLE, "too_many_connections")
            }
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) | ApiError::PlanConflict { .. } => {
                (StatusCode::CONFLICT, "conflict")
            }
            ApiError::IdempotencyKeyMismatch => {
                (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_mismatch")
            }
            ApiError::IdempotencyKeyInUse => (StatusCode::CONFLICT, "idempotency_key_in_use"),
            ApiError::EventsPruned(_) => (StatusCode::GONE, "gone"),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// The error a request body gives when it did not arrive within the server's body read
/// timeout (the server wraps each body; handlers find it in the read error's sources).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive within the body read timeout")]
pub struct BodyReadTimeout;

impl ApiError {
    /// A failure to read the request body: 413 past the body limit, 408 past the body read
    /// timeout, else 400. Never the cause's text (it can quote what was received).
    pub fn body_read(e: &(dyn std::error::Error + 'static)) -> Self {
        let mut cause = Some(e);
        while let Some(c) = cause {
            if c.is::<BodyReadTimeout>() {
                return ApiError::RequestTimeout;
            }
            if c.is::<http_body_util::LengthLimitError>() {
                return ApiError::PayloadTooLarge("the request body is too large".into());
            }
            cause = c.source();
        }
        ApiError::InvalidJson("cannot read the request body".into())
    }
}

impl From<Violations> for ApiError {
    fn from(v: Violations) -> Self {
        let message = match v.0.as_slice() {
            [one] => format!("{} {}", one.path, one.problem),
            many => format!(
                "{} problems: {}",
                many.len(),
                many.iter()
                    .map(|v| format!("{} {}", v.path, v.problem))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        };
        ApiError::InvalidRequest {
            message,
            details: v.0,
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Connect(_) => ApiError::Unavailable,
            other => ApiError::Internal(Box::new(other)),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        if status.is_server_error() {
            // Storage and I/O errors name tables and paths, never payload values.
            let cause = match &self {
                ApiError::Internal(e) => e.to_string(),
                other => other.to_string(),
            };
            tracing::error!(error.code = code, error.cause = %cause, "request failed");
        }
        let message = self.to_string();
        let retry_soon = matches!(
            self,
            ApiError::IdempotencyKeyInUse | ApiError::TooManyConnections
        );
        let closes = matches!(
            self,
            ApiError::RequestTimeout | ApiError::TooManyConnections
        );
        let (details, conflicting_patient_plan_id, resume_after) = match self {
            ApiError::InvalidRequest { details, .. } => (details, None, None),
            ApiError::PlanConflict { plan_id, .. } => (Vec::new(), Some(plan_id), None),
            ApiError::EventsPruned(p) => (
                vec![Violation::new("after", events_pruned_problem(&p))],
                None,
                Some(p.through.to_string()),
            ),
            _ => (Vec::new(), None, None),
        };
        let mut res = (
            status,
            Json(ErrorBody {
                error: code,
                message,
                details,
                conflicting_patient_plan_id,
                resume_after,
            }),
        )
            .into_response();
        if retry_soon {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if closes {
            // The connection is not reused: its request was not read to the end.
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}
