#![doc = include_str!("../README.md")]

pub mod commands;
pub mod config;
pub mod rate_budget;
pub mod runtime;
pub mod server;
pub mod telemetry;

use std::future::Future;

use anyhow::Context;
use refbridge_api::{ApiConfig, AppState};
use refbridge_storage::{Blobs, FileStore, Store, StoreOptions};

use crate::config::Config;

/// Opens the store (migrating it) and the blob store from the configuration.
pub async fn open_state(cfg: &Config) -> anyhow::Result<AppState> {
    let options = StoreOptions {
        max_connections: cfg.db_max_connections,
        ..StoreOptions::default()
    };
    let store = Store::open(cfg.database_url.expose(), &options).await?;
    let files = open_blobs(cfg, &store)?;
    files.check().await?;
    Ok(AppState {
        store,
        files,
        config: ApiConfig {
            max_body_bytes: cfg.max_body_bytes,
            max_file_bytes: cfg.max_file_bytes,
            default_conflict_behavior: cfg.default_conflict_behavior,
            approval: cfg.approval.clone(),
            console: cfg.console.settings(),
            accloud_target: crate::runtime::describe_target(cfg),
            simulated_accloud: cfg.accloud.target == Some(crate::config::AcCloudTarget::Simulator),
            webhooks_allow_private_targets: cfg.webhooks.allow_private_targets,
            events_max_wait: std::time::Duration::from_secs(cfg.events_max_wait_secs),
        },
        wake: Default::default(),
    })
}

/// The configured blob backend, with `files_dir` as this process's working folder.
pub fn open_blobs(cfg: &Config, store: &Store) -> anyhow::Result<Blobs> {
    let local = FileStore::open(&cfg.files_dir)
        .with_context(|| format!("files_dir {}", cfg.files_dir.display()))?;
    let blobs = Blobs::open(&cfg.blobs.target(), local, store)?;
    tracing::debug!(backend = blobs.backend_name(), "blob store");
    Ok(blobs)
}

/// Serves the API on `listener` until `shutdown` completes, then drains open requests;
/// under the built-in HTTP limits.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(state, listener, server::Limits::default(), shutdown).await
}

/// [`serve`] under `limits` (`[http]` of the configuration).
pub async fn serve_with(
    state: AppState,
    listener: tokio::net::TcpListener,
    limits: server::Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(refbridge_api::app(state), listener, limits, shutdown).await
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
