//! Patient plans: `PUT /v1/patient-plans` (the upsert of `refbridge_domain::plan`), reads,
//! `DELETE` (archive) and `PATCH` (source_id only).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use refbridge_domain::plan::{
    ConflictBehavior, ConflictReason, DeduplicationStrategy, InsuranceType, PlanPatch, PlanPut,
};
use refbridge_domain::{PatientId, PlanId, Role};
use refbridge_storage::{PlanOutcome, PlanPutError, PlanPutResult, PlanRecord, StorageError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::json::JsonValue;
use crate::params::{Path, Query};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_plan))
        .routes(routes!(get_plan, delete_plan, patch_plan))
        .routes(routes!(list_plans))
}

fn parse_plan_id(s: &str) -> Result<PlanId, ApiError> {
    PlanId::parse(s).map_err(|_| ApiError::field("patient_plan_id", "must be a UUID"))
}

fn plan_not_found(id: PlanId) -> ApiError {
    ApiError::NotFound(format!("no patient plan {id}"))
}

/// A patient plan.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PatientPlan {
    #[schema(value_type = String, format = Uuid)]
    pub id: PlanId,
    #[schema(value_type = String, format = Uuid)]
    pub patient_id: PatientId,
    pub source_id: Option<String>,
    pub member_number: String,
    #[schema(value_type = String, format = Uuid)]
    pub payor_entity_id: refbridge_domain::PayorId,
    pub payor_name: String,
    pub plan_order_number: i64,
    pub group_number: Option<String>,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    /// COMMERCIAL, MEDICARE, MEDICAID, REGIONAL_CENTER, WORKERS_COMPENSATION, AUTO_INSURANCE
    pub insurance_type: Option<String>,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub insurance_card_file_id: Option<refbridge_domain::FileId>,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub insurance_card_back_file_id: Option<refbridge_domain::FileId>,
    /// active or archived
    pub status: String,
    pub archived_at: Option<DateTime<Utc>>,
    /// replaced or deleted
    pub archived_reason: Option<String>,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub replaced_by: Option<PlanId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<PlanRecord> for PatientPlan {
    fn from(r: PlanRecord) -> Self {
        let f = r.fields;
        PatientPlan {
            id: r.id,
            patient_id: r.patient_id,
            source_id: r.source_id,
            member_number: f.member_number.as_str().to_owned(),
            payor_entity_id: f.payor_id,
            payor_name: r.payor_name,
            plan_order_number: f.plan_order.get(),
            group_number: f.group_number.map(|g| g.as_str().to_owned()),
            start_date: f.start_date,
            end_date: f.end_date,
            insurance_type: f.insurance_type.map(|t| t.as_str().to_owned()),
            insurance_card_file_id: f.insurance_card_file_id,
            insurance_card_back_file_id: f.insurance_card_back_file_id,
            status: r.status.as_str().to_owned(),
            archived_at: r.archived_at,
            archived_reason: r.archived_reason,
            replaced_by: r.replaced_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// The request of `PUT /v1/patient-plans` (documentation; the handler validates the JSON
/// itself to name every problem). Unknown fields are refused.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PatientPlanPut {
    #[schema(format = Uuid)]
    patient_id: String,
    /// The caller's id for the plan; 1 to 255 characters, not blank.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    source_id: String,
    /// 2 to 80 characters (without the spaces around them).
    #[schema(
        min_length = 2,
        max_length = 80,
        pattern = r"[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][\s\S]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    )]
    member_number: String,
    /// A payor of `GET /v1/payors`.
    #[schema(format = Uuid)]
    payor_entity_id: String,
    /// 1 primary, 2 secondary, …
    #[schema(minimum = 1, maximum = 99)]
    plan_order_number: i64,
    /// 2 to 80 characters (without the spaces around them).
    #[schema(
        min_length = 2,
        max_length = 80,
        pattern = r"[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][\s\S]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    )]
    group_number: Option<String>,
    /// YYYY-MM-DD (an RFC 3339 date-time is read as its date).
    #[schema(format = Date)]
    start_date: Option<String>,
    /// Not before start_date.
    #[schema(format = Date)]
    end_date: Option<String>,
    #[schema(value_type = Option<InsuranceType>)]
    insurance_type: Option<String>,
    /// A file of a Referral Request.
    #[schema(format = Uuid)]
    insurance_card_file_id: Option<String>,
    #[schema(format = Uuid)]
    insurance_card_back_file_id: Option<String>,
    /// Default: the server's `default_conflict_behavior` (REPLACE unless configured).
    #[schema(value_type = Option<ConflictBehavior>)]
    conflict_behavior: Option<String>,
    /// Alias of conflict_behavior; both with different values is a 400.
    #[schema(value_type = Option<ConflictBehavior>)]
    conflict_strategy: Option<String>,
    /// Default MEMBER_NUMBER.
    #[schema(value_type = Option<DeduplicationStrategy>)]
    deduplication_strategy: Option<String>,
}

/// The answer to `PUT /v1/patient-plans`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PatientPlanPutResponse {
    /// The plan returned, updated or created; null only for a dry run that would create.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub patient_plan_id: Option<PlanId>,
    /// source_id_match, deduplicated, created or replaced.
    pub outcome: String,
    pub dry_run: bool,
    /// Plans archived by a replace.
    #[schema(value_type = Vec<String>)]
    pub archived_patient_plan_ids: Vec<PlanId>,
    /// Authorizations withdrawn because their plan was archived.
    pub withdrawn_authorization_ids: Vec<String>,
    /// Request fields that differ from the plan found and were not applied (plans are
    /// immutable except source_id).
    pub ignored_fields: Vec<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PutQuery {
    /// `true`: decide and answer as usual, but change nothing.
    dry_run: Option<bool>,
}

/// Create or update a patient plan.
///
/// 1. An active plan of the patient with this `source_id`: returned unchanged (200).
/// 2. Else a duplicate by `deduplication_strategy`: it only takes the `source_id` (200).
/// 3. Else a new plan (201). If another active plan holds `plan_order_number`,
///    `conflict_behavior` decides: REPLACE archives it (and withdraws its in-progress
///    authorizations), RAISE_ERROR answers 409, RAISE_ERROR_ON_AUTH_WITHDRAWAL answers 409
///    only if the plan has an authorization in progress.
///
/// Archived plans take no part. `outcome` says which path was taken.
#[utoipa::path(put, path = "/v1/patient-plans", tag = "plans", params(PutQuery),
    request_body = PatientPlanPut, security(("bearer" = [])),
    responses(
                (status = 200, body = PatientPlanPutResponse, description = "source_id match or duplicate"),
        (status = 201, body = PatientPlanPutResponse, description = "created (or replaced)"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "unknown patient, payor or card file"),
        (status = 409, body = ErrorBody, description = "refused by conflict_behavior"),
    ))]
