//! `Idempotency-Key` on any POST, PUT or PATCH: the first answer is replayed for 24 hours.
//!
//! - Scope: the caller (token name) and the key. The same key from two callers is two keys.
//! - Fingerprint: SHA-256 of the method, path, query and body bytes. The body is hashed as
//!   buffered and handed on as the same bytes, never copied.
//! - The key is reserved before the request runs. A second request with the key while the
//!   first runs: 409 `idempotency_key_in_use` with `Retry-After: 1`. The key with another
//!   method, path, query or body: 422 `idempotency_key_mismatch` (as the IETF draft
//!   `draft-ietf-httpapi-idempotency-key-header` says; Stripe uses 400).
//! - Answers below 500 are stored and replayed with their status and body, marked
//!   `Idempotent-Replayed: true`. A 5xx is not stored: a retry runs again.
//! - A key is 1 to 255 visible ASCII characters; anything else is a 400.
//!
//! Requests without a key, or without a valid token (the handler answers 401), pass through.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use refbridge_storage::{KeyReservation, KeyedRequest};
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// How long an answer is replayed.
pub const TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest key accepted (Silna's limit).
pub const MAX_KEY_LEN: usize = 255;
/// Answers larger than this are not stored (ours are small JSON documents).
const MAX_STORED_BODY: usize = 1024 * 1024;

fn valid_key(k: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic())
}

/// The middleware (see the module doc).
pub(crate) async fn replay(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(HEADER) else {
        return next.run(req).await;
    };
    let key = match key.to_str() {
        Ok(k) if valid_key(k) => k.to_owned(),
        _ => {
            return ApiError::field(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            )
            .into_response();
        }
    };
    let (mut parts, body) = req.into_parts();
    let caller = match Caller::from_request_parts(&mut parts, &state).await {
        Ok(c) => c,
        // Not authenticated: the handler answers, and nothing is stored.
        Err(_) => return next.run(Request::from_parts(parts, body)).await,
    };
    let limit = state.config.max_body_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(limit);
    }
    let bytes: Bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return too_large(limit),
    };
    let fingerprint = {
        let mut h = Sha256::new();
        h.update(parts.method.as_str().as_bytes());
        h.update(b"\0");
        h.update(parts.uri.path().as_bytes());
        h.update(b"\0");
        h.update(parts.uri.query().unwrap_or_default().as_bytes());
        h.update(b"\0");
        h.update(&bytes);
        let digest: [u8; 32] = h.finalize().into();
        refbridge_domain::ContentHash::from_digest(&digest).to_string()
    };
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let keyed = KeyedRequest {
        caller: &caller.name,
        key: &key,
        method: &method,
        path: &path,
        fingerprint: &fingerprint,
    };
    match state.store.reserve_idempotency_key(&keyed, TTL).await {
        Err(e) => return ApiError::from(e).into_response(),
        Ok(KeyReservation::Mismatch) => {
            tracing::info!("idempotency key reused with another request");
            return ApiError::IdempotencyKeyMismatch.into_response();
        }
        Ok(KeyReservation::InFlight) => return ApiError::IdempotencyKeyInUse.into_response(),
        Ok(KeyReservation::Replay {
            status,
            content_type,
            body,
        }) => {
            tracing::info!(status, "idempotent replay");
            let mut res = Response::new(Body::from(body));
            *res.status_mut() = axum::http::StatusCode::from_u16(status)
                .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
            if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
                res.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            res.headers_mut()
                .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
            return res;
        }
        Ok(KeyReservation::Reserved) => {}
    }

    let res = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let release = |why: &'static str| {
        let store = state.store.clone();
        let (caller, key) = (caller.name.clone(), key.clone());
        async move {
            if let Err(e) = store.release_idempotency_key(&caller, &key).await {
                tracing::warn!(error = %e, why, "cannot release idempotency key");
            }
        }
    };
    if res.status().is_server_error() {
        release("server error").await;
        return res;
    }
    let (res_parts, res_body) = res.into_parts();
    let res_bytes = match axum::body::to_bytes(res_body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            release("unreadable answer").await;
            tracing::error!(error = %e, "cannot buffer the answer");
            return ApiError::Internal(Box::new(e)).into_response();
        }
    };
    match std::str::from_utf8(&res_bytes) {
        Ok(text) if res_bytes.len() <= MAX_STORED_BODY => {
            let content_type = res_parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            if let Err(e) = state
                .store
                .complete_idempotency_key(
                    &caller.name,
                    &key,
                    res_parts.status.as_u16(),
                    content_type,
                    text,
                )
                .await
            {
                tracing::warn!(error = %e, "cannot store the idempotent answer");
                release("store failed").await;
            }
        }
        _ => release("answer not storable").await,
    }
    Response::from_parts(res_parts, Body::from(res_bytes))
}

fn too_large(limit: usize) -> Response {
    ApiError::PayloadTooLarge(format!("request body is larger than {limit} bytes")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_1_to_255_visible_ascii() {
        assert!(valid_key("a"));
        assert!(valid_key(&"k".repeat(255)));
        assert!(!valid_key(""));
        assert!(!valid_key(&"k".repeat(256)));
        assert!(!valid_key("with space"));
        assert!(!valid_key("é"));
    }
}
