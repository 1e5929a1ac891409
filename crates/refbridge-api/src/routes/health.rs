//! Liveness, readiness and metrics (no authentication: figures only, no personal data).

use std::fmt::Write as _;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use refbridge_storage::{QueueMetrics, WebhookMetrics};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// Readiness: the database answers, and the send queue's figures.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    pub status: &'static str,
    /// The database behind the store: `sqlite` or `postgres`.
    pub database: &'static str,
    /// Where approvals are sent, as people read it.
    pub accloud: String,
    /// True when that is the built-in simulator: nothing reaches ACCloud.
    pub simulated_accloud: bool,
    pub queue: QueueView,
}

/// The send queue (the same figures as `/metrics`).
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueView {
    /// Sends waiting for a worker or for their next attempt.
    pub queue_depth: i64,
    /// Of those, due now.
    pub due: i64,
    /// Of those, held by a worker's live lease.
    pub leased: i64,
    /// Sends that need attention.
    pub paused: i64,
    /// How long the most overdue send has waited for a worker.
    pub oldest_due_wait_seconds: f64,
    /// How long the longest-waiting send has been unfinished: since it last became ready
    /// (approved, or changed or resumed after a pause or its end).
    pub oldest_pending_step_age_seconds: f64,
    /// Steps whose outcome is unknown (to be looked up).
    pub unknown_steps: i64,
    /// Steps whose call may be under way.
    pub in_flight_steps: i64,
    pub oldest_unknown_step_age_seconds: f64,
    /// PostgreSQL: age of the oldest open transaction (null on SQLite).
    pub oldest_transaction_age_seconds: Option<f64>,
}

impl From<QueueMetrics> for QueueView {
    fn from(m: QueueMetrics) -> Self {
        Self {
            queue_depth: m.queue_depth,
            due: m.due,
            leased: m.leased,
            paused: m.paused,
            oldest_due_wait_seconds: m.oldest_due_wait_seconds,
            oldest_pending_step_age_seconds: m.oldest_pending_step_age_seconds,
            unknown_steps: m.unknown_steps,
            in_flight_steps: m.in_flight_steps,
            oldest_unknown_step_age_seconds: m.oldest_unknown_step_age_seconds,
            oldest_transaction_age_seconds: m.oldest_transaction_age_seconds,
        }
    }
}

fn backend_name(state: &AppState) -> &'static str {
    match state.store.backend() {
        refbridge_storage::Backend::Sqlite => "sqlite",
        refbridge_storage::Backend::Postgres => "postgres",
    }
}

async fn queue(state: &AppState) -> Result<QueueMetrics, ApiError> {
    state.store.queue_metrics().await.map_err(|e| {
        tracing::warn!(error = %e, "queue figures unavailable");
        ApiError::Unavailable
    })
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The process can serve: the database answers. Also shows the send queue.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, body = Ready),
    (status = 503, body = ErrorBody, description = "the database does not answer"),
))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        ApiError::Unavailable
    })?;
    let queue = queue(&state).await?;
    Ok(Json(Ready {
        status: "ready",
        database: backend_name(&state),
        accloud: state.config.accloud_target.clone(),
        simulated_accloud: state.config.simulated_accloud,
        queue: queue.into(),
    }))
}

/// The send queue's figures in the Prometheus text format (`refbridge_*` gauges).
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, body = String, content_type = "text/plain; version=0.0.4"),
    (status = 503, body = ErrorBody, description = "the database does not answer"),
))]
async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let m = queue(&state).await?;
    let w = state.store.webhook_metrics().await.map_err(|e| {
        tracing::warn!(error = %e, "webhook figures unavailable");
        ApiError::Unavailable
    })?;
    let mut text = prometheus_text(&m, backend_name(&state));
    webhook_text(&mut text, &w);
    text.push_str(&crate::metrics::render());
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    ))
}

