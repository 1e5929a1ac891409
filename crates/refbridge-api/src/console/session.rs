//! Who is signed in to the console: passwords (argon2id), server-side sessions in an
//! HttpOnly, SameSite=Strict cookie, the CSRF token every form carries, and the limits on
//! failed sign-ins.
//!
//! Pages never see how a person signed in: they take a [`ConsoleUser`]. A sign-in method
//! (today the password form; an OpenID Connect callback later) ends by calling
//! [`start_session`] for a user, which is all the rest of the console relies on.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use refbridge_domain::Role;
use refbridge_storage::{SessionLimits, UserRecord};

use crate::error::ApiError;
use crate::state::AppState;

/// The session cookie's name (with the `__Host-` prefix when it is Secure).
const COOKIE: &str = "refbridge_session";
const SECURE_COOKIE: &str = "__Host-refbridge_session";

/// Failed sign-ins allowed per user name, and per address, within [`FAILURE_WINDOW`].
pub const MAX_FAILURES_PER_USER: i64 = 5;
pub const MAX_FAILURES_PER_ADDRESS: i64 = 20;
pub const FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The console's session settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleSettings {
    pub limits: SessionLimits,
    /// Mark the cookie Secure (served over TLS, or behind a proxy that terminates it). A
    /// request that says `X-Forwarded-Proto: https` gets a Secure cookie either way.
    pub secure_cookies: bool,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            limits: SessionLimits {
                idle: std::time::Duration::from_secs(15 * 60),
                absolute: std::time::Duration::from_secs(12 * 60 * 60),
            },
            secure_cookies: false,
        }
    }
}

/// An argon2id hash of `password` (PHC string, with its own salt and parameters).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    random(&mut salt)?;
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| ApiError::Internal(e.to_string().into()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(e.to_string().into()))
}

/// Whether `password` matches the stored hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A password made of 24 characters from 18 random bytes (printed once by `user create`).
pub fn generate_password() -> Result<String, ApiError> {
    let mut bytes = [0u8; 18];
    random(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn random(buf: &mut [u8]) -> Result<(), ApiError> {
    getrandom::fill(buf).map_err(|e| ApiError::Internal(e.to_string().into()))
}

/// A new opaque value of 32 random bytes.
fn new_secret() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    random(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// A signed-in person, with the CSRF token of their session.
#[derive(Debug, Clone)]
pub struct ConsoleUser {
    pub user: UserRecord,
    pub csrf_token: String,
    /// ACCloud is the built-in simulator (every page says so).
    pub simulated_accloud: bool,
}

impl ConsoleUser {
    pub fn may(&self, role: Role) -> bool {
        self.user.role.allows(role)
    }

    /// The refusal of a form posted without this session's token, if it was.
    pub fn csrf_refusal(&self, token: Option<&str>) -> Option<Response> {
        match token {
            Some(t) if constant_time_eq(t.as_bytes(), self.csrf_token.as_bytes()) => None,
            _ => Some(super::pages::refused(
                "This form has expired or did not come from this console. Go back, reload the page and try again.",
            )),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE || *name == SECURE_COOKIE)
        .map(|(_, value)| value.to_owned())
}

impl FromRequestParts<AppState> for ConsoleUser {
    /// A signed-out browser goes to the sign-in page.
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let to_sign_in = || Redirect::to("/console/login").into_response();
        let Some(id) = session_id(&parts.headers) else {
            return Err(to_sign_in());
        };
        let session = state
            .store
            .touch_session(&crate::hash_token(&id), state.config.console.limits)
            .await
            .map_err(|e| ApiError::from(e).into_response())?;
        match session {
            Some(s) => {
                tracing::Span::current().record("actor", s.user.name.as_str());
                Ok(ConsoleUser {
                    user: s.user,
                    csrf_token: s.csrf_token,
                    simulated_accloud: state.config.simulated_accloud,
                })
            }
            None => Err(to_sign_in()),
        }
    }
}

/// Starts a session for `user` and returns the cookie that carries it. Every sign-in method
/// ends here.
pub async fn start_session(
    state: &AppState,
    user: &UserRecord,
    headers: &HeaderMap,
) -> Result<HeaderValue, ApiError> {
    let id = new_secret()?;
    let csrf = new_secret()?;
    state
        .store
        .create_session(&crate::hash_token(&id), &user.id, &csrf)
        .await?;
    cookie(state, headers, &id)
}

/// Ends the session of this request, if any; the cookie that clears it.
pub async fn end_session(state: &AppState, headers: &HeaderMap) -> Result<HeaderValue, ApiError> {
    if let Some(id) = session_id(headers) {
        state.store.end_session(&crate::hash_token(&id)).await?;
    }
    cookie(state, headers, "")
}

fn cookie(state: &AppState, headers: &HeaderMap, value: &str) -> Result<HeaderValue, ApiError> {
    let forwarded_tls = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let secure = state.config.console.secure_cookies || forwarded_tls;
    let expiry = if value.is_empty() { "; Max-Age=0" } else { "" };
    let text = if secure {
        format!("{SECURE_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Secure{expiry}")
    } else {
        format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict{expiry}")
    };
    HeaderValue::from_str(&text).map_err(|e| ApiError::Internal(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
        assert_ne!(hash, hash_password("correct horse").unwrap(), "salted");
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; refbridge_session=abc; x=y"),
        );
        assert_eq!(session_id(&h).as_deref(), Some("abc"));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
