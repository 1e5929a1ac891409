//! Approval: the reviewer's decision to send a referral to ACCloud, with its terms. The
//! handler validates the terms, records them with the planned steps and the queued send in
//! one transaction, and answers 202; workers do the sending.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use refbridge_domain::approval::{self, ApprovalInput, ApprovalTerms};
use refbridge_domain::file_name::{FileName, FileNameError};
use refbridge_domain::send::{self, CancelReason, Cancellation, ChangeKind, Step, StepKind};
use refbridge_domain::{ReferralStatus, RequestId, Role};
use refbridge_storage::{ApproveOutcome, NewChange, SendError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::json::{JsonBody, OptionalJsonBody};
use crate::params::{Path, Query};
use crate::state::AppState;

pub fn router(max_file_bytes: u64) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(approve, change))
        .routes(routes!(resume))
        .routes(routes!(cancel))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(documents))
                // Several 50 MB files in one request, streamed to disk as they arrive.
                .layer(axum::extract::DefaultBodyLimit::max(documents_body_limit(
                    max_file_bytes,
                ))),
        )
}

/// The largest `documents` request: [`MAX_DOCUMENTS`] files of the largest size, and room
/// for the multipart framing.
pub(crate) fn documents_body_limit(max_file_bytes: u64) -> usize {
    usize::try_from(max_file_bytes)
        .unwrap_or(usize::MAX)
        .saturating_mul(MAX_DOCUMENTS)
        .saturating_add(1 << 20)
}

/// Files in one `documents` request.
const MAX_DOCUMENTS: usize = 10;

/// The answer to an approval.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApprovalResponse {
    #[schema(value_type = String, format = Uuid)]
    pub request_id: RequestId,
    pub status: ReferralStatus,
    /// The terms that will be sent, with every default filled in.
    pub terms: ApprovalTerms,
    /// False when the same terms had been approved before (nothing changed).
    pub changed: bool,
}

fn parse_id(s: &str) -> Result<RequestId, ApiError> {
    RequestId::parse(s).map_err(|_| ApiError::field("request_id", "must be a UUID"))
}

async fn resolve_terms(
    state: &AppState,
    id: RequestId,
    input: &ApprovalInput,
) -> Result<(refbridge_storage::ReferralRecord, ApprovalTerms), ApiError> {
    let rec = state
        .store
        .get_referral(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no referral request {id}")))?;
    let today = chrono::Utc::now().date_naive();
    let plans = plan_contexts(state, &rec).await?;
    let terms = approval::resolve(
        input,
        &rec.referral,
        &rec.request.client,
        &plans,
        &state.config.approval,
        today,
    )?;
    Ok((rec, terms))
}

/// The patient's active plans, with the ACCloud funder their payor maps to.
async fn plan_contexts(
    state: &AppState,
    rec: &refbridge_storage::ReferralRecord,
) -> Result<Vec<approval::PlanContext>, ApiError> {
    let mut out = Vec::new();
    let plans = state
        .store
        .list_patient_plans(rec.patient_id, false)
        .await?;
    for plan in plans.unwrap_or_default() {
        let payor = state.store.get_payor(plan.fields.payor_id).await?;
        let funder = payor.and_then(|p| match (p.accloud_funder_id, p.accloud_funder_name) {
            (Some(id), _) => Some(approval::Ref::Id(id)),
            (None, Some(name)) => Some(approval::Ref::Name(name)),
            _ => None,
        });
        out.push(approval::PlanContext {
            id: plan.id.to_string(),
            order: plan.fields.plan_order.get(),
            member_number: plan.fields.member_number.as_str().to_owned(),
            funder,
        });
    }
    Ok(out)
}

/// Approve a Referral Request with its authorization terms, and queue the send to ACCloud.
///
/// Every field may be left out when it can be derived from the form or the configured
/// defaults; the answer shows the effective terms. Approving again with the same terms is a
/// no-op; with other terms, 409.
#[utoipa::path(post, path = "/v1/referral-requests/{request_id}/approval", tag = "review",
    params(("request_id" = String, Path, format = Uuid)),
    request_body = ApprovalInput,
    security(("bearer" = [])),
    responses(
                (status = 202, body = ApprovalResponse, description = "approved; the send is queued"),
        (status = 200, body = ApprovalResponse, description = "approved before with these terms"),
        (status = 400, body = ErrorBody, description = "invalid terms; every problem listed"),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "denied, approved with other terms, or the agency is not in CSI's trusted network"),
    ))]
