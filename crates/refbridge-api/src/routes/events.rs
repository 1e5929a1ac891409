//! The event feed: every event in the order it became visible, paged by a cursor that never
//! skips one (see `refbridge-storage`'s `events.rs`), with long polling.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use refbridge_domain::Role;
use refbridge_domain::event::EventType;
use refbridge_storage::{EventPage, FeedRead};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::params::{Query, whole_number};
use crate::state::AppState;

/// The longest a request may wait for an event (`wait`).
pub const MAX_WAIT_SECS: u64 = 30;
/// How often a waiting request looks again when no wake-up comes (events committed by other
/// processes).
const POLL_EVERY: Duration = Duration::from_millis(200);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_events))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// `next_cursor` of the previous page; from the first event still kept when absent. A
    /// cursor before the events retention removed answers 410.
    #[param(value_type = Option<u64>, minimum = 0)]
    after: Option<String>,
    /// Comma-separated event types (`send.completed,send.needs_attention`); every type when
    /// absent.
    #[param(value_type = Option<Vec<crate::contract::EventTypeName>>, style = Form, explode = false, min_items = 1)]
    types: Option<String>,
    /// 1 to 1000; 100 by default.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Seconds to wait for an event when there is none after the cursor (0 to 30; 0 by
    /// default): the answer comes as soon as one is there.
    #[param(value_type = Option<u32>, minimum = 0, maximum = 30)]
    wait: Option<String>,
}

/// One event. `data` holds ids and statuses only: read the referral with your own token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Stable: the `webhook-id` of its deliveries.
    #[schema(format = Uuid)]
    pub id: String,
    /// `referral_request.received`, `referral_request.denied`, `referral_request.approved`,
    /// `referral_request.agency_status_changed`, `send.completed`, `send.needs_attention`,
    /// `send.resumed`, `send.change_sent`, `send.documents_delivered`, `send.cancelled`,
    /// `send.authorization_withdrawn`, `payor.unmapped`, `webhook_endpoint.disabled`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the change was committed (RFC 3339, UTC).
    pub timestamp: String,
    /// Its place in the feed.
    pub position: i64,
    pub request_id: Option<String>,
    pub patient_id: Option<String>,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventFeed {
    pub items: Vec<Event>,
    /// Pass as `after` for what comes next (also when `items` is empty).
    pub next_cursor: String,
}

fn page_body(page: EventPage) -> EventFeed {
    EventFeed {
        items: page
            .events
            .into_iter()
            .map(|e| Event {
                timestamp: e
                    .occurred_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                id: e.id,
                event_type: e.event_type.as_str().to_owned(),
                position: e.position,
                request_id: e.request_id,
                patient_id: e.patient_id,
                data: e.data,
            })
            .collect(),
        next_cursor: page.next_cursor.to_string(),
    }
}

/// Events in commit order, after a cursor.
///
/// Catching up after downtime: keep the last `next_cursor` you processed and ask again with
/// it; an event that committed late (a long transaction) is placed after every event you have
/// seen, never behind your cursor.
///
/// Retention: events older than the deployment's `retention.event_days` (90 by default; 0
/// keeps them for ever) are removed, except those a webhook delivery still waits for. The
/// feed never skips them silently: a cursor before the last position removed answers 410
/// (`gone`), its `details` naming `after`, the first position still kept and the setting,
/// and `resume_after` giving the cursor from which the feed is whole. Without `after` the
/// feed starts at the first event still kept.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(FeedQuery),
    security(("bearer" = [])),
    responses((status = 200, body = EventFeed), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 410, body = ErrorBody, description = "`after` is before events that retention \
            removed (`retention.event_days`): reading on would skip them. `resume_after` is the \
            cursor from which the feed is whole; the removed events are not in the feed any more")))]
async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<FeedQuery>,
) -> Result<Json<EventFeed>, ApiError> {
    caller.require(Role::Reviewer)?;
    let after = match q.after.as_deref() {
        None => None,
        Some(s) => Some(
            s.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::field("after", "must be a next_cursor of this feed"))?,
        ),
    };
    let types = match q.types.as_deref() {
        None => Vec::new(),
        Some(s) if s.trim().is_empty() => {
            return Err(ApiError::field(
                "types",
                "must name at least one event type",
            ));
        }
        Some(s) => EventType::parse_list(s).map_err(|e| {
            ApiError::field(
                &format!("types[{}]", e.index),
                "is not an event type (see GET /openapi.json)",
            )
        })?,
    };
    let limit = whole_number("limit", q.limit.as_deref(), 100, 1..=1000)?;
    // The caller's wait, within what this deployment allows (`events_max_wait_secs`).
    let wait = Duration::from_secs(whole_number(
        "wait",
        q.wait.as_deref(),
        0,
        0..=MAX_WAIT_SECS,
    )?)
    .min(state.config.events_max_wait);
    let deadline = Instant::now() + wait;
    let signal = state.store.event_signal().clone();
    loop {
        let woken = signal.notified();
        // Readers position what has committed, so the feed moves without a worker too.
        state.store.sequence_events().await?;
        let page = match state
            .store
            .events_after(after, &types, limit as i64)
            .await?
        {
            FeedRead::Page(page) => page,
            FeedRead::Pruned(pruned) => return Err(ApiError::EventsPruned(pruned)),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if !page.events.is_empty() || left.is_zero() {
            return Ok(Json(page_body(page)));
        }
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep(left.min(POLL_EVERY)) => {}
        }
    }
}
