use refbridge_storage::{Blobs, Store};

/// Limits the API enforces.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body accepted, in bytes (base64 inflates files by a third).
    pub max_body_bytes: usize,
    /// Largest decoded file, in bytes: ACCloud's attachment limit.
    pub max_file_bytes: u64,
    /// What `PUT /v1/patient-plans` does when a request names no `conflict_behavior`.
    pub default_conflict_behavior: refbridge_domain::plan::ConflictBehavior,
    /// Defaults for what an approval leaves out.
    pub approval: refbridge_domain::approval::Defaults,
    /// The console's sessions.
    pub console: crate::console::session::ConsoleSettings,
    /// Where ACCloud calls go, as people read it (the console's operations page).
    pub accloud_target: String,
    /// The ACCloud target is the built-in simulator: every console page says so.
    pub simulated_accloud: bool,
    /// Webhook URLs may name loopback, private and link-local addresses
    /// (`webhooks.allow_private_targets`: tests, on-premises receivers).
    pub webhooks_allow_private_targets: bool,
    /// The longest a `GET /v1/events` long poll waits, whatever its `wait` (at most 30 s).
    pub events_max_wait: std::time::Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 160 * 1024 * 1024,
            max_file_bytes: 50 * 1024 * 1024,
            default_conflict_behavior: refbridge_domain::plan::ConflictBehavior::Replace,
            approval: refbridge_domain::approval::Defaults::default(),
            console: crate::console::session::ConsoleSettings::default(),
            accloud_target: "not configured".to_owned(),
            simulated_accloud: false,
            webhooks_allow_private_targets: false,
            events_max_wait: std::time::Duration::from_secs(30),
        }
    }
}

/// What every handler can reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    /// The file bodies (in the configured blob backend) and this process's working folder.
    pub files: Blobs,
    pub config: ApiConfig,
    /// Wakes the send workers of this process when work is queued.
    pub wake: std::sync::Arc<tokio::sync::Notify>,
}
