//! The review record: list, detail, files, deny.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use refbridge_domain::form::{StructuredReferral, Warning};
use refbridge_domain::intake::{Agency, ClientMeta, FormField, FormMeta};
use refbridge_domain::send::{ChangeKind, JobState, StepKind, StepState};
use refbridge_domain::{FileId, ReferralStatus, RequestId, Role, Violations};
use refbridge_storage::{
    AuditEvent, DenyError, ListFilter, ReferralRecord, ReferralSummary, StatusChange,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::params::{Cursor, Path, Query};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_referrals))
        .routes(routes!(get_referral))
        .routes(routes!(get_file))
        .routes(routes!(deny))
}

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 200;
/// A denial reason longer than this is a mistake, not a reason.
const MAX_REASON_CHARS: usize = 2000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[param(value_type = Option<ReferralStatus>)]
    status: Option<String>,
    /// The agency's AlayaMarket org id.
    #[param(format = Uuid)]
    agency: Option<String>,
    /// Received at or after this instant (RFC 3339).
    #[param(format = DateTime)]
    received_from: Option<String>,
    /// Received before this instant (RFC 3339).
    #[param(format = DateTime)]
    received_to: Option<String>,
    /// Page size (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// `next_cursor` of the previous page: `{microseconds since the epoch}_{request id}`;
    /// the page lists what was received before that point.
    #[param(
        pattern = r"^[0-9]{1,16}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    )]
    cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReferralListItem {
    #[schema(value_type = String, format = Uuid)]
    pub request_id: RequestId,
    pub status: ReferralStatus,
    pub agency_name: String,
    pub agency_org_id: String,
    #[schema(value_type = String, format = Uuid)]
    pub patient_id: refbridge_domain::PatientId,
    pub service_requested: Option<String>,
    pub warning_count: i64,
    pub received_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReferralList {
    pub items: Vec<ReferralListItem>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// List Referral Requests, newest first.
#[utoipa::path(get, path = "/v1/referral-requests", tag = "review", params(ListQuery),
    security(("bearer" = [])),
    responses((status = 200, body = ReferralList), (status = 400, body = ErrorBody),
               (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_referrals(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<ReferralList>, ApiError> {
    caller.require(Role::Reviewer)?;
    let mut v = Violations::default();
    let status = q.status.as_deref().and_then(|s| {
        let st = ReferralStatus::parse(s);
        if st.is_none() {
            v.push(
                "status",
                "must be one of received, approved, sending, sent, needs_attention, denied",
            );
        }
        st
    });
    let agency = q.agency.as_deref().and_then(|s| {
        let id = uuid::Uuid::parse_str(s).ok();
        if id.is_none() {
            v.push("agency", "must be the agency's AlayaMarket org id (a UUID)");
        }
        id
    });
    let mut instant = |name: &str, s: Option<&str>| {
        s.and_then(|s| match DateTime::parse_from_rfc3339(s) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                v.push(
                    name,
                    "must be an RFC 3339 date-time such as 2026-01-31T00:00:00Z",
                );
                None
            }
        })
    };
    let received_from = instant("received_from", q.received_from.as_deref());
    let received_to = instant("received_to", q.received_to.as_deref());
    let limit = match q.limit.as_deref().map(str::parse::<u32>) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            v.push("limit", "must be a whole number from 1 to 200");
            DEFAULT_LIMIT
        }
    };
    let before = q.cursor.as_deref().and_then(|c| {
        let parsed = decode_cursor(c);
        if parsed.is_none() {
            v.push("cursor", "is not a cursor this API returned");
        }
        parsed
    });
    if !v.is_empty() {
        return Err(v.into());
    }
    let filter = ListFilter {
        status,
        agency_org_id: agency,
        received_from,
        received_to,
        before,
        // One more than asked tells whether another page exists.
        limit: limit + 1,
        search: None,
    };
    let mut rows = state.store.list_referrals(&filter).await?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last()
            .map(|r| encode_cursor(r.received_at, r.request_id))
    } else {
        None
    };
    Ok(Json(ReferralList {
        items: rows.into_iter().map(list_item).collect(),
        next_cursor,
    }))
}

fn list_item(r: ReferralSummary) -> ReferralListItem {
    ReferralListItem {
        request_id: r.request_id,
        status: r.status,
        agency_name: r.agency_name,
        agency_org_id: r.agency_org_id,
        patient_id: r.patient_id,
        service_requested: r.service_requested,
        warning_count: r.warning_count,
        received_at: r.received_at,
        updated_at: r.updated_at,
    }
}

fn encode_cursor(at: DateTime<Utc>, id: RequestId) -> String {
    Cursor::new(at, id.as_uuid()).to_string()
}

