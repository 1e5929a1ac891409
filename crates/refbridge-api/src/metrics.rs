//! Counters and histograms of what the process did, through the `metrics` facade (like
//! `tracing`, any crate records without a handle) and `metrics-exporter-prometheus`'s recorder,
//! rendered by `GET /metrics` beside the gauges read from the database.
//!
//! The families (labels never carry a value a caller sent: route templates, ACCloud endpoint
//! names, step kinds, outcome classes):
//! - `refbridge_http_requests_total{method,route,status}`, `refbridge_http_request_duration_seconds{method,route}`;
//! - `refbridge_accloud_calls_total{endpoint,outcome}`, `refbridge_accloud_call_duration_seconds{endpoint}`,
//!   `refbridge_accloud_rate_limited_total` (429 / Retry-After pauses);
//! - `refbridge_send_steps_total{kind,result}`, `refbridge_send_retries_total{kind}`,
//!   `refbridge_send_lease_takeovers_total` (a run that finds a step left in flight by an
//!   interrupted one), `refbridge_send_unknown_outcome_lookups_total{found}`;
//! - `refbridge_retention_removed_total{kind}` (scheduled prunes).
//!
//! Counts are per process: each `serve` exposes its own (a `worker` alone records, but has no
//! `/metrics`); the database's gauges are the same from any process.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets, in seconds: 1 ms to 30 s.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's recorder (once; later calls return the same handle). `None` when
/// another recorder was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), &BUCKETS)
                .ok()?
                .install_recorder()
                .ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_histogram};
    describe_counter!(
        "refbridge_http_requests_total",
        "HTTP requests answered, by method, route template and status."
    );
    describe_histogram!(
        "refbridge_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by method and route template."
    );
    describe_counter!(
        "refbridge_accloud_calls_total",
        "ACCloud calls, by endpoint and outcome (ok, rejected, conflict, not_found, rate_limited, ambiguous, unavailable, decode, invalid_request)."
    );
    describe_histogram!(
        "refbridge_accloud_call_duration_seconds",
        metrics::Unit::Seconds,
        "ACCloud call latency, by endpoint."
    );
    describe_counter!(
        "refbridge_accloud_rate_limited_total",
        "ACCloud answers that paused every process (429, or 503 with Retry-After)."
    );
    describe_counter!(
        "refbridge_send_steps_total",
        "Send step attempts, by step kind and result (done, retry, retries_exhausted, rejected, cancelled_by_agency)."
    );
    describe_counter!(
        "refbridge_send_retries_total",
        "Send step attempts that will be retried, by step kind."
    );
    describe_counter!(
        "refbridge_send_lease_takeovers_total",
        "Send runs that took over a send another run left with a step in flight."
    );
    describe_counter!(
        "refbridge_retention_removed_total",
        "What scheduled retention prunes removed, by kind (idempotency_keys, compacted_steps, blobs, scratch_files)."
    );
    describe_counter!(
        "refbridge_send_unknown_outcome_lookups_total",
        "Lookups by natural key after an unknown outcome, by whether the object was found."
    );
}

/// The recorded families in the Prometheus text format (empty without a recorder).
pub fn render() -> String {
    install().map(PrometheusHandle::render).unwrap_or_default()
}

/// Middleware: counts each request and its latency by route template (never the path itself,
/// which holds ids, nor the query).
pub async fn record_http(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!("refbridge_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("refbridge_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    res
}
