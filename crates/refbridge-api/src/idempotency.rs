//! `Idempotency-Key` on any POST, PUT or PATCH: the first answer is replayed for 24 hours.
//!
//! - Scope: the caller (token name) and the key. The same key from two callers is two keys.
//! - Fingerprint: SHA-256 of the method, path, query and body bytes. The body is read once
//!   for it and handed on unchanged: held in memory up to 1 MiB, spooled to an anonymous
//!   scratch file beyond, so a keyed upload of several large documents is never held in
//!   memory.
//! - The key is reserved before the request runs. A second request with the key while the
//!   first runs: 409 `idempotency_key_in_use` with `Retry-After: 1`. The key with another
//!   method, path, query or body: 422 `idempotency_key_mismatch` (as the IETF draft
//!   `draft-ietf-httpapi-idempotency-key-header` says; Stripe uses 400).
//! - Answers below 500 are stored and replayed with their status and body, marked
//!   `Idempotent-Replayed: true`. A 5xx is not stored: a retry runs again.
//! - A key is 1 to 255 visible ASCII characters; anything else is a 400.
//! - Once reserved, the request runs to the end even if the caller hangs up, and its answer
//!   is stored: the caller's retry gets it instead of finding the key in use.
//!
//! Requests without a key, or without a valid token (the handler answers 401), pass through.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures::StreamExt as _;
use refbridge_storage::{Blobs, KeyReservation, KeyedRequest};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};
use tokio_util::io::ReaderStream;
use tracing::Instrument as _;

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
    let limit = body_limit(&state);
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(limit);
    }
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str().as_bytes());
    hasher.update(b"\0");
    hasher.update(parts.uri.path().as_bytes());
    hasher.update(b"\0");
    hasher.update(parts.uri.query().unwrap_or_default().as_bytes());
    hasher.update(b"\0");
    let (fingerprint, body) = match spool(body, hasher, limit, &state.files).await {
        Ok(spooled) => spooled,
        Err(res) => return *res,
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

    // Run to the end even if the caller hangs up (this future is then dropped, the task is not).
    let run = {
        let state = state.clone();
        let (caller, key) = (caller.name.clone(), key.clone());
        async move {
            let res = next.run(Request::from_parts(parts, body)).await;
            settle(&state, &caller, &key, res).await
        }
    };
    match tokio::spawn(run.instrument(tracing::Span::current())).await {
        Ok(res) => res,
        Err(e) => {
            // The handler panicked: the key is free for a retry.
            if let Err(err) = state
                .store
                .release_idempotency_key(&caller.name, &key)
                .await
            {
                tracing::warn!(error = %err, "cannot release idempotency key");
            }
            ApiError::Internal(Box::new(e)).into_response()
        }
    }
}

/// Stores `res` as the key's answer (or frees the key when it cannot be stored) and hands it
/// on.
async fn settle(state: &AppState, caller: &str, key: &str, res: Response) -> Response {
    let release = |why: &'static str| {
        let store = state.store.clone();
        let (caller, key) = (caller.to_owned(), key.to_owned());
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
                    caller,
                    key,
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

/// Deletes stored answers older than `ttl` every `every`, until dropped (aborted): the
/// `idempotency_keys` table holds a day of keys, not every key ever sent.
pub async fn purge_expired_keys(store: refbridge_storage::Store, every: Duration, ttl: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.purge_idempotency_keys(ttl).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "expired idempotency keys purged"),
            Err(e) => tracing::warn!(error = %e, "cannot purge expired idempotency keys"),
        }
    }
}

/// The largest body any route takes: the documents route's, when it is the larger.
fn body_limit(state: &AppState) -> usize {
    state
        .config
        .max_body_bytes
        .max(crate::routes::approval::documents_body_limit(
            state.config.max_file_bytes,
        ))
}

/// Bodies up to this size are kept in memory; larger ones are spooled to a scratch file.
const IN_MEMORY_BODY: usize = 1024 * 1024;