fn decode_cursor(c: &str) -> Option<(DateTime<Utc>, RequestId)> {
    let c = Cursor::parse(c)?;
    Some((c.at, RequestId::from(c.id)))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PatientLink {
    #[schema(value_type = String, format = Uuid)]
    pub id: refbridge_domain::PatientId,
    /// How intake found the patient: agency_client, person, or created.
    pub matched_by: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FileInfo {
    #[schema(value_type = String, format = Uuid)]
    pub id: FileId,
    pub name: String,
    pub size: i64,
    pub media_type: String,
    pub sha256: String,
    /// Where to download the bytes.
    pub href: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusEntry {
    pub status: ReferralStatus,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub details: serde_json::Value,
}

/// Everything a reviewer needs about one Referral Request.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReferralDetail {
    #[schema(value_type = String, format = Uuid)]
    pub request_id: RequestId,
    pub status: ReferralStatus,
    pub received_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub agency: Agency,
    pub client: ClientMeta,
    pub patient: PatientLink,
    pub form: FormMeta,
    /// The form parsed into a structured referral.
    pub referral: StructuredReferral,
    pub warnings: Vec<Warning>,
    /// The form's fields as sent.
    pub fields: Vec<FormField>,
    /// Top-level keys of the request the contract does not define, as sent.
    pub extra: Option<serde_json::Value>,
    pub files: Vec<FileInfo>,
    pub denial_reason: Option<String>,
    pub history: Vec<StatusEntry>,
    pub audit: Vec<AuditEntry>,
    /// The approval and its send to ACCloud, once approved.
    pub send: Option<SendView>,
}

/// The approval and where its send stands: one entry per step, in order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SendView {
    pub terms: refbridge_domain::approval::ApprovalTerms,
    pub approved_by: String,
    pub approved_at: DateTime<Utc>,
    /// ready, paused or done.
    pub state: Option<JobState>,
    /// When the next attempt is due (while ready).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why the send stopped (while paused).
    pub pause_reason: Option<String>,
    /// What the agency last showed of the referral: assigned, processed or cancelled. The
    /// newest of ACCloud's answer to the last send step that touched the referral and the
    /// workers' periodic check (`worker.agency_check_secs`), which re-reads it until the agency
    /// has processed or cancelled it.
    pub agency_status: Option<String>,
    /// When the periodic check read it, when that is where it comes from.
    pub agency_checked_at: Option<DateTime<Utc>>,
    /// Everything asked of this send, in order: the approval (0), then each change.
    pub changes: Vec<ChangeView>,
    pub steps: Vec<StepView>,
}

/// One thing asked of the send: who asked, when, and the reasons sent to the agency.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChangeView {
    pub change_no: i64,
    /// approval, change, cancel, documents, withdrawal (a plan archived during the first
    /// send) or resume (the first send planned again after a withdrawal).
    pub kind: ChangeKind,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub reasons: Vec<String>,
    pub comment: Option<String>,
}

/// One step of the send.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StepView {
    pub kind: StepKind,
    /// Which authorization (its index) or file (its id).
    pub item: String,
    /// pending, in_flight, unknown, done, failed, skipped (by a withdrawal) or replanned
    /// (skipped, then planned again by a resume).
    pub state: StepState,
    /// 0 for the first send, then the change that added the step (see `changes`).
    pub change_no: i64,
    pub attempts: i64,
    /// The ACCloud id of the object, once it exists.
    pub accloud_id: Option<String>,
    /// What ACCloud returned that we keep (revision group, file path…).
    pub result: Option<serde_json::Value>,
    /// The last error, with ACCloud's message.
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// What the agency shows of the referral, and when the periodic check read it (when that is
/// where it comes from): the newest of that read and ACCloud's answer to the last step that
/// touched the referral.
pub(crate) fn agency_status(
    job: Option<&refbridge_storage::JobRecord>,
    steps: &[refbridge_storage::StepRecord],
) -> (Option<String>, Option<DateTime<Utc>>) {
    let polled = job.and_then(|j| Some((j.agency_status.clone()?, j.agency_checked_at?)));
    let answered = steps
        .iter()
        .rev()
        .filter(|s| s.state == StepState::Done)
        .find_map(|s| Some((s.result.as_ref()?.agency_status()?.to_owned(), s.updated_at)));
    match (polled, answered) {
        (Some((_, checked)), Some((a, at))) if at > checked => (Some(a), None),
        (Some((p, checked)), _) => (Some(p), Some(checked)),
        (None, answered) => (answered.map(|(a, _)| a), None),
    }
}

