//! Webhook endpoints (admins): where refbridge sends its events, signed as the Standard
//! Webhooks specification says; their delivery log, replay and secret rotation. The
//! deliveries themselves are made by the workers (`refbridge-saga`'s `webhooks`).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use chrono::{DateTime, Utc};
use refbridge_domain::Role;
use refbridge_domain::event::EventType;
use refbridge_domain::webhook::WebhookUrl;
use refbridge_storage::{AttemptRecord, EndpointRecord, Replay};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::json::JsonBody;
use crate::params::{Path, Query, whole_number};
use crate::state::AppState;

/// How long the secret a rotation replaces keeps signing deliveries.
pub const ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_endpoints, put_endpoint))
        .routes(routes!(get_endpoint, delete_endpoint))
        .routes(routes!(enable_endpoint))
        .routes(routes!(disable_endpoint))
        .routes(routes!(rotate_secret))
        .routes(routes!(list_attempts))
        .routes(routes!(replay))
}

/// A new signing secret: `whsec_` and the base64 of 32 random bytes from the OS, as the
/// Standard Webhooks libraries expect.
pub fn new_secret() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::Internal(e.to_string().into()))?;
    Ok(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Endpoint {
    #[schema(format = Uuid)]
    pub id: String,
    pub url: String,
    /// The event types delivered; `null`: every type.
    pub event_types: Option<Vec<String>>,
    pub enabled: bool,
    /// Why it is disabled (`failing for too long`, `disabled by an admin`).
    pub disabled_reason: Option<String>,
    /// The first failed attempt since the last success.
    pub failing_since: Option<DateTime<Utc>>,
    /// After a rotation: until when the previous secret still signs.
    pub previous_secret_valid_until: Option<DateTime<Utc>>,
    /// Deliveries still to be made.
    pub pending_deliveries: i64,
    /// The signing secret: only in the answer that creates it (PUT of a new URL, rotation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

async fn view(
    state: &AppState,
    r: EndpointRecord,
    secret: Option<String>,
) -> Result<Endpoint, ApiError> {
    let pending_deliveries = state.store.pending_webhook_deliveries(&r.id).await?;
    Ok(Endpoint {
        pending_deliveries,
        secret,
        event_types: r
            .event_types
            .map(|ts| ts.iter().map(|t| t.as_str().to_owned()).collect()),
        id: r.id,
        url: r.url,
        enabled: r.enabled,
        disabled_reason: r.disabled_reason,
        failing_since: r.failing_since,
        previous_secret_valid_until: r.previous_secret_until,
        created_by: r.created_by,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EndpointList {
    pub items: Vec<Endpoint>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointPut {
    /// Absolute http(s) URL; loopback, private and link-local addresses are refused unless
    /// `webhooks.allow_private_targets` is set.
    url: String,
    /// Event types to deliver; every type when left out.
    event_types: Option<Vec<String>>,
}

fn endpoint_id(s: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(s)
        .map(|u| u.to_string())
        .map_err(|_| ApiError::field("endpoint_id", "must be a UUID"))
}

async fn found(state: &AppState, id: &str) -> Result<EndpointRecord, ApiError> {
    state
        .store
        .get_webhook_endpoint(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no webhook endpoint {id}")))
}

/// Create an endpoint (201, with its secret, shown this once) or update the event types of
/// the endpoint with this URL (200, no secret).
#[utoipa::path(put, path = "/v1/webhook-endpoints", tag = "events", request_body = EndpointPut,
    security(("bearer" = [])),
    responses((status = 201, body = Endpoint, description = "created: `secret` is shown once"),
        (status = 200, body = Endpoint, description = "updated"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn put_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonBody<EndpointPut>, ApiError>,
) -> Result<(StatusCode, Json<Endpoint>), ApiError> {
    caller.require(Role::Admin)?;
    let JsonBody(body) = body?;
    let url = WebhookUrl::parse(&body.url, state.config.webhooks_allow_private_targets)
        .map_err(|e| ApiError::field("url", &e.to_string()))?;
    let types = match &body.event_types {
        None => None,
        Some(names) if names.is_empty() => {
            return Err(ApiError::field(
                "event_types",
                "must name at least one event type, or be left out for every type",
            ));
        }
        Some(names) => Some(
            EventType::parse_all(names.iter().map(String::as_str)).map_err(|e| {
                ApiError::field(
                    &format!("event_types[{}]", e.index),
                    "is not an event type (see GET /openapi.json)",
                )
            })?,
        ),
    };
    let secret = new_secret()?;
    let (rec, created) = state
        .store
        .put_webhook_endpoint(url.as_str(), types.as_deref(), &secret, &caller.name)
        .await?;
    tracing::info!(endpoint_id = %rec.id, created, "webhook endpoint put");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(view(&state, rec, created.then_some(secret)).await?),
    ))
}

/// Every endpoint.
#[utoipa::path(get, path = "/v1/webhook-endpoints", tag = "events", security(("bearer" = [])),
    responses((status = 200, body = EndpointList), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
async fn list_endpoints(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<EndpointList>, ApiError> {
    caller.require(Role::Admin)?;
    let mut items = Vec::new();
    for r in state.store.list_webhook_endpoints().await? {
        items.push(view(&state, r, None).await?);
    }
    Ok(Json(EndpointList { items }))
}

/// One endpoint.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{endpoint_id}", tag = "events",
    params(("endpoint_id" = String, Path, format = Uuid)), security(("bearer" = [])),
    responses((status = 200, body = Endpoint), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn get_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Endpoint>, ApiError> {
    caller.require(Role::Admin)?;
    let id = endpoint_id(&id)?;
    let rec = found(&state, &id).await?;
    Ok(Json(view(&state, rec, None).await?))
}

/// Delete an endpoint, with its queue and delivery log.
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{endpoint_id}", tag = "events",
    params(("endpoint_id" = String, Path, format = Uuid)), security(("bearer" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Admin)?;
    let id = endpoint_id(&id)?;
    if !state
        .store
        .delete_webhook_endpoint(&id, &caller.name)
        .await?
    {
        return Err(ApiError::NotFound(format!("no webhook endpoint {id}")));
    }
    tracing::info!(endpoint_id = %id, "webhook endpoint deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn set_enabled(
    state: AppState,
    caller: Caller,
    id: String,
    enabled: bool,
) -> Result<Json<Endpoint>, ApiError> {
    caller.require(Role::Admin)?;
    let id = endpoint_id(&id)?;
    if !state
        .store
        .set_webhook_endpoint_enabled(&id, enabled, &caller.name)
        .await?
    {
        return Err(ApiError::NotFound(format!("no webhook endpoint {id}")));
    }
    tracing::info!(endpoint_id = %id, enabled, "webhook endpoint switched");
    let rec = found(&state, &id).await?;
    Ok(Json(view(&state, rec, None).await?))
}

/// Enable an endpoint: its failure is forgotten, and what waited for it is delivered now.
/// (Events that occurred while it was disabled were not queued for it: replay them with
/// `since`.)
#[utoipa::path(post, path = "/v1/webhook-endpoints/{endpoint_id}/enable", tag = "events",
    params(("endpoint_id" = String, Path, format = Uuid)), security(("bearer" = [])),
    responses((status = 200, body = Endpoint), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn enable_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Endpoint>, ApiError> {
    set_enabled(state, caller, id, true).await
}

/// Disable an endpoint: nothing is delivered to it, and new events are not queued for it.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{endpoint_id}/disable", tag = "events",
    params(("endpoint_id" = String, Path, format = Uuid)), security(("bearer" = [])),
    responses((status = 200, body = Endpoint), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn disable_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Endpoint>, ApiError> {
    set_enabled(state, caller, id, false).await
}

/// A new signing secret, shown once. The one it replaces keeps signing for 24 hours: each
/// delivery carries both signatures meanwhile.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{endpoint_id}/rotate-secret", tag = "events",
    params(("endpoint_id" = String, Path, format = Uuid)), security(("bearer" = [])),
    responses((status = 200, body = Endpoint, description = "`secret` is the new one, shown once"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Endpoint>, ApiError> {
    caller.require(Role::Admin)?;
    let id = endpoint_id(&id)?;
    let secret = new_secret()?;
    if !state
        .store
        .rotate_webhook_secret(&id, &secret, ROTATION_OVERLAP, &caller.name)
        .await?
    {
        return Err(ApiError::NotFound(format!("no webhook endpoint {id}")));
    }
    tracing::info!(endpoint_id = %id, "webhook secret rotated");
    let rec = found(&state, &id).await?;
    Ok(Json(view(&state, rec, Some(secret)).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttemptsQuery {
    /// 1 to 500; 100 by default.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    limit: Option<String>,
}

/// One delivery attempt.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    #[schema(format = Uuid)]
    pub event_id: String,
    pub event_type: Option<String>,
    /// 1 for the first attempt of this delivery.
    pub attempt: i64,
    pub at: DateTime<Utc>,
    /// `delivered`, `http_error`, `network_error` or `refused_target`.
    pub outcome: String,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<i64>,
    pub latency_ms: i64,
    /// The first 256 bytes of the answer's body.
    pub response_head: Option<String>,
    pub error: Option<String>,
}

impl From<AttemptRecord> for Attempt {
    fn from(a: AttemptRecord) -> Self {
        Attempt {
            event_id: a.event_id,
            event_type: a.event_type.map(|t| t.as_str().to_owned()),
            attempt: a.attempt,
            at: a.at,
            outcome: a.outcome,
            status: a.status,
            latency_ms: a.latency_ms,
            response_head: a.response_head,
            error: a.error,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AttemptList {
    pub items: Vec<Attempt>,
}

/// The endpoint's delivery log, newest first.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{endpoint_id}/attempts", tag = "events",
    params(("endpoint_id" = String, Path, format = Uuid), AttemptsQuery), security(("bearer" = [])),
    responses((status = 200, body = AttemptList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn list_attempts(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<AttemptsQuery>,
) -> Result<Json<AttemptList>, ApiError> {
    caller.require(Role::Admin)?;
    let id = endpoint_id(&id)?;
    let limit = whole_number("limit", q.limit.as_deref(), 100, 1..=500)? as i64;
    found(&state, &id).await?;
    let items = state.store.webhook_attempts(&id, limit).await?;
    Ok(Json(AttemptList {
        items: items.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// One event to deliver again.
    #[schema(format = Uuid)]
    event_id: Option<String>,
    /// Or every event (of the endpoint's types) that occurred at or after this time
    /// (RFC 3339).
    since: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReplayQueued {
    /// Deliveries queued.
    pub queued: u64,
}

/// Deliver one event again, or every event since a time (also events from before the
/// endpoint existed). Deliveries keep their `webhook-id`: receivers can tell repeats.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{endpoint_id}/replay", tag = "events",
    params(("endpoint_id" = String, Path, format = Uuid)), request_body = ReplayRequest,
    security(("bearer" = [])),
    responses((status = 202, body = ReplayQueued), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<JsonBody<ReplayRequest>, ApiError>,
) -> Result<(StatusCode, Json<ReplayQueued>), ApiError> {
    caller.require(Role::Admin)?;
    let id = endpoint_id(&id)?;
    let JsonBody(body) = body?;
    let what = parse_replay(body.event_id.as_deref(), body.since.as_deref())?;
    found(&state, &id).await?;
    let queued = replay_endpoint(&state, &id, &what).await?;
    Ok((StatusCode::ACCEPTED, Json(ReplayQueued { queued })))
}

/// What a replay asks, from its two exclusive fields (named `event_id` and `since` in
/// messages).
pub(crate) fn parse_replay(
    event_id: Option<&str>,
    since: Option<&str>,
) -> Result<Replay, ApiError> {
    let event_id = event_id.map(str::trim).filter(|s| !s.is_empty());
    let since = since.map(str::trim).filter(|s| !s.is_empty());
    match (event_id, since) {
        (Some(e), None) => uuid::Uuid::parse_str(e)
            .map(Replay::Event)
            .map_err(|_| ApiError::field("event_id", "must be a UUID")),
        (None, Some(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| Replay::Since(t.with_timezone(&Utc)))
            .map_err(|_| ApiError::field("since", "must be an RFC 3339 time")),
        (Some(_), Some(_)) => Err(ApiError::field(
            "event_id",
            "and since cannot both be given",
        )),
        (None, None) => Err(ApiError::field("event_id", "or since is required")),
    }
}

/// Queues the replay (the console's form calls this too).
pub(crate) async fn replay_endpoint(
    state: &AppState,
    id: &str,
    what: &Replay,
) -> Result<u64, ApiError> {
    let queued = state
        .store
        .replay_webhook(id, what)
        .await
        .map_err(|e| match e {
            refbridge_storage::StorageError::NotFound => {
                ApiError::NotFound(format!("no webhook endpoint {id}"))
            }
            other => other.into(),
        })?;
    tracing::info!(endpoint_id = %id, queued, "webhook replay queued");
    Ok(queued)
}
