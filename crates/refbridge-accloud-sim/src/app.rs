//! Shared simulator state, the in-process control handle, and the
//! per-request middleware (auth, faults, journal).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{NaiveDate, Utc};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::{ConfigError, SeedData, SeedSupplier, SimConfig};
use crate::error::ApiError;
use crate::faults::{Endpoint, FaultConfig, FaultEngine, FaultKind, ScriptedFault};
use crate::journal::{Journal, JournalEntry, Outcome};
use crate::state::{DuplicatesReport, StateSnapshot, Store};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) struct Shared {
    pub config: SimConfig,
    pub seed: SeedData,
    store: Mutex<Store>,
    faults: Mutex<FaultEngine>,
    journal: Mutex<Journal>,
    api_auth: Vec<(String, bool)>,
    control_auth: String,
}

fn basic_header(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

impl Shared {
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    /// The simulator's "today" (pinned, or the HQ branch's current date).
    pub(crate) fn today(&self) -> NaiveDate {
        self.config.today.unwrap_or_else(|| {
            let tz = self
                .seed
                .branches
                .first()
                .and_then(|b| b.timezone.parse::<chrono_tz::Tz>().ok())
                .unwrap_or(chrono_tz::America::Chicago);
            Utc::now().with_timezone(&tz).date_naive()
        })
    }

    /// When an object created now by a request with `lag` becomes visible.
    pub(crate) fn visible_at(&self, lag: Option<CreateLag>) -> Option<Instant> {
        let ms = self.config.indexing_lag_ms.max(lag.map_or(0, |l| l.0));
        (ms > 0).then(|| Instant::now() + Duration::from_millis(ms))
    }

    /// `Some(read_only)` when the header carries valid API credentials.
    fn api_credential(&self, headers: &HeaderMap) -> Option<bool> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        if let Some((_, ro)) = self.api_auth.iter().find(|(h, _)| h == value) {
            return Some(*ro);
        }
        let (user, password) = decode_basic(value)?;
        self.config
            .credentials
            .api
            .iter()
            .find(|c| c.key == user && c.secret == password)
            .map(|c| c.read_only)
    }

    fn control_ok(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        if value == self.control_auth {
            return true;
        }
        let c = &self.config.credentials.control;
        decode_basic(value).is_some_and(|(u, p)| u == c.username && p == c.password)
    }

    fn record(&self, entry: JournalEntry) {
        lock(&self.journal).push(entry);
    }
}

fn decode_basic(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// A cloneable in-process handle on a simulator: the same operations as
/// the control API under `/_sim/`.
#[derive(Clone)]
pub struct SimHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle").finish_non_exhaustive()
    }
}

/// Why a control operation was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControlError {
    /// No referral with that id.
    #[error("referral {0} not found")]
    ReferralNotFound(Uuid),
    /// The referral cannot be marked processed (or cancelled) in its current state.
    #[error("referral {id} cannot be changed so: {reason}")]
    NotProcessable {
        /// Referral id.
        id: Uuid,
        /// Why.
        reason: String,
    },
    /// The fault configuration was rejected.
    #[error("{0}")]
    InvalidFaults(String),
}

