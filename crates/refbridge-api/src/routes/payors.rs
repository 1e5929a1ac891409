//! Payors and their mapping to ACCloud funders. Intake creates unmapped payors from
//! insurance names it does not know; a reviewer maps them here.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use refbridge_domain::plan::PayorPut;
use refbridge_domain::{PayorId, Role};
use refbridge_storage::PayorRecord;
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
        .routes(routes!(list_payors, put_payor))
        .routes(routes!(get_payor))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Payor {
    /// The `payor_entity_id` of patient plans.
    #[schema(value_type = String, format = Uuid)]
    pub id: PayorId,
    pub name: String,
    pub accloud_funder_id: Option<i64>,
    pub accloud_funder_name: Option<String>,
    /// No ACCloud funder yet: to be mapped by a reviewer.
    pub unmapped: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<PayorRecord> for Payor {
    fn from(r: PayorRecord) -> Self {
        Payor {
            id: r.id,
            name: r.name,
            accloud_funder_id: r.accloud_funder_id,
            accloud_funder_name: r.accloud_funder_name,
            unmapped: r.unmapped,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PayorList {
    pub items: Vec<Payor>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `true`: only payors without an ACCloud funder.
    unmapped: Option<bool>,
}

/// Payors by name.
#[utoipa::path(get, path = "/v1/payors", tag = "plans", params(ListQuery),
    security(("bearer" = [])),
    responses((status = 200, body = PayorList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_payors(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<PayorList>, ApiError> {
    caller.require(Role::Reviewer)?;
    let unmapped = q.unmapped.unwrap_or(false);
    let items = state.store.list_payors(unmapped).await?;
    Ok(Json(PayorList {
        items: items.into_iter().map(Into::into).collect(),
    }))
}

/// The body of `PUT /v1/payors`. Unknown fields are refused.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PayorPutDoc {
    /// Matched after normalisation (case, spacing and punctuation ignored): 1 to 200
    /// characters, with a letter or digit.
    #[schema(min_length = 1, max_length = 200, pattern = r"[^\W_]")]
    name: String,
    /// The ACCloud funder's id.
    #[schema(minimum = 1)]
    accloud_funder_id: Option<i64>,
    /// The ACCloud funder's name, resolved at send time when no id is given; 1 to 200
    /// characters, not blank.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]*[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    accloud_funder_name: Option<String>,
}

/// Create or update a payor and its ACCloud funder, by name.
///
/// PUT semantics: a funder left out is cleared, and the payor becomes unmapped.
#[utoipa::path(put, path = "/v1/payors", tag = "plans", request_body = PayorPutDoc,
    security(("bearer" = [])),
    responses(
        (status = 200, body = Payor, description = "updated"),
        (status = 201, body = Payor, description = "created"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
async fn put_payor(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonValue, ApiError>,
) -> Result<(StatusCode, Json<Payor>), ApiError> {
    caller.require(Role::Reviewer)?;
    let put = PayorPut::parse(&body?.0)?;
    let (rec, created) = state.store.put_payor(&put, &caller.name).await?;
    tracing::info!(payor_id = %rec.id, created, unmapped = rec.unmapped, "payor put");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(rec.into())))
}

/// One payor.
#[utoipa::path(get, path = "/v1/payors/{payor_id}", tag = "plans",
    params(("payor_id" = String, Path, format = Uuid)), security(("bearer" = [])),
    responses((status = 200, body = Payor), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn get_payor(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Payor>, ApiError> {
    caller.require(Role::Reviewer)?;
    let id = PayorId::parse(&id).map_err(|_| ApiError::field("payor_id", "must be a UUID"))?;
    let rec = state
        .store
        .get_payor(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no payor {id}")))?;
    Ok(Json(rec.into()))
}
