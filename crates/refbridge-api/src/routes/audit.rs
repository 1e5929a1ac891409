//! The PHI access log, for admins: who read which referral's data, when, through what.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use refbridge_domain::{RequestId, Role};
use refbridge_storage::AccessFilter;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::params::{Cursor, Query};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_access))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccessQuery {
    /// Only reads of this referral request.
    #[param(format = Uuid)]
    request_id: Option<String>,
    /// Page size; 100 by default.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page: `{microseconds since the epoch}_{entry id}`; the
    /// page lists older entries.
    #[param(
        pattern = r"^[0-9]{1,16}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    )]
    cursor: Option<String>,
}

/// One read of personal data.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessEntry {
    pub at: DateTime<Utc>,
    /// The user's or token's name.
    pub actor: String,
    /// `console` or `api`.
    pub via: String,
    /// `referral`, `file` or `inbox`.
    pub what: String,
    pub request_id: Option<String>,
    pub patient_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccessPage {
    pub items: Vec<AccessEntry>,
    /// Pass as `cursor` for older entries; absent on the last page.
    pub next_cursor: Option<String>,
}

fn parse_cursor(s: &str) -> Option<(DateTime<Utc>, String)> {
    let c = Cursor::parse(s)?;
    Some((c.at, c.id.to_string()))
}

/// The PHI access log, newest first.
#[utoipa::path(get, path = "/v1/audit/access", tag = "review", params(AccessQuery),
    security(("bearer" = [])),
    responses((status = 200, body = AccessPage), (status = 400, body = ErrorBody),
               (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_access(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<AccessQuery>,
) -> Result<Json<AccessPage>, ApiError> {
    caller.require(Role::Admin)?;
    let request_id = q
        .request_id
        .as_deref()
        .map(|r| RequestId::parse(r).map_err(|_| ApiError::field("request_id", "must be a UUID")))
        .transpose()?;
    let before = q
        .cursor
        .as_deref()
        .map(|c| {
            parse_cursor(c).ok_or_else(|| ApiError::field("cursor", "is not a cursor of this list"))
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::field("limit", "must be 1 to 500"));
    }
    let mut rows = state
        .store
        .phi_access(&AccessFilter {
            request_id,
            before,
            limit: limit + 1,
        })
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = rows
        .last()
        .filter(|_| more)
        .and_then(|r| Some(Cursor::new(r.at, uuid::Uuid::parse_str(&r.id).ok()?).to_string()));
    Ok(Json(AccessPage {
        items: rows
            .into_iter()
            .map(|r| AccessEntry {
                at: r.at,
                actor: r.actor,
                via: r.via,
                what: r.what,
                request_id: r.request_id,
                patient_id: r.patient_id,
            })
            .collect(),
        next_cursor,
    }))
}