async fn put_plan(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<PutQuery>,
    body: Result<JsonValue, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(Role::Reviewer)?;
    let dry_run = q.dry_run.unwrap_or(false);
    let put = PlanPut::parse(&body?.0)?;
    let behavior = put
        .conflict_behavior
        .unwrap_or(state.config.default_conflict_behavior);
    let result = state
        .store
        .put_patient_plan(&put, behavior, dry_run, &caller.name)
        .await
        .map_err(|e| match e {
            PlanPutError::PatientNotFound => {
                ApiError::NotFound(format!("no patient {}", put.patient_id))
            }
            PlanPutError::PayorNotFound => {
                ApiError::NotFound(format!("no payor {}", put.fields.payor_id))
            }
            PlanPutError::FileNotFound(field) => ApiError::NotFound(format!("no file for {field}")),
            PlanPutError::Storage(e) => e.into(),
        })?;
    match result {
        PlanPutResult::Done {
            outcome,
            plan_id,
            archived,
            withdrawn_authorizations,
            ignored_fields,
        } => {
            let (status, name) = match outcome {
                PlanOutcome::SourceIdMatch => (StatusCode::OK, "source_id_match"),
                PlanOutcome::Deduplicated => (StatusCode::OK, "deduplicated"),
                PlanOutcome::Created => (StatusCode::CREATED, "created"),
                PlanOutcome::Replaced => (StatusCode::CREATED, "replaced"),
            };
            tracing::info!(patient_id = %put.patient_id, plan_id = ?plan_id, outcome = name,
                dry_run, archived = archived.len(), "patient plan put");
            Ok((
                status,
                Json(PatientPlanPutResponse {
                    patient_plan_id: plan_id,
                    outcome: name.to_owned(),
                    dry_run,
                    archived_patient_plan_ids: archived,
                    withdrawn_authorization_ids: withdrawn_authorizations,
                    ignored_fields: ignored_fields.into_iter().map(str::to_owned).collect(),
                }),
            )
                .into_response())
        }
        PlanPutResult::Conflict {
            conflicting_plan_id,
            reason,
        } => {
            tracing::info!(patient_id = %put.patient_id, plan_id = %conflicting_plan_id,
                reason = ?reason, dry_run, "patient plan put refused");
            let order = put.fields.plan_order.get();
            let message = match reason {
                ConflictReason::PlanOrderTaken => format!(
                    "the patient already has an active plan at plan_order_number {order} \
                     (conflict_behavior RAISE_ERROR)"
                ),
                ConflictReason::AuthorizationInProgress => format!(
                    "replacing the patient's plan at plan_order_number {order} would withdraw \
                     an authorization in progress (conflict_behavior RAISE_ERROR_ON_AUTH_WITHDRAWAL)"
                ),
            };
            Err(ApiError::PlanConflict {
                message,
                plan_id: conflicting_plan_id.to_string(),
            })
        }
    }
}

