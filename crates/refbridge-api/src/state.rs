use refbridge_storage::{FileStore, Store};

/// Limits the API enforces.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body accepted, in bytes (base64 inflates files by a third).
    pub max_body_bytes: usize,
    /// Largest decoded file, in bytes: ACCloud's attachment limit.
    pub max_file_bytes: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 160 * 1024 * 1024,
            max_file_bytes: 50 * 1024 * 1024,
        }
    }
}

/// What every handler can reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub files: FileStore,
    pub config: ApiConfig,
}