async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(request_id): Path<String>,
    input: Result<OptionalJsonBody<ApprovalInput>, ApiError>,
) -> Result<(StatusCode, Json<ApprovalResponse>), ApiError> {
    caller.require(Role::Reviewer)?;
    let id = parse_id(&request_id)?;
    let input = input?.0.unwrap_or_default();
    let response = approve_referral(&state, id, &input, &caller.name).await?;
    Ok((
        if response.changed {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        },
        Json(response),
    ))
}

/// Approves a referral with the terms `input` resolves to, and queues its send: what the
/// API's approval and the console's approve form both do.
pub(crate) async fn approve_referral(
    state: &AppState,
    id: RequestId,
    input: &ApprovalInput,
    actor: &str,
) -> Result<ApprovalResponse, ApiError> {
    let (rec, terms) = resolve_terms(state, id, input).await?;
    check_trusted(state, &rec).await?;
    // Each content once: a file the form carries twice reaches the agency once.
    let unique = send::files::by_content([], rec.files.iter().map(|f| &f.sha256)).send;
    let steps = send::plan::first_send(
        terms.authorizations.len(),
        unique.iter().map(|&i| rec.files[i].id),
    );
    let outcome = state
        .store
        .approve(id, &terms, &steps, actor)
        .await
        .map_err(|e| send_error(id, e))?;
    state.wake.notify_one();
    let status = state
        .store
        .referral_status(id)
        .await?
        .unwrap_or(ReferralStatus::Approved);
    let changed = outcome == ApproveOutcome::Approved;
    tracing::info!(request_id = %id, changed, "referral request approved");
    Ok(ApprovalResponse {
        request_id: id,
        status,
        terms,
        changed,
    })
}

/// The terms an approval with `input` would send (every default filled in), without
/// recording anything: what the console's approve form is prefilled with.
pub(crate) async fn preview_terms(
    state: &AppState,
    id: RequestId,
    input: &ApprovalInput,
) -> Result<ApprovalTerms, ApiError> {
    Ok(resolve_terms(state, id, input).await?.1)
}

/// How old the stored copy of the trusted network may be to refuse an approval: an older one
/// may miss an agency added since (the send checks the network again anyway).
const TRUSTED_NETWORK_MAX_AGE: chrono::Duration = chrono::Duration::hours(1);

/// Refuses an approval for an agency outside CSI's trusted network as the workers last read
/// it: the send could create nothing the agency would receive.
async fn check_trusted(
    state: &AppState,
    rec: &refbridge_storage::ReferralRecord,
) -> Result<(), ApiError> {
    let agency = &rec.request.agency;
    let supplier = agency.alayamarket_org_id.to_string();
    let Some(read) = state.store.trusted_network_read(&supplier).await? else {
        return Ok(());
    };
    if read.trusted || chrono::Utc::now() - read.read_at > TRUSTED_NETWORK_MAX_AGE {
        return Ok(());
    }
    Err(ApiError::Conflict(format!(
        "the agency {} ({supplier}) is not in CSI's trusted network in ACCloud (read at {}): \
         add it to the trusted network in ACCloud, then approve again once refbridge has read \
         the network (every worker.trusted_network_secs)",
        agency.name,
        read.read_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )))
}

pub(crate) fn send_error(id: RequestId, e: SendError) -> ApiError {
    match e {
        SendError::NotFound => ApiError::NotFound(format!("no referral request {id}")),
        SendError::NotApprovable(st) => ApiError::Conflict(format!(
            "referral request {id} is {} and cannot be approved",
            st.as_str()
        )),
        SendError::TermsDiffer(st) => ApiError::Conflict(format!(
            "referral request {id} was approved with other terms and is {}; change them with PUT .../approval",
            st.as_str()
        )),
        SendError::NotResumable(st) => ApiError::Conflict(format!(
            "referral request {id} is {} and has no stopped send to resume",
            st.as_str()
        )),
        SendError::LeaseLost => {
            ApiError::Conflict(format!("referral request {id} is being changed"))
        }
        SendError::ChangeInProgress(_) => ApiError::Conflict(format!(
            "referral request {id} is still being sent; this request was rejected, not queued: send it again once the referral is sent"
        )),
        SendError::NotChangeable(st) => ApiError::Conflict(format!(
            "referral request {id} is {} and cannot be changed",
            st.as_str()
        )),
        SendError::Storage(s) => s.into(),
    }
}

