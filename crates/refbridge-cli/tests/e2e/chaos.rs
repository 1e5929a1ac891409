//! The chaos test: many approvals, mixed faults on every endpoint, workers killed and
//! restarted; every referral must end sent, with one object per natural key in ACCloud.
//!
//! `CHAOS_APPROVALS` sets the number of approvals (default 40, the CI form);
//! `scripts/chaos.sh` runs 200.

use std::time::{Duration, Instant};

use refbridge_accloud_sim::{FaultConfig, FaultProbabilities, SimConfig};

use crate::helpers::{sample_terms, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_approvals_with_faults_and_killed_workers_all_end_sent_exactly_once() {
    let n: usize = std::env::var("CHAOS_APPROVALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let faults = FaultConfig {
        default: FaultProbabilities {
            latency: 0.10,
            latency_min_ms: 5,
            latency_max_ms: 40,
            error_before_commit: 0.02,
            error_after_commit: 0.03,
            drop_after_commit: 0.03,
            hang_after_commit: 0.02,
            hang_ms: 1500,
            rate_limited: 0.03,
            retry_after_secs: 1,
            indexing_lag: 0.03,
            indexing_lag_ms: 600,
            ..FaultProbabilities::default()
        },
        ..FaultConfig::none()
    };
    let sim_cfg = SimConfig {
        faults,
        rng_seed: seed,
        ..SimConfig::default()
    };
    let mut app = spawn_app_with(sim_cfg, false).await;
    let mut generation = 0;
    for w in ["worker-a", "worker-b"] {
        let e = app.engine(w);
        app.start_worker(e);
    }

    let ids: Vec<String> = (0..n)
        .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let mut p = app.payload(id, 10_000 + i as i64);
        p["client"]["last_name"] = serde_json::json!(format!("Chaos{i}"));
        app.post_referral(&p).await;
        let (s, b) = app.approve(id, &sample_terms()).await;
        assert_eq!(s, 202, "{b}");
    }

    // Kill every worker several times while the sends are under way.
    let start = Instant::now();
    let mut kills = until_all_sent(&mut app, &ids, 6, &mut generation).await;
    let dups = app.sim().duplicates();
    assert!(dups.is_empty(), "duplicates: {dups:?}");
    let s = app.sim().state();
    assert_eq!(s.clients.len(), n);
    assert_eq!(s.services.len(), n);
    assert_eq!(s.authorizations.iter().filter(|a| !a.deleted).count(), n);
    assert_eq!(s.referrals.len(), n);
    assert_eq!(s.attachments.len(), n);

    // New documents for every fourth referral, two of one name and size, under the same
    // faults and kills; then the same documents again (a caller's retry): nothing more.
    let with_docs: Vec<&String> = ids.iter().step_by(4).collect();
    let docs = |id: &str| {
        vec![
            ("scan.pdf", format!("%PDF-1.4 one {id}").into_bytes()),
            ("scan.pdf", format!("%PDF-1.4 two {id}").into_bytes()),
        ]
    };
    for id in &with_docs {
        let (s, b) = app.post_documents(id, &docs(id)).await;
        assert_eq!(s, 202, "{b}");
    }
    kills += until_all_sent(&mut app, &ids, 2, &mut generation).await;
    for id in &with_docs {
        let (s, b) = app.post_documents(id, &docs(id)).await;
        assert_eq!((s, &b["changed"]), (200, &serde_json::json!(false)), "{b}");
    }
    let dups = app.sim().duplicates();
    assert!(dups.is_empty(), "duplicates after documents: {dups:?}");
    assert_eq!(app.sim().state().attachments.len(), n + 2 * with_docs.len());
    assert_eq!(app.state.store.count_unfinished_sends().await.unwrap(), 0);
    let faulted = app
        .sim()
        .journal()
        .iter()
        .filter(|j| j.fault.is_some())
        .count();
    println!(
        "chaos: {n} approvals sent exactly once; {faulted} faulted calls; {kills} kills; {:?}",
        start.elapsed()
    );
    assert!(faulted > 0, "faults were injected");
}

/// Waits until every referral is sent, killing and restarting the workers up to `kills`
/// times on the way; returns how many times it killed them.
async fn until_all_sent(
    app: &mut crate::helpers::TestApp,
    ids: &[String],
    kills: usize,
    generation: &mut usize,
) -> usize {
    let start = Instant::now();
    let mut killed = 0;
    loop {
        let sent = count_sent(app, ids).await;
        if sent == ids.len() {
            return killed;
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "{sent}/{} sent after 240 s",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        if killed < kills {
            app.kill_workers();
            killed += 1;
            *generation += 1;
            for w in ["worker-a", "worker-b"] {
                let e = app.engine(&format!("{w}-{generation}"));
                app.start_worker(e);
            }
        }
    }
}

async fn count_sent(app: &crate::helpers::TestApp, ids: &[String]) -> usize {
    let mut sent = 0;
    for id in ids {
        let d = app.detail(id).await;
        assert_ne!(d["status"], "needs_attention", "{id}: {:#}", d["send"]);
        if d["status"] == "sent" {
            sent += 1;
        }
    }
    sent
}
