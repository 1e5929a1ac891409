//! The inbox and the referral page, with the reviewer's actions: approve (a form prefilled
//! with every default the API would use, its errors shown at their fields), deny, resume.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use refbridge_domain::approval::{
    ApprovalInput, ApprovalTerms, AuthorizationInput, CaseManager, Limits, Ref, ReferralInput,
    ServiceInput,
};
use refbridge_domain::{ReferralStatus, RequestId, Role};
use refbridge_storage::{ListFilter, ReferralRecord};
use serde::Deserialize;

use super::pages::{
    field, field_with_list, layout, live_layout, message, names_list, not_for_role, select,
};
use super::session::ConsoleUser;
use crate::error::ApiError;
use crate::routes::approval::{
    approve_referral, cancel_referral, change_terms, preview_terms, receive_documents,
    resume_referral,
};
use crate::state::AppState;

const PAGE: u32 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct InboxQuery {
    status: Option<String>,
    /// Patient name, request id, agency client id or member number.
    q: Option<String>,
    /// The agency's AlayaMarket org id.
    agency: Option<String>,
    /// Received on or after this day (YYYY-MM-DD, UTC).
    from: Option<String>,
    /// Received on or before this day.
    to: Option<String>,
    /// Keyset cursor: `<received_at RFC 3339>_<request id>` of the last row shown.
    before: Option<String>,
}

fn parse_before(s: &str) -> Option<(DateTime<Utc>, RequestId)> {
    let (at, id) = s.rsplit_once('_')?;
    Some((
        DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc),
        RequestId::parse(id).ok()?,
    ))
}

/// Files the browser shows itself: PDFs and common images.
fn previewable(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/pdf" | "image/png" | "image/jpeg" | "image/gif" | "image/webp"
    )
}

#[derive(Debug, Deserialize)]
pub struct FileQuery {
    view: Option<String>,
}

/// A file of the referral: downloaded, or shown inline (`?view=inline`, PDFs and images).
pub async fn file(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path((raw, file_id)): Path<(String, String)>,
    Query(q): Query<FileQuery>,
) -> Result<Response, ApiError> {
    if !user.may(Role::Reviewer) {
        return Ok(not_for_role(&user));
    }
    let (Ok(id), Ok(file_id)) = (
        RequestId::parse(&raw),
        refbridge_domain::FileId::parse(&file_id),
    ) else {
        return Ok(message(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such file.",
            Some(&user),
        ));
    };
    let inline = q.view.as_deref() == Some("inline");
    match crate::routes::referrals::file_response(
        &state,
        id,
        file_id,
        (&user.user.name, "console"),
        inline,
    )
    .await
    {
        Err(ApiError::NotFound(_)) => Ok(message(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such file.",
            Some(&user),
        )),
        other => other,
    }
}

/// A query value, percent-encoded.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn status_label(s: ReferralStatus) -> String {
    s.as_str().replace('_', " ")
}