/// Resume a send that needs attention, from the step where it stopped.
///
/// With a body, the terms are corrected first (same shape as the approval; validated the same
/// way). The stopped step starts by looking its object up, in case its last call landed.
#[utoipa::path(post, path = "/v1/referral-requests/{request_id}/approval/resume", tag = "review",
    params(("request_id" = String, Path, format = Uuid)),
    request_body(content = Option<ApprovalInput>, description = "corrected terms (optional)"),
    security(("bearer" = [])),
    responses(
                (status = 202, body = ApprovalResponse, description = "the send is queued again"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "nothing to resume"),
    ))]
async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(request_id): Path<String>,
    input: Result<OptionalJsonBody<ApprovalInput>, ApiError>,
) -> Result<(StatusCode, Json<ApprovalResponse>), ApiError> {
    caller.require(Role::Reviewer)?;
    let id = parse_id(&request_id)?;
    let corrected = input?.0;
    let response = resume_referral(&state, id, corrected.as_ref(), &caller.name).await?;
    Ok((StatusCode::ACCEPTED, Json(response)))
}

/// Resumes a send that needs attention, optionally with corrected terms: what
/// `POST …/approval/resume` and the console's resume form both do.
pub(crate) async fn resume_referral(
    state: &AppState,
    id: RequestId,
    corrected: Option<&ApprovalInput>,
    actor: &str,
) -> Result<ApprovalResponse, ApiError> {
    let terms = match corrected {
        Some(input) => Some(resolve_terms(state, id, input).await?.1),
        None => None,
    };
    let approved = state.store.approval(id).await?;
    if let (Some(t), Some(approved)) = (&terms, &approved) {
        send::plan::check_resume_terms(&approved.terms, t)?;
    }
    state
        .store
        .resume_send(id, terms.as_ref(), actor)
        .await
        .map_err(|e| send_error(id, e))?;
    state.wake.notify_one();
    // The terms in force: the corrected ones, or those approved.
    let terms = match terms {
        Some(t) => t,
        None => {
            approved
                .ok_or_else(|| ApiError::NotFound(format!("no approval for {id}")))?
                .terms
        }
    };
    tracing::info!(request_id = %id, "send resumed");
    Ok(ApprovalResponse {
        request_id: id,
        status: ReferralStatus::Sending,
        terms,
        changed: true,
    })
}

// ---- after the send ----

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DryRun {
    /// Only compute the plan; change nothing.
    dry_run: Option<bool>,
}

/// One call a change makes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlannedCall {
    /// The send step.
    pub step: StepKind,
    /// Which authorization (its index) or file.
    pub item: String,
    /// The ACCloud call.
    pub call: String,
}

/// The answer to a change.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChangeResponse {
    #[schema(value_type = String, format = Uuid)]
    pub request_id: RequestId,
    pub status: ReferralStatus,
    /// False when nothing needed to change (no call is made).
    pub changed: bool,
    pub dry_run: bool,
    /// The change's number in the send's timeline (absent for a dry run or no change).
    pub change_no: Option<i64>,
    /// The reasons sent to the agency with the referral revision.
    pub reasons: Vec<String>,
    pub planned_calls: Vec<PlannedCall>,
    pub terms: Option<ApprovalTerms>,
    /// New documents: the names of those whose content the referral already has (by intake
    /// or an earlier upload). They are not sent again.
    #[serde(default)]
    pub already_delivered: Vec<String>,
}

fn planned(steps: &[Step]) -> Vec<PlannedCall> {
    send::plan::calls(steps)
        .into_iter()
        .map(|c| PlannedCall {
            step: c.kind,
            item: c.item,
            call: c.call.to_owned(),
        })
        .collect()
}