/// Reads `body` once, hashing it into `hasher`, and gives back the fingerprint and the same
/// bytes as a new body (from memory, or from a scratch file when large).
async fn spool(
    body: Body,
    mut hasher: Sha256,
    limit: usize,
    files: &Blobs,
) -> Result<(String, Body), Box<Response>> {
    let internal = |e: std::io::Error| Box::new(ApiError::Internal(Box::new(e)).into_response());
    let mut stream = body.into_data_stream();
    let mut memory = BytesMut::new();
    let mut file: Option<tokio::fs::File> = None;
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Box::new(ApiError::body_read(&e).into_response()))?;
        total = total.saturating_add(chunk.len());
        if total > limit {
            return Err(Box::new(too_large(limit)));
        }
        hasher.update(&chunk);
        match file.as_mut() {
            Some(f) => f.write_all(&chunk).await.map_err(internal)?,
            None if memory.len() + chunk.len() <= IN_MEMORY_BODY => {
                memory.extend_from_slice(&chunk);
            }
            None => {
                let mut f = tokio::fs::File::from_std(files.scratch_file().map_err(internal)?);
                f.write_all(&memory).await.map_err(internal)?;
                f.write_all(&chunk).await.map_err(internal)?;
                memory = BytesMut::new();
                file = Some(f);
            }
        }
    }
    let digest: [u8; 32] = hasher.finalize().into();
    let fingerprint = refbridge_domain::ContentHash::from_digest(&digest).to_string();
    let body = match file {
        None => Body::from(memory.freeze()),
        Some(mut f) => {
            f.flush().await.map_err(internal)?;
            f.rewind().await.map_err(internal)?;
            Body::from_stream(ReaderStream::with_capacity(f, 64 * 1024))
        }
    };
    Ok((fingerprint, body))
}

fn too_large(limit: usize) -> Response {
    ApiError::PayloadTooLarge(format!("request body is larger than {limit} bytes")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ApiConfig;
    use axum::Router;
    use axum::routing::post;
    use refbridge_domain::Role;
    use refbridge_storage::{Store, StoreOptions};
    use tower::ServiceExt as _;

    /// A handler that answers after `DELAY`, behind the middleware, with a caller's token.
    async fn slow_app() -> (Router, String, tempfile::TempDir) {
        async fn slow() -> &'static str {
            tokio::time::sleep(DELAY).await;
            "done"
        }
        let dir = tempfile::tempdir().unwrap();
        let url = refbridge_storage::test_util::fresh_database_url(dir.path()).await;
        let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
        let token = crate::new_token().unwrap();
        store
            .create_token("caller", Role::Reviewer, &crate::hash_token(&token))
            .await
            .unwrap();
        let state = AppState {
            store,
            files: Blobs::folder(
                refbridge_storage::FileStore::open(dir.path().join("files")).unwrap(),
            ),
            config: ApiConfig::default(),
            wake: Default::default(),
        };
        let app = Router::new()
            .route("/slow", post(slow))
            .layer(axum::middleware::from_fn_with_state(state, replay));
        (app, token, dir)
    }

    const DELAY: Duration = Duration::from_millis(300);

    fn keyed(token: &str) -> Request {
        Request::post("/slow")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(HEADER, "hang-up-1")
            .body(Body::from("{}"))
            .unwrap()
    }

    #[tokio::test]
    async fn a_caller_that_hangs_up_gets_the_answer_on_retry() {
        let (app, token, _dir) = slow_app().await;
        // The caller gives up long before the answer: its request future is dropped.
        let gave_up = tokio::time::timeout(DELAY / 6, app.clone().oneshot(keyed(&token))).await;
        assert!(gave_up.is_err());
        tokio::time::sleep(DELAY * 2).await;
        let res = app.oneshot(keyed(&token)).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()[REPLAYED_HEADER], "true");
        let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"done");
    }

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
