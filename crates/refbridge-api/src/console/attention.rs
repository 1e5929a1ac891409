//! Needs attention: every paused send, why and since when, and the action that moves it on,
//! one by one or all of one cause at once (after a 503 storm, say). Ids and reasons only: no
//! personal data, so the engineer on call (`operator`) can work here.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use refbridge_domain::{RequestId, Role};
use serde::Deserialize;

use super::pages::{layout, message};
use super::session::ConsoleUser;
use crate::error::ApiError;
use crate::state::AppState;

/// Who may work the needs-attention list: operators, and reviewers.
fn may_work(user: &ConsoleUser) -> bool {
    user.may(Role::Operator) || user.may(Role::Reviewer)
}

pub async fn page(State(state): State<AppState>, user: ConsoleUser) -> Result<Response, ApiError> {
    if !may_work(&user) {
        return Ok(super::pages::not_for_role(&user));
    }
    let paused = state.store.paused_sends(500).await?;
    let mut by_cause: BTreeMap<&str, Vec<&refbridge_storage::PausedSend>> = BTreeMap::new();
    for p in &paused {
        by_cause
            .entry(p.reason.as_deref().unwrap_or("no reason recorded"))
            .or_default()
            .push(p);
    }
    let now = chrono::Utc::now();
    let reviewer = user.may(Role::Reviewer);
    let body = html! {
        @if paused.is_empty() {
            p { "No send needs attention." }
        }
        @for (cause, sends) in &by_cause {
            section aria-label={ "Paused because: " (cause) } {
                h2 { (sends.len()) " paused: " (cause) }
                div class="table-wrap" {
                    table {
                        thead { tr {
                            th scope="col" { "Request" } th scope="col" { "Agency" }
                            th scope="col" { "Waiting" } th scope="col" { "Stopped at" }
                        } }
                        tbody {
                            @for s in sends {
                                tr {
                                    td {
                                        @if reviewer {
                                            a href={ "/console/referrals/" (s.request_id) } { code { (s.request_id) } }
                                        } @else {
                                            code { (s.request_id) }
                                        }
                                    }
                                    td { (s.agency_name) }
                                    td { (waited(now - s.paused_since)) }
                                    td { (s.step.as_deref().unwrap_or("—")) }
                                }
                            }
                        }
                    }
                }
                form method="post" action="/console/attention/resume" {
                    input type="hidden" name="csrf" value=(user.csrf_token);
                    input type="hidden" name="cause" value=(cause);
                    div class="field" {
                        label {
                            input type="checkbox" name="confirm" value="yes" required;
                            " The cause is gone (resume each from the step where it stopped; each first looks its object up)"
                        }
                    }
                    button type="submit" { "Resume these " (sends.len()) }
                }
            }
        }
    };
    Ok(layout("Needs attention", Some(&user), body).into_response())
}

fn waited(d: chrono::Duration) -> String {
    let m = d.num_minutes().max(0);
    match m {
        0 => "under a minute".to_owned(),
        m if m < 120 => format!("{m} min"),
        m if m < 48 * 60 => format!("{} h", m / 60),
        m => format!("{} days", m / (24 * 60)),
    }
}

#[derive(Debug, Deserialize)]
pub struct ResumeForm {
    csrf: Option<String>,
    cause: Option<String>,
    confirm: Option<String>,
}

/// Resumes every send paused for the cause the form names.
pub async fn resume(
    State(state): State<AppState>,
    user: ConsoleUser,
    Form(f): Form<ResumeForm>,
) -> Result<Response, ApiError> {
    if let Some(refused) = user.csrf_refusal(f.csrf.as_deref()) {
        return Ok(refused);
    }
    if !may_work(&user) {
        return Ok(super::pages::not_for_role(&user));
    }
    if f.confirm.as_deref() != Some("yes") {
        return Ok(message(
            StatusCode::BAD_REQUEST,
            "Needs attention",
            "Tick the confirmation to resume these sends.",
            Some(&user),
        ));
    }
    let cause = f.cause.unwrap_or_default();
    let ids: Vec<RequestId> = state
        .store
        .paused_sends(500)
        .await?
        .into_iter()
        .filter(|p| p.reason.as_deref().unwrap_or("no reason recorded") == cause)
        .map(|p| p.request_id)
        .collect();
    let mut resumed = 0;
    for id in &ids {
        // One that moved on meanwhile (resumed by someone else) is passed over.
        if state
            .store
            .resume_send(*id, None, &user.user.name)
            .await
            .is_ok()
        {
            resumed += 1;
        }
    }
    state.wake.notify_one();
    tracing::info!(resumed, "sends resumed from the console");
    Ok(message(
        StatusCode::OK,
        "Needs attention",
        &format!("{resumed} of {} sends resumed.", ids.len()),
        Some(&user),
    ))
}