/// Change the terms of a sent referral. The body names what changes, in the approval's
/// shape; every term it does not name is kept (authorizations by index; an authorization's
/// limits, and a case manager, are one term each). Only what changed is sent, in order:
/// client, service, authorizations (updated in place when ACCloud allows it, else deleted
/// and created again), then a referral revision with reasons in plain words, when something
/// the agency receives changed (an authorization's case manager is kept on the HQ branch
/// only). Unchanged terms make no call. One change at a time: while one is being sent, another is rejected with 409.
#[utoipa::path(put, path = "/v1/referral-requests/{request_id}/approval", tag = "review",
    params(("request_id" = String, Path, format = Uuid), DryRun),
    request_body(content = Option<ApprovalInput>, description = "what changes; without a body, nothing does"),
    security(("bearer" = [])),
    responses(
                (status = 202, body = ChangeResponse, description = "the change is queued"),
        (status = 200, body = ChangeResponse, description = "a dry run, or nothing to change"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "not sent yet, a change under way, or cancelled"),
    ))]
async fn change(
    State(state): State<AppState>,
    caller: Caller,
    Path(request_id): Path<String>,
    Query(q): Query<DryRun>,
    input: Result<OptionalJsonBody<ApprovalInput>, ApiError>,
) -> Result<(StatusCode, Json<ChangeResponse>), ApiError> {
    caller.require(Role::Reviewer)?;
    let id = parse_id(&request_id)?;
    let input = input?.0.unwrap_or_default();
    let (status, response) =
        change_terms(&state, id, &input, q.dry_run.unwrap_or(false), &caller.name).await?;
    Ok((status, Json(response)))
}

/// A change of terms after the send, or its dry run: what `PUT …/approval` and the console's
/// change form both do.
pub(crate) async fn change_terms(
    state: &AppState,
    id: RequestId,
    input: &ApprovalInput,
    dry_run: bool,
    actor: &str,
) -> Result<(StatusCode, ChangeResponse), ApiError> {
    // A change keeps every term it does not name.
    let current = state.store.approval(id).await?;
    let asked = match &current {
        Some(c) => input.over_terms(&c.terms),
        None => input.clone(),
    };
    let (rec, new_terms) = resolve_terms(state, id, &asked).await?;
    let Some(current) = current else {
        return Err(ApiError::Conflict(format!(
            "referral request {id} is not approved yet: approve it with POST first"
        )));
    };
    let plan = approval::diff(&current.terms, &new_terms)?;
    let steps = send::plan::change_of_terms(&plan);
    let mut response = ChangeResponse {
        request_id: id,
        status: rec.status,
        changed: !plan.is_empty(),
        dry_run,
        change_no: None,
        reasons: plan.reasons.clone(),
        planned_calls: planned(&steps),
        terms: Some(new_terms.clone()),
        already_delivered: Vec::new(),
    };
    if dry_run || plan.is_empty() {
        if !matches!(
            rec.status,
            ReferralStatus::Sent
                | ReferralStatus::Sending
                | ReferralStatus::NeedsAttention
                | ReferralStatus::Approved
        ) {
            return Err(send_error(id, SendError::NotChangeable(rec.status)));
        }
        return Ok((StatusCode::OK, response));
    }
    let comment = input
        .revision_comment
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let change = NewChange {
        kind: ChangeKind::Terms,
        steps,
        terms: Some(&new_terms),
        reasons: plan.reasons,
        comment,
        files: Vec::new(),
    };
    let change_no = state
        .store
        .record_change(id, &change, actor)
        .await
        .map_err(|e| send_error(id, e))?
        .change_no;
    state.wake.notify_one();
    tracing::info!(request_id = %id, change_no, steps = change.steps.len(), "change of terms queued");
    response.change_no = change_no;
    response.status = ReferralStatus::Sending;
    Ok((StatusCode::ACCEPTED, response))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CancelRequest {
    /// ACCloud's reason for the cancellation.
    #[schema(value_type = CancelReason, required = true)]
    reason_code: Option<String>,
    /// At most 1,000 characters; blank is none.
    #[schema(max_length = 1000)]
    comment: Option<String>,
}

/// Cancel the referral approval in ACCloud (its latest revision). Cancelling a cancelled
/// referral succeeds without a call; a cancelled referral rejects further changes.
#[utoipa::path(post, path = "/v1/referral-requests/{request_id}/cancel", tag = "review",
    params(("request_id" = String, Path, format = Uuid)),
    request_body = CancelRequest,
    security(("bearer" = [])),
    responses(
                (status = 202, body = ChangeResponse, description = "the cancellation is queued"),
        (status = 200, body = ChangeResponse, description = "already cancelled"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
    ))]
