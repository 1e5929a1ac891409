use anyhow::Context;
use tokio::sync::watch;
use tracing::Instrument;

use crate::config::Config;
use crate::runtime;

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    cfg.accloud.chosen_target()?;
    // Before the workers start, so that their first counts are kept.
    refbridge_api::metrics::install();
    let limits = crate::server::Limits::from_settings(&cfg.http);
    if let Some(files) = crate::server::raise_open_file_limit() {
        // Each connection is a file; so are the database pool's, the log's, the store's.
        let needed = limits.max_connections
            + crate::server::SPARE_CONNECTIONS
            + 64
            + cfg.db_max_connections as usize;
        if (files as usize) < needed {
            tracing::warn!(
                open_files = files,
                needed,
                "the open-file limit is below http.max_connections and what else the process holds: lower http.max_connections"
            );
        } else {
            tracing::info!(open_files = files, "open-file limit");
        }
    }
    let state = crate::open_state(&cfg).await?;
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let link = runtime::connect_accloud(&cfg).await?;
    let worker = if cfg.worker.enabled {
        let accloud = runtime::budgeted(&cfg, &state, link.client.clone());
        let engine = runtime::engine(&state, accloud, runtime::engine_config(&cfg));
        let mut rx = stop_rx.clone();
        Some(tokio::spawn(
            async move {
                engine
                    .run(async move {
                        let _ = rx.wait_for(|s| *s).await;
                    })
                    .await;
            }
            .in_current_span(),
        ))
    } else {
        None
    };
    let webhooks = if cfg.worker.enabled {
        let mut rx = stop_rx.clone();
        runtime::spawn_webhooks(&cfg, &state, async move {
            let _ = rx.wait_for(|s| *s).await;
        })?
    } else {
        None
    };
    let listen = if cfg.worker.enabled {
        runtime::spawn_send_listener(&cfg, &state)
    } else {
        None
    };
    let events = runtime::spawn_event_listener(&cfg, &state);
    // Retention ([retention]): idempotency keys, finished sends' steps, unreferenced files.
    let housekeeping = crate::commands::prune::spawn_scheduled(&cfg, &state);
    tracing::info!(addr = %listener.local_addr()?, accloud = %link.base_url, worker = cfg.worker.enabled,
        "refbridge API listening");
    let mut rx = stop_rx.clone();
    crate::serve_with(state, listener, limits, async move {
        tokio::select! {
            () = crate::shutdown_signal() => {},
            _ = rx.wait_for(|s| *s) => {},
        }
    })
    .await?;
    let _ = stop_tx.send(true);
    housekeeping.abort();
    if let Some(w) = worker {
        let _ = w.await;
    }
    if let Some(w) = webhooks {
        let _ = w.await;
    }
    if let Some(l) = listen {
        l.abort();
    }
    if let Some(l) = events {
        l.abort();
    }
    if let Some(sim) = link.simulator {
        sim.shutdown().await;
    }
    Ok(())
}
