//! Benchmark of `PUT /v1/patient-plans` at 32 concurrent callers, next to the same store's
//! bare plan insert as the baseline. Prints requests per second and latency percentiles.
//!
//! ```sh
//! CARGO_TARGET_DIR=/work/target-plans cargo bench -p refbridge-api --bench plans
//! # against PostgreSQL (an empty database):
//! BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:55439/plans cargo bench -p refbridge-api --bench plans
//! ```
//!
//! Each scenario runs `REQUESTS` operations spread over `CALLERS` tasks:
//! - `put (create/replace)`: every PUT carries a new source_id and member number for plan
//!   order 1 of one of `PATIENTS` patients, so after the first it archives the occupant and
//!   inserts: the heaviest path, through HTTP, auth and the decision procedure.
//! - `put (source_id match)`: the PUTs of the patients' active plans again: the read-only
//!   path.
//! - `store put (create/replace)`: the procedure through the store, without HTTP.
//! - `store bare insert`: `Store::insert_patient_plan`, one INSERT and its audit entry in a
//!   write transaction; the baseline.
//!
//! Finally 50 identical PUTs at once must leave one plan (checks the retry on PostgreSQL).

use std::sync::Arc;
use std::time::{Duration, Instant};

use refbridge_api::{ApiConfig, AppState};
use refbridge_domain::patient::PatientPut;
use refbridge_domain::plan::{ConflictBehavior, PayorPut, PlanPut};
use refbridge_domain::{PatientId, Role};
use refbridge_storage::{Blobs, FileStore, Store, StoreOptions};
use serde_json::{Value, json};

const CALLERS: usize = 32;
const REQUESTS: usize = 4000;
const PATIENTS: usize = 64;

struct Figures {
    name: &'static str,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Figures {
    fn print(&mut self) {
        self.latencies.sort();
        let n = self.latencies.len();
        let pct = |p: f64| {
            let i = ((n as f64 * p).ceil() as usize).clamp(1, n) - 1;
            self.latencies[i].as_secs_f64() * 1000.0
        };
        println!(
            "{:<28} {:>6} ops  {:>8.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
            self.name,
            n,
            n as f64 / self.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            pct(1.0),
        );
    }
}

