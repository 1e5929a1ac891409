//! `/metrics` after a send that met every kind of trouble shows each family with counts, and
//! every metric the shipped alert rules and dashboard use is one `/metrics` exposes.

use std::sync::Arc;
use std::time::Duration;

use refbridge_accloud::AcCloud;
use refbridge_accloud_sim::{Endpoint, FaultKind, ScriptedFault, SimConfig};
use refbridge_cli::rate_budget::{ACCLOUD_BUDGET, Budget, RateBudgeted};
use refbridge_saga::Engine;

use crate::helpers::{metrics, sample, sample_terms, spawn_app_with};

const ID: &str = "5b0b7f43-2a51-4f55-9d0c-0b3d3a3c9e11";

#[tokio::test]
async fn metrics_after_a_troubled_send_show_every_family_with_counts() {
    let mut app = spawn_app_with(SimConfig::default(), false).await;
    let sim = app.sim();
    // A 503 before commit (a retry), an error after the commit (an unknown outcome settled by
    // a lookup), a 429 (every process pauses), and a crash after the client's create (the next
    // run takes the send over).
    sim.push_scripted_fault(ScriptedFault::new(
        Endpoint::ServiceCreate,
        FaultKind::ErrorBeforeCommit { status: 503 },
        1,
    ));
    sim.push_scripted_fault(ScriptedFault::new(
        Endpoint::AuthorizationCreate,
        FaultKind::ErrorAfterCommit { status: 500 },
        1,
    ));
    sim.push_scripted_fault(ScriptedFault::new(
        Endpoint::ReferralCreate,
        FaultKind::RateLimited {
            retry_after_secs: 1,
        },
        1,
    ));
    app.post_referral(&app.payload(ID, 4242)).await;
    let (s, b) = app.approve(ID, &sample_terms()).await;
    assert_eq!(s, 202, "{b}");
    let ac: Arc<dyn AcCloud> = Arc::new(RateBudgeted::new(
        app.accloud.clone(),
        Budget::new(app.state.store.clone(), ACCLOUD_BUDGET, 0),
    ));
    let engine = Arc::new(Engine::new(
        app.state.store.clone(),
        app.state.files.clone(),
        ac,
        app.engine_cfg.clone(),
    ));
    engine.crash_points.arm("client");
    app.start_worker(engine);
    app.wait_status(ID, &["sent"], Duration::from_secs(60))
        .await;

    let text = metrics(&app).await;
    let positive = |family: &str, labels: &[&str]| {
        let v = sample(&text, family, labels);
        assert!(
            v.is_some_and(|v| v > 0.0),
            "{family} {labels:?}: {v:?} in\n{text}"
        );
    };
    positive(
        "refbridge_http_requests_total",
        &["route=\"/referral_request\"", "status=\"200\""],
    );
    positive(
        "refbridge_http_request_duration_seconds_count",
        &["route=\"/referral_request\""],
    );
    positive(
        "refbridge_accloud_calls_total",
        &["endpoint=", "outcome=\"ok\""],
    );
    positive(
        "refbridge_accloud_calls_total",
        &["outcome=\"rate_limited\""],
    );
    positive("refbridge_accloud_calls_total", &["outcome=\"ambiguous\""]);
    positive(
        "refbridge_accloud_call_duration_seconds_count",
        &["endpoint="],
    );
    positive("refbridge_accloud_rate_limited_total", &[]);
    positive(
        "refbridge_send_steps_total",
        &["kind=\"client\"", "result=\"done\""],
    );
    positive("refbridge_send_steps_total", &["result=\"retry\""]);
    positive("refbridge_send_retries_total", &["kind=\"service\""]);
    positive("refbridge_send_lease_takeovers_total", &[]);
    positive(
        "refbridge_send_unknown_outcome_lookups_total",
        &["found=\"true\""],
    );

    // What the shipped alert rules and dashboard read, /metrics has.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy");
    for file in ["prometheus/alerts.yml", "grafana/refbridge-dashboard.json"] {
        let shipped = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        let mut names: Vec<&str> = shipped
            .match_indices("refbridge_")
            .map(|(at, _)| {
                let rest = &shipped[at..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .filter(|n| n.len() > "refbridge_".len())
            .collect();
        names.sort_unstable();
        names.dedup();
        assert!(!names.is_empty(), "{file} names metrics");
        for name in names {
            // A sample, or the family's declaration (a counter with no sample yet).
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            assert!(
                text.lines().any(|l| l.starts_with(name))
                    || text.contains(&format!("# TYPE {family} ")),
                "{file} uses {name}, which /metrics does not expose"
            );
        }
    }
}

#[test]
fn the_alert_rules_are_valid_and_fire_on_what_they_mean() {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/prometheus");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ] {
        let out = std::process::Command::new(&promtool)
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("promtool ({promtool}: {e}): run scripts/test.sh, which installs it")
            });
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
