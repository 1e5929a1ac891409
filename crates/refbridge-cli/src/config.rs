//! Configuration, layered: the built-in defaults (`config/default.toml`, which documents every
//! key), then an optional TOML file, then `REFBRIDGE_*` environment variables (nested keys
//! joined with `__`). Later layers win. Checked once at start-up; an error names the key.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub const DEFAULTS: &str = include_str!("../../../config/default.toml");

/// `REFBRIDGE_*` variables that are not settings: the `--config` flag's variable, the test
/// harness's (`REFBRIDGE_TEST_*`) and `scripts/start-postgres.sh`'s (`REFBRIDGE_PG_*`).
const NOT_SETTINGS: [&str; 3] = ["config", "test_", "pg_"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: String,
    pub database_url: DatabaseUrl,
    pub files_dir: PathBuf,
    pub max_body_bytes: usize,
    pub max_file_bytes: u64,
    pub db_max_connections: u32,
    /// The longest a `GET /v1/events` long poll waits (at most 30).
    pub events_max_wait_secs: u64,
    pub default_conflict_behavior: refbridge_domain::plan::ConflictBehavior,
    pub log: LogConfig,
    pub http: HttpSettings,
    pub accloud: AcCloudSettings,
    pub worker: WorkerSettings,
    pub approval: refbridge_domain::approval::Defaults,
    pub console: ConsoleConfig,
    pub blobs: BlobSettings,
    pub retention: RetentionSettings,
    pub webhooks: WebhookSettings,
}

/// Webhook delivery (`refbridge_saga::webhooks`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    pub enabled: bool,
    pub concurrency: usize,
    pub request_timeout_ms: u64,
    pub lease_secs: u64,
    pub poll_interval_ms: u64,
    pub retry_base_ms: u64,
    pub retry_cap_ms: u64,
    pub disable_after_secs: u64,
    pub allow_private_targets: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    pub idle_timeout_secs: u64,
    pub absolute_timeout_secs: u64,
    pub secure_cookies: bool,
}

impl ConsoleConfig {
    pub fn settings(&self) -> refbridge_api::console::session::ConsoleSettings {
        refbridge_api::console::session::ConsoleSettings {
            limits: refbridge_storage::SessionLimits {
                idle: std::time::Duration::from_secs(self.idle_timeout_secs),
                absolute: std::time::Duration::from_secs(self.absolute_timeout_secs),
            },
            secure_cookies: self.secure_cookies,
        }
    }
}

/// Where file bodies live (`[blobs]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobSettings {
    pub backend: BlobBackendKind,
    pub s3: S3Settings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobBackendKind {
    Auto,
    Folder,
    Postgres,
    S3,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    pub bucket: String,
    pub prefix: String,
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub allow_http: bool,
}

impl BlobSettings {
    /// The storage crate's view of these settings.
    pub fn target(&self) -> refbridge_storage::BlobTarget {
        use refbridge_storage::BlobTarget;
        match self.backend {
            BlobBackendKind::Auto => BlobTarget::Auto,
            BlobBackendKind::Folder => BlobTarget::Folder,
            BlobBackendKind::Postgres => BlobTarget::Postgres,
            BlobBackendKind::S3 => {
                let s = &self.s3;
                BlobTarget::S3(refbridge_storage::S3Config {
                    bucket: s.bucket.clone(),
                    prefix: s.prefix.clone(),
                    endpoint: s.endpoint.clone(),
                    region: s.region.clone(),
                    access_key_id: s.access_key_id.clone(),
                    secret_access_key: s.secret_access_key.expose().to_owned(),
                    allow_http: s.allow_http,
                })
            }
        }
    }
}

/// How long each kind of data is kept (`[retention]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    pub every_secs: u64,
    pub idempotency_key_hours: u64,
    pub step_payload_days: u64,
    pub unreferenced_blob_hours: u64,
    pub event_days: u64,
    pub webhook_attempt_days: u64,
}

