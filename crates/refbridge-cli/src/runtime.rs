//! Wiring: the ACCloud connection (a real tenant, or the built-in simulator) and the send
//! engine, from the configuration.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use refbridge_accloud::{AcCloud, AcCloudConfig, AcCloudEnv, HttpAcCloud, SecretString};
use refbridge_accloud_sim::{RunningSim, SimConfig};
use refbridge_api::AppState;
use refbridge_saga::{Deliverer, DeliveryConfig, Engine, EngineConfig, RetryPolicy};

use refbridge_storage::Backend;

use crate::config::{AcCloudTarget, Config};
use crate::rate_budget::{ACCLOUD_BUDGET, Budget, RateBudgeted};
use tracing::Instrument;

/// The ACCloud this process talks to, and the simulator behind it when there is one.
pub struct AcCloudLink {
    pub client: Arc<dyn AcCloud>,
    pub simulator: Option<RunningSim>,
    pub base_url: String,
}

/// Where ACCloud calls go, as people read it.
pub fn describe_target(cfg: &Config) -> String {
    let a = &cfg.accloud;
    let Some(target) = a.target else {
        return "not chosen".to_owned();
    };
    match target {
        AcCloudTarget::Simulator => "the built-in simulator (nothing reaches ACCloud)".to_owned(),
        AcCloudTarget::Dev => format!("dev ({})", AcCloudEnv::Dev.base_url()),
        AcCloudTarget::Qa => format!("qa ({})", AcCloudEnv::Qa.base_url()),
        AcCloudTarget::Uat => format!("uat ({})", AcCloudEnv::Uat.base_url()),
        AcCloudTarget::Prod => format!("prod ({})", AcCloudEnv::Prod.base_url()),
        AcCloudTarget::Url => a.url.clone(),
    }
}

/// Connects to the configured ACCloud; for `target = "simulator"`, starts one first.
pub async fn connect_accloud(cfg: &Config) -> anyhow::Result<AcCloudLink> {
    let a = &cfg.accloud;
    let timeout = Duration::from_millis(a.request_timeout_ms);
    let (base_url, key, secret, simulator) = match a.chosen_target()? {
        AcCloudTarget::Simulator => {
            let sim_cfg = SimConfig::default();
            let cred = sim_cfg
                .credentials
                .api
                .first()
                .cloned()
                .context("the simulator has no API credential")?;
            let listener = tokio::net::TcpListener::bind(&a.simulator_listen)
                .await
                .with_context(|| {
                    format!("cannot listen on {} for the simulator", a.simulator_listen)
                })?;
            let sim = refbridge_accloud_sim::start_on(listener, sim_cfg, std::future::pending())
                .await
                .context("cannot start the ACCloud simulator")?;
            tracing::info!(url = %sim.base_url(), "built-in ACCloud simulator started");
            (sim.base_url(), cred.key, cred.secret, Some(sim))
        }
        target => {
            let url = match target {
                AcCloudTarget::Dev => AcCloudEnv::Dev.base_url().to_owned(),
                AcCloudTarget::Qa => AcCloudEnv::Qa.base_url().to_owned(),
                AcCloudTarget::Uat => AcCloudEnv::Uat.base_url().to_owned(),
                AcCloudTarget::Prod => AcCloudEnv::Prod.base_url().to_owned(),
                _ => a.url.clone(),
            };
            (
                url,
                a.api_key.expose().to_owned(),
                a.api_secret.expose().to_owned(),
                None,
            )
        }
    };
    let mut config = AcCloudConfig::new(
        &base_url,
        SecretString::from(key),
        SecretString::from(secret),
    )
    .map_err(|e| anyhow::anyhow!("accloud: {e}"))?;
    config.timeout = timeout;
    let client = HttpAcCloud::new(config).map_err(|e| anyhow::anyhow!("accloud: {e}"))?;
    Ok(AcCloudLink {
        client: Arc::new(client),
        simulator,
        base_url,
    })
}