async fn send_view(state: &AppState, id: RequestId) -> Result<Option<SendView>, ApiError> {
    let Some(approval) = state.store.approval(id).await? else {
        return Ok(None);
    };
    let job = state.store.send_job(id).await?;
    let steps = state.store.send_steps(id).await?;
    let changes = state.store.send_changes(id).await?;
    let (agency_status, agency_checked_at) = agency_status(job.as_ref(), &steps);
    Ok(Some(SendView {
        terms: approval.terms,
        approved_by: approval.approved_by,
        approved_at: approval.approved_at,
        state: job.as_ref().map(|j| j.state),
        next_attempt_at: job
            .as_ref()
            .filter(|j| j.state == JobState::Ready)
            .map(|j| j.run_at),
        pause_reason: job.and_then(|j| j.pause_reason),
        agency_status,
        agency_checked_at,
        changes: changes
            .into_iter()
            .map(|c| ChangeView {
                change_no: c.change_no,
                kind: c.kind,
                requested_by: c.requested_by,
                requested_at: c.requested_at,
                reasons: c.reasons,
                comment: c.comment,
            })
            .collect(),
        steps: steps
            .into_iter()
            .map(|s| StepView {
                kind: s.step.kind(),
                item: s.step.item(),
                state: s.state,
                change_no: s.change_no,
                attempts: s.attempts,
                accloud_id: s.remote_id,
                result: s.result.map(|r| r.to_value()),
                last_error: s.last_error,
                last_attempt_at: s.last_attempt_at,
                updated_at: s.updated_at,
            })
            .collect(),
    }))
}

fn parse_request_id(s: &str) -> Result<RequestId, ApiError> {
    RequestId::parse(s).map_err(|_| ApiError::field("request_id", "must be a UUID"))
}

fn not_found(id: RequestId) -> ApiError {
    ApiError::NotFound(format!("no referral request {id}"))
}

async fn detail(state: &AppState, rec: ReferralRecord) -> Result<ReferralDetail, ApiError> {
    let id = rec.request_id;
    let audit = state
        .store
        .audit_trail("referral_request", &id.to_string())
        .await?;
    let send = send_view(state, id).await?;
    Ok(ReferralDetail {
        request_id: id,
        status: rec.status,
        received_at: rec.received_at,
        updated_at: rec.updated_at,
        agency: rec.request.agency,
        client: rec.request.client,
        patient: PatientLink {
            id: rec.patient_id,
            matched_by: rec.patient_match,
        },
        form: rec.request.form,
        referral: rec.referral,
        warnings: rec.warnings,
        fields: rec.request.fields,
        extra: rec.extra,
        files: rec
            .files
            .into_iter()
            .map(|f| FileInfo {
                href: format!("/v1/referral-requests/{id}/files/{}", f.id),
                id: f.id,
                name: f.name,
                size: f.size,
                media_type: f.media_type,
                sha256: f.sha256.to_string(),
            })
            .collect(),
        denial_reason: rec.denial_reason,
        history: rec.history.into_iter().map(status_entry).collect(),
        audit: audit.into_iter().map(audit_entry).collect(),
        send,
    })
}

fn status_entry(s: StatusChange) -> StatusEntry {
    StatusEntry {
        status: s.status,
        at: s.at,
        actor: s.actor,
        reason: s.reason,
    }
}

fn audit_entry(a: AuditEvent) -> AuditEntry {
    AuditEntry {
        at: a.at,
        actor: a.actor,
        action: a.action,
        details: a.details,
    }
}

/// One Referral Request: the parsed referral, warnings, patient, files, history.
#[utoipa::path(get, path = "/v1/referral-requests/{request_id}", tag = "review",
    params(("request_id" = String, Path, format = Uuid)),
    security(("bearer" = [])),
    responses((status = 200, body = ReferralDetail), (status = 400, body = ErrorBody),
               (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
               (status = 404, body = ErrorBody)))]
async fn get_referral(
    State(state): State<AppState>,
    caller: Caller,
    Path(request_id): Path<String>,
) -> Result<Json<ReferralDetail>, ApiError> {
    caller.require(Role::Reviewer)?;
    let id = parse_request_id(&request_id)?;
    let rec = state
        .store
        .get_referral(id)
        .await?
        .ok_or_else(|| not_found(id))?;
    state
        .store
        .record_phi_access(
            &caller.name,
            "api",
            "referral",
            Some(id),
            Some(rec.patient_id),
        )
        .await?;
    Ok(Json(detail(&state, rec).await?))
}