impl Config {
    /// The retention policy: `[retention]`, with the console's session limits and sign-in
    /// throttling window (what ends a session, and how long a failed sign-in counts).
    pub fn retention_policy(&self) -> refbridge_storage::RetentionPolicy {
        use std::time::Duration;
        let r = &self.retention;
        let days = |d: u64| (d > 0).then(|| Duration::from_secs(d * 86_400));
        refbridge_storage::RetentionPolicy {
            idempotency_keys: Duration::from_secs(r.idempotency_key_hours * 3600),
            step_payloads: days(r.step_payload_days),
            unreferenced_blobs: Duration::from_secs(r.unreferenced_blob_hours * 3600),
            events: days(r.event_days),
            webhook_attempts: days(r.webhook_attempt_days),
            console_sessions: self.console.settings().limits,
            sign_in_failures: refbridge_api::console::session::FAILURE_WINDOW,
        }
    }
}

/// How the HTTP server treats slow, idle and numerous clients (`crate::server`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub header_read_timeout_ms: u64,
    pub body_read_timeout_ms: u64,
    pub max_connections: usize,
    pub keep_alive_max_requests: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcCloudSettings {
    /// `None` until the configuration chooses one ([`AcCloudSettings::chosen_target`]).
    #[serde(default)]
    pub target: Option<AcCloudTarget>,
    pub url: String,
    pub api_key: Secret,
    pub api_secret: Secret,
    pub hq_branch_id: i64,
    pub csi_group: String,
    pub attachments_folder: String,
    pub request_timeout_ms: u64,
    pub simulator_listen: String,
    /// ACCloud calls per second across every process sharing the database; 0 = unlimited.
    pub max_requests_per_second: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AcCloudTarget {
    Simulator,
    Dev,
    Qa,
    Uat,
    Prod,
    Url,
}

/// How to choose a target, said when none is.
pub const CHOOSE_TARGET: &str = "no ACCloud target is chosen: set accloud.target (or \
REFBRIDGE_ACCLOUD__TARGET) to \"simulator\" for the built-in simulator (nothing reaches \
ACCloud), to \"dev\", \"qa\", \"uat\" or \"prod\" with accloud.api_key and accloud.api_secret, or \
to \"url\" with accloud.url; `refbridge demo` runs against the simulator without it";

impl AcCloudSettings {
    /// The target `serve` and `worker` send to; an error saying how to choose one when none is.
    pub fn chosen_target(&self) -> anyhow::Result<AcCloudTarget> {
        self.target.ok_or_else(|| anyhow::anyhow!(CHOOSE_TARGET))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    pub enabled: bool,
    pub concurrency: usize,
    pub lease_secs: u64,
    pub settle_delay_ms: u64,
    pub poll_interval_ms: u64,
    pub max_attempts: u32,
    pub agency_check_secs: u64,
    pub agency_check_batch: usize,
    pub trusted_network_secs: u64,
}

/// A secret setting: never printed.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(SecretString);

impl Secret {
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.expose().is_empty() {
            "\"\""
        } else {
            "[redacted]"
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// A database URL, whose password never reaches `Debug` output or logs.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(SecretString);

impl DatabaseUrl {
    pub fn new(url: String) -> Self {
        Self(SecretString::from(url))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.expose();
        // scheme://user:password@host/...: keep everything but the password.
        let redacted = match (url.find("://"), url.rfind('@')) {
            (Some(s), Some(at)) if at > s => {
                let creds = &url[s + 3..at];
                let user = creds.split(':').next().unwrap_or_default();
                format!("{}{user}:[redacted]{}", &url[..s + 3], &url[at..])
            }
            _ => url.to_owned(),
        };
        f.write_str(&redacted)
    }
}

#[derive(Debug)]
pub enum ConfigError {
    Load(Box<figment::Error>),
    Invalid { key: &'static str, problem: String },
}

impl std::error::Error for ConfigError {}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Load(e) => write!(f, "configuration: {e}"),
            ConfigError::Invalid { key, problem } => {
                write!(f, "configuration key {key}: {problem}")
            }
        }
    }
}

impl Config {
    /// The layered figment, exposed for tests.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut fig = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = file {
            fig = fig.merge(Toml::file_exact(path));
        }
        fig.merge(
            Env::prefixed("REFBRIDGE_")
                .filter(|key| {
                    let key = key.as_str().to_ascii_lowercase();
                    !NOT_SETTINGS.iter().any(|p| key.starts_with(p))
                })
                .split("__"),
        )
    }

    /// Loads and checks the configuration.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::from_figment(Self::figment(file))
    }

    pub fn from_figment(fig: Figment) -> Result<Config, ConfigError> {
        let cfg: Config = fig.extract().map_err(|e| ConfigError::Load(Box::new(e)))?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |key, problem: &str| {
            Err(ConfigError::Invalid {
                key,
                problem: problem.to_owned(),
            })
        };
        if self.listen_addr().is_none() {
            return bad(
                "listen",
                "must be an address and port such as 127.0.0.1:8080",
            );
        }
        if refbridge_storage::Backend::of_url(self.database_url.expose()).is_none() {
            return bad("database_url", "must start with sqlite: or postgres:");
        }
        if self.max_file_bytes == 0 {
            return bad("max_file_bytes", "must be more than 0");
        }
        if (self.max_body_bytes as u64) < self.max_file_bytes {
            return bad("max_body_bytes", "must be at least max_file_bytes");
        }
        if self.db_max_connections == 0 {
            return bad("db_max_connections", "must be at least 1");
        }
        let h = &self.http;
        if h.header_read_timeout_ms == 0 {
            return bad("http.header_read_timeout_ms", "must be more than 0");
        }
        if h.body_read_timeout_ms == 0 {
            return bad("http.body_read_timeout_ms", "must be more than 0");
        }
        if h.max_connections == 0 {
            return bad("http.max_connections", "must be at least 1");
        }
        if h.keep_alive_max_requests == 0 {
            return bad("http.keep_alive_max_requests", "must be at least 1");
        }
        let a = &self.accloud;
        if a.target == Some(AcCloudTarget::Url) && a.url.trim().is_empty() {
            return bad("accloud.url", "must be set when accloud.target is url");
        }
        if a.target.is_some_and(|t| t != AcCloudTarget::Simulator)
            && (a.api_key.expose().is_empty() || a.api_secret.expose().is_empty())
        {
            return bad(
                "accloud.api_key",
                "and accloud.api_secret must be set for a real ACCloud",
            );
        }
        if a.request_timeout_ms == 0 {
            return bad("accloud.request_timeout_ms", "must be more than 0");
        }
        let w = &self.worker;
        if w.concurrency == 0 {
            return bad("worker.concurrency", "must be at least 1");
        }
        if w.settle_delay_ms <= a.request_timeout_ms {
            return bad(
                "worker.settle_delay_ms",
                "must be longer than accloud.request_timeout_ms",
            );
        }
        if self.events_max_wait_secs > 30 {
            return bad("events_max_wait_secs", "must be at most 30");
        }
        if w.lease_secs < 3 {
            return bad(
                "worker.lease_secs",
                "must be at least 3 (a lease is renewed every third of it)",
            );
        }
        if self.console.idle_timeout_secs == 0
            || self.console.absolute_timeout_secs < self.console.idle_timeout_secs
        {
            return bad(
                "console.idle_timeout_secs",
                "must be at least 1 and at most console.absolute_timeout_secs",
            );
        }
        if w.max_attempts == 0 {
            return bad("worker.max_attempts", "must be at least 1");
        }
        if w.agency_check_secs > 0 && w.agency_check_batch == 0 {
            return bad(
                "worker.agency_check_batch",
                "must be at least 1 while agency checks are on",
            );
        }
        if self.blobs.backend == BlobBackendKind::S3 && self.blobs.s3.bucket.trim().is_empty() {
            return bad("blobs.s3.bucket", "must be set when blobs.backend is s3");
        }
        if self.blobs.backend == BlobBackendKind::Postgres
            && refbridge_storage::Backend::of_url(self.database_url.expose())
                != Some(refbridge_storage::Backend::Postgres)
        {
            return bad(
                "blobs.backend",
                "postgres needs a postgres: database_url (use auto or folder on SQLite)",
            );
        }
        let r = &self.retention;
        if r.every_secs == 0 {
            return bad("retention.every_secs", "must be at least 1");
        }
        if r.idempotency_key_hours < 24 {
            return bad(
                "retention.idempotency_key_hours",
                "must be at least 24 (keys are replayed for 24 hours)",
            );
        }
        if r.unreferenced_blob_hours < 2 {
            return bad(
                "retention.unreferenced_blob_hours",
                "must be at least 2 (an intake in flight must keep its files)",
            );
        }
        let wh = &self.webhooks;
        if wh.concurrency == 0 {
            return bad("webhooks.concurrency", "must be at least 1");
        }
        if wh.request_timeout_ms == 0 {
            return bad("webhooks.request_timeout_ms", "must be more than 0");
        }
        if wh.lease_secs * 1000 <= wh.request_timeout_ms {
            return bad(
                "webhooks.lease_secs",
                "must be longer than webhooks.request_timeout_ms",
            );
        }
        if wh.retry_base_ms == 0 || wh.retry_cap_ms < wh.retry_base_ms {
            return bad(
                "webhooks.retry_base_ms",
                "must be at least 1 and at most webhooks.retry_cap_ms",
            );
        }
        if wh.disable_after_secs == 0 {
            return bad("webhooks.disable_after_secs", "must be more than 0");
        }
        if self.approval.first_day_of_week > 6 {
            return bad(
                "approval.first_day_of_week",
                "must be 0 (Monday) to 6 (Sunday)",
            );
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }
}

