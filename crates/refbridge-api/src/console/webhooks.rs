//! Webhook endpoints for admins: each endpoint's state, its recent deliveries and failures,
//! and the replay and enable actions. Ids, statuses and the receivers' answers only.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use refbridge_domain::Role;
use refbridge_storage::{AttemptRecord, EndpointRecord};
use serde::Deserialize;

use super::pages::{layout, message, not_for_role};
use super::session::ConsoleUser;
use crate::error::ApiError;
use crate::state::AppState;

/// Attempts shown per endpoint.
const RECENT: i64 = 15;

fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn state_of(e: &EndpointRecord) -> Markup {
    html! {
        @if !e.enabled {
            strong class="warning" { "Disabled" }
            @if let Some(r) = &e.disabled_reason { " (" (r) ")" }
        } @else if let Some(since) = e.failing_since {
            strong class="warning" { "Failing" } " since " (when(since))
        } @else {
            "Delivering"
        }
    }
}

fn attempts_table(attempts: &[AttemptRecord]) -> Markup {
    html! {
        @if attempts.is_empty() {
            p { "No delivery attempted yet." }
        } @else {
            div class="table-wrap" { table {
                caption { "Latest attempts, newest first" }
                thead { tr {
                    th scope="col" { "When" } th scope="col" { "Event" } th scope="col" { "Attempt" }
                    th scope="col" { "Outcome" } th scope="col" { "Status" } th scope="col" { "Latency" }
                    th scope="col" { "Answer or error" }
                } }
                tbody {
                    @for a in attempts {
                        tr {
                            td { (when(a.at)) }
                            td { (a.event_type.map(|t| t.as_str()).unwrap_or("-")) br; code { (a.event_id) } }
                            td { (a.attempt) }
                            td { @if a.outcome == "delivered" { (a.outcome) } @else { strong class="warning" { (a.outcome) } } }
                            td { (a.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into())) }
                            td { (a.latency_ms) " ms" }
                            td { (a.error.as_deref().or(a.response_head.as_deref()).unwrap_or("")) }
                        }
                    }
                }
            } }
        }
    }
}

pub async fn page(State(state): State<AppState>, user: ConsoleUser) -> Result<Response, ApiError> {
    if !user.may(Role::Admin) {
        return Ok(not_for_role(&user));
    }
    let endpoints = state.store.list_webhook_endpoints().await?;
    let mut sections = Vec::new();
    for e in &endpoints {
        let attempts = state.store.webhook_attempts(&e.id, RECENT).await?;
        let pending = state.store.pending_webhook_deliveries(&e.id).await?;
        sections.push((e, attempts, pending));
    }
    let body = html! {
        p { "Receivers of refbridge's events, signed as the Standard Webhooks specification says. "
            "Endpoints are added with " code { "PUT /v1/webhook-endpoints" } "." }
        @if endpoints.is_empty() {
            p { "No endpoint yet." }
        }
        @for (e, attempts, pending) in &sections {
            section class="endpoint" aria-labelledby={ "ep-" (e.id) } {
                h2 id={ "ep-" (e.id) } { (e.url) }
                dl class="facts" {
                    dt { "State" } dd { (state_of(e)) }
                    dt { "Events" } dd {
                        @match &e.event_types {
                            None => "every type",
                            Some(ts) => (ts.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")),
                        }
                    }
                    dt { "Waiting to be delivered" } dd { (pending) }
                    dt { "Id" } dd { code { (e.id) } }
                }
                @if !e.enabled {
                    form method="post" action={ "/console/webhooks/" (e.id) "/enable" } {
                        input type="hidden" name="csrf" value=(user.csrf_token);
                        button type="submit" { "Enable again" }
                    }
                }
                (attempts_table(attempts))
                form class="replay" method="post" action={ "/console/webhooks/" (e.id) "/replay" } {
                    input type="hidden" name="csrf" value=(user.csrf_token);
                    fieldset {
                        legend { "Deliver again" }
                        div class="field" {
                            label for={ "event-" (e.id) } { "One event (its id)" }
                            input id={ "event-" (e.id) } name="event_id" type="text" autocomplete="off";
                        }
                        div class="field" {
                            label for={ "since-" (e.id) } { "Or every event since (RFC 3339, e.g. 2026-12-01T00:00:00Z)" }
                            input id={ "since-" (e.id) } name="since" type="text" autocomplete="off";
                        }
                        button type="submit" { "Replay" }
                    }
                }
            }
        }
    };
    Ok(layout("Webhooks", Some(&user), body).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ReplayForm {
    csrf: Option<String>,
    event_id: Option<String>,
    since: Option<String>,
}

pub async fn replay(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
    Form(f): Form<ReplayForm>,
) -> Result<Response, ApiError> {
    if let Some(refused) = user.csrf_refusal(f.csrf.as_deref()) {
        return Ok(refused);
    }
    if !user.may(Role::Admin) {
        return Ok(not_for_role(&user));
    }
    let Ok(id) = uuid::Uuid::parse_str(&id).map(|u| u.to_string()) else {
        return Ok(message(
            StatusCode::NOT_FOUND,
            "Webhooks",
            "No such endpoint.",
            Some(&user),
        ));
    };
    let what =
        match crate::routes::webhooks::parse_replay(f.event_id.as_deref(), f.since.as_deref()) {
            Ok(w) => w,
            Err(e) => {
                return Ok(message(
                    StatusCode::BAD_REQUEST,
                    "Webhooks",
                    &e.to_string(),
                    Some(&user),
                ));
            }
        };
    let queued = match crate::routes::webhooks::replay_endpoint(&state, &id, &what).await {
        Ok(n) => n,
        Err(ApiError::NotFound(_)) => {
            return Ok(message(
                StatusCode::NOT_FOUND,
                "Webhooks",
                "No such endpoint.",
                Some(&user),
            ));
        }
        Err(e) => return Err(e),
    };
    Ok(message(
        StatusCode::OK,
        "Webhooks",
        &format!("{queued} deliveries queued."),
        Some(&user),
    ))
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

pub async fn enable(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, ApiError> {
    if let Some(refused) = user.csrf_refusal(f.csrf.as_deref()) {
        return Ok(refused);
    }
    if !user.may(Role::Admin) {
        return Ok(not_for_role(&user));
    }
    let found = match uuid::Uuid::parse_str(&id) {
        Ok(u) => {
            state
                .store
                .set_webhook_endpoint_enabled(&u.to_string(), true, &user.user.name)
                .await?
        }
        Err(_) => false,
    };
    let (status, text) = if found {
        (StatusCode::OK, "The endpoint is enabled again.")
    } else {
        (StatusCode::NOT_FOUND, "No such endpoint.")
    };
    Ok(message(status, "Webhooks", text, Some(&user)))
}