impl SimHandle {
    /// Builds the simulator state from a configuration (no socket).
    pub fn new(config: SimConfig) -> Result<Self, ConfigError> {
        let seed = config.resolve_seed()?;
        seed.validate()?;
        config.faults.validate()?;
        let api_auth = config
            .credentials
            .api
            .iter()
            .map(|c| (basic_header(&c.key, &c.secret), c.read_only))
            .collect();
        let control = &config.credentials.control;
        let control_auth = basic_header(&control.username, &control.password);
        let shared = Shared {
            store: Mutex::new(Store::new(seed.clone(), config.rng_seed)),
            faults: Mutex::new(FaultEngine::new(config.faults.clone(), config.rng_seed)),
            journal: Mutex::new(Journal::new(config.journal_capacity)),
            api_auth,
            control_auth,
            seed,
            config,
        };
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// The configuration the simulator was started with.
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// A snapshot of every record.
    pub fn state(&self) -> StateSnapshot {
        self.shared.store().snapshot()
    }

    /// Natural keys held by more than one object.
    pub fn duplicates(&self) -> DuplicatesReport {
        self.shared.store().duplicates()
    }

    /// The request journal, oldest first.
    pub fn journal(&self) -> Vec<JournalEntry> {
        lock(&self.shared.journal).entries()
    }

    /// Empties the journal.
    pub fn clear_journal(&self) {
        lock(&self.shared.journal).clear();
    }

    /// The fault configuration in force (scripted faults not yet consumed included).
    pub fn faults(&self) -> FaultConfig {
        lock(&self.shared.faults).config().clone()
    }

    /// Replaces the fault configuration.
    pub fn set_faults(&self, faults: FaultConfig) -> Result<(), ControlError> {
        faults
            .validate()
            .map_err(|e| ControlError::InvalidFaults(e.to_string()))?;
        lock(&self.shared.faults).set(faults);
        Ok(())
    }

    /// Appends a scripted fault: the next `count` calls to the endpoint get it.
    pub fn push_scripted_fault(&self, fault: ScriptedFault) {
        lock(&self.shared.faults).push_scripted(fault);
    }

    /// Removes every fault (probabilities and scripted).
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).set(FaultConfig::none());
    }

    /// Adds a supplier to the demand organization's trusted network, as CSI does in ACCloud.
    pub fn trust_supplier(&self, id: Uuid, name: &str) {
        let mut store = self.shared.store();
        if !store.seed.trusted_network.iter().any(|s| s.id == id) {
            store.seed.trusted_network.push(SeedSupplier {
                id,
                name: name.to_owned(),
            });
        }
    }

    /// Marks the latest revision of a referral `processed`, as the agency
    /// does when it processes it.
    pub fn mark_processed(&self, referral_id: Uuid) -> Result<(), ControlError> {
        let mut store = self.shared.store();
        let referral = store
            .referrals
            .get_mut(&referral_id)
            .ok_or(ControlError::ReferralNotFound(referral_id))?;
        if !referral.is_latest_revision {
            return Err(ControlError::NotProcessable {
                id: referral_id,
                reason: "not the latest revision".into(),
            });
        }
        if referral.status != "assigned" {
            return Err(ControlError::NotProcessable {
                id: referral_id,
                reason: format!("status is {}", referral.status),
            });
        }
        referral.status = "processed".to_owned();
        referral.updated_at = Some(Utc::now());
        Ok(())
    }

    /// Cancels the latest revision of a referral, as the agency can in ACCloud.
    pub fn cancel_as_agency(&self, referral_id: Uuid) -> Result<(), ControlError> {
        let mut store = self.shared.store();
        let referral = store
            .referrals
            .get_mut(&referral_id)
            .ok_or(ControlError::ReferralNotFound(referral_id))?;
        if !referral.is_latest_revision || referral.status == "cancelled" {
            return Err(ControlError::NotProcessable {
                id: referral_id,
                reason: format!("status is {}", referral.status),
            });
        }
        referral.status = "cancelled".to_owned();
        referral.updated_at = Some(Utc::now());
        Ok(())
    }

    /// Back to the state at start: seed data only, empty journal, the
    /// configured faults and a re-seeded generator.
    pub fn reset(&self) {
        let cfg = &self.shared.config;
        *self.shared.store() = Store::new(self.shared.seed.clone(), cfg.rng_seed);
        *lock(&self.shared.faults) = FaultEngine::new(cfg.faults.clone(), cfg.rng_seed);
        lock(&self.shared.journal).clear();
    }
}

/// Extension telling a create handler how long its new object stays
/// invisible to lookups (from the indexing-lag fault).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CreateLag(pub u64);

/// Extension inserted by the connection loop: notifying it closes the
/// connection without a response.
#[derive(Clone)]
pub(crate) struct ConnectionKiller(pub Arc<Notify>);