// figment::Jail's closure returns figment's large error type: its signature, not ours.
#[cfg(test)]
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn defaults_alone_are_valid() {
        Jail::expect_with(|_jail| {
            let cfg = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(cfg.listen, "127.0.0.1:8080");
            assert!(cfg.database_url.expose().starts_with("sqlite:"));
            assert_eq!(cfg.max_file_bytes, 50 * 1024 * 1024);
            Ok(())
        });
    }

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "listen = \"127.0.0.1:9000\"\nfiles_dir = \"/tmp/f\"\n[log]\nformat = \"json\"\n",
            )?;
            let cfg = Config::load(Some(Path::new("c.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(cfg.listen, "127.0.0.1:9000");
            assert_eq!(cfg.log.format, LogFormat::Json);

            jail.set_env("REFBRIDGE_LISTEN", "127.0.0.1:9100");
            jail.set_env("REFBRIDGE_LOG__FORMAT", "pretty");
            let cfg = Config::load(Some(Path::new("c.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(cfg.listen, "127.0.0.1:9100");
            assert_eq!(cfg.log.format, LogFormat::Pretty);
            assert_eq!(cfg.files_dir, PathBuf::from("/tmp/f"));
            Ok(())
        });
    }

    #[test]
    fn test_harness_and_flag_variables_are_not_settings() {
        Jail::expect_with(|jail| {
            jail.set_env("REFBRIDGE_TEST_DATABASE", "postgres");
            jail.set_env("REFBRIDGE_PG_DIR", "/tmp/x");
            jail.set_env("REFBRIDGE_CONFIG", "c.toml");
            jail.set_env("REFBRIDGE_ACCLOUD__MAX_REQUESTS_PER_SECOND", "20");
            let cfg = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(cfg.accloud.max_requests_per_second, 20);
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_their_key() {
        Jail::expect_with(|jail| {
            jail.set_env("REFBRIDGE_LISTEN", "not an address");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("listen"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("REFBRIDGE_DATABASE_URL", "mysql://x");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("database_url"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("REFBRIDGE_LISTEN_PORT", "1");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("listen_port"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn http_limits_have_defaults_and_are_checked() {
        Jail::expect_with(|jail| {
            let cfg = Config::load(None).map_err(|e| e.to_string())?;
            let limits = crate::server::Limits::from_settings(&cfg.http);
            let built_in = crate::server::Limits::default();
            assert_eq!(limits.header_read_timeout, built_in.header_read_timeout);
            assert_eq!(limits.body_read_timeout, built_in.body_read_timeout);
            assert_eq!(limits.max_connections, built_in.max_connections);
            assert_eq!(
                limits.keep_alive_max_requests,
                built_in.keep_alive_max_requests
            );
            jail.set_env("REFBRIDGE_HTTP__MAX_CONNECTIONS", "50");
            let cfg = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(cfg.http.max_connections, 50);
            jail.set_env("REFBRIDGE_HTTP__BODY_READ_TIMEOUT_MS", "0");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("http.body_read_timeout_ms"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn webhook_settings_have_defaults_and_private_targets_are_allowed_by_env() {
        Jail::expect_with(|jail| {
            let cfg = Config::load(None).map_err(|e| e.to_string())?;
            assert!(!cfg.webhooks.allow_private_targets);
            assert_eq!(cfg.webhooks.disable_after_secs, 86400);
            jail.set_env("REFBRIDGE_WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true");
            let cfg = Config::load(None).map_err(|e| e.to_string())?;
            assert!(cfg.webhooks.allow_private_targets);
            jail.set_env("REFBRIDGE_WEBHOOKS__LEASE_SECS", "1");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("webhooks.lease_secs"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn debug_redacts_the_database_password() {
        Jail::expect_with(|jail| {
            jail.set_env(
                "REFBRIDGE_DATABASE_URL",
                "postgres://app:hunter2@db:5432/refbridge",
            );
            let cfg = Config::load(None).map_err(|e| e.to_string())?;
            let shown = format!("{cfg:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(
                shown.contains("postgres://app:[redacted]@db:5432/refbridge"),
                "{shown}"
            );
            Ok(())
        });
    }

    #[test]
    fn blob_and_retention_settings_are_read_checked_and_redacted() {
        Jail::expect_with(|jail| {
            let cfg = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(cfg.blobs.target(), refbridge_storage::BlobTarget::Auto);
            assert_eq!(
                cfg.retention_policy(),
                refbridge_storage::RetentionPolicy::default()
            );
            jail.set_env("REFBRIDGE_BLOBS__BACKEND", "s3");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("blobs.s3.bucket"), "{err}");
            jail.set_env("REFBRIDGE_BLOBS__S3__BUCKET", "b");
            jail.set_env("REFBRIDGE_BLOBS__S3__SECRET_ACCESS_KEY", "s3-hunter2");
            let cfg = Config::load(None).map_err(|e| e.to_string())?;
            let shown = format!("{cfg:?} {:?}", cfg.blobs.target());
            assert!(!shown.contains("s3-hunter2"), "{shown}");
            assert!(
                matches!(cfg.blobs.target(), refbridge_storage::BlobTarget::S3(c) if c.secret_access_key == "s3-hunter2")
            );
            jail.set_env("REFBRIDGE_BLOBS__BACKEND", "postgres");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("blobs.backend"), "{err}");
            jail.set_env("REFBRIDGE_BLOBS__BACKEND", "auto");
            jail.set_env("REFBRIDGE_RETENTION__EVENT_DAYS", "0");
            jail.set_env("REFBRIDGE_RETENTION__WEBHOOK_ATTEMPT_DAYS", "7");
            let policy = Config::load(None)
                .map_err(|e| e.to_string())?
                .retention_policy();
            assert_eq!(policy.events, None, "0 keeps events for ever");
            assert_eq!(
                policy.webhook_attempts,
                Some(std::time::Duration::from_secs(7 * 86_400))
            );
            jail.set_env("REFBRIDGE_RETENTION__UNREFERENCED_BLOB_HOURS", "1");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("retention.unreferenced_blob_hours"), "{err}");
            Ok(())
        });
    }
}
