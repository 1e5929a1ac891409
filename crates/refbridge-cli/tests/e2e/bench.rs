//! The `refbridge bench` functions at tiny sizes: they run to the end and count what they
//! should. Timings are reported by the command, never asserted.

use refbridge_cli::commands::bench::{self, IntakeArgs, MemoryArgs, SendArgs};
use refbridge_cli::config::Config;

fn config() -> Config {
    Config::load(None).expect("default configuration")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_intake_reports_every_request() {
    let args = IntakeArgs {
        requests: 20,
        concurrency: vec![1, 4],
        warmup: 2,
    };
    let levels = bench::intake(&config(), &args).await.expect("bench intake");
    assert_eq!(levels.len(), 2);
    for l in &levels {
        assert_eq!(l.requests, 20);
        assert_eq!(l.stored, 22, "warm-up and measured requests are all stored");
        assert!(l.per_sec() > 0.0);
        assert!(l.latency.p50 <= l.latency.p99 && l.latency.p99 <= l.latency.max);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_send_makes_five_calls_per_approval_and_no_duplicates() {
    let args = SendArgs {
        approvals: 6,
        concurrency: 3,
        timeout_secs: 60,
    };
    let r = bench::send(&config(), &args).await.expect("bench send");
    assert_eq!(r.sent, 6);
    assert!(r.duplicates_empty);
    assert_eq!(r.creates(), 30, "{:?}", r.calls);
    assert_eq!(
        r.creates_per_approval(),
        5.0,
        "client, service, authorization, referral, attachment"
    );
    // Beyond the creates: only the reference lookups the engine resolves once and caches
    // (each job that starts before the cache is filled resolves too: at most 3 here), and the
    // workers' round that reads the trusted network, funders and service codes once at start
    // (for approvals and the console's forms).
    for (endpoint, n) in &r.calls {
        match *endpoint {
            "client_create"
            | "service_create"
            | "authorization_create"
            | "referral_create"
            | "attachment_upload" => assert_eq!(*n, 6, "{endpoint}"),
            "group_list" | "funder_list" | "service_code_list" | "trusted_network_list" => {
                assert!(*n <= 3 + 1, "{endpoint} {n}")
            }
            other => panic!(
                "unexpected ACCloud call {other} on the happy path: {:?}",
                r.calls
            ),
        }
    }
    let baseline_creates: usize = r
        .baseline_calls
        .iter()
        .filter(|(k, _)| k.ends_with("_create") || **k == "attachment_upload")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(baseline_creates, 30, "{:?}", r.baseline_calls);
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_intake_memory_reads_the_server_process() {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_refbridge"));
    let args = MemoryArgs {
        file_mb: 1,
        escape_slashes: true,
        database_url: None,
    };
    let r = bench::intake_memory(exe, &args)
        .await
        .expect("bench intake-memory");
    assert_eq!(r.status, 200);
    assert_eq!(r.file_bytes, 1024 * 1024);
    assert!(r.body_bytes > r.file_bytes * 4 / 3);
    assert!(r.idle_rss_kib > 0 && r.peak_hwm_kib >= r.idle_rss_kib);
}

#[tokio::test]
async fn bench_console_renders_every_page_on_both_stores() {
    let args = bench::console::ConsoleArgs {
        referrals: 30,
        renders: 3,
    };
    let r = bench::console::console(&config(), &args)
        .await
        .expect("bench console");
    assert_eq!(r.referrals, 30);
    assert_eq!(r.pages.len(), 4, "inbox, two filters, the referral page");
    for (page, empty, full) in &r.pages {
        assert!(empty.max > std::time::Duration::ZERO, "{page} timed");
        assert!(full.max > std::time::Duration::ZERO, "{page} timed");
    }
}
