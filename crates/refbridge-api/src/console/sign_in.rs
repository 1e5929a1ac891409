//! The sign-in page (`username`, `password`) and signing out.

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::pages::{layout, message};
use super::session::{
    self, ConsoleUser, FAILURE_WINDOW, MAX_FAILURES_PER_ADDRESS, MAX_FAILURES_PER_USER,
};
use crate::error::ApiError;
use crate::state::AppState;

/// The address a request came from (`unknown` when the server does not say).
pub struct ClientAddress(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_else(|| "unknown".to_owned()),
        ))
    }
}

fn form(error: Option<&str>, username: &str) -> Markup {
    html! {
        @if let Some(e) = error {
            p class="notice bad" role="alert" { (e) }
        }
        form method="post" action="/console/login" {
            div class="field" {
                label for="username" { "User name" }
                input id="username" name="username" type="text" autocomplete="username" required value=(username);
            }
            div class="field" {
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
            }
            button type="submit" { "Sign in" }
        }
    }
}

pub async fn page() -> Markup {
    layout("Sign in", None, form(None, ""))
}

#[derive(Debug, Deserialize)]
pub struct SignIn {
    username: String,
    password: String,
}

/// A hash to check against when the user does not exist, so that an unknown name takes as
/// long to refuse as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| session::hash_password("decoy password").unwrap_or_default())
}

pub async fn sign_in(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    Form(f): Form<SignIn>,
) -> Result<Response, ApiError> {
    // A name no user can have (control characters, too long) is looked up, and its failures
    // counted, as what remains of it once cleaned: it fails like any unknown name.
    let name = refbridge_domain::text::typed(&f.username);
    let (by_user, by_address) = state
        .store
        .recent_sign_in_failures(&name, &address, FAILURE_WINDOW)
        .await?;
    if by_user >= MAX_FAILURES_PER_USER || by_address >= MAX_FAILURES_PER_ADDRESS {
        tracing::warn!("console sign-in refused: too many failures");
        return Ok(message(
            StatusCode::TOO_MANY_REQUESTS,
            "Sign in",
            "Too many failed sign-ins. Wait 15 minutes, or ask an admin to reset your password.",
            None,
        ));
    }
    let found = state.store.user_for_sign_in(&name).await?;
    let hash = found
        .as_ref()
        .map_or_else(|| decoy_hash().to_owned(), |(_, h)| h.clone());
    let password = f.password;
    let matches = tokio::task::spawn_blocking(move || session::verify_password(&password, &hash))
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    let user = match (found, matches) {
        (Some((user, _)), true) => user,
        _ => {
            state.store.record_sign_in_failure(&name, &address).await?;
            tracing::info!("console sign-in failed");
            return Ok((
                StatusCode::UNAUTHORIZED,
                layout(
                    "Sign in",
                    None,
                    form(Some("Wrong user name or password."), &name),
                ),
            )
                .into_response());
        }
    };
    let cookie = session::start_session(&state, &user, &headers).await?;
    tracing::info!(user = %user.id, "console sign-in");
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/console")).into_response())
}

#[derive(Debug, Deserialize)]
pub struct SignOut {
    csrf: Option<String>,
}

pub async fn sign_out(
    State(state): State<AppState>,
    user: ConsoleUser,
    headers: HeaderMap,
    Form(f): Form<SignOut>,
) -> Result<Response, ApiError> {
    if let Some(refused) = user.csrf_refusal(f.csrf.as_deref()) {
        return Ok(refused);
    }
    let cookie = session::end_session(&state, &headers).await?;
    Ok((
        [(header::SET_COOKIE, cookie)],
        Redirect::to("/console/login"),
    )
        .into_response())
}