/// Auth, faults and journal for one API endpoint.
pub(crate) async fn api_middleware(
    State((shared, endpoint)): State<(Arc<Shared>, Endpoint)>,
    mut request: Request,
    next: Next,
) -> Response {
    let at = Utc::now();
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    // Listing and download share one route; a trailing slash means a folder.
    let endpoint = if endpoint == Endpoint::FileDownload && path.ends_with('/') {
        Endpoint::FileList
    } else {
        endpoint
    };
    let family = endpoint.family();
    let mut entry = JournalEntry {
        seq: 0,
        at,
        method,
        path,
        endpoint: Some(endpoint),
        status: None,
        handler_status: None,
        outcome: Outcome::Responded,
        fault: None,
        latency_ms: None,
    };

    let Some(read_only) = shared.api_credential(request.headers()) else {
        let response = ApiError::unauthorized(family).into_response();
        entry.status = Some(response.status().as_u16());
        shared.record(entry);
        return response;
    };
    if read_only && endpoint.is_write() && family != crate::faults::Family::Ext {
        let response = ApiError::forbidden(family).into_response();
        entry.status = Some(response.status().as_u16());
        shared.record(entry);
        return response;
    }

    let decision = lock(&shared.faults).decide(endpoint);
    entry.fault = decision.fault;
    entry.latency_ms = decision.latency_ms;
    if let Some(ms) = decision.latency_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    match decision.fault {
        Some(FaultKind::ErrorBeforeCommit { status }) => {
            let response = ApiError::injected(family, status).into_response();
            entry.status = Some(response.status().as_u16());
            shared.record(entry);
            return response;
        }
        Some(FaultKind::RateLimited { retry_after_secs }) => {
            let response = ApiError::rate_limited(family, retry_after_secs).into_response();
            entry.status = Some(response.status().as_u16());
            shared.record(entry);
            return response;
        }
        Some(FaultKind::IndexingLag { ms }) => {
            request.extensions_mut().insert(CreateLag(ms));
        }
        _ => {}
    }
    let killer = request.extensions().get::<ConnectionKiller>().cloned();

    let response = next.run(request).await;
    let handler_status = response.status().as_u16();
    entry.handler_status = Some(handler_status);
    if handler_status >= 500 {
        tracing::warn!(endpoint = %endpoint, status = handler_status, "simulator handler failed");
    }

    match decision.fault {
        Some(FaultKind::ErrorAfterCommit { status }) => {
            let response = ApiError::injected(family, status).into_response();
            entry.status = Some(response.status().as_u16());
            shared.record(entry);
            response
        }
        Some(FaultKind::DropAfterCommit) => {
            entry.outcome = Outcome::Dropped;
            shared.record(entry);
            tracing::debug!(endpoint = %endpoint, "dropping connection after commit");
            match killer {
                Some(killer) => {
                    killer.0.notify_one();
                    // The connection task drops this future with the connection.
                    std::future::pending::<()>().await;
                    StatusCode::INTERNAL_SERVER_ERROR.into_response()
                }
                None => broken_body_response(),
            }
        }
        Some(FaultKind::HangAfterCommit { ms }) => {
            entry.outcome = Outcome::Hung;
            entry.status = Some(handler_status);
            shared.record(entry);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            response
        }
        _ => {
            entry.status = Some(handler_status);
            shared.record(entry);
            response
        }
    }
}

/// Used when the router runs without our connection loop (e.g. under
/// `oneshot`): a response whose body fails, so the caller still gets no
/// usable answer.
fn broken_body_response() -> Response {
    let stream = futures::stream::once(async {
        Err::<bytes::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "connection dropped by fault injection",
        ))
    });
    Response::new(axum::body::Body::from_stream(stream))
}

/// Control API auth (its own credential); control calls are not journaled.
pub(crate) async fn control_middleware(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    if !shared.control_ok(request.headers()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                "Basic realm=\"accloud-sim control\"",
            )],
            axum::Json(serde_json::json!({"code": 401, "message": "Authorization required."})),
        )
            .into_response();
    }
    next.run(request).await
}
