//! `POST /referral_request`: AlayaConnector's Referral Request.
//!
//! The body is parsed without copying file contents: `file_value` strings are borrowed from
//! the request bytes and decoded straight into the file store, so a 50 MB file costs the body
//! once, not three times. Parsing, decoding and hashing run on a blocking thread.

use std::borrow::Cow;
use std::fmt;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use bytes::BytesMut;
use refbridge_domain::file_name::{FileName, FileNameError};
use refbridge_domain::form::{self, Warning};
use refbridge_domain::intake::{self, RawParts};
use refbridge_domain::{ReferralStatus, RequestId, Role, Violations};
use refbridge_storage::files::PutError;
use refbridge_storage::{Blobs, IntakeOutcome, NewFile, NewReferral, Staged};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::json;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(post_referral_request))
}

/// The answer to an accepted Referral Request.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IntakeResponse {
    #[schema(value_type = String, format = Uuid)]
    pub request_id: RequestId,
    pub status: ReferralStatus,
    /// What the reviewer should look at: fields that did not parse, missing information.
    pub warnings: Vec<Warning>,
}

/// The Referral Request as AlayaConnector sends it (documentation of the contract; the
/// handler reads the body itself so that it can report every problem at once).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReferralRequestDoc {
    #[schema(format = Uuid)]
    request_id: String,
    agency: AgencyDoc,
    client: ClientDoc,
    files: Option<Vec<FileDoc>>,
    form_data: FormDataDoc,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AgencyDoc {
    /// One line, not blank, at most 255 characters.
    #[schema(
        max_length = 255,
        pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    name: String,
    /// One line, not blank, at most 255 characters.
    #[schema(
        max_length = 255,
        pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    host: String,
    branch_id: i64,
    #[schema(format = Uuid)]
    alayamarket_org_id: String,
    #[schema(value_type = crate::contract::TimeZoneName, example = "America/Chicago")]
    timezone: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ClientDoc {
    id: i64,
    /// One line, not blank, at most 100 characters.
    #[schema(
        max_length = 100,
        pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    first_name: String,
    /// One line, not blank, at most 100 characters.
    #[schema(
        max_length = 100,
        pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    last_name: String,
    /// One line, at most 255 characters (as are the address fields below; blank is absent).
    #[schema(
        max_length = 255,
        pattern = r"^(?:[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*|[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)$"
    )]
    email: Option<String>,
    #[schema(
        max_length = 255,
        pattern = r"^(?:[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*|[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)$"
    )]
    phone_main: Option<String>,
    #[schema(format = Date)]
    birthday: Option<String>,
    #[schema(
        max_length = 255,
        pattern = r"^(?:[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*|[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)$"
    )]
    gender: Option<String>,
    #[schema(
        max_length = 255,
        pattern = r"^(?:[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*|[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)$"
    )]
    address: Option<String>,
    #[schema(
        max_length = 255,
        pattern = r"^(?:[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*|[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)$"
    )]
    city: Option<String>,
    #[schema(
        max_length = 255,
        pattern = r"^(?:[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*|[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)$"
    )]
    state: Option<String>,
    #[schema(
        max_length = 255,
        pattern = r"^(?:[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*|[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)$"
    )]
    zip: Option<String>,
    #[schema(
        max_length = 255,
        pattern = r"^(?:[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*|[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)$"
    )]
    country: Option<String>,
    #[schema(value_type = crate::contract::TimeZoneName, example = "America/Chicago")]
    timezone: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FileDoc {
    /// Not blank; at most 1,000 characters (once the spaces around it are trimmed).
    #[schema(
        max_length = 1000,
        pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    file_name: String,
    /// Base64 (the standard alphabet); padding optional, line breaks ignored (the pattern
    /// states it without them); at most 50 MB once decoded.
    #[schema(pattern = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$")]
    file_value: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FormDataDoc {
    form_id: Option<i64>,
    #[schema(
        max_length = 255,
        pattern = r"^(?:[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*|[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)$"
    )]
    form_name: Option<String>,
    #[schema(
        max_length = 255,
        pattern = r"^(?:[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*|[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)$"
    )]
    form_schema_id: Option<String>,
    #[schema(
        max_length = 255,
        pattern = r"^(?:[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*|[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)$"
    )]
    created_at: Option<String>,
    #[schema(
        max_length = 255,
        pattern = r"^(?:[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*|[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)$"
    )]
    created_by: Option<String>,
    fields: Vec<refbridge_domain::intake::FormField>,
}