/// The bytes of one file of a Referral Request, with its detected media type.
#[utoipa::path(get, path = "/v1/referral-requests/{request_id}/files/{file_id}", tag = "review",
    params(("request_id" = String, Path, format = Uuid), ("file_id" = String, Path, format = Uuid)),
    security(("bearer" = [])),
    responses((status = 200, description = "the file", content_type = "application/octet-stream"),
               (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_file(
    State(state): State<AppState>,
    caller: Caller,
    Path((request_id, file_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require(Role::Reviewer)?;
    let id = parse_request_id(&request_id)?;
    let file_id =
        FileId::parse(&file_id).map_err(|_| ApiError::field("file_id", "must be a UUID"))?;
    file_response(&state, id, file_id, (&caller.name, "api"), false).await
}

/// One file of a referral request as a response, its read logged for `reader` (name, via).
/// `inline`: shown in the browser (PDFs and images), else downloaded.
pub(crate) async fn file_response(
    state: &AppState,
    id: RequestId,
    file_id: FileId,
    reader: (&str, &str),
    inline: bool,
) -> Result<Response, ApiError> {
    let file = state
        .store
        .referral_file(id, file_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no file {file_id} on referral request {id}")))?;
    state
        .store
        .record_phi_access(reader.0, reader.1, "file", Some(id), None)
        .await?;
    let stream = state
        .files
        .open_stream(&file.sha256)
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    let body = Body::from_stream(stream);
    let mut res = Response::new(body);
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&file.media_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(file.size));
    let disposition = content_disposition(&file.name);
    let disposition = if inline {
        disposition.replacen("attachment", "inline", 1)
    } else {
        disposition
    };
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    // A file is shown as what it is, never sniffed into something else.
    headers.insert(
        header::HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    Ok(res)
}

/// `attachment` with the file's name as RFC 6266 gives it: `filename` an ASCII fallback
/// (anything else, quotes, backslashes and `%` as `_`), `filename*` the name itself in UTF-8,
/// percent-encoded (RFC 8187).
fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| match c {
            '"' | '\\' | '%' => '_',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => '_',
        })
        .collect();
    let mut encoded = String::with_capacity(name.len());
    for b in name.bytes() {
        // RFC 8187's attr-char: ALPHA / DIGIT / "!#$&+-.^_`|~"; every other byte as %XX.
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DenyRequest {
    /// Why the referral is denied (shown to reviewers): not blank, at most 2,000 characters.
    #[schema(value_type = String, required = true, max_length = 2000, pattern = r"[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")]
    reason: Option<String>,
}

/// Deny a received Referral Request. Terminal.
#[utoipa::path(post, path = "/v1/referral-requests/{request_id}/deny", tag = "review",
    params(("request_id" = String, Path, format = Uuid)),
    request_body = DenyRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = ReferralDetail), (status = 400, body = ErrorBody),
               (status = 404, body = ErrorBody),
               (status = 409, body = ErrorBody, description = "not in a state that can be denied")))]
async fn deny(
    State(state): State<AppState>,
    caller: Caller,
    Path(request_id): Path<String>,
    body: Result<crate::json::JsonBody<DenyRequest>, ApiError>,
) -> Result<Json<ReferralDetail>, ApiError> {
    caller.require(Role::Reviewer)?;
    let id = parse_request_id(&request_id)?;
    let crate::json::JsonBody(body) = body?;
    // The length as sent (what the document states), then not blank.
    let reason = body.reason.as_deref().unwrap_or_default();
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::field("reason", "must be at most 2000 characters"));
    }
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ApiError::field("reason", "is required"));
    }
    let rec = state
        .store
        .deny_referral(id, reason, &caller.name)
        .await
        .map_err(|e| match e {
            DenyError::NotFound => not_found(id),
            DenyError::NotAllowed(st) => ApiError::Conflict(format!(
                "referral request {id} is {} and cannot be denied",
                st.as_str()
            )),
            DenyError::Storage(s) => s.into(),
        })?;
    tracing::info!(request_id = %id, "referral request denied");
    state
        .store
        .record_phi_access(
            &caller.name,
            "api",
            "referral",
            Some(id),
            Some(rec.patient_id),
        )
        .await?;
    Ok(Json(detail(&state, rec).await?))
}

#[cfg(test)]
mod tests {
    use super::content_disposition;

    #[test]
    fn names_are_given_as_rfc_6266_says() {
        assert_eq!(
            content_disposition("a.pdf"),
            "attachment; filename=\"a.pdf\"; filename*=UTF-8''a.pdf"
        );
        assert_eq!(
            content_disposition("résumé \"final\" 100%.pdf"),
            "attachment; filename=\"r_sum_ _final_ 100_.pdf\"; \
             filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22%20100%25.pdf"
        );
        assert_eq!(
            content_disposition("../x\\y\u{FFFD}z"),
            "attachment; filename=\"../x_y_z\"; filename*=UTF-8''..%2Fx%5Cy%EF%BF%BDz"
        );
    }
}
