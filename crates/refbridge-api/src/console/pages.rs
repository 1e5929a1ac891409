//! The pages' frame and the small pieces they share: the layout, messages, fields.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::session::ConsoleUser;

/// A whole page: the header with the navigation and the signed-in user, then `body`.
pub fn layout(title: &str, user: Option<&ConsoleUser>, body: Markup) -> Markup {
    page(title, user, body, None)
}

/// A page that reloads itself every `secs` seconds (a send under way), with or without
/// JavaScript.
pub fn live_layout(title: &str, user: Option<&ConsoleUser>, body: Markup, secs: u32) -> Markup {
    page(title, user, body, Some(secs))
}

fn page(title: &str, user: Option<&ConsoleUser>, body: Markup, refresh: Option<u32>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(secs) = refresh {
                    meta http-equiv="refresh" content=(secs);
                }
                title { (title) " · refbridge" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body {
                a class="skip" href="#main" { "Skip to the content" }
                header class="top" {
                    a class="brand" href="/console" { "refbridge" }
                    @if let Some(u) = user {
                        nav aria-label="Main" {
                            @if u.may(refbridge_domain::Role::Reviewer) {
                                a href="/console" { "Inbox" }
                                a href="/console/payors" { "Payors" }
                            }
                            a href="/console/attention" { "Needs attention" }
                            @if u.may(refbridge_domain::Role::Operator) {
                                a href="/console/ops" { "Operations" }
                            }
                            @if u.may(refbridge_domain::Role::Admin) {
                                a href="/console/webhooks" { "Webhooks" }
                            }
                        }
                        form class="signout" method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(u.csrf_token);
                            span class="who" { (u.user.name) " (" (u.user.role.as_str()) ")" }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                @if user.is_some_and(|u| u.simulated_accloud) {
                    p class="banner" role="note" {
                        "ACCloud is the built-in simulator here: nothing reaches ACCloud."
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page that says why an action was refused, with its status.
pub fn message(
    status: StatusCode,
    title: &str,
    text: &str,
    user: Option<&ConsoleUser>,
) -> Response {
    (
        status,
        layout(
            title,
            user,
            html! { p class="notice" role="alert" { (text) } },
        ),
    )
        .into_response()
}

/// A form refused (its CSRF token missing or wrong).
pub fn refused(text: &str) -> Response {
    message(StatusCode::FORBIDDEN, "Refused", text, None)
}

/// A page the signed-in person's role may not see.
pub fn not_for_role(user: &ConsoleUser) -> Response {
    message(
        StatusCode::FORBIDDEN,
        "Not for your role",
        "This page is for reviewers and admins.",
        Some(user),
    )
}

/// One labelled input, with the problem found in it (if any) announced next to it.
pub fn field(name: &str, label: &str, value: &str, kind: &str, error: Option<&str>) -> Markup {
    field_with_list(name, label, value, kind, error, None)
}

/// [`field`], offering the values of the `datalist` with this id.
pub fn field_with_list(
    name: &str,
    label: &str,
    value: &str,
    kind: &str,
    error: Option<&str>,
    list: Option<&str>,
) -> Markup {
    let id = field_id(name);
    let hint = format!("{id}-error");
    html! {
        div class={ "field" @if error.is_some() { " invalid" } } {
            label for=(id) { (label) }
            @if let Some(e) = error {
                input id=(id) name=(name) type=(kind) value=(value) list=[list] aria-invalid="true" aria-describedby=(hint);
                p id=(hint) class="error" { "Problem: " (e) }
            } @else {
                input id=(id) name=(name) type=(kind) value=(value) list=[list];
            }
        }
    }
}

/// A labelled choice among `options` (value, label).
pub fn select(
    name: &str,
    label: &str,
    value: &str,
    options: &[(&str, &str)],
    error: Option<&str>,
) -> Markup {
    let id = field_id(name);
    let hint = format!("{id}-error");
    html! {
        div class={ "field" @if error.is_some() { " invalid" } } {
            label for=(id) { (label) }
            select id=(id) name=(name) aria-describedby=[error.map(|_| hint.clone())] {
                @for (v, l) in options {
                    option value=(v) selected[*v == value] { (l) }
                }
            }
            @if let Some(e) = error {
                p id=(hint) class="error" { "Problem: " (e) }
            }
        }
    }
}

/// An element id from a form field name (`authorizations[0].end_date`).
fn field_id(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A `datalist` of ACCloud names (what the workers last read), to pick from.
pub fn names_list(id: &str, names: &[(i64, String)]) -> Markup {
    html! {
        datalist id=(id) {
            @for (_, name) in names { option value=(name) {} }
        }
    }
}
