//! Approval: the reviewer's decision to send a referral to ACCloud, with its terms. The
//! handler validates the terms, records them with the planned steps and the queued send in
//! one transaction, and answers 202; workers do the sending.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use refbridge_domain::approval::{self, ApprovalInput, ApprovalTerms};
use refbridge_domain::{ReferralStatus, RequestId, Role};
use refbridge_storage::{ApproveOutcome, NewStep, SendError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(approve))
        .routes(routes!(resume))
}

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

fn body<T: Default>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match b {
        Ok(Json(v)) => Ok(v),
        Err(JsonRejection::MissingJsonContentType(_)) => Ok(T::default()),
        Err(e) => Err(ApiError::InvalidJson(format!(
            "the body is not a valid approval: {}",
            sanitize(&e.body_text())
        ))),
    }
}

/// serde's messages name unknown fields and types; cut quoted values out to be safe.
fn sanitize(s: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for c in s.chars() {
        if c == '"' {
            quoted = !quoted;
            out.push_str(if quoted { "\"…" } else { "\"" });
        } else if !quoted {
            out.push(c);
        }
    }
    // Unknown field names are ours to name: serde puts them in backticks, which we keep.
    out
}

pub(crate) fn terms_hash(terms: &ApprovalTerms) -> Result<String, ApiError> {
    let json = serde_json::to_vec(terms).map_err(|e| ApiError::Internal(Box::new(e)))?;
    let digest: [u8; 32] = Sha256::digest(&json).into();
    Ok(refbridge_domain::ContentHash::from_digest(&digest).to_string())
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
    let terms = approval::resolve(input, &rec.referral, &state.config.approval, today)?;
    Ok((rec, terms))
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
        (status = 409, body = ErrorBody, description = "denied, or approved with other terms"),
    ))]
async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(request_id): Path<String>,
    input: Result<Json<ApprovalInput>, JsonRejection>,
) -> Result<(StatusCode, Json<ApprovalResponse>), ApiError> {
    caller.require(Role::Reviewer)?;
    let id = parse_id(&request_id)?;
    let input = body(input)?;
    let (rec, terms) = resolve_terms(&state, id, &input).await?;
    let hash = terms_hash(&terms)?;
    let mut steps = vec![
        NewStep {
            kind: "client".into(),
            item: String::new(),
        },
        NewStep {
            kind: "service".into(),
            item: String::new(),
        },
    ];
    steps.extend((0..terms.authorizations.len()).map(|i| NewStep {
        kind: "authorization".into(),
        item: i.to_string(),
    }));
    steps.push(NewStep {
        kind: "referral".into(),
        item: String::new(),
    });
    steps.extend(rec.files.iter().map(|f| NewStep {
        kind: "attachment".into(),
        item: f.id.to_string(),
    }));
    let terms_json = serde_json::to_value(&terms).map_err(|e| ApiError::Internal(Box::new(e)))?;
    let outcome = state
        .store
        .approve(id, &terms_json, &hash, &steps, &caller.name)
        .await
        .map_err(|e| send_error(id, e))?;
    state.wake.notify_waiters();
    let status = state
        .store
        .get_referral(id)
        .await?
        .map(|r| r.status)
        .unwrap_or(ReferralStatus::Approved);
    let changed = outcome == ApproveOutcome::Approved;
    tracing::info!(request_id = %id, changed, "referral request approved");
    Ok((
        if changed {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        },
        Json(ApprovalResponse {
            request_id: id,
            status,
            terms,
            changed,
        }),
    ))
}

fn send_error(id: RequestId, e: SendError) -> ApiError {
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
    input: Result<Json<ApprovalInput>, JsonRejection>,
) -> Result<(StatusCode, Json<ApprovalResponse>), ApiError> {
    caller.require(Role::Reviewer)?;
    let id = parse_id(&request_id)?;
    let corrected = match input {
        Err(JsonRejection::MissingJsonContentType(_)) => None,
        other => Some(body(other)?),
    };
    let terms = match &corrected {
        Some(input) => Some(resolve_terms(&state, id, input).await?.1),
        None => None,
    };
    let stored = match &terms {
        Some(t) => Some((
            serde_json::to_value(t).map_err(|e| ApiError::Internal(Box::new(e)))?,
            terms_hash(t)?,
        )),
        None => None,
    };
    state
        .store
        .resume_send(
            id,
            stored.as_ref().map(|(v, h)| (v, h.as_str())),
            &caller.name,
        )
        .await
        .map_err(|e| send_error(id, e))?;
    state.wake.notify_waiters();
    let approval = state
        .store
        .approval(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no approval for {id}")))?;
    let terms: ApprovalTerms =
        serde_json::from_value(approval.terms).map_err(|e| ApiError::Internal(Box::new(e)))?;
    tracing::info!(request_id = %id, "send resumed");
    Ok((
        StatusCode::ACCEPTED,
        Json(ApprovalResponse {
            request_id: id,
            status: ReferralStatus::Sending,
            terms,
            changed: true,
        }),
    ))
}
