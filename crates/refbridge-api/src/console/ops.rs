//! Operations: the send queue as people read it, the last day's sends and pauses by hour,
//! where ACCloud calls go, the version and the database. Ids and figures only: for operators
//! and admins.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use refbridge_domain::{ReferralStatus, Role};

use super::pages::{layout, not_for_role};
use super::session::ConsoleUser;
use crate::error::ApiError;
use crate::state::AppState;

fn duration(secs: f64) -> String {
    match secs {
        s if s < 1.0 => "none".to_owned(),
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.0} min", s / 60.0),
        s => format!("{:.1} h", s / 3600.0),
    }
}

/// A small bar chart of counts per hour over the last 24 hours, with its figures as text.
fn chart(title: &str, hours: &[String], counts: &[i64]) -> Markup {
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    let (w, h, bar) = (24 * 12, 60, 10);
    let total: i64 = counts.iter().sum();
    html! {
        figure class="chart" {
            figcaption { (title) ": " (total) " in the last 24 hours" }
            svg width=(w) height=(h + 2) role="img" aria-label={ (title) ", by hour" } {
                @for (i, n) in counts.iter().enumerate() {
                    @let bh = (*n * h / max).max(if *n > 0 { 2 } else { 0 });
                    rect x=(i * 12) y=(h - bh) width=(bar) height=(bh) fill="#0b5cad" {
                        title { (hours[i]) ":00 UTC: " (n) }
                    }
                }
                line x1="0" y1=(h + 1) x2=(w) y2=(h + 1) stroke="#505a66";
            }
        }
    }
}

pub async fn page(State(state): State<AppState>, user: ConsoleUser) -> Result<Response, ApiError> {
    if !user.may(Role::Operator) {
        return Ok(not_for_role(&user));
    }
    let q = state.store.queue_metrics().await?;
    let w = state.store.webhook_metrics().await?;
    let endpoints = state.store.list_webhook_endpoints().await?.len();
    let now = chrono::Utc::now();
    let since = now - chrono::Duration::hours(23);
    let hours: Vec<String> = (0..24)
        .map(|i| {
            (since + chrono::Duration::hours(i))
                .format("%Y-%m-%dT%H")
                .to_string()
        })
        .collect();
    let mut series = Vec::new();
    for status in [ReferralStatus::Sent, ReferralStatus::NeedsAttention] {
        let start = since.format("%Y-%m-%dT%H:00:00Z").to_string();
        let since = chrono::DateTime::parse_from_rfc3339(&start)
            .map(|d| d.with_timezone(&chrono::Utc))
            .unwrap_or(since);
        let rows = state.store.status_changes_by_hour(status, since).await?;
        let counts: Vec<i64> = hours
            .iter()
            .map(|h| {
                rows.iter()
                    .find(|(hour, _)| hour == h)
                    .map_or(0, |(_, n)| *n)
            })
            .collect();
        series.push(counts);
    }
    let backend = match state.store.backend() {
        refbridge_storage::Backend::Sqlite => "SQLite (embedded)",
        refbridge_storage::Backend::Postgres => "PostgreSQL",
    };
    let body = html! {
        h2 { "The send queue" }
        dl class="facts" {
            dt { "Sends waiting" } dd { (q.queue_depth) " (" (q.due) " due now, " (q.leased) " being sent)" }
            dt { "Needing attention" } dd { a href="/console/attention" { (q.paused) } }
            dt { "Longest wait for a worker" } dd { (duration(q.oldest_due_wait_seconds)) }
            dt { "Longest unfinished send" } dd { (duration(q.oldest_pending_step_age_seconds)) }
            dt { "Steps with an unknown outcome" } dd { (q.unknown_steps) " (oldest " (duration(q.oldest_unknown_step_age_seconds)) ")" }
            dt { "Calls under way" } dd { (q.in_flight_steps) }
            @if let Some(t) = q.oldest_transaction_age_seconds {
                dt { "Oldest open database transaction" } dd { (duration(t)) }
            }
        }
        h2 { "Webhooks" }
        dl class="facts" {
            dt { "Endpoints" } dd {
                (endpoints)
                @if w.endpoints_disabled > 0 || w.endpoints_failing > 0 {
                    ": " strong class="warning" { (w.endpoints_disabled) " disabled, " (w.endpoints_failing) " failing" }
                }
                @if user.may(Role::Admin) { " (" a href="/console/webhooks" { "see them" } ")" }
            }
            dt { "Deliveries waiting" } dd { (w.pending_deliveries) }
            dt { "Oldest undelivered event" } dd { (duration(w.oldest_undelivered_seconds)) }
        }
        h2 { "The last 24 hours" }
        (chart("Referrals sent", &hours, &series[0]))
        (chart("Sends that stopped for attention", &hours, &series[1]))
        h2 { "This instance" }
        dl class="facts" {
            dt { "ACCloud" } dd { (state.config.accloud_target) }
            dt { "Version" } dd { (env!("CARGO_PKG_VERSION")) }
            dt { "Database" } dd { (backend) }
        }
    };
    Ok(layout("Operations", Some(&user), body).into_response())
}