/// Runs `op(i)` for i in 0..REQUESTS on CALLERS tasks, timing each.
async fn run<F, Fut>(name: &'static str, op: F) -> Figures
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CALLERS {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= REQUESTS {
                    break;
                }
                let t = Instant::now();
                op(i).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut latencies = Vec::with_capacity(REQUESTS);
    for t in tasks {
        latencies.extend(t.await.expect("task"));
    }
    Figures {
        name,
        elapsed: start.elapsed(),
        latencies,
    }
}

fn plan_body(patient: &str, payor: &str, i: usize, tag: &str) -> Value {
    json!({"patient_id": patient, "source_id": format!("{tag}-{i}"),
           "member_number": format!("M{tag}{i:06}"), "payor_entity_id": payor,
           "plan_order_number": 1})
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let options = StoreOptions {
        max_connections: 16,
        ..StoreOptions::default()
    };
    let store = Store::open(&url, &options).await.expect("store");
    let files = Blobs::folder(FileStore::open(dir.path().join("files")).expect("files"));
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let token = refbridge_api::new_token().expect("random token");
    store
        .create_token(
            &format!("bench-{run_id}"),
            Role::Reviewer,
            &refbridge_api::hash_token(&token),
        )
        .await
        .expect("token");
    let (payor, _) = store
        .put_payor(
            &PayorPut::parse(&json!({"name": format!("Bench {run_id}")})).expect("payor"),
            "bench",
        )
        .await
        .expect("payor");
    let mut patients = Vec::new();
    for i in 0..PATIENTS * 2 {
        let put = PatientPut::parse(&json!({"source_id": format!("bench-{run_id}-{i}"),
            "first_name": "Bench", "last_name": format!("P{run_id}{i}"), "date_of_birth": "1990-01-01"}))
        .expect("patient");
        patients.push(store.put_patient(&put, "bench").await.expect("patient").0);
    }
    let (http_patients, store_patients) = patients.split_at(PATIENTS);
    let (http_patients, store_patients): (Arc<Vec<PatientId>>, Arc<Vec<PatientId>>) = (
        Arc::new(http_patients.to_vec()),
        Arc::new(store_patients.to_vec()),
    );

    let state = AppState {
        store: store.clone(),
        files,
        config: ApiConfig::default(),
        wake: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, refbridge_api::app(state))
            .await
            .expect("serve");
    });
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CALLERS)
        .build()
        .expect("client");
    let put_url = Arc::new(format!("http://{addr}/v1/patient-plans"));
    let payor_id = payor.id.to_string();
    println!(
        "backend {:?}, {CALLERS} concurrent callers, {REQUESTS} operations per scenario",
        store.backend()
    );

    let send = |bodies: Arc<Vec<Value>>, expect: u16| {
        let (client, url, token) = (client.clone(), put_url.clone(), token.clone());
        move |i: usize| {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            let body = bodies[i % bodies.len()].clone();
            async move {
                let res = client
                    .put(url.as_str())
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .expect("request");
                let status = res.status().as_u16();
                assert_eq!(status, expect);
            }
        }
    };
    let bodies: Vec<Value> = (0..REQUESTS)
        .map(|i| plan_body(&http_patients[i % PATIENTS].to_string(), &payor_id, i, "h"))
        .collect();
    run("put (create/replace)", send(Arc::new(bodies), 201))
        .await
        .print();
    // The patients' active plans, PUT again.
    let mut active = Vec::new();
    for p in http_patients.iter() {
        for plan in store
            .list_patient_plans(*p, false)
            .await
            .expect("list")
            .expect("patient")
        {
            active.push(
                json!({"patient_id": p.to_string(), "source_id": plan.source_id,
                "member_number": plan.fields.member_number.as_str(), "payor_entity_id": payor_id,
                "plan_order_number": 1}),
            );
        }
    }
    assert_eq!(active.len(), PATIENTS);
    run("put (source_id match)", send(Arc::new(active), 200))
        .await
        .print();

    let s = store.clone();
    let sp = store_patients.clone();
    let payor_uuid = payor.id;
    run("store put (create/replace)", move |i| {
        let s = s.clone();
        let body = plan_body(
            &sp[i % PATIENTS].to_string(),
            &payor_uuid.to_string(),
            i,
            "s",
        );
        async move {
            let put = PlanPut::parse(&body).expect("plan");
            s.put_patient_plan(&put, ConflictBehavior::Replace, false, "bench")
                .await
                .expect("put");
        }
    })
    .await
    .print();

    // Baseline: plain inserts into free (patient, order) slots of fresh patients.
    let mut fresh = Vec::new();
    let per_patient = 90;
    for i in 0..REQUESTS.div_ceil(per_patient) {
        let put = PatientPut::parse(&json!({"source_id": format!("bench-{run_id}-b{i}"),
            "first_name": "Bench", "last_name": format!("B{run_id}{i}"), "date_of_birth": "1990-01-01"}))
        .expect("patient");
        fresh.push(store.put_patient(&put, "bench").await.expect("patient").0);
    }
    let fresh = Arc::new(fresh);
    let s = store.clone();
    run("store bare insert (baseline)", move |i| {
        let (s, fresh) = (s.clone(), fresh.clone());
        let body = json!({"patient_id": fresh[i / per_patient].to_string(),
            "source_id": format!("b-{i}"), "member_number": format!("MB{i:06}"),
            "payor_entity_id": payor_uuid.to_string(), "plan_order_number": (i % per_patient) + 1});
        async move {
            let put = PlanPut::parse(&body).expect("plan");
            s.insert_patient_plan(put.patient_id, Some(&put.source_id), &put.fields, "bench")
                .await
                .expect("insert");
        }
    })
    .await
    .print();

    // 50 identical PUTs at once leave one plan.
    let put = PatientPut::parse(&json!({"source_id": format!("bench-{run_id}-c"),
        "first_name": "Bench", "last_name": format!("C{run_id}"), "date_of_birth": "1990-01-01"}))
    .expect("patient");
    let patient = store.put_patient(&put, "bench").await.expect("patient").0;
    let body = plan_body(&patient.to_string(), &payor_id, 0, "c");
    let answers = futures::future::join_all((0..50).map(|_| {
        client
            .put(put_url.as_str())
            .bearer_auth(&token)
            .json(&body)
            .send()
    }))
    .await;
    let mut codes: Vec<u16> = answers
        .into_iter()
        .map(|r| r.expect("request").status().as_u16())
        .collect();
    codes.sort();
    let plans = store
        .list_patient_plans(patient, true)
        .await
        .expect("list")
        .expect("patient");
    let created = codes.iter().filter(|c| **c == 201).count();
    println!(
        "50 identical concurrent PUTs: {created} x 201, {} x 200, {} plan(s)",
        codes.iter().filter(|c| **c == 200).count(),
        plans.len()
    );
    assert_eq!((created, plans.len()), (1, 1), "{codes:?}");
}