async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(request_id): Path<String>,
    input: Result<JsonBody<CancelRequest>, ApiError>,
) -> Result<(StatusCode, Json<ChangeResponse>), ApiError> {
    caller.require(Role::Reviewer)?;
    let id = parse_id(&request_id)?;
    let JsonBody(input) = input?;
    let (status, response) = cancel_referral(
        &state,
        id,
        input.reason_code.as_deref(),
        input.comment.as_deref(),
        &caller.name,
    )
    .await?;
    Ok((status, Json(response)))
}

/// Cancels the referral approval in ACCloud: what `POST …/cancel` and the console's cancel
/// form both do.
pub(crate) async fn cancel_referral(
    state: &AppState,
    id: RequestId,
    reason_code: Option<&str>,
    comment: Option<&str>,
    actor: &str,
) -> Result<(StatusCode, ChangeResponse), ApiError> {
    let cancellation = Cancellation::parse(reason_code, comment)?;
    let rec = state
        .store
        .get_referral(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no referral request {id}")))?;
    let mut response = ChangeResponse {
        request_id: id,
        status: rec.status,
        changed: false,
        dry_run: false,
        change_no: None,
        reasons: Vec::new(),
        planned_calls: Vec::new(),
        terms: None,
        already_delivered: Vec::new(),
    };
    if rec.status == ReferralStatus::Cancelled {
        return Ok((StatusCode::OK, response));
    }
    let steps = send::plan::cancellation(&cancellation);
    response.planned_calls = planned(&steps);
    let change = NewChange {
        kind: ChangeKind::Cancel,
        steps,
        terms: None,
        reasons: vec![cancellation.reason_text()],
        comment: cancellation.comment.as_deref(),
        files: Vec::new(),
    };
    let change_no = state
        .store
        .record_change(id, &change, actor)
        .await
        .map_err(|e| send_error(id, e))?
        .change_no;
    state.wake.notify_one();
    tracing::info!(request_id = %id, change_no, "cancellation queued");
    response.changed = true;
    response.change_no = change_no;
    response.status = ReferralStatus::Sending;
    Ok((StatusCode::ACCEPTED, response))
}

/// The body of `POST …/documents` (documentation): file parts, each with a filename (the
/// part's name does not matter; parts without a filename are ignored).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DocumentsForm {
    /// 1 to 10 files, each at most 50 MB.
    #[schema(value_type = Vec<String>, format = Binary, min_items = 1, max_items = 10)]
    files: Vec<Vec<u8>>,
}

/// Upload more documents to the sent referral: multipart, one or more file parts (each with a
/// filename, at most 50 MB), streamed to storage, each uploaded to ACCloud exactly once under
/// its name made safe. A document whose content the referral already has (from intake or an
/// earlier upload) is not sent again: `already_delivered` names them, and when every file is
/// there already nothing is queued (200, `changed` false).
#[utoipa::path(post, path = "/v1/referral-requests/{request_id}/documents", tag = "review",
    params(("request_id" = String, Path, format = Uuid)),
    request_body(content = DocumentsForm, content_type = "multipart/form-data", description = "one or more file parts, each with a filename"),
    security(("bearer" = [])),
    responses(
        (status = 415, body = ErrorBody, description = "not multipart/form-data, or compressed (Content-Encoding)"),
        (status = 202, body = ChangeResponse, description = "the uploads are queued"),
        (status = 200, body = ChangeResponse, description = "every document was delivered already"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
    ))]