/// Receive a supply agency's Referral Request.
///
/// Idempotent on `request_id`: the same document again answers 200 with the same record; a
/// different document under a known `request_id` answers 409.
#[utoipa::path(
    post, path = "/referral_request", tag = "intake",
    request_body = ReferralRequestDoc,
    security(("bearer" = [])),
    responses(
                (status = 200, body = IntakeResponse, description = "recorded (or recorded before)"),
        (status = 400, body = ErrorBody, description = "invalid document; every problem listed"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "another document has this request_id"),
        (status = 413, body = ErrorBody, description = "body or a file too large"),
    )
)]
async fn post_referral_request(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    // `BytesMut` gathers the body into one growing buffer; `Bytes` would keep the received
    // chunks and then copy them into a second, contiguous buffer: twice the body at peak.
    body: Result<BytesMut, BytesRejection>,
) -> Result<Json<IntakeResponse>, ApiError> {
    caller.require(Role::Intake)?;
    json::check_json_headers(&headers)?;
    let body = body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) if is_too_large(&e) => {
            ApiError::PayloadTooLarge(format!(
                "request body is larger than {} bytes",
                state.config.max_body_bytes
            ))
        }
        other => ApiError::body_read(&other),
    })?;
    let files = state.files.clone();
    let max_file = state.config.max_file_bytes;
    let actor = caller.name.clone();
    // The body is freed when `prepare` returns, before the bodies go to the blob backend.
    let (prepared, staged) =
        tokio::task::spawn_blocking(move || prepare(&body, &files, max_file, actor))
            .await
            .map_err(|e| ApiError::Internal(Box::new(e)))??;
    for s in staged {
        state
            .files
            .commit(s)
            .await
            .map_err(|e| ApiError::Internal(Box::new(e)))?;
    }

    let id = prepared.request.request_id;
    match state.store.record_intake(&prepared).await? {
        IntakeOutcome::Created(receipt) => {
            tracing::info!(request_id = %id, patient_id = %receipt.patient_id, files = receipt.files,
                warnings = receipt.warnings.len(), "referral request received");
            Ok(Json(IntakeResponse {
                request_id: id,
                status: ReferralStatus::Received,
                warnings: receipt.warnings,
            }))
        }
        IntakeOutcome::Replayed(rec) => {
            tracing::info!(request_id = %id, "referral request replayed");
            Ok(Json(IntakeResponse {
                request_id: id,
                status: rec.status,
                warnings: rec.warnings,
            }))
        }
        IntakeOutcome::Conflict => {
            tracing::warn!(request_id = %id, "referral request conflicts with the one recorded");
            Err(ApiError::Conflict(format!(
                "request_id {id} was already received with a different body"
            )))
        }
    }
}

fn is_too_large(e: &BytesRejection) -> bool {
    e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE
}

/// `POST /referral_request` doing only what comes before the store: the body read under the
/// same limit, the headers checked, the document parsed and validated, and each file
/// base64-decoded by the intake's own decoder into nothing (no file written, no hash, no form
/// parse, no store, no token lookup). The baseline `refbridge bench intake` measures beside
/// the real endpoint, served by the same HTTP server.
pub fn decode_only_router(max_body_bytes: usize, max_file_bytes: u64) -> axum::Router {
    axum::Router::new()
        .route("/referral_request", axum::routing::post(decode_only))
        .with_state(max_file_bytes)
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
}

async fn decode_only(
    State(max_file): State<u64>,
    headers: HeaderMap,
    body: Result<BytesMut, BytesRejection>,
) -> Result<Json<IntakeResponse>, ApiError> {
    json::check_json_headers(&headers)?;
    let body = body.map_err(|e| ApiError::body_read(&e))?;
    let request_id = tokio::task::spawn_blocking(move || decode(&body, max_file))
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))??;
    Ok(Json(IntakeResponse {
        request_id,
        status: ReferralStatus::Received,
        warnings: Vec::new(),
    }))
}