/// The webhook figures: attempts by endpoint and outcome (counters over the delivery log),
/// their latency (a histogram), and how far delivery lags (gauges).
fn webhook_text(out: &mut String, w: &WebhookMetrics) {
    let name = "refbridge_webhook_attempts_total";
    let _ = writeln!(
        out,
        "# HELP {name} Webhook delivery attempts, by endpoint and outcome (delivered, http_error, network_error, refused_target).\n# TYPE {name} counter"
    );
    for (endpoint, outcome, n, _) in &w.attempts {
        let _ = writeln!(
            out,
            "{name}{{endpoint=\"{endpoint}\",outcome=\"{outcome}\"}} {n}"
        );
    }
    let name = "refbridge_webhook_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from sending a webhook to the receiver's answer (or the failure), by endpoint.\n# TYPE {name} histogram"
    );
    let mut endpoints: Vec<&str> = w.attempts.iter().map(|a| a.0.as_str()).collect();
    endpoints.dedup();
    for endpoint in endpoints {
        for (_, le, n) in w.latency_buckets.iter().filter(|b| b.0 == endpoint) {
            let _ = writeln!(
                out,
                "{name}_bucket{{endpoint=\"{endpoint}\",le=\"{}\"}} {n}",
                *le as f64 / 1000.0
            );
        }
        let (count, ms) = w
            .attempts
            .iter()
            .filter(|a| a.0 == endpoint)
            .fold((0, 0), |(c, s), a| (c + a.2, s + a.3));
        let _ = writeln!(
            out,
            "{name}_bucket{{endpoint=\"{endpoint}\",le=\"+Inf\"}} {count}\n{name}_sum{{endpoint=\"{endpoint}\"}} {}\n{name}_count{{endpoint=\"{endpoint}\"}} {count}",
            ms as f64 / 1000.0
        );
    }
    let gauges: [(&str, &str, f64); 4] = [
        (
            "refbridge_webhook_oldest_undelivered_event_age_seconds",
            "Age of the oldest event not yet delivered to an enabled endpoint that wants it (or not yet in the feed).",
            w.oldest_undelivered_seconds,
        ),
        (
            "refbridge_webhook_pending_deliveries",
            "Deliveries waiting for an enabled endpoint.",
            w.pending_deliveries as f64,
        ),
        (
            "refbridge_webhook_endpoints_disabled",
            "Webhook endpoints disabled (by an admin, or after failing for too long).",
            w.endpoints_disabled as f64,
        ),
        (
            "refbridge_webhook_endpoints_failing",
            "Enabled webhook endpoints whose last attempts failed.",
            w.endpoints_failing as f64,
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
}

/// One gauge per figure, each with its HELP and TYPE lines.
fn prometheus_text(m: &QueueMetrics, database: &str) -> String {
    let gauges: [(&str, &str, f64); 9] = [
        (
            "refbridge_send_queue_depth",
            "Sends waiting for a worker or for their next attempt.",
            m.queue_depth as f64,
        ),
        (
            "refbridge_send_due",
            "Waiting sends that are due now.",
            m.due as f64,
        ),
        (
            "refbridge_send_leased",
            "Waiting sends held by a live worker lease.",
            m.leased as f64,
        ),
        (
            "refbridge_send_paused",
            "Sends that need attention.",
            m.paused as f64,
        ),
        (
            "refbridge_send_oldest_due_wait_seconds",
            "How long the most overdue send has waited for a worker.",
            m.oldest_due_wait_seconds,
        ),
        (
            "refbridge_send_oldest_pending_step_age_seconds",
            "How long the longest-waiting send has been unfinished: since it last became ready (approved, or changed or resumed after a pause or its end).",
            m.oldest_pending_step_age_seconds,
        ),
        (
            "refbridge_send_unknown_steps",
            "Steps whose outcome is unknown, waiting for a lookup.",
            m.unknown_steps as f64,
        ),
        (
            "refbridge_send_in_flight_steps",
            "Steps whose call may be under way.",
            m.in_flight_steps as f64,
        ),
        (
            "refbridge_send_oldest_unknown_step_age_seconds",
            "Age of the oldest step in an unknown outcome.",
            m.oldest_unknown_step_age_seconds,
        ),
    ];
    let mut out = String::new();
    for (name, help, value) in gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    if let Some(age) = m.oldest_transaction_age_seconds {
        let name = "refbridge_db_oldest_transaction_age_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Age of the oldest open database transaction of another session.\n# TYPE {name} gauge\n{name} {age}"
        );
    }
    let name = "refbridge_database_info";
    let _ = writeln!(
        out,
        "# HELP {name} The database backend.\n# TYPE {name} gauge\n{name}{{backend=\"{database}\"}} 1"
    );
    out
}