pub async fn inbox(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(q): Query<InboxQuery>,
) -> Result<Response, ApiError> {
    if !user.may(Role::Reviewer) {
        return Ok(not_for_role(&user));
    }
    let status = q
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .and_then(ReferralStatus::parse);
    let search = q.q.clone().unwrap_or_default();
    let day = |s: &Option<String>| {
        s.as_deref()
            .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    };
    let (from, to) = (day(&q.from), day(&q.to));
    let agency = q
        .agency
        .as_deref()
        .and_then(|a| uuid::Uuid::parse_str(a.trim()).ok());
    let filter = ListFilter {
        status,
        agency_org_id: agency,
        received_from: from
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc()),
        received_to: to
            .and_then(|d| d.succ_opt())
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc()),
        before: q.before.as_deref().and_then(parse_before),
        limit: PAGE + 1,
        search: Some(search.clone()),
    };
    let agencies = state.store.agencies().await?;
    state
        .store
        .record_phi_access(&user.user.name, "console", "inbox", None, None)
        .await?;
    let mut rows = state.store.list_referrals(&filter).await?;
    let more = rows.len() > PAGE as usize;
    rows.truncate(PAGE as usize);
    let ids: Vec<_> = rows.iter().map(|r| r.patient_id).collect();
    let names = state.store.patient_names(&ids).await?;
    let next = rows
        .last()
        .filter(|_| more)
        .map(|r| format!("{}_{}", r.received_at.to_rfc3339(), r.request_id));
    let status_value = status.map(|s| s.as_str()).unwrap_or_default();
    let mut options = vec![("", "any status".to_owned())];
    options.extend(
        ReferralStatus::ALL
            .iter()
            .map(|s| (s.as_str(), status_label(*s))),
    );
    let body = html! {
        form class="filters" method="get" action="/console" role="search" {
            div class="field" {
                label for="q" { "Search" }
                input id="q" name="q" type="search" value=(search)
                    placeholder="name, request id, client id or member number";
            }
            div class="field" {
                label for="agency" { "Agency" }
                select id="agency" name="agency" {
                    option value="" { "any agency" }
                    @for (org, name) in &agencies {
                        option value=(org) selected[agency.is_some_and(|a| a.to_string() == *org)] { (name) }
                    }
                }
            }
            div class="field" {
                label for="from" { "Received from" }
                input id="from" name="from" type="date" value=(from.map(|d| d.to_string()).unwrap_or_default());
            }
            div class="field" {
                label for="to" { "to" }
                input id="to" name="to" type="date" value=(to.map(|d| d.to_string()).unwrap_or_default());
            }
            div class="field" {
                label for="status" { "Status" }
                select id="status" name="status" {
                    @for (v, l) in &options {
                        option value=(v) selected[*v == status_value] { (l) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        @if rows.is_empty() {
            p { "No referral requests." }
        } @else {
            div class="table-wrap" {
                table {
                    caption class="skip" { "Referral requests, newest first" }
                    thead { tr {
                        th scope="col" { "Received" }
                        th scope="col" { "Patient" }
                        th scope="col" { "Agency" }
                        th scope="col" { "Service requested" }
                        th scope="col" { "Status" }
                        th scope="col" { "Warnings" }
                    } }
                    tbody {
                        @for r in &rows {
                            tr {
                                td { (r.received_at.format("%Y-%m-%d %H:%M UTC")) }
                                td {
                                    a href={ "/console/referrals/" (r.request_id) } {
                                        @match names.get(&r.patient_id) {
                                            Some((first, last)) => { (last) ", " (first) }
                                            None => { (r.request_id) }
                                        }
                                    }
                                }
                                td { (r.agency_name) }
                                td { (r.service_requested.as_deref().unwrap_or("—")) }
                                td class={ "status status-" (r.status.as_str()) } { (status_label(r.status)) }
                                td { (r.warning_count) }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = &next {
                p { a href={ "/console?status=" (status_value) "&q=" (url_encode(&search))
                    "&agency=" (agency.map(|a| a.to_string()).unwrap_or_default())
                    "&from=" (from.map(|d| d.to_string()).unwrap_or_default())
                    "&to=" (to.map(|d| d.to_string()).unwrap_or_default())
                    "&before=" (url_encode(next)) } { "Older referral requests" } }
            }
        }
    };
    Ok(layout("Inbox", Some(&user), body).into_response())
}

/// The referral a reviewer's form acts on, once the form's CSRF token and the person's role
/// are checked; `Ok(Err(page))` says why not.
async fn acted_on(
    state: &AppState,
    user: &ConsoleUser,
    raw: &str,
    csrf: Option<&str>,
) -> Result<Result<ReferralRecord, Response>, ApiError> {
    if let Some(refused) = user.csrf_refusal(csrf) {
        return Ok(Err(refused));
    }
    if !user.may(Role::Reviewer) {
        return Ok(Err(not_for_role(user)));
    }
    load(state, raw).await
}

async fn load(state: &AppState, raw: &str) -> Result<Result<ReferralRecord, Response>, ApiError> {
    let Ok(id) = RequestId::parse(raw) else {
        return Ok(Err(message(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such referral request.",
            None,
        )));
    };
    Ok(state.store.get_referral(id).await?.ok_or_else(|| {
        message(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such referral request.",
            None,
        )
    }))
}

pub async fn referral(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    if !user.may(Role::Reviewer) {
        return Ok(not_for_role(&user));
    }
    let rec = match load(&state, &raw).await? {
        Ok(r) => r,
        Err(page) => return Ok(page),
    };
    let form = match rec.status {
        ReferralStatus::Received => {
            let (values, errors) =
                match preview_terms(&state, rec.request_id, &ApprovalInput::default()).await {
                    Ok(terms) => (values_of(&terms), HashMap::new()),
                    Err(ApiError::InvalidRequest { details, .. }) => (
                        HashMap::new(),
                        details.into_iter().map(|v| (v.path, v.problem)).collect(),
                    ),
                    Err(e) => return Err(e),
                };
            Some(TermsForm {
                purpose: Purpose::Approve,
                values,
                errors,
            })
        }
        ReferralStatus::Sent | ReferralStatus::NeedsAttention => state
            .store
            .approval(rec.request_id)
            .await?
            .map(|a| TermsForm {
                purpose: if rec.status == ReferralStatus::Sent {
                    Purpose::Change(None)
                } else {
                    Purpose::Resume
                },
                values: values_of(&a.terms),
                errors: HashMap::new(),
            }),
        _ => None,
    };
    Ok(page(&state, &user, &rec, form, None).await?.into_response())
}

/// What the terms form is for.
enum Purpose {
    Approve,
    /// Resuming a paused send with corrected terms.
    Resume,
    /// A change of the sent terms; with the plan of a dry run once previewed.
    Change(Option<ChangePreview>),
}

/// A dry run's answer: the calls and the reasons the agency will read.
struct ChangePreview {
    calls: Vec<String>,
    reasons: Vec<String>,
}

/// The terms form: its purpose, values, and problems by field.
struct TermsForm {
    purpose: Purpose,
    values: HashMap<String, String>,
    errors: HashMap<String, String>,
}

/// The referral page; `form`: the terms form (approve while received, change once sent).
async fn page(
    state: &AppState,
    user: &ConsoleUser,
    rec: &ReferralRecord,
    form: Option<TermsForm>,
    notice: Option<&str>,
) -> Result<Markup, ApiError> {
    let id = rec.request_id;
    state
        .store
        .record_phi_access(
            &user.user.name,
            "console",
            "referral",
            Some(id),
            Some(rec.patient_id),
        )
        .await?;
    let viewed = if user.may(Role::Admin) {
        state
            .store
            .phi_access(&refbridge_storage::AccessFilter {
                request_id: Some(id),
                before: None,
                limit: 20,
            })
            .await?
    } else {
        Vec::new()
    };
    let steps = state.store.send_steps(id).await?;
    let job = state.store.send_job(id).await?;
    let agency = crate::routes::referrals::agency_status(job.as_ref(), &steps);
    // What ACCloud lists, as the workers last read it: offered where the form names one.
    let (funders, service_codes) = if form.is_some() {
        (
            state
                .store
                .accloud_names(refbridge_storage::FUNDERS)
                .await?,
            state
                .store
                .accloud_names(refbridge_storage::SERVICE_CODES)
                .await?,
        )
    } else {
        Default::default()
    };
    let c = &rec.request.client;
    let warned = |label: &str| -> Vec<&str> {
        rec.warnings
            .iter()
            .filter(|w| w.field == label)
            .map(|w| w.message.as_str())
            .collect()
    };
    let body = html! {
        @if let Some(n) = notice {
            p class="notice bad" role="alert" { (n) }
        }
        dl class="facts" {
            dt { "Status" } dd class={ "status status-" (rec.status.as_str()) } { (status_label(rec.status)) }
            @if let Some(reason) = job.as_ref().and_then(|j| j.pause_reason.as_deref()) {
                dt { "Why it stopped" } dd { (reason) }
            }
            @if let (Some(agency), read) = &agency {
                dt { "At the agency" } dd { (agency)
                    @if let Some(at) = read { " (read " (at.format("%Y-%m-%d %H:%M UTC")) ")" } }
            }
            dt { "Patient" } dd { a href={ "/console/patients/" (rec.patient_id) } { (c.last_name) ", " (c.first_name) }
                @if let Some(b) = c.birthday { " · born " (b) } }
            dt { "Agency" } dd { (rec.request.agency.name) }
            dt { "Service requested" } dd { (rec.referral.service.requested.as_deref().unwrap_or("—")) }
            dt { "Received" } dd { (rec.received_at.format("%Y-%m-%d %H:%M UTC")) }
            dt { "Request id" } dd { code { (id) } }
        }
        h2 { "The form as the agency filled it" }
        div class="table-wrap" {
            table {
                thead { tr { th scope="col" { "Field" } th scope="col" { "Value" } th scope="col" { "Warnings" } } }
                tbody {
                    @for f in &rec.request.fields {
                        tr {
                            td { (f.field_label) }
                            td { (show(&f.field_value)) }
                            td class="warning" { @for w in warned(&f.field_label) { (w) br; } }
                        }
                    }
                }
            }
        }
        @let other: Vec<_> = rec.warnings.iter().filter(|w| !rec.request.fields.iter().any(|f| f.field_label == w.field)).collect();
        @if !other.is_empty() {
            h2 { "Other warnings" }
            ul { @for w in other { li { strong { (w.field) } ": " (w.message) } } }
        }
        h2 { "Files" }
        @if rec.files.is_empty() { p { "No files." } } @else {
            ul { @for f in &rec.files {
                li {
                    @let href = format!("/console/referrals/{id}/files/{}", f.id);
                    a href=(href) { (f.name) } " · " (f.media_type) " · " (f.size) " bytes"
                    @if previewable(&f.media_type) {
                        " · " a href={ (href) "?view=inline" } target="_blank" rel="noopener" { "preview" }
                        @if f.media_type.starts_with("image/") {
                            br; img src={ (href) "?view=inline" } alt={ "Preview of " (f.name) } class="preview" loading="lazy";
                        }
                    }
                }
            } }
        }
        @if form.is_some() {
            (names_list("accloud-funders", &funders))
            (names_list("accloud-service-codes", &service_codes))
        }
        @if let Some(TermsForm { purpose: Purpose::Approve, values, errors }) = &form {
            h2 { "Approve" }
            (terms_form(&format!("/console/referrals/{id}/approve"), "Approve and send", html! {}, user, values, errors))
            h2 { "Deny" }
            form method="post" action={ "/console/referrals/" (id) "/deny" } {
                input type="hidden" name="csrf" value=(user.csrf_token);
                div class="field" {
                    label for="reason" { "Reason (sent to no one; kept in the record)" }
                    textarea id="reason" name="reason" rows="3" required {}
                }
                button type="submit" class="secondary" { "Deny" }
            }
        }
        @if let Some(TermsForm { purpose: Purpose::Change(preview), values, errors }) = &form {
            h2 { "Change the terms" }
            @if let Some(p) = preview {
                div class="notice" role="status" {
                    @if p.calls.is_empty() {
                        p { "Nothing would change: no call would be made." }
                    } @else {
                        p { "This change would make these calls:" }
                        ol { @for c in &p.calls { li { code { (c) } } } }
                        @if !p.reasons.is_empty() {
                            p { "and send the agency a revision with these reasons:" }
                            ul { @for r in &p.reasons { li { (r) } } }
                        }
                        p { "Check it, then send it below." }
                    }
                }
            }
            @let (mode, button) = if preview.as_ref().is_some_and(|p| !p.calls.is_empty()) {
                ("send", "Send this change")
            } else {
                ("preview", "Show what this change sends")
            };
            (terms_form(
                &format!("/console/referrals/{id}/change"),
                button,
                html! {
                    input type="hidden" name="mode" value=(mode);
                    (field("revision_comment", "Comment sent with the revision", values.get("revision_comment").map(String::as_str).unwrap_or_default(), "text", errors.get("revision_comment").map(String::as_str)))
                },
                user,
                values,
                errors,
            ))
            h2 { "Add documents" }
            form method="post" enctype="multipart/form-data" action={ "/console/referrals/" (id) "/documents" } {
                // First, so that it is read before the files.
                input type="hidden" name="csrf" value=(user.csrf_token);
                div class="field" {
                    label for="documents" { "Files (at most 50 MB each; a file the agency has already is not sent again)" }
                    input id="documents" name="file" type="file" multiple required;
                }
                button type="submit" class="secondary" { "Send the documents" }
            }
            h2 { "Cancel the referral" }
            form method="post" action={ "/console/referrals/" (id) "/cancel" } {
                input type="hidden" name="csrf" value=(user.csrf_token);
                (select("reason_code", "Reason", "", &CANCEL_REASONS, None))
                div class="field" {
                    label for="comment" { "Comment for the agency (optional)" }
                    textarea id="comment" name="comment" rows="2" maxlength="1000" {}
                }
                button type="submit" class="secondary" { "Cancel the referral in ACCloud" }
            }
        }
        @if rec.status == ReferralStatus::NeedsAttention {
            h2 { "Resume" }
            form method="post" action={ "/console/referrals/" (id) "/resume" } {
                input type="hidden" name="csrf" value=(user.csrf_token);
                p { "Resume the send from the step where it stopped; that step first looks its object up in ACCloud, in case its last call landed." }
                button type="submit" { "Resume the send" }
            }
            @if let Some(TermsForm { purpose: Purpose::Resume, values, errors }) = &form {
                h2 { "Resume with corrected terms" }
                p { "When the pause says the terms are wrong (a funder or service code ACCloud does not know, dates), correct them here; the send goes on with them." }
                (terms_form(
                    &format!("/console/referrals/{id}/resume"),
                    "Correct the terms and resume",
                    html! { input type="hidden" name="corrected" value="yes"; },
                    user,
                    values,
                    errors,
                ))
            }
        }
        @if !steps.is_empty() {
            h2 { "Send timeline" }
            div class="table-wrap" {
                table {
                    thead { tr {
                        th scope="col" { "Step" } th scope="col" { "State" } th scope="col" { "Attempts" }
                        th scope="col" { "ACCloud id" } th scope="col" { "Last error" } th scope="col" { "Updated" }
                    } }
                    tbody {
                        @for s in &steps {
                            tr {
                                td { (s.step.kind().label()) @if !s.step.item().is_empty() { " " small { (s.step.item()) } } }
                                td { (s.state.as_str().replace('_', " ")) }
                                td { (s.attempts) }
                                td { code { (s.remote_id.as_deref().unwrap_or("—")) } }
                                td { (s.last_error.as_deref().unwrap_or("")) }
                                td { (s.updated_at.format("%H:%M:%S")) }
                            }
                        }
                    }
                }
            }
        }
        @if !viewed.is_empty() {
            h2 { "Viewed by" }
            ul { @for v in &viewed {
                li { (v.at.format("%Y-%m-%d %H:%M:%S UTC")) " · " (v.actor) " · " (v.via) " · " (v.what) }
            } }
        }
        h2 { "Status history" }
        ul { @for h in &rec.history {
            li { (h.at.format("%Y-%m-%d %H:%M:%S UTC")) " · " (status_label(h.status)) " · " (h.actor)
                @if let Some(r) = &h.reason { " · " (r) } }
        } }
    };
    let title = format!("Referral from {}", rec.request.agency.name);
    // While the send runs the page follows it.
    Ok(
        if matches!(
            rec.status,
            ReferralStatus::Approved | ReferralStatus::Sending
        ) {
            live_layout(&title, Some(user), body, 3)
        } else {
            layout(&title, Some(user), body)
        },
    )
}

/// A form value as a person reads it: a repeating group (`[{"values": [{field_key,
/// field_value}]}]`) one entry a line, `key: value` pairs; other lists and objects likewise.
fn show(v: &serde_json::Value) -> Markup {
    use serde_json::Value;
    fn text(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }
    fn pairs(values: &[Value]) -> String {
        values
            .iter()
            .filter_map(|p| {
                let (key, value) = (text(p.get("field_key")?), text(p.get("field_value")?));
                (!value.is_empty()).then(|| format!("{key}: {value}"))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
    match v {
        Value::Array(items) => html! {
            ul class="values" {
                @for item in items {
                    @match item.get("values").and_then(Value::as_array) {
                        Some(values) => li { (pairs(values)) },
                        None => li { (text(item)) },
                    }
                }
            }
        },
        // A chosen option: its name.
        Value::Object(map) if map.get("option").and_then(|o| o.get("name")).is_some() => {
            html! { (text(&map["option"]["name"])) }
        }
        Value::Object(map) => html! {
            ul class="values" { @for (k, v) in map { li { (k) ": " (text(v)) } } }
        },
        other => html! { (text(other)) },
    }
}

/// The approve form's fields: (name, label, kind). Names are the API's field paths, so its
/// problems land at their fields.
const FIELDS: [(&str, &str, &str); 14] = [
    ("service.name", "Service name", "text"),
    (
        "service.service_code",
        "Service code (ACCloud name or id)",
        "text",
    ),
    ("service.funder", "Funder (ACCloud name or id)", "text"),
    (
        "service.instructions",
        "Instructions for the agency",
        "text",
    ),
    (
        "authorizations[0].start_date",
        "Authorization start",
        "date",
    ),
    ("authorizations[0].end_date", "Authorization end", "date"),
    ("authorizations[0].rule_daily", "Per day", "text"),
    ("authorizations[0].rule_weekly", "Per week", "text"),
    ("authorizations[0].rule_monthly", "Per month", "text"),
    ("authorizations[0].rule_period", "In total", "text"),
    (
        "authorizations[0].authorization_number",
        "Authorization number",
        "text",
    ),
    ("authorizations[0].member_number", "Member number", "text"),
    ("referral.comment", "Comment for the agency", "text"),
    (
        "referral.case_manager.name",
        "Case manager the agency sees",
        "text",
    ),
];

/// The cancel reasons, as a person reads them.
const CANCEL_REASONS: [(&str, &str); 7] = [
    ("client_request", "The client asked"),
    ("client_hospitalization", "The client is in hospital"),
    ("client_passed_away", "The client passed away"),
    ("client_refused_service", "The client refused the service"),
    ("datetime_change", "The dates changed"),
    ("processing_error", "A processing error"),
    ("other", "Another reason"),
];

/// The terms' fields in a form posted to `action`, with `extra` fields before the button.
fn terms_form(
    action: &str,
    button: &str,
    extra: Markup,
    user: &ConsoleUser,
    values: &HashMap<String, String>,
    errors: &HashMap<String, String>,
) -> Markup {
    let v = |k: &str| values.get(k).map(String::as_str).unwrap_or_default();
    // A problem with a pair of fields (code id or name) shows at the one field.
    let e = |k: &str| {
        errors
            .iter()
            .find(|(path, _)| path.as_str() == k || path.starts_with(&format!("{k}_")))
            .map(|(_, p)| p.as_str())
    };
    let unplaced: Vec<(&String, &String)> = errors
        .iter()
        .filter(|(path, _)| {
            !FIELDS
                .iter()
                .any(|(k, _, _)| path.as_str() == *k || path.starts_with(&format!("{k}_")))
                && ![
                    "authorizations[0].rule_type",
                    "referral.care_type",
                    "referral.referral_type",
                    "revision_comment",
                ]
                .contains(&path.as_str())
        })
        .collect();
    html! {
        @if !unplaced.is_empty() {
            div class="notice bad" role="alert" {
                p { "Please correct these:" }
                ul { @for (path, problem) in &unplaced { li { (path) ": " (problem) } } }
            }
        }
        form method="post" action=(action) novalidate {
            input type="hidden" name="csrf" value=(user.csrf_token);
            fieldset {
                legend { "Service" }
                @for (k, l, t) in &FIELDS[0..4] {
                    @let list = match *k {
                        "service.service_code" => Some("accloud-service-codes"),
                        "service.funder" => Some("accloud-funders"),
                        _ => None,
                    };
                    (field_with_list(k, l, v(k), t, e(k), list))
                }
            }
            fieldset {
                legend { "Authorization" }
                (select("authorizations[0].rule_type", "Rule type", v("authorizations[0].rule_type"),
                    &[("VISITS", "Visits"), ("HOURS", "Hours")], e("authorizations[0].rule_type")))
                @for (k, l, t) in &FIELDS[4..12] { (field(k, l, v(k), t, e(k))) }
            }
            fieldset {
                legend { "Referral" }
                (select("referral.care_type", "Care type", v("referral.care_type"),
                    &[("nursing", "Nursing"), ("psw", "PSW")], e("referral.care_type")))
                (select("referral.referral_type", "Referral type", v("referral.referral_type"),
                    &[("service", "Service"), ("visit", "Visit")], e("referral.referral_type")))
                @for (k, l, t) in &FIELDS[12..] { (field(k, l, v(k), t, e(k))) }
            }
            (extra)
            button type="submit" { (button) }
        }
    }
}

fn reference(r: &Ref) -> String {
    match r {
        Ref::Id(id) => id.to_string(),
        Ref::Name(n) => n.clone(),
    }
}

fn num(n: Option<f64>) -> String {
    n.map(|n| n.to_string()).unwrap_or_default()
}

/// The form's values from terms.
fn values_of(t: &ApprovalTerms) -> HashMap<String, String> {
    let mut m = HashMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_owned(), v);
    };
    put("service.name", t.service.name.clone());
    put("service.service_code", reference(&t.service.service_code));
    put("service.funder", reference(&t.service.funder));
    put(
        "service.instructions",
        t.service.instructions.clone().unwrap_or_default(),
    );
    if let Some(a) = t.authorizations.first() {
        put("authorizations[0].start_date", a.start_date.to_string());
        put("authorizations[0].end_date", a.end_date.to_string());
        put(
            "authorizations[0].rule_type",
            a.rule_type.as_str().to_owned(),
        );
        put("authorizations[0].rule_daily", num(a.limits.rule_daily));
        put("authorizations[0].rule_weekly", num(a.limits.rule_weekly));
        put("authorizations[0].rule_monthly", num(a.limits.rule_monthly));
        put("authorizations[0].rule_period", num(a.limits.rule_period));
        put(
            "authorizations[0].authorization_number",
            a.authorization_number.clone().unwrap_or_default(),
        );
        put(
            "authorizations[0].member_number",
            a.member_number.clone().unwrap_or_default(),
        );
    }
    put(
        "referral.care_type",
        t.referral.care_type.as_str().to_owned(),
    );
    put(
        "referral.referral_type",
        t.referral.referral_type.as_str().to_owned(),
    );
    put(
        "referral.comment",
        t.referral.comment.clone().unwrap_or_default(),
    );
    put(
        "referral.case_manager.name",
        t.referral
            .case_manager
            .as_ref()
            .and_then(|c| c.name.clone())
            .unwrap_or_default(),
    );
    m
}

/// The approval the form asks for; a number that is not one is a problem at its field.
fn input_of(f: &HashMap<String, String>) -> Result<ApprovalInput, HashMap<String, String>> {
    let text = |k: &str| {
        f.get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let mut problems = HashMap::new();
    let mut number = |k: &str| -> Option<f64> {
        let t = text(k)?;
        match t.parse::<f64>() {
            Ok(n) => Some(n),
            Err(_) => {
                problems.insert(k.to_owned(), "must be a number".to_owned());
                None
            }
        }
    };
    let limits = Limits {
        rule_daily: number("authorizations[0].rule_daily"),
        rule_weekly: number("authorizations[0].rule_weekly"),
        rule_monthly: number("authorizations[0].rule_monthly"),
        rule_period: number("authorizations[0].rule_period"),
        ..Limits::default()
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let by_ref = |k: &str| match text(k) {
        Some(t) if t.bytes().all(|b| b.is_ascii_digit()) => (t.parse().ok(), None),
        Some(t) => (None, Some(t)),
        None => (None, None),
    };
    let (service_code_id, service_code_name) = by_ref("service.service_code");
    let (funder_id, funder_name) = by_ref("service.funder");
    Ok(ApprovalInput {
        client: None,
        service: Some(ServiceInput {
            name: text("service.name"),
            service_code_id,
            service_code_name,
            funder_id,
            funder_name,
            instructions: text("service.instructions"),
            start_date: None,
            end_date: None,
        }),
        authorizations: Some(vec![AuthorizationInput {
            start_date: text("authorizations[0].start_date"),
            end_date: text("authorizations[0].end_date"),
            rule_type: text("authorizations[0].rule_type"),
            limits,
            authorization_number: text("authorizations[0].authorization_number"),
            member_number: text("authorizations[0].member_number"),
            ..AuthorizationInput::default()
        }]),
        referral: Some(ReferralInput {
            care_type: text("referral.care_type"),
            referral_type: text("referral.referral_type"),
            comment: text("referral.comment"),
            case_manager: text("referral.case_manager.name").map(|name| CaseManager {
                name: Some(name),
                ..CaseManager::default()
            }),
        }),
        revision_comment: None,
    })
}

pub async fn approve(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(raw): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let rec = match acted_on(&state, &user, &raw, f.get("csrf").map(String::as_str)).await? {
        Ok(r) => r,
        Err(page) => return Ok(page),
    };
    let id = rec.request_id;
    let input = match input_of(&f) {
        Ok(i) => i,
        Err(problems) => return again(&state, &user, &rec, f, problems, None).await,
    };
    match approve_referral(&state, id, &input, &user.user.name).await {
        Ok(_) => Ok(Redirect::to(&format!("/console/referrals/{id}")).into_response()),
        Err(ApiError::InvalidRequest { details, .. }) => {
            let problems = details.into_iter().map(|v| (v.path, v.problem)).collect();
            Ok(again(&state, &user, &rec, f, problems, None).await?)
        }
        Err(ApiError::Conflict(m)) => {
            Ok(again(&state, &user, &rec, f, HashMap::new(), Some(&m)).await?)
        }
        Err(e) => Err(e),
    }
}

/// The referral page again, with the form as submitted and its problems.
async fn again(
    state: &AppState,
    user: &ConsoleUser,
    rec: &ReferralRecord,
    values: HashMap<String, String>,
    problems: HashMap<String, String>,
    notice: Option<&str>,
) -> Result<Response, ApiError> {
    let notice = notice.or((!problems.is_empty())
        .then_some("The approval was not recorded: correct the fields marked below."));
    let form = TermsForm {
        purpose: Purpose::Approve,
        values,
        errors: problems,
    };
    let page = page(state, user, rec, Some(form), notice).await?;
    Ok((StatusCode::BAD_REQUEST, page).into_response())
}

/// A change of the sent terms: `mode=preview` shows what it would send (a dry run),
/// `mode=send` records it.
pub async fn change(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(raw): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let rec = match acted_on(&state, &user, &raw, f.get("csrf").map(String::as_str)).await? {
        Ok(r) => r,
        Err(page) => return Ok(page),
    };
    let id = rec.request_id;
    let send = f.get("mode").map(String::as_str) == Some("send");
    let shown = |values: HashMap<String, String>, errors, preview, notice: Option<String>| {
        let state = state.clone();
        let user = user.clone();
        let rec = rec.clone();
        async move {
            let form = TermsForm {
                purpose: Purpose::Change(preview),
                values,
                errors,
            };
            let status = if form.errors.is_empty() && notice.is_none() {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            let page = page(&state, &user, &rec, Some(form), notice.as_deref()).await?;
            Ok::<Response, ApiError>((status, page).into_response())
        }
    };
    let mut input = match input_of(&f) {
        Ok(i) => i,
        Err(problems) => return shown(f, problems, None, None).await,
    };
    input.revision_comment = f
        .get("revision_comment")
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    // The form names the first authorization; the others are kept as they are.
    if let Some(approval) = state.store.approval(id).await? {
        if let Some(list) = input.authorizations.as_mut() {
            list.resize(
                approval.terms.authorizations.len().max(1),
                AuthorizationInput::default(),
            );
        }
    }
    match change_terms(&state, id, &input, !send, &user.user.name).await {
        Ok(_) if send => Ok(Redirect::to(&format!("/console/referrals/{id}")).into_response()),
        Ok((_, answer)) => {
            let preview = ChangePreview {
                calls: answer
                    .planned_calls
                    .iter()
                    .map(|c| format!("{} ({} {})", c.call, c.step.label(), c.item))
                    .collect(),
                reasons: answer.reasons,
            };
            shown(f, HashMap::new(), Some(preview), None).await
        }
        Err(ApiError::InvalidRequest { details, .. }) => {
            let problems = details.into_iter().map(|v| (v.path, v.problem)).collect();
            shown(
                f,
                problems,
                None,
                Some("The change was not recorded: correct the fields marked below.".into()),
            )
            .await
        }
        Err(ApiError::Conflict(m)) => shown(f, HashMap::new(), None, Some(m)).await,
        Err(e) => Err(e),
    }
}

#[derive(Debug, Deserialize)]
pub struct CancelForm {
    csrf: Option<String>,
    reason_code: Option<String>,
    comment: Option<String>,
}

pub async fn cancel(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(raw): Path<String>,
    Form(f): Form<CancelForm>,
) -> Result<Response, ApiError> {
    let rec = match acted_on(&state, &user, &raw, f.csrf.as_deref()).await? {
        Ok(r) => r,
        Err(page) => return Ok(page),
    };
    let id = rec.request_id;
    let done = cancel_referral(
        &state,
        id,
        f.reason_code.as_deref(),
        f.comment.as_deref(),
        &user.user.name,
    )
    .await;
    after_action(&user, "Cancel", id, done)
}

/// What a reviewer's action on a referral answers: back to its page when it was recorded, the
/// problems by field when the input was refused, the reason when the referral's state does
/// not allow it; anything else is the API's error.
fn after_action<T>(
    user: &ConsoleUser,
    title: &str,
    id: RequestId,
    done: Result<T, ApiError>,
) -> Result<Response, ApiError> {
    match done {
        Ok(_) => Ok(Redirect::to(&format!("/console/referrals/{id}")).into_response()),
        Err(ApiError::InvalidRequest { details, .. }) => Ok(problems_page(
            user,
            title,
            details.into_iter().map(|v| (v.path, v.problem)),
        )),
        Err(ApiError::Conflict(m)) => Ok(message(StatusCode::CONFLICT, title, &m, Some(user))),
        Err(e) => Err(e),
    }
}

#[derive(Debug, Deserialize)]
pub struct DenyForm {
    csrf: Option<String>,
    reason: Option<String>,
}

pub async fn deny(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(raw): Path<String>,
    Form(f): Form<DenyForm>,
) -> Result<Response, ApiError> {
    let rec = match acted_on(&state, &user, &raw, f.csrf.as_deref()).await? {
        Ok(r) => r,
        Err(page) => return Ok(page),
    };
    let reason = f.reason.as_deref().map(str::trim).unwrap_or_default();
    if reason.is_empty() {
        return Ok(message(
            StatusCode::BAD_REQUEST,
            "Deny",
            "A reason is required to deny a referral request.",
            Some(&user),
        ));
    }
    match state
        .store
        .deny_referral(rec.request_id, reason, &user.user.name)
        .await
    {
        Ok(_) => {
            Ok(Redirect::to(&format!("/console/referrals/{}", rec.request_id)).into_response())
        }
        Err(refbridge_storage::DenyError::NotAllowed(st)) => Ok(message(
            StatusCode::CONFLICT,
            "Deny",
            &format!(
                "This referral request is {} and cannot be denied.",
                status_label(st)
            ),
            Some(&user),
        )),
        Err(refbridge_storage::DenyError::NotFound) => Ok(message(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such referral request.",
            Some(&user),
        )),
        Err(refbridge_storage::DenyError::Storage(e)) => Err(e.into()),
    }
}

pub async fn resume(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(raw): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let rec = match acted_on(&state, &user, &raw, f.get("csrf").map(String::as_str)).await? {
        Ok(r) => r,
        Err(page) => return Ok(page),
    };
    let id = rec.request_id;
    let corrected = if f.get("corrected").map(String::as_str) == Some("yes") {
        let mut input = match input_of(&f) {
            Ok(i) => i,
            Err(problems) => return Ok(problems_page(&user, "Resume", problems.into_iter())),
        };
        // The form names the first authorization; the others are kept as approved.
        if let (Some(approval), Some(list)) = (
            state.store.approval(id).await?,
            input.authorizations.as_mut(),
        ) {
            let kept = ApprovalInput::from_terms(&approval.terms)
                .authorizations
                .unwrap_or_default();
            list.extend(kept.into_iter().skip(1));
        }
        Some(input)
    } else {
        None
    };
    let done = resume_referral(&state, id, corrected.as_ref(), &user.user.name).await;
    after_action(&user, "Resume", id, done)
}

/// A page listing the problems found in a form, by field.
fn problems_page(
    user: &ConsoleUser,
    title: &str,
    problems: impl Iterator<Item = (String, String)>,
) -> Response {
    let text: Vec<String> = problems
        .map(|(path, problem)| format!("{path}: {problem}"))
        .collect();
    message(
        StatusCode::BAD_REQUEST,
        title,
        &format!("Nothing was changed. Please correct: {}", text.join("; ")),
        Some(user),
    )
}

/// New documents for a sent referral (multipart: the CSRF token first, then the files).
pub async fn documents(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(raw): Path<String>,
    multipart: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let Ok(mut multipart) = multipart else {
        return Ok(message(
            StatusCode::BAD_REQUEST,
            "Documents",
            "Choose the files to send.",
            Some(&user),
        ));
    };
    let token = match multipart.next_field().await {
        Ok(Some(field)) if field.name() == Some("csrf") => field.text().await.ok(),
        _ => None,
    };
    let rec = match acted_on(&state, &user, &raw, token.as_deref()).await? {
        Ok(r) => r,
        Err(page) => return Ok(page),
    };
    let id = rec.request_id;
    match receive_documents(&state, id, &mut multipart, &user.user.name).await {
        Ok((_, answer)) if !answer.changed => Ok(message(
            StatusCode::OK,
            "Documents",
            &format!(
                "Nothing was sent: the agency has these already ({}).",
                answer.already_delivered.join(", ")
            ),
            Some(&user),
        )),
        Err(ApiError::PayloadTooLarge(m)) => Ok(message(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Documents",
            &m,
            Some(&user),
        )),
        other => after_action(&user, "Documents", id, other),
    }
}
