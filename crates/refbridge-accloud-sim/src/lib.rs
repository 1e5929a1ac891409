#![doc = include_str!("../README.md")]

mod app;
mod config;
mod control;
mod error;
mod faults;
mod journal;
mod routes;
mod server;
mod state;
mod util;

use std::sync::Arc;

pub use app::{ControlError, SimHandle};
pub use config::{
    ApiCredential, BasicCredential, ConfigError, Credentials, FirstIds, SeedBranch, SeedClient,
    SeedData, SeedFunder, SeedGroup, SeedServiceCode, SeedSupplier, SimConfig, SimRules,
};
pub use faults::{Endpoint, FaultConfig, FaultKind, FaultProbabilities, ScriptedFault};
pub use journal::{JournalEntry, Outcome};
pub use server::{RunningSim, SimError, Simulator, serve, start, start_on};
pub use state::{
    AttachmentRecord, AuthorizationRecord, AuthorizationRules, ClientRecord, DuplicateEntry,
    DuplicatesReport, FunderBreakdown, ReferralRecord, ServiceRecord, StateSnapshot,
};

/// The simulator's router (ACCloud routes plus `/_sim/`), without binding.
///
/// Under this router alone (e.g. `oneshot`), the drop-after-commit fault
/// answers with a body that fails instead of closing the connection; use
/// [`start`] / [`start_on`] for real connection drops.
pub fn router(handle: SimHandle) -> axum::Router {
    let shared = Arc::clone(&handle.shared);
    routes::api_router(&shared)
        .merge(control::control_router(&shared))
        .fallback(routes::fallback)
        .with_state(shared)
}
