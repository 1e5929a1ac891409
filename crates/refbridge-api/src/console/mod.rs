//! The console: refbridge in the browser for CSI's coordinators and the engineer on call.
//! Server-rendered HTML (maud: the pages are Rust, checked when they are compiled, and every
//! value is escaped), its one stylesheet embedded; it works without JavaScript.
//!
//! People sign in with a user name and password ([`session`]); the JSON API keeps its bearer
//! tokens. Every form carries the session's CSRF token.

mod attention;
mod ops;
mod pages;
mod records;
mod referrals;
pub mod session;
mod sign_in;
mod webhooks;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};

use crate::state::AppState;

const CSS: &str = include_str!("console.css");

/// The console's routes, and `/` sent to it. `max_file_bytes`: the largest document.
pub fn router(max_file_bytes: u64) -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console", get(referrals::inbox))
        .route("/console/login", get(sign_in::page).post(sign_in::sign_in))
        .route("/console/logout", post(sign_in::sign_out))
        .route("/console/attention", get(attention::page))
        .route("/console/ops", get(ops::page))
        .route("/console/webhooks", get(webhooks::page))
        .route("/console/webhooks/{id}/replay", post(webhooks::replay))
        .route("/console/webhooks/{id}/enable", post(webhooks::enable))
        .route("/console/patients/{id}", get(records::patient))
        .route(
            "/console/payors",
            get(records::payors).post(records::map_payor),
        )
        .route("/console/attention/resume", post(attention::resume))
        .route("/console/referrals/{id}", get(referrals::referral))
        .route("/console/referrals/{id}/approve", post(referrals::approve))
        .route("/console/referrals/{id}/deny", post(referrals::deny))
        .route(
            "/console/referrals/{id}/files/{file_id}",
            get(referrals::file),
        )
        .route("/console/referrals/{id}/change", post(referrals::change))
        .route("/console/referrals/{id}/cancel", post(referrals::cancel))
        .route(
            "/console/referrals/{id}/documents",
            post(referrals::documents).layer(axum::extract::DefaultBodyLimit::max(
                crate::routes::approval::documents_body_limit(max_file_bytes),
            )),
        )
        .route("/console/referrals/{id}/resume", post(referrals::resume))
        .route(
            "/console/assets/console.css",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                        (header::CACHE_CONTROL, "max-age=3600"),
                    ],
                    CSS,
                )
                    .into_response()
            }),
        )
}
