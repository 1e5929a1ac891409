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

/// The scale generator's store is a store: on the test's backend, 200 referrals (seven made
/// by the real path, the rest cloned) read back through the API's list (every page) and
/// detail, the console's referral page and the store, with every status there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_scale_fills_a_store_that_reads_back_with_every_status() {
    use axum::body::Body;
    use axum::http::{Request, header};
    use refbridge_cli::commands::bench::scale;
    use refbridge_domain::{ReferralStatus, RequestId, Role};
    use tower::ServiceExt;

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.database_url = refbridge_cli::config::DatabaseUrl::new(
        refbridge_storage::test_util::fresh_database_url(dir.path()).await,
    );
    cfg.files_dir = dir.path().join("files");
    let state = refbridge_cli::open_state(&cfg)
        .await
        .expect("open the store");
    let templates = scale::make_templates(&state, &cfg)
        .await
        .expect("the real path's referrals");
    assert_eq!(templates.len(), ReferralStatus::ALL.len());
    let rows = scale::read_templates(&state, &templates)
        .await
        .expect("the templates' rows");
    // In two phases, as `bench scale` fills (a small store measured on the way): the second
    // goes on from the first, no clone twice.
    let mut filler = scale::Filler::new(&state, rows, 200, 30)
        .await
        .expect("the fill's agencies");
    filler.fill_to(&state, 80).await.expect("the small store");
    assert_eq!(filler.filled.referrals, 80);
    assert_eq!(
        scale::statuses(&state)
            .await
            .unwrap()
            .values()
            .sum::<usize>(),
        80
    );
    let small_middle = filler.filled.middle.expect("the small store's middle");
    filler.fill_to(&state, 200).await.expect("the full store");
    let filled = filler.filled;
    assert_eq!(filled.referrals, 200);
    assert!(filled.middle.is_some() && filled.sent.is_some());
    assert!(
        filled.middle.unwrap().received_at > small_middle.received_at,
        "the full store's middle is newer than the small one's"
    );

    let counts = scale::statuses(&state).await.unwrap();
    assert_eq!(counts.values().sum::<usize>(), 200, "{counts:?}");
    for s in ReferralStatus::ALL {
        assert!(counts[s.as_str()] > 0, "no {s:?} referral: {counts:?}");
    }

    let token = refbridge_api::new_token().unwrap();
    state
        .store
        .create_token(
            "scale-test",
            Role::Reviewer,
            &refbridge_api::hash_token(&token),
        )
        .await
        .unwrap();
    let app = refbridge_api::app(state.clone());
    let get = |path: String| {
        let (app, token) = (app.clone(), token.clone());
        async move {
            let req = Request::get(&path)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            let res = app.oneshot(req).await.unwrap();
            let status = res.status();
            let body = axum::body::to_bytes(res.into_body(), 16 << 20)
                .await
                .unwrap();
            assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()
        }
    };
    let mut ids = Vec::new();
    let mut path = "/v1/referral-requests?limit=70".to_owned();
    loop {
        let page = get(path.clone()).await;
        for item in page["items"].as_array().unwrap() {
            ids.push(item["request_id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/referral-requests?limit=70&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(ids.len(), 200, "every referral listed once");
    let mut seen = std::collections::BTreeMap::new();
    for id in &ids {
        let d = get(format!("/v1/referral-requests/{id}")).await;
        let status = d["status"].as_str().unwrap().to_owned();
        assert!(!d["history"].as_array().unwrap().is_empty(), "{id}");
        assert!(!d["files"].as_array().unwrap().is_empty(), "{id}");
        if status != "received" && status != "denied" {
            assert!(d["send"]["steps"].as_array().is_some(), "{id}: {d}");
        }
        let rec = state
            .store
            .get_referral(RequestId::parse(id).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.status.as_str(), status);
        *seen.entry(status).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), ReferralStatus::ALL.len(), "{seen:?}");
    // The event feed has no hole: positions 1..=n.
    let refbridge_storage::FeedRead::Page(page) = state
        .store
        .events_after(Some(0), &[], 100_000)
        .await
        .unwrap()
    else {
        panic!("nothing was pruned, yet the feed says so");
    };
    for (i, e) in page.events.iter().enumerate() {
        assert_eq!(e.position, i as i64 + 1);
    }
    assert!(page.events.len() > 200);
    state.store.close().await;
}