async fn documents(
    State(state): State<AppState>,
    caller: Caller,
    Path(request_id): Path<String>,
    headers: axum::http::HeaderMap,
    multipart: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<(StatusCode, Json<ChangeResponse>), ApiError> {
    caller.require(Role::Reviewer)?;
    let id = parse_id(&request_id)?;
    crate::json::check_encoding(&headers)?;
    let mut multipart = multipart.map_err(|_| {
        ApiError::UnsupportedMediaType(
            "Content-Type must be multipart/form-data (with its boundary)".into(),
        )
    })?;
    let (status, response) = receive_documents(&state, id, &mut multipart, &caller.name).await?;
    Ok((status, Json(response)))
}

/// Receives the file parts of `multipart` (what is left of it) as new documents of a sent
/// referral and queues their upload: what `POST …/documents` and the console's upload form
/// both do.
pub(crate) async fn receive_documents(
    state: &AppState,
    id: RequestId,
    multipart: &mut axum::extract::Multipart,
    actor: &str,
) -> Result<(StatusCode, ChangeResponse), ApiError> {
    let rec = state
        .store
        .get_referral(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no referral request {id}")))?;
    if rec.status != ReferralStatus::Sent {
        return Err(send_error(
            id,
            if matches!(
                rec.status,
                ReferralStatus::Sending | ReferralStatus::Approved | ReferralStatus::NeedsAttention
            ) {
                SendError::ChangeInProgress(0)
            } else {
                SendError::NotChangeable(rec.status)
            },
        ));
    }
    let max = state.config.max_file_bytes;
    let mut files = Vec::new();
    let mut index = 0usize;
    loop {
        let field = multipart
            .next_field()
            .await
            .map_err(|e| multipart_error(&e))?;
        let Some(mut field) = field else { break };
        // Parts without a file name are not documents.
        let Some(given) = field.file_name() else {
            continue;
        };
        let name = match FileName::parse(given) {
            Ok(name) => name.into_string(),
            Err(FileNameError::Empty) => continue,
            Err(e) => {
                return Err(ApiError::field(
                    &format!("files[{index}].file_name"),
                    &e.to_string(),
                ));
            }
        };
        if files.len() == MAX_DOCUMENTS {
            return Err(ApiError::field(
                "files",
                &format!("at most {MAX_DOCUMENTS} files per request"),
            ));
        }
        let mut writer = state
            .files
            .writer(max)
            .map_err(|e| ApiError::Internal(Box::new(e)))?;
        while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(&e))? {
            writer.write(&chunk).map_err(|e| match e {
                refbridge_storage::files::PutError::TooLarge { limit } => {
                    ApiError::PayloadTooLarge(format!(
                        "files[{index}] is larger than {limit} bytes"
                    ))
                }
                other => ApiError::Internal(Box::new(other)),
            })?;
        }
        let staged = writer
            .finish()
            .map_err(|e| ApiError::Internal(Box::new(e)))?;
        let blob = state
            .files
            .commit(staged)
            .await
            .map_err(|e| ApiError::Internal(Box::new(e)))?;
        files.push(refbridge_storage::NewFile { name, blob });
        index += 1;
    }
    if files.is_empty() {
        return Err(ApiError::field(
            "files",
            "at least one file part with a filename is required",
        ));
    }
    let change = NewChange {
        kind: ChangeKind::Documents,
        steps: Vec::new(),
        terms: None,
        reasons: Vec::new(),
        comment: None,
        files,
    };
    let recorded = state
        .store
        .record_change(id, &change, actor)
        .await
        .map_err(|e| send_error(id, e))?;
    let name = |i: &usize| change.files[*i].name.clone();
    let already_delivered: Vec<String> = recorded.files_already_there.iter().map(name).collect();
    let Some(change_no) = recorded.change_no else {
        tracing::info!(request_id = %id, files = change.files.len(), "documents already delivered");
        return Ok((
            StatusCode::OK,
            ChangeResponse {
                request_id: id,
                status: rec.status,
                changed: false,
                dry_run: false,
                change_no: None,
                reasons: Vec::new(),
                planned_calls: Vec::new(),
                terms: None,
                already_delivered,
            },
        ));
    };
    state.wake.notify_one();
    let queued: Vec<usize> = (0..change.files.len())
        .filter(|i| !recorded.files_already_there.contains(i))
        .collect();
    tracing::info!(request_id = %id, change_no, files = queued.len(), "documents queued");
    Ok((
        StatusCode::ACCEPTED,
        ChangeResponse {
            request_id: id,
            status: ReferralStatus::Sending,
            changed: true,
            dry_run: false,
            change_no: Some(change_no),
            reasons: vec![send::plan::documents_reason(queued.len())],
            planned_calls: queued
                .iter()
                .map(|i| PlannedCall {
                    step: StepKind::Attachment,
                    item: send::files::delivered_name(&name(i)),
                    call: StepKind::Attachment.call().to_owned(),
                })
                .collect(),
            terms: None,
            already_delivered,
        },
    ))
}

fn multipart_error(e: &axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge("the request body is too large".into());
    }
    match ApiError::body_read(e) {
        ApiError::InvalidJson(_) => {
            ApiError::InvalidJson("the multipart body cannot be read".into())
        }
        other => other,
    }
}
