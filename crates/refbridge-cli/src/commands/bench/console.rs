//! `refbridge bench console`: the console's inbox and referral pages rendered with many
//! referrals in the store, timed server-side (the router called in process, no socket), next
//! to the same pages on an empty store.
//!
//! The store is filled through `Store::record_intake` (the intake's own transaction: patient,
//! plans, files, status, audit) with the example referral under new ids, names and agency
//! clients; every tenth is denied, so the status filters have something to find.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::http::header;
use refbridge_api::AppState;
use refbridge_domain::intake::{self, RawParts};
use refbridge_domain::{RequestId, form};
use refbridge_storage::{NewFile, NewReferral};
use serde_json::Value;

use super::{
    Latency, PAYLOAD, console_session, get_in_process, ms, referral_identity, request_id,
    scratch_config,
};
use crate::config::Config;

#[derive(Debug, Clone, clap::Args)]
pub struct ConsoleArgs {
    /// Referral requests in the store.
    #[arg(long, default_value_t = 100_000)]
    pub referrals: usize,
    /// Renders timed per page.
    #[arg(long, default_value_t = 200)]
    pub renders: usize,
}

/// Render times of the pages, with the store empty (but for the referral shown) and full.
#[derive(Debug)]
pub struct ConsoleReport {
    pub referrals: usize,
    pub filled_in: Duration,
    pub pages: Vec<(&'static str, Latency, Latency)>,
}

const PAGES: [&str; 4] = [
    "inbox, first page",
    "inbox, denied",
    "inbox, name search",
    "referral page",
];

pub async fn console(cfg: &Config, args: &ConsoleArgs) -> anyhow::Result<ConsoleReport> {
    let empty = timed_pages(cfg, 1, args.renders).await?;
    let full = timed_pages(cfg, args.referrals.max(1), args.renders).await?;
    Ok(ConsoleReport {
        referrals: args.referrals,
        filled_in: full.0,
        pages: PAGES
            .iter()
            .zip(empty.1.into_iter().zip(full.1))
            .map(|(name, (e, f))| (*name, e, f))
            .collect(),
    })
}

/// Fills a scratch store with `n` referrals; the time it took and each page's render times.
async fn timed_pages(
    cfg: &Config,
    n: usize,
    renders: usize,
) -> anyhow::Result<(Duration, Vec<Latency>)> {
    let dir = tempfile::tempdir().context("cannot make a temporary folder")?;
    let cfg = scratch_config(cfg, dir.path());
    let state = crate::open_state(&cfg).await?;
    let started = Instant::now();
    fill(&state, n).await?;
    let filled = started.elapsed();
    let cookie = console_session(&state, "bench-reviewer").await?;
    let app = refbridge_api::app(state.clone());
    let shown = request_id(n / 2);
    let paths = [
        "/console".to_owned(),
        "/console?status=denied".to_owned(),
        format!("/console?q=Bench{}", n / 3),
        format!("/console/referrals/{shown}"),
    ];
    let mut out = Vec::new();
    for path in &paths {
        // Warm the caches the way a reviewer's second look would.
        get_in_process(&app, path, (header::COOKIE, &cookie)).await?;
        let mut times = Vec::with_capacity(renders);
        for _ in 0..renders {
            let t = Instant::now();
            get_in_process(&app, path, (header::COOKIE, &cookie)).await?;
            times.push(t.elapsed());
        }
        out.push(Latency::of(times));
    }
    state.store.close().await;
    Ok((filled, out))
}

/// Records `n` referrals through the intake's transaction; every tenth is then denied.
async fn fill(state: &AppState, n: usize) -> anyhow::Result<()> {
    let base: Value = serde_json::from_str(PAYLOAD).context("the example payload")?;
    let blob = {
        let files = state.files.clone();
        tokio::task::spawn_blocking(move || {
            files.put_base64(b"JVBERi0xLjQKJSBiZW5jaAo=".iter().copied(), 1 << 20)
        })
        .await??
    };
    let blob = state.files.commit(blob).await?;
    for i in 0..n {
        // The intake bench's referral `i`; its files are one small shared body instead.
        let p = referral_identity(&base, i);
        let parts = RawParts {
            request_id: p.get("request_id"),
            agency: p.get("agency"),
            client: p.get("client"),
            form_data: p.get("form_data"),
        };
        let request = intake::validate(parts).map_err(|v| anyhow::anyhow!("the example: {v:?}"))?;
        let parsed = form::parse(&request.fields, Some(&request.client));
        let new = NewReferral {
            request,
            parsed,
            fingerprint: format!("bench-{i}"),
            extra: None,
            files: vec![NewFile {
                name: "referral.pdf".to_owned(),
                blob: blob.clone(),
            }],
            actor: "bench".to_owned(),
        };
        state.store.record_intake(&new).await?;
        if i % 10 == 9 {
            let id = RequestId::parse(&request_id(i))?;
            state
                .store
                .deny_referral(id, "bench", "bench")
                .await
                .map_err(|e| anyhow::anyhow!("deny: {e}"))?;
        }
    }
    Ok(())
}

impl fmt::Display for ConsoleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "console render time, server-side (router in process), {} referrals (filled in {:.0} s) \
             beside an empty store",
            self.referrals,
            self.filled_in.as_secs_f64()
        )?;
        writeln!(
            f,
            "| page | empty p50 | empty p95 | full p50 | full p95 | full p99 | full max |"
        )?;
        writeln!(f, "|---|---|---|---|---|---|---|")?;
        for (name, e, full) in &self.pages {
            writeln!(
                f,
                "| {name} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
                ms(e.p50),
                ms(e.p95),
                ms(full.p50),
                ms(full.p95),
                ms(full.p99),
                ms(full.max)
            )?;
        }
        Ok(())
    }
}