/// [`prepare`] up to the decoded files, keeping none of them. Blocking.
fn decode(body: &[u8], max_file: u64) -> Result<RequestId, ApiError> {
    let found = json::Found::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let raw = RawBody::read(&found, &mut de)
        .and_then(|raw| de.end().map(|()| raw))
        .map_err(|e| found.error(&e))?;
    let parts = RawParts {
        request_id: raw.fields.get("request_id"),
        agency: raw.fields.get("agency"),
        client: raw.fields.get("client"),
        form_data: raw.fields.get("form_data"),
    };
    let validated = intake::validate(parts);
    let mut violations = match &validated {
        Ok(_) => Violations::default(),
        Err(v) => v.clone(),
    };
    let files = check_files(raw.files, &mut violations);
    let request = match validated {
        Ok(r) if violations.is_empty() => r,
        _ => return Err(violations.into()),
    };
    for (i, (_, value)) in files.into_iter().enumerate() {
        refbridge_storage::files::decode_base64_len(value.unescaped(), max_file).map_err(|e| {
            match e {
                PutError::TooLarge { limit } => ApiError::PayloadTooLarge(format!(
                    "files[{i}] is larger than {limit} bytes once decoded"
                )),
                _ => ApiError::field(&format!("files[{i}].file_value"), "is not valid base64"),
            }
        })?;
    }
    Ok(request.request_id)
}

/// Parses, validates, stores the files and parses the form. Blocking.
/// The files are decoded into the working folder; the caller commits the staged bodies.
fn prepare(
    body: &[u8],
    store: &Blobs,
    max_file: u64,
    actor: String,
) -> Result<(NewReferral, Vec<Staged>), ApiError> {
    let found = json::Found::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let raw = RawBody::read(&found, &mut de)
        .and_then(|raw| de.end().map(|()| raw))
        .map_err(|e| found.error(&e))?;

    let parts = RawParts {
        request_id: raw.fields.get("request_id"),
        agency: raw.fields.get("agency"),
        client: raw.fields.get("client"),
        form_data: raw.fields.get("form_data"),
    };
    let validated = intake::validate(parts);
    let mut violations = match &validated {
        Ok(_) => Violations::default(),
        Err(v) => v.clone(),
    };
    let files = check_files(raw.files, &mut violations);
    let request = match validated {
        Ok(r) if violations.is_empty() => r,
        _ => return Err(violations.into()),
    };

    let mut stored = Vec::with_capacity(files.len());
    let mut staged = Vec::with_capacity(files.len());
    let mut empty = Vec::new();
    for (i, (name, value)) in files.into_iter().enumerate() {
        // Errors name the file by its index: its name is the agency's data.
        let blob = store
            .put_base64(value.unescaped(), max_file)
            .map_err(|e| match e {
                PutError::InvalidBase64 => {
                    ApiError::field(&format!("files[{i}].file_value"), "is not valid base64")
                }
                PutError::TooLarge { limit } => ApiError::PayloadTooLarge(format!(
                    "files[{i}] is larger than {limit} bytes once decoded"
                )),
                PutError::Io(io) => ApiError::Internal(Box::new(io)),
            })?;
        if blob.blob.size == 0 {
            empty.push(i);
        }
        stored.push(NewFile {
            name: name.into_string(),
            blob: blob.blob.clone(),
        });
        staged.push(blob);
    }

    let mut parsed = form::parse(&request.fields, Some(&request.client));
    parsed.warnings.extend(empty.into_iter().map(|i| Warning {
        field: format!("files[{i}]"),
        code: "empty_file".into(),
        message: "the file is empty (0 bytes)".into(),
    }));
    let extra: Map<String, Value> = raw
        .fields
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "request_id" | "agency" | "client" | "form_data"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let fingerprint = fingerprint(&raw.fields, &stored);
    Ok((
        NewReferral {
            request,
            parsed,
            fingerprint,
            extra: (!extra.is_empty()).then_some(Value::Object(extra)),
            files: stored,
            actor,
        },
        staged,
    ))
}

/// Identifies a document's content independently of key order and whitespace: the SHA-256 of
/// its canonical JSON (keys sorted) without the file bodies, followed by each file's name and
/// content hash.
fn fingerprint(fields: &Map<String, Value>, files: &[NewFile]) -> String {
    let mut h = Sha256::new();
    let mut buf = Vec::new();
    canonical(&Value::Object(fields.clone()), &mut buf);
    h.update(&buf);
    for f in files {
        h.update(b"\0file\0");
        h.update(f.name.as_bytes());
        h.update(b"\0");
        h.update(f.blob.hash.as_str().as_bytes());
    }
    let digest: [u8; 32] = h.finalize().into();
    refbridge_domain::ContentHash::from_digest(&digest).to_string()
}

