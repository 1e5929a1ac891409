//! The one error type of the simulated API.
//!
//! Error policy: every rejection is an [`ApiError`] carrying the HTTP status,
//! the message and the API family; `IntoResponse` is the single place that
//! turns it into the documented body shape of that family:
//!
//! - clients, services, funders, files: `{"code": <int>, "message": "..."}`
//! - authorizations: `{"code": "<string>", "message": "..."}`
//! - alayamarket outbox: `application/problem+json`
//!   `{"type", "title", "status", "detail"}` (the connexion app's shape; the
//!   outbox errors are not documented, see the notes section 3.2)
//!
//! Messages name ids and field names only, never client data.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::faults::Family;

/// A rejected request.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    /// Overrides the `code` of the body (the Files API answers a missing
    /// file with HTTP 400 and `code: 404`).
    pub code: Option<u16>,
    pub message: String,
    pub family: Family,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(family: Family, status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code: None,
            message: message.into(),
            family,
            retry_after: None,
        }
    }

    pub(crate) fn ext(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(Family::Ext, status, message)
    }

    pub(crate) fn auth(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(Family::Authorizations, status, message)
    }

    pub(crate) fn outbox(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(Family::Outbox, status, message)
    }

    pub(crate) fn unauthorized(family: Family) -> Self {
        let message = match family {
            Family::Ext => "Authorization required.",
            Family::Authorizations => "Please verify your access level for this url.",
            Family::Outbox => "No authorization token provided",
        };
        Self::new(family, StatusCode::UNAUTHORIZED, message)
    }

    pub(crate) fn forbidden(family: Family) -> Self {
        Self::new(
            family,
            StatusCode::FORBIDDEN,
            "You do not have permission to perform this action.",
        )
    }

    pub(crate) fn injected(family: Family, status: u16) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let message = match status.as_u16() {
            500 => "Internal server error.",
            502 => "Bad gateway.",
            504 => "Gateway timeout.",
            _ => "Service unavailable.",
        };
        Self::new(family, status, message)
    }

    pub(crate) fn rate_limited(family: Family, retry_after: u64) -> Self {
        let mut e = Self::new(family, StatusCode::TOO_MANY_REQUESTS, "Too many requests.");
        e.retry_after = Some(retry_after);
        e
    }

    pub(crate) fn with_code(mut self, code: u16) -> Self {
        self.code = Some(code);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code.unwrap_or(self.status.as_u16());
        let mut response = match self.family {
            Family::Ext => (
                self.status,
                axum::Json(json!({ "code": code, "message": self.message })),
            )
                .into_response(),
            Family::Authorizations => (
                self.status,
                axum::Json(json!({ "code": code.to_string(), "message": self.message })),
            )
                .into_response(),
            Family::Outbox => {
                let body = json!({
                    "type": "about:blank",
                    "title": self.status.canonical_reason().unwrap_or("Error"),
                    "status": code,
                    "detail": self.message,
                });
                let mut r = (self.status, body.to_string()).into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/problem+json"),
                );
                r
            }
        };
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;