/// The engine's settings from the configuration.
pub fn engine_config(cfg: &Config) -> EngineConfig {
    let w = &cfg.worker;
    let a = &cfg.accloud;
    EngineConfig {
        owner: format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "refbridge".into()),
            std::process::id()
        ),
        lease: Duration::from_secs(w.lease_secs),
        request_timeout: Duration::from_millis(a.request_timeout_ms),
        settle_delay: Duration::from_millis(w.settle_delay_ms),
        poll_interval: Duration::from_millis(w.poll_interval_ms),
        concurrency: w.concurrency,
        retry: RetryPolicy {
            max_attempts: w.max_attempts,
            ..RetryPolicy::default()
        },
        hq_branch_id: a.hq_branch_id,
        csi_group: a.csi_group.clone(),
        attachments_folder: a.attachments_folder.clone(),
        agency_check_every: (w.agency_check_secs > 0)
            .then(|| Duration::from_secs(w.agency_check_secs)),
        agency_check_batch: w.agency_check_batch,
        trusted_network_every: (w.trusted_network_secs > 0)
            .then(|| Duration::from_secs(w.trusted_network_secs)),
    }
}

/// `client` behind the ACCloud rate budget every process on this database shares
/// (`accloud.max_requests_per_second`, and any process's `Retry-After`).
pub fn budgeted(cfg: &Config, state: &AppState, client: Arc<dyn AcCloud>) -> Arc<dyn AcCloud> {
    Arc::new(RateBudgeted::new(
        client,
        Budget::new(
            state.store.clone(),
            ACCLOUD_BUDGET,
            cfg.accloud.max_requests_per_second,
        ),
    ))
}

/// On PostgreSQL, a task that wakes this process's workers when any process queues a send
/// (`LISTEN refbridge_send`); `None` on SQLite, where the API wakes them directly. Polling
/// (`worker.poll_interval_ms`) stays the fallback.
pub fn spawn_send_listener(cfg: &Config, state: &AppState) -> Option<tokio::task::JoinHandle<()>> {
    (state.store.backend() == Backend::Postgres).then(|| {
        tokio::spawn(
            refbridge_storage::listen_for_sends(
                cfg.database_url.expose().to_owned(),
                state.wake.clone(),
            )
            .in_current_span(),
        )
    })
}

/// On PostgreSQL, a task that wakes this process's feed readers and webhook worker when any
/// process commits or positions an event (`LISTEN refbridge_event`); `None` on SQLite, where
/// they poll.
pub fn spawn_event_listener(cfg: &Config, state: &AppState) -> Option<tokio::task::JoinHandle<()>> {
    (state.store.backend() == Backend::Postgres).then(|| {
        tokio::spawn(
            refbridge_storage::listen_for_events(
                cfg.database_url.expose().to_owned(),
                state.store.event_signal().clone(),
            )
            .in_current_span(),
        )
    })
}

/// The send engine over the app's store, woken by the API's wake handle.
pub fn engine(state: &AppState, accloud: Arc<dyn AcCloud>, cfg: EngineConfig) -> Arc<Engine> {
    Arc::new(
        Engine::new(state.store.clone(), state.files.clone(), accloud, cfg)
            .with_wake_handle(state.wake.clone()),
    )
}

/// The webhook worker's settings from the configuration.
pub fn delivery_config(cfg: &Config) -> DeliveryConfig {
    let w = &cfg.webhooks;
    DeliveryConfig {
        owner: format!(
            "{}-{}-webhooks",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "refbridge".into()),
            std::process::id()
        ),
        concurrency: w.concurrency,
        request_timeout: Duration::from_millis(w.request_timeout_ms),
        lease: Duration::from_secs(w.lease_secs),
        poll_interval: Duration::from_millis(w.poll_interval_ms),
        retry: RetryPolicy {
            base: Duration::from_millis(w.retry_base_ms),
            cap: Duration::from_millis(w.retry_cap_ms),
            max_attempts: u32::MAX,
        },
        disable_after: Duration::from_secs(w.disable_after_secs),
        allow_private_targets: w.allow_private_targets,
        ..DeliveryConfig::default()
    }
}

/// Starts the webhook worker (the event sequencer and the deliveries) when
/// `webhooks.enabled`, until `shutdown` completes.
pub fn spawn_webhooks(
    cfg: &Config,
    state: &AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    if !cfg.webhooks.enabled {
        return Ok(None);
    }
    let deliverer = Arc::new(
        Deliverer::new(state.store.clone(), delivery_config(cfg))
            .context("cannot build the webhook HTTP client")?,
    );
    Ok(Some(tokio::spawn(
        deliverer.run(shutdown).in_current_span(),
    )))
}
