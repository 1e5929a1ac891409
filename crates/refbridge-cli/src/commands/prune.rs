//! `refbridge prune [--dry-run]`, and the service's scheduled prune: the retention policy of
//! `[retention]` applied once ([`refbridge_storage::Store::prune`]). What went is logged as
//! counts and ids (referral request ids, blob hashes, event positions), never content.

use std::time::Duration;

use clap::Args;
use refbridge_storage::{Blobs, PruneReport, RetentionPolicy, Store};

use crate::config::Config;

#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    /// Say what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// The lease that keeps the scheduled prune to one process at a time.
const LEASE: &str = "retention";

pub async fn run(cfg: Config, args: PruneArgs) -> anyhow::Result<()> {
    let state = crate::open_state(&cfg).await?;
    let report = state
        .store
        .prune(&state.files, &cfg.retention_policy(), args.dry_run)
        .await?;
    log_report(&report);
    println!("{}", describe(&report));
    state.store.close().await;
    Ok(())
}

/// What a prune did, for people.
pub fn describe(r: &PruneReport) -> String {
    let verb = if r.dry_run { "would remove" } else { "removed" };
    let mut out = format!(
        "{verb}: {} idempotency keys, {} unreferenced file bodies, {} stale scratch files, \
         {} events, {} finished webhook deliveries, {} webhook attempts, {} ended console sessions, \
         {} old sign-in failures; {} {} steps of {} finished sends",
        r.idempotency_keys,
        r.blobs.len(),
        r.scratch_files,
        r.events,
        r.webhook_deliveries,
        r.webhook_attempts,
        r.console_sessions,
        r.sign_in_failures,
        if r.dry_run {
            "would compact"
        } else {
            "compacted"
        },
        r.compacted_steps,
        r.compacted_requests.len(),
    );
    if let Some(p) = r.events_through {
        out.push_str(&format!("\n  events up to position {p}"));
    }
    for h in &r.blobs {
        out.push_str(&format!("\n  blob {h}"));
    }
    for id in &r.compacted_requests {
        out.push_str(&format!("\n  send {id}"));
    }
    out
}

/// Counts what a prune removed (`refbridge_retention_removed_total{kind}`); a dry run
/// removes nothing.
pub fn record_metrics(r: &PruneReport) {
    if r.dry_run {
        return;
    }
    for (kind, n) in [
        ("idempotency_keys", r.idempotency_keys),
        ("compacted_steps", r.compacted_steps),
        ("blobs", r.blobs.len() as u64),
        ("scratch_files", r.scratch_files),
        ("events", r.events),
        ("webhook_deliveries", r.webhook_deliveries),
        ("webhook_attempts", r.webhook_attempts),
        ("console_sessions", r.console_sessions),
        ("sign_in_failures", r.sign_in_failures),
    ] {
        metrics::counter!("refbridge_retention_removed_total", "kind" => kind).increment(n);
    }
}

fn log_report(r: &PruneReport) {
    tracing::info!(
        dry_run = r.dry_run,
        idempotency_keys = r.idempotency_keys,
        blobs = r.blobs.len(),
        blob_hashes = ?r.blobs.iter().map(|h| h.as_str()).collect::<Vec<_>>(),
        scratch_files = r.scratch_files,
        compacted_steps = r.compacted_steps,
        compacted_requests = ?r.compacted_requests,
        events = r.events,
        events_through = r.events_through,
        webhook_deliveries = r.webhook_deliveries,
        webhook_attempts = r.webhook_attempts,
        console_sessions = r.console_sessions,
        sign_in_failures = r.sign_in_failures,
        "retention prune"
    );
}

/// Prunes every `every` while this process holds the retention lease (one process at a
/// time across every process on the database), until aborted.
pub async fn scheduled(
    store: Store,
    blobs: Blobs,
    policy: RetentionPolicy,
    every: Duration,
    owner: String,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Held a little longer than a round, so that a slow prune is not run twice at once.
        match store
            .take_maintenance_lease(LEASE, &owner, every + Duration::from_secs(60))
            .await
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take the retention lease");
                continue;
            }
        }
        match store.prune(&blobs, &policy, false).await {
            Ok(r) => {
                log_report(&r);
                record_metrics(&r);
            }
            Err(e) => tracing::warn!(error = %e, "retention prune failed"),
        }
    }
}

/// Starts [`scheduled`] for this process.
pub fn spawn_scheduled(
    cfg: &Config,
    state: &refbridge_api::AppState,
) -> tokio::task::JoinHandle<()> {
    use tracing::Instrument;
    // In the caller's span: against the simulator, every line says so.
    tokio::spawn(
        scheduled(
            state.store.clone(),
            state.files.clone(),
            cfg.retention_policy(),
            Duration::from_secs(cfg.retention.every_secs),
            crate::runtime::engine_config(cfg).owner,
        )
        .in_current_span(),
    )
}
