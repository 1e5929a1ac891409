use crate::config::{AcCloudTarget, Config};
use crate::runtime;

/// Runs send workers alone, against a shared database and a real (or separately run) ACCloud.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    if cfg.accloud.chosen_target()? == AcCloudTarget::Simulator {
        anyhow::bail!(
            "accloud.target is simulator: a worker on its own needs a shared ACCloud \
             (run `refbridge sim` and set accloud.target = \"url\" with its accloud.url)"
        );
    }
    let state = crate::open_state(&cfg).await?;
    let link = runtime::connect_accloud(&cfg).await?;
    let accloud = runtime::budgeted(&cfg, &state, link.client);
    let engine = runtime::engine(&state, accloud, runtime::engine_config(&cfg));
    let listen = runtime::spawn_send_listener(&cfg, &state);
    let events = runtime::spawn_event_listener(&cfg, &state);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut rx = stop_rx.clone();
    let webhooks = runtime::spawn_webhooks(&cfg, &state, async move {
        let _ = rx.wait_for(|s| *s).await;
    })?;
    let housekeeping = crate::commands::prune::spawn_scheduled(&cfg, &state);
    engine.run(crate::shutdown_signal()).await;
    housekeeping.abort();
    let _ = stop_tx.send(true);
    if let Some(w) = webhooks {
        let _ = w.await;
    }
    if let Some(l) = listen {
        l.abort();
    }
    if let Some(l) = events {
        l.abort();
    }
    Ok(())
}
