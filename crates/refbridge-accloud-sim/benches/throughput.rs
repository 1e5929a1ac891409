//! Throughput of the simulator on loopback with faults off: simple creates
//! (`POST clients`) and lookups (`GET clients/by_id/{external_id}`), 64
//! requests in flight over keep-alive connections.
//!
//! `CARGO_TARGET_DIR=/work/target-sim cargo bench -p refbridge-accloud-sim --bench throughput`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use refbridge_accloud_sim::{SimConfig, start};
use serde_json::json;

const IN_FLIGHT: usize = 64;
const BATCH: u64 = 2_000;

struct Target {
    base: String,
    http: reqwest::Client,
    counter: AtomicU64,
}

async fn run_batch(target: Arc<Target>, requests: u64, create: bool) -> Duration {
    let start = Instant::now();
    let per_task = requests.div_ceil(IN_FLIGHT as u64);
    let mut tasks = Vec::with_capacity(IN_FLIGHT);
    for _ in 0..IN_FLIGHT {
        let t = Arc::clone(&target);
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_task {
                let n = t.counter.fetch_add(1, Ordering::Relaxed);
                let response = if create {
                    t.http
                        .post(format!("{}/ext/api/v2/patients/clients", t.base))
                        .basic_auth("sim-api-key", Some("sim-api-secret"))
                        .json(&json!({
                            "demographics": {"first_name": "Bench", "last_name": "Mark"},
                            "external_id": format!("bench-{n}"),
                            "groups": [{"id": 1008}]
                        }))
                        .send()
                        .await
                } else {
                    t.http
                        .get(format!(
                            "{}/ext/api/v2/patients/clients/by_id/seed-{}",
                            t.base,
                            n % 100
                        ))
                        .basic_auth("sim-api-key", Some("sim-api-secret"))
                        .send()
                        .await
                };
                let response = response.expect("request");
                assert!(response.status().is_success(), "{}", response.status());
                let _ = response.bytes().await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    start.elapsed()
}

fn throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sim = rt.block_on(start(SimConfig::default())).expect("simulator");
    let target = Arc::new(Target {
        base: sim.base_url(),
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(IN_FLIGHT)
            .build()
            .expect("client"),
        counter: AtomicU64::new(0),
    });
    rt.block_on(async {
        for i in 0..100 {
            let r = target
                .http
                .post(format!("{}/ext/api/v2/patients/clients", target.base))
                .basic_auth("sim-api-key", Some("sim-api-secret"))
                .json(&json!({"demographics": {"first_name": "S", "last_name": "S"}, "external_id": format!("seed-{i}")}))
                .send()
                .await
                .expect("seed");
            assert!(r.status().is_success());
        }
    });

    let mut group = c.benchmark_group("loopback");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("client_create", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += rt.block_on(run_batch(Arc::clone(&target), BATCH, true));
            }
            total
        });
    });
    group.bench_function("client_get_by_external_id", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += rt.block_on(run_batch(Arc::clone(&target), BATCH, false));
            }
            total
        });
    });
    group.finish();
    drop(sim);
}

criterion_group!(benches, throughput);
criterion_main!(benches);
