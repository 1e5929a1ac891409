//! A patient's page (their plans, active and archived, and the authorizations each carries)
//! and the payors (unmapped first, each mapped to an ACCloud funder here).

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use refbridge_domain::plan::PayorPut;
use refbridge_domain::{PatientId, Role};

use super::pages::{field_with_list, layout, message, names_list, not_for_role};
use super::session::ConsoleUser;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn patient(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    if !user.may(Role::Reviewer) {
        return Ok(not_for_role(&user));
    }
    let not_found = || {
        message(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such patient.",
            Some(&user),
        )
    };
    let Ok(id) = PatientId::parse(&raw) else {
        return Ok(not_found());
    };
    let Some(p) = state.store.get_patient(id).await? else {
        return Ok(not_found());
    };
    state
        .store
        .record_phi_access(&user.user.name, "console", "patient", None, Some(id))
        .await?;
    let plans = state
        .store
        .list_patient_plans(id, true)
        .await?
        .unwrap_or_default();
    let carried = state.store.plan_authorizations(id).await?;
    let body = html! {
        dl class="facts" {
            dt { "Name" } dd { (p.last_name) ", " (p.first_name) }
            @if let Some(b) = p.birthday { dt { "Born" } dd { (b) } }
            @if let Some(phone) = &p.phone_main { dt { "Phone" } dd { (phone) } }
            @if let Some(city) = &p.city { dt { "City" } dd { (city) } }
        }
        h2 { "Insurance plans" }
        @if plans.is_empty() { p { "No plans." } } @else {
            div class="table-wrap" {
                table {
                    thead { tr {
                        th scope="col" { "Order" } th scope="col" { "Payor" } th scope="col" { "Member number" }
                        th scope="col" { "Status" } th scope="col" { "Authorizations" }
                    } }
                    tbody {
                        @for plan in &plans {
                            @let id = plan.id.to_string();
                            tr {
                                td { (plan.fields.plan_order.get()) }
                                td { (plan.payor_name) }
                                td { (plan.fields.member_number.as_str()) }
                                td { (plan.status.as_str())
                                    @if let Some(r) = &plan.archived_reason { " (" (r) ")" } }
                                td {
                                    @for (_, request, index) in carried.iter().filter(|(p, _, _)| *p == id) {
                                        a href={ "/console/referrals/" (request) } { "authorization " (index + 1) } " "
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout(
        &format!("Patient {}, {}", p.last_name, p.first_name),
        Some(&user),
        body,
    )
    .into_response())
}

pub async fn payors(
    State(state): State<AppState>,
    user: ConsoleUser,
) -> Result<Response, ApiError> {
    if !user.may(Role::Reviewer) {
        return Ok(not_for_role(&user));
    }
    let mut payors = state.store.list_payors(false).await?;
    payors.sort_by_key(|p| (!p.unmapped, p.name.to_lowercase()));
    let funders = state
        .store
        .accloud_names(refbridge_storage::FUNDERS)
        .await?;
    let body = html! {
        (names_list("accloud-funders", &funders))
        p { "An approval names the ACCloud funder of the patient's plan's payor: map each payor to a funder (its ACCloud id, or its exact name)." }
        div class="table-wrap" {
            table {
                thead { tr { th scope="col" { "Payor" } th scope="col" { "ACCloud funder" } th scope="col" { "Map to" } } }
                tbody {
                    @for p in &payors {
                        tr {
                            td { (p.name) }
                            td {
                                @match (p.accloud_funder_id, &p.accloud_funder_name) {
                                    (Some(id), _) => { "#" (id) }
                                    (None, Some(n)) => { (n) }
                                    (None, None) => { strong class="warning" { "not mapped" } }
                                }
                            }
                            td {
                                form method="post" action="/console/payors" {
                                    input type="hidden" name="csrf" value=(user.csrf_token);
                                    input type="hidden" name="name" value=(p.name);
                                    (field_with_list(&format!("funder-{}", p.id), &format!("Funder for {}", p.name), "", "text", None, Some("accloud-funders")))
                                    button type="submit" class="secondary" { "Map" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout("Payors", Some(&user), body).into_response())
}

/// Maps a payor to a funder: digits are the funder's id, anything else its name.
pub async fn map_payor(
    State(state): State<AppState>,
    user: ConsoleUser,
    Form(f): Form<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if let Some(refused) = user.csrf_refusal(f.get("csrf").map(String::as_str)) {
        return Ok(refused);
    }
    if !user.may(Role::Reviewer) {
        return Ok(not_for_role(&user));
    }
    let name = f.get("name").cloned().unwrap_or_default();
    let funder = f
        .iter()
        .find(|(k, _)| k.starts_with("funder-"))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    let mut body = serde_json::json!({ "name": name });
    if funder.bytes().all(|b| b.is_ascii_digit()) && !funder.is_empty() {
        body["accloud_funder_id"] = serde_json::json!(funder.parse::<i64>().unwrap_or_default());
    } else if !funder.is_empty() {
        body["accloud_funder_name"] = serde_json::json!(funder);
    }
    let put = match PayorPut::parse(&body) {
        Ok(p) => p,
        Err(v) => {
            let text: Vec<String> =
                v.0.iter()
                    .map(|v| format!("{}: {}", v.path, v.problem))
                    .collect();
            return Ok(message(
                StatusCode::BAD_REQUEST,
                "Payors",
                &text.join("; "),
                Some(&user),
            ));
        }
    };
    state.store.put_payor(&put, &user.user.name).await?;
    Ok(Redirect::to("/console/payors").into_response())
}