fn canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                canonical(&m[k], out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(x, out);
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

/// The top level of the body: `files` read raw (their contents are never copied), everything
/// else as strict JSON values.
struct RawBody<'a> {
    fields: Map<String, Value>,
    files: Option<&'a RawValue>,
}

/// One element of `files`, its contents borrowed from the body.
#[derive(Default)]
struct RawFile<'a> {
    file_name: Option<Value>,
    file_value: Option<&'a RawValue>,
}

/// Where the Referral Request's values are read: the top level is depth 0.
const FILE_DEPTH: usize = 2;

impl<'a> RawBody<'a> {
    fn read(
        found: &json::Found,
        de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'a>>,
    ) -> Result<Self, serde_json::Error> {
        de.deserialize_map(BodyVisitor { found })
    }
}

struct BodyVisitor<'f> {
    found: &'f json::Found,
}

impl<'de> Visitor<'de> for BodyVisitor<'_> {
    type Value = RawBody<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawBody<'de>, A::Error> {
        let mut fields = Map::new();
        let mut files = None;
        let mut seen_files = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let path = json::Path::Key(&json::Path::Root, &key);
            if key == "files" {
                if std::mem::replace(&mut seen_files, true) {
                    return Err(self.found_dup(&path));
                }
                files = Some(map.next_value::<&'de RawValue>()?);
            } else {
                if fields.contains_key(key.as_ref()) {
                    return Err(self.found_dup(&path));
                }
                let v = map.next_value_seed(json::StrictValue {
                    found: self.found,
                    path,
                    depth: 1,
                    nul_ok: false,
                })?;
                fields.insert(key.into_owned(), v);
            }
        }
        Ok(RawBody { fields, files })
    }
}

impl BodyVisitor<'_> {
    fn found_dup<E: de::Error>(&self, path: &json::Path<'_>) -> E {
        self.found.fail(path, "is a duplicate key")
    }
}

/// One file object: `file_name` as a strict value, `file_value` raw, any other key strict and
/// dropped.
struct FileVisitor<'f> {
    found: &'f json::Found,
    index: usize,
}

impl<'de> Visitor<'de> for FileVisitor<'_> {
    type Value = RawFile<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a file object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawFile<'de>, A::Error> {
        let files = json::Path::Key(&json::Path::Root, "files");
        let at = json::Path::Index(&files, self.index);
        let mut file = RawFile::default();
        let mut seen: Vec<Cow<'de, str>> = Vec::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let path = json::Path::Key(&at, &key);
            if seen.contains(&key) {
                return Err(self.found.fail(&path, "is a duplicate key"));
            }
            let strict = json::StrictValue {
                found: self.found,
                path,
                depth: FILE_DEPTH + 1,
                // A file name may hold anything: `FileName` makes it displayable.
                nul_ok: key == "file_name",
            };
            match key.as_ref() {
                "file_value" => file.file_value = Some(map.next_value::<&'de RawValue>()?),
                "file_name" => file.file_name = Some(map.next_value_seed(strict)?),
                _ => {
                    map.next_value_seed(strict)?;
                }
            }
            seen.push(key);
        }
        Ok(file)
    }
}