/// One patient plan, archived or not.
#[utoipa::path(get, path = "/v1/patient-plans/{patient_plan_id}", tag = "plans",
    params(("patient_plan_id" = String, Path, format = Uuid)), security(("bearer" = [])),
    responses((status = 200, body = PatientPlan), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn get_plan(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<PatientPlan>, ApiError> {
    caller.require(Role::Reviewer)?;
    let id = parse_plan_id(&id)?;
    let rec = state
        .store
        .get_patient_plan(id)
        .await?
        .ok_or_else(|| plan_not_found(id))?;
    Ok(Json(rec.into()))
}

/// Archive a patient plan and withdraw its in-progress authorizations. Idempotent.
#[utoipa::path(delete, path = "/v1/patient-plans/{patient_plan_id}", tag = "plans",
    params(("patient_plan_id" = String, Path, format = Uuid)), security(("bearer" = [])),
    responses((status = 204, description = "archived (now or before)"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_plan(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Reviewer)?;
    let id = parse_plan_id(&id)?;
    let res = state
        .store
        .archive_patient_plan(id, &caller.name)
        .await?
        .ok_or_else(|| plan_not_found(id))?;
    tracing::info!(plan_id = %id, archived_now = res.archived_now,
        withdrawn = res.withdrawn_authorizations.len(), "patient plan deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The body of `PATCH /v1/patient-plans/{id}`: only `source_id`, which is required (null
/// clears it).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PatientPlanPatch {
    /// 1 to 255 characters (not blank), or null.
    #[schema(
        required = true,
        min_length = 1,
        max_length = 255,
        pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    source_id: Option<String>,
}

/// Set or clear a plan's source_id, the only field that can change.
#[utoipa::path(patch, path = "/v1/patient-plans/{patient_plan_id}", tag = "plans",
    params(("patient_plan_id" = String, Path, format = Uuid)), request_body = PatientPlanPatch,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "changed"),
        (status = 400, body = ErrorBody, description = "any field but source_id"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "another active plan of the patient has it")))]
async fn patch_plan(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<JsonValue, ApiError>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Reviewer)?;
    let id = parse_plan_id(&id)?;
    let patch = PlanPatch::parse(&body?.0)?;
    match state
        .store
        .set_plan_source_id(id, patch.source_id.as_ref(), &caller.name)
        .await
    {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(plan_not_found(id)),
        Err(StorageError::Conflict(_)) => Err(ApiError::Conflict(
            "another active plan of this patient has this source_id".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `true`: archived plans too.
    include_archived: Option<bool>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PatientPlanList {
    pub items: Vec<PatientPlan>,
}

/// A patient's plans by plan order: active ones, and archived ones on request.
#[utoipa::path(get, path = "/v1/patients/{patient_id}/patient-plans", tag = "plans",
    params(("patient_id" = String, Path, format = Uuid), ListQuery), security(("bearer" = [])),
    responses((status = 200, body = PatientPlanList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn list_plans(
    State(state): State<AppState>,
    caller: Caller,
    Path(patient): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<PatientPlanList>, ApiError> {
    caller.require(Role::Reviewer)?;
    let patient =
        PatientId::parse(&patient).map_err(|_| ApiError::field("patient_id", "must be a UUID"))?;
    let include_archived = q.include_archived.unwrap_or(false);
    let plans = state
        .store
        .list_patient_plans(patient, include_archived)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no patient {patient}")))?;
    Ok(Json(PatientPlanList {
        items: plans.into_iter().map(Into::into).collect(),
    }))
}