/// Reads `files` (absent, null, or an array of file objects) and checks each file's name and
/// contents' type, each problem a violation. Gives each file's display name and contents.
fn check_files<'a>(
    files: Option<&'a RawValue>,
    violations: &mut Violations,
) -> Vec<(FileName, JsonStr<'a>)> {
    let mut out = Vec::new();
    let Some(files) = files.map(RawValue::get).filter(|f| *f != "null") else {
        return out;
    };
    let found = json::Found::default();
    let elements = if files.starts_with('[') {
        serde_json::from_str::<Vec<&'a RawValue>>(files).ok()
    } else {
        None
    };
    let at_files = json::Path::Key(&json::Path::Root, "files");
    let Some(elements) = elements else {
        wrong_shape(
            files,
            at_files,
            1,
            "must be an array of file objects",
            violations,
        );
        return out;
    };
    for (i, raw) in elements.into_iter().enumerate() {
        let text = raw.get();
        if !text.starts_with('{') {
            let at = json::Path::Index(&at_files, i);
            wrong_shape(text, at, FILE_DEPTH, "must be an object", violations);
            continue;
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let file = match de.deserialize_map(FileVisitor {
            found: &found,
            index: i,
        }) {
            Ok(f) => f,
            Err(e) => {
                // A duplicate key or too deep a value: the visitor said which.
                match found.error(&e) {
                    ApiError::InvalidRequest { details, .. } => violations.0.extend(details),
                    _ => violations.push(format!("files[{i}]"), "is not a valid file object"),
                }
                continue;
            }
        };
        let name = match file.file_name {
            None | Some(Value::Null) => Err("is required"),
            Some(Value::String(s)) => FileName::parse(&s).map_err(|e| match e {
                FileNameError::Empty => "is required",
                FileNameError::TooLong => "must be at most 1000 characters",
            }),
            Some(_) => Err("must be a string"),
        };
        let value = match file.file_value.map(RawValue::get) {
            None | Some("null") => Err("is required"),
            Some(v) => v
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .map(JsonStr)
                .ok_or(v),
        };
        if let Err(problem) = &name {
            violations.push(format!("files[{i}].file_name"), *problem);
        }
        match &value {
            Err("is required") => violations.push(format!("files[{i}].file_value"), "is required"),
            Err(raw) => {
                let file = json::Path::Index(&at_files, i);
                let at = json::Path::Key(&file, "file_value");
                wrong_shape(raw, at, FILE_DEPTH + 1, "must be a string", violations);
            }
            Ok(_) => {}
        }
        if let (Ok(name), Ok(value)) = (name, value) {
            out.push((name, value));
        }
    }
    out
}

/// A value of the wrong type at `path`: reported as too deep, or with a duplicate key, when
/// it is; else as `problem`.
fn wrong_shape(
    text: &str,
    path: json::Path<'_>,
    depth: usize,
    problem: &str,
    violations: &mut Violations,
) {
    let found = json::Found::default();
    let seed = json::StrictValue {
        found: &found,
        path,
        depth,
        nul_ok: false,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    match serde::de::DeserializeSeed::deserialize(seed, &mut de) {
        Err(e) => match found.error(&e) {
            ApiError::InvalidRequest { details, .. } => violations.0.extend(details),
            _ => violations.push(path.to_string(), problem),
        },
        Ok(_) => violations.push(path.to_string(), problem),
    }
}

/// A JSON string's text as it is in the body, between its quotes and with its escapes:
/// borrowed, so a file's base64 is never copied, not even when the sender escapes every `/`
/// as `\/` (PHP's `json_encode` does by default).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct JsonStr<'a>(&'a str);

impl<'a> JsonStr<'a> {
    /// The string's bytes with the escapes resolved, one at a time. A `\u` escape of a
    /// character outside ASCII gives 0xFF: never base64, so the decoder rejects it.
    fn unescaped(self) -> impl Iterator<Item = u8> + 'a {
        let mut bytes = self.0.bytes();
        std::iter::from_fn(move || {
            let b = bytes.next()?;
            if b != b'\\' {
                return Some(b);
            }
            // The JSON parser has checked every escape: each is complete.
            Some(match bytes.next()? {
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'b' => 0x08,
                b'f' => 0x0c,
                b'u' => {
                    let code = (0..4).try_fold(0u32, |acc, _| {
                        let digit = char::from(bytes.next()?).to_digit(16)?;
                        Some(acc * 16 + digit)
                    })?;
                    u8::try_from(code).ok().filter(u8::is_ascii).unwrap_or(0xFF)
                }
                // `\"`, `\\` and `\/` stand for themselves.
                other => other,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_of(body: &[u8]) -> Result<(Vec<(FileName, JsonStr<'_>)>, Violations), ApiError> {
        let found = json::Found::default();
        let mut de = serde_json::Deserializer::from_slice(body);
        let raw = RawBody::read(&found, &mut de).map_err(|e| found.error(&e))?;
        let mut v = Violations::default();
        Ok((check_files(raw.files, &mut v), v))
    }

    fn paths(v: &Violations) -> Vec<String> {
        v.0.iter()
            .map(|v| format!("{} {}", v.path, v.problem))
            .collect()
    }

    #[test]
    fn file_values_are_borrowed_from_the_body_escapes_and_all() {
        let body = br#"{"request_id":"x","files":[{"file_name":"a.pdf","file_value":"QUJD"},
            {"file_name":"b.pdf","file_value":"QU\/J"},{"file_name":"c.pdf"},
            {"file_name":"d.pdf","file_value":null}]}"#;
        let (files, v) = files_of(body).unwrap();
        assert_eq!(files[0].1, JsonStr("QUJD"));
        assert_eq!(files[1].1, JsonStr(r"QU\/J"));
        let start = body.as_ptr() as usize;
        let at = files[1].1.0.as_ptr() as usize;
        assert!(
            (start..start + body.len()).contains(&at),
            "borrowed from the body"
        );
        assert_eq!(
            paths(&v),
            [
                "files[2].file_value is required",
                "files[3].file_value is required"
            ]
        );
        let (_, v) = files_of(br#"{"files":[{"file_name":"a.pdf","file_value":12}]}"#).unwrap();
        assert_eq!(paths(&v), ["files[0].file_value must be a string"]);
    }

    #[test]
    fn files_of_the_wrong_shape_name_the_path() {
        let cases: [(&[u8], &str); 6] = [
            (
                br#"{"files":{"a":1}}"#,
                "files must be an array of file objects",
            ),
            (br#"{"files":[1]}"#, "files[0] must be an object"),
            (
                br#"{"files":[{"file_name":1,"file_value":"QQ=="}]}"#,
                "files[0].file_name must be a string",
            ),
            (
                br#"{"files":[{"file_name":"a","file_name":"b","file_value":"QQ=="}]}"#,
                "files[0].file_name is a duplicate key",
            ),
            (
                br#"{"files":[{"file_name":"a","file_value":"QQ==","x":{"k":1,"k":2}}]}"#,
                "files[0].x.k is a duplicate key",
            ),
            (
                br#"{"files":[{"file_name":"","file_value":"QQ=="}]}"#,
                "files[0].file_name is required",
            ),
        ];
        for (body, want) in cases {
            let (_, v) = files_of(body).unwrap();
            assert_eq!(paths(&v), [want], "{}", String::from_utf8_lossy(body));
        }
        let deep = format!(r#"{{"files":[{}{}]}}"#, "[".repeat(100), "]".repeat(100));
        let (_, v) = files_of(deep.as_bytes()).unwrap();
        assert!(
            paths(&v)[0].contains("nested too deeply"),
            "{:?}",
            paths(&v)
        );
        let long = format!(
            r#"{{"files":[{{"file_name":"{}","file_value":""}}]}}"#,
            "n".repeat(1001)
        );
        let (_, v) = files_of(long.as_bytes()).unwrap();
        assert_eq!(
            paths(&v),
            ["files[0].file_name must be at most 1000 characters"]
        );
    }

    #[test]
    fn a_duplicate_top_level_key_is_refused_with_its_path() {
        for (body, want) in [
            (
                &br#"{"files":[],"files":[]}"#[..],
                "files is a duplicate key",
            ),
            (br#"{"agency":{},"agency":{}}"#, "agency is a duplicate key"),
            (
                br#"{"agency":{"name":"a","name":"b"}}"#,
                "agency.name is a duplicate key",
            ),
        ] {
            let Err(ApiError::InvalidRequest { message, .. }) = files_of(body) else {
                panic!("accepted {}", String::from_utf8_lossy(body));
            };
            assert_eq!(message, want);
        }
    }

    #[test]
    fn unescaping_resolves_every_json_escape() {
        let text = r#"QU\/J\n\r\t\u0041\u00e9\"\\\b\f"#;
        let got: Vec<u8> = JsonStr(text).unescaped().collect();
        assert_eq!(got, b"QU/J\n\r\tA\xFF\"\\\x08\x0c");
        // What serde_json makes of the same string, with the non-ASCII character marked.
        let parsed: String = serde_json::from_str(&format!("\"{text}\""))
            .map(|s: String| s.replace('\u{e9}', "\u{FF}"))
            .unwrap();
        let expected: Vec<u8> = parsed.chars().map(|c| c as u32 as u8).collect();
        assert_eq!(got, expected);
    }
}
