//! `refbridge bench scale`: what the hot reads cost as the store grows (issue 15, "cost as
//! the work grows"). One store, measured twice: with the few referrals the real path made
//! (the templates), then after the generator has filled it to `--referrals`.
//!
//! The generator: seven referrals go through the real path first (intake over HTTP; deny;
//! approve; the send engine against the built-in simulator, one with ACCloud failing until it
//! needs attention, one cancelled after its send; one claimed and marked sending as a worker
//! does; one left approved), one per status. Their rows in every table are read back
//! ([`Store::rows_where`]) and cloned with fresh ids (v4 request ids as agencies send, v7 ids
//! for ours, at the clone's time), timestamps moved to the clone's place in time (spread over
//! `--days`), one of 40 agencies, a patient name and agency client of its own, and events
//! positioned after the last. Clones are written in transactions of [`CHUNK`] referrals, a
//! multi-row `INSERT` per table ([`refbridge_storage::bulk`]), generated on a blocking thread
//! while the previous chunk is written. File bodies are the templates' (small), shared by
//! hash: a million referrals cost a million `referral_files` rows, not a million bodies.
//!
//! The statuses are weighted as a store that has run for a year looks: most referrals
//! finished (sent, denied, cancelled), a backlog awaiting review, few approved or sending.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::http::header;
use chrono::{DateTime, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use refbridge_accloud_sim::{Endpoint, FaultKind, ScriptedFault};
use refbridge_api::AppState;
use refbridge_domain::{ReferralStatus, RequestId, Role};
use refbridge_saga::{EngineConfig, RetryPolicy};
use refbridge_storage::bulk::{Cell, Rows};
use refbridge_storage::{Backend, format_ts, now, parse_ts};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{
    Api, Latency, PAYLOAD, accloud_for, bench_terms, console_session, get_in_process, ms,
    new_token, post_json,
};
use crate::config::{Config, DatabaseUrl};
use crate::runtime;

/// Referrals per write transaction.
pub const CHUNK: usize = 2_000;
/// Agencies the clones come from.
const AGENCIES: usize = 40;

/// How many referrals in 10,000 have each status: a year's history is mostly finished (sent,
/// denied, cancelled); some await review; few are approved, sending or stuck at once (the
/// workers keep up), but enough that the claim and the queue figures have work to see.
pub const STATUS_MIX: [(ReferralStatus, u32); 7] = [
    (ReferralStatus::Received, 200),
    (ReferralStatus::Approved, 5),
    (ReferralStatus::Sending, 5),
    (ReferralStatus::Sent, 7_470),
    (ReferralStatus::NeedsAttention, 20),
    (ReferralStatus::Denied, 1_500),
    (ReferralStatus::Cancelled, 800),
];

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:\n  \
    refbridge bench scale --referrals 1000000                      # embedded SQLite, a throwaway folder\n  \
    refbridge bench scale --referrals 1000000 --postgres postgres://refbridge@127.0.0.1:5432/postgres\n  \
    refbridge bench scale --referrals 20000 --samples 50            # a quick look")]
pub struct ScaleArgs {
    /// Referral requests in the full store (the seven made by the real path included).
    #[arg(long, default_value_t = 1_000_000)]
    pub referrals: usize,
    /// Also measure a small store of this many referral requests on the way to the full one:
    /// a page of every list measured is then full on both (on the empty store, a page holds
    /// the seven made by the real path). `--small 0` skips it.
    #[arg(long, default_value_t = 5_000)]
    pub small: usize,
    /// Timed calls per measure, on the empty store and on the full one.
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
    /// The clones' receipt times are spread over this many days before now.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// A PostgreSQL server, as a URL to a database the bench may connect to (its maintenance
    /// database, `postgres`): the bench creates a database of its own there and drops it at
    /// the end. Default: embedded SQLite in a temporary folder, removed at the end.
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
    /// Keep the filled store (and print where it is) instead of removing it.
    #[arg(long)]
    pub keep: bool,
}

// ---------------------------------------------------------------- the real path

/// The seven referrals made by the real path, one per status.
pub async fn make_templates(
    state: &AppState,
    cfg: &Config,
) -> anyhow::Result<Vec<(ReferralStatus, RequestId)>> {
    let intake_token = new_token(state, "bench-scale-intake", Role::Intake).await?;
    let reviewer = new_token(state, "bench-scale-reviewer", Role::Reviewer).await?;
    let api = Api::start(state.clone()).await?;
    let http = reqwest::Client::new();
    let base: Value = serde_json::from_str(PAYLOAD).context("the example payload")?;
    let mut out = Vec::new();
    for (k, (status, _)) in STATUS_MIX.iter().enumerate() {
        let p = template_payload(&base, k);
        let url = format!("{}/referral_request", api.base);
        post_json(&http, &url, &intake_token, serde_json::to_vec(&p)?, 200)
            .await
            .context("a template's intake")?;
        out.push((*status, RequestId::parse(&template_request_id(k))?));
    }
    let id_of = |s: ReferralStatus| out.iter().find(|(st, _)| *st == s).map(|(_, id)| *id);
    let id = |s| id_of(s).context("a template is missing");
    let post = |path: String, body: Value, want: u16| {
        let (http, token) = (http.clone(), reviewer.clone());
        let url = format!("{}{path}", api.base);
        async move { post_json(&http, &url, &token, serde_json::to_vec(&body)?, want).await }
    };
    let terms = bench_terms();
    post(
        format!("/v1/referral-requests/{}/deny", id(ReferralStatus::Denied)?),
        json!({ "reason": "Outside our service area" }),
        200,
    )
    .await
    .context("deny")?;

    // The sends, against the simulator; ACCloud fails the first one's service until it
    // needs attention.
    let sim = super::start_sim(100).await?;
    let accloud = accloud_for(&sim, cfg)?;
    let engine = runtime::engine(
        state,
        accloud,
        EngineConfig {
            concurrency: 2,
            // A lookup that misses is trusted at once: the simulator answers in microseconds
            // and the faults below commit nothing.
            settle_delay: Duration::from_millis(20),
            retry: RetryPolicy {
                base: Duration::from_millis(10),
                cap: Duration::from_millis(50),
                max_attempts: 2,
            },
            ..runtime::engine_config(cfg)
        },
    );
    let (stop_engine, mut rx) = watch::channel(false);
    let worker = tokio::spawn(engine.run(async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    sim.handle().push_scripted_fault(ScriptedFault::new(
        Endpoint::ServiceCreate,
        FaultKind::ErrorBeforeCommit { status: 500 },
        10,
    ));
    let attention = id(ReferralStatus::NeedsAttention)?;
    post(
        format!("/v1/referral-requests/{attention}/approval"),
        terms.clone(),
        202,
    )
    .await?;
    wait_status(state, attention, ReferralStatus::NeedsAttention).await?;
    sim.handle().clear_faults();
    for s in [ReferralStatus::Sent, ReferralStatus::Cancelled] {
        post(
            format!("/v1/referral-requests/{}/approval", id(s)?),
            terms.clone(),
            202,
        )
        .await?;
        wait_status(state, id(s)?, ReferralStatus::Sent).await?;
    }
    let cancelled = id(ReferralStatus::Cancelled)?;
    post(
        format!("/v1/referral-requests/{cancelled}/cancel"),
        json!({ "reason_code": "client_request", "comment": "The client moved away" }),
        202,
    )
    .await?;
    wait_status(state, cancelled, ReferralStatus::Cancelled).await?;
    let _ = stop_engine.send(true);
    let _ = worker.await;
    sim.shutdown().await;

    // One claimed and marked sending by a worker that then gave it back (as after a
    // retryable failure); one approved and not claimed yet.
    let sending = id(ReferralStatus::Sending)?;
    post(
        format!("/v1/referral-requests/{sending}/approval"),
        terms.clone(),
        202,
    )
    .await?;
    let lease = state
        .store
        .claim_send_job(
            "bench-scale-worker",
            Duration::from_secs(30),
            "bench-scale-worker",
        )
        .await?
        .context("the sending template's job is not claimable")?;
    anyhow::ensure!(lease.request_id == sending, "claimed another job");
    state
        .store
        .release_send_job(&lease, now())
        .await
        .map_err(|e| anyhow::anyhow!("release: {e}"))?;
    post(
        format!(
            "/v1/referral-requests/{}/approval",
            id(ReferralStatus::Approved)?
        ),
        terms,
        202,
    )
    .await?;
    api.stop().await;
    while state.store.sequence_events().await? > 0 {}
    for (s, id) in &out {
        let got = state.store.referral_status(*id).await?;
        anyhow::ensure!(got == Some(*s), "template {id} is {got:?}, not {s:?}");
    }
    Ok(out)
}

async fn wait_status(state: &AppState, id: RequestId, want: ReferralStatus) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if state.store.referral_status(id).await? == Some(want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "template {id} did not become {want:?}: {:?}",
                state.store.referral_status(id).await?
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn template_request_id(k: usize) -> String {
    format!("7e000000-0000-4000-8000-{k:012}")
}

/// Distinct enough to be found and replaced in every stored text.
const TEMPLATE_CLIENT_ID: i64 = 7_770_000_000;
/// The example's agency (in the simulator's trusted network, so its referrals can be
/// approved): its org id and name are replaced in the clones.
const TEMPLATE_AGENCY_ORG: &str = "91c79089-a3ca-4cca-acf4-52fc1f1302c6";
const TEMPLATE_AGENCY_NAME: &str = "Gem City Home Care";

fn template_last_name(k: usize) -> String {
    format!("Templatescale{}", (b'a' + k as u8) as char)
}

/// Form fields the templates leave out, so that a million stored requests fit on a small
/// disk (the example's stored request is about 5.4 KB; without these, about half): the
/// diagnoses, the physician's order link and the secondary insurance.
fn dropped_field(label: &str) -> bool {
    label == "ICD-10 Diagnosis"
        || label == "Physician order (PDF)"
        || label.starts_with("Secondary")
}

fn template_payload(base: &Value, k: usize) -> Value {
    let mut p = base.clone();
    if let Some(fields) = p["form_data"]["fields"].as_array_mut() {
        fields.retain(|f| !dropped_field(f["field_label"].as_str().unwrap_or_default()));
    }
    p["request_id"] = json!(template_request_id(k));
    p["client"]["id"] = json!(TEMPLATE_CLIENT_ID + k as i64);
    p["client"]["last_name"] = json!(template_last_name(k));
    p
}

// ---------------------------------------------------------------- templates as rows

/// The tables a referral's rows are in, in an order that satisfies the foreign keys, and
/// the column that ties a row to the referral (`R`: its request id, `P`: its patient).
const TABLES: [(&str, &str, Tie); 14] = [
    ("patients", "id", Tie::Patient),
    ("patient_agency_clients", "patient_id", Tie::Patient),
    ("patient_plans", "patient_id", Tie::Patient),
    ("referral_requests", "request_id", Tie::Request),
    ("referral_files", "request_id", Tie::Request),
    ("status_history", "request_id", Tie::Request),
    ("audit_events", "subject_id", Tie::Request),
    ("events", "request_id", Tie::Request),
    ("approvals", "request_id", Tie::Request),
    ("send_jobs", "request_id", Tie::Request),
    ("send_steps", "request_id", Tie::Request),
    ("send_changes", "request_id", Tie::Request),
    ("authorization_plans", "request_id", Tie::Request),
    ("phi_access", "request_id", Tie::Request),
];

#[derive(Debug, Clone, Copy)]
enum Tie {
    Request,
    Patient,
}

/// What a clone puts in place of a template's value.
#[derive(Debug, Clone)]
enum Var {
    /// One of the template's own ids (of a row of its own): a new one per clone; v7 ids keep
    /// their place in time (moved with the clone).
    Id {
        v7_at: Option<DateTime<Utc>>,
    },
    /// A timestamp of ours, moved with the clone.
    Time(DateTime<Utc>),
    AgencyOrg,
    AgencyName,
    LastName,
    NormLast,
    ClientId,
}

#[derive(Debug, Clone)]
enum Piece {
    Lit(String),
    Var(usize),
}

#[derive(Debug, Clone)]
enum TCell {
    Null,
    Int(i64),
    ClientId,
    /// The next event position.
    Position,
    Text(Vec<Piece>),
}

#[derive(Debug, Clone)]
struct Template {
    status: ReferralStatus,
    vars: Vec<Var>,
    received_at: DateTime<Utc>,
    /// Per table of [`TABLES`]: its rows as pieces.
    tables: Vec<(Rows, Vec<Vec<TCell>>)>,
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::parse_str(s).is_ok()
}

/// A timestamp as the store writes them (`format_ts`).
fn stored_time(s: &str) -> Option<DateTime<Utc>> {
    (s.len() == 27 && s.as_bytes()[10] == b'T' && s.ends_with('Z'))
        .then(|| parse_ts(s).ok())
        .flatten()
}

async fn read_template(
    state: &AppState,
    status: ReferralStatus,
    id: RequestId,
    k: usize,
) -> anyhow::Result<Template> {
    let rec = state
        .store
        .get_referral(id)
        .await?
        .context("a template is missing")?;
    let request = id.to_string();
    let patient = rec.patient_id.to_string();
    let mut raw = Vec::new();
    for (table, column, tie) in TABLES {
        let key = match tie {
            Tie::Request => &request,
            Tie::Patient => &patient,
        };
        raw.push(state.store.rows_where(table, column, key).await?);
    }
    // Its own ids: every uuid in a column that names a row of its own.
    let mut needles: Vec<(String, Var)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for rows in &raw {
        for row in &rows.rows {
            for (col, cell) in rows.columns.iter().zip(row) {
                let Cell::Text(v) = cell else { continue };
                let own = matches!(
                    col.as_str(),
                    "id" | "request_id" | "patient_id" | "replaced_by" | "plan_id"
                );
                if own && is_uuid(v) && seen.insert(v.clone()) {
                    let u = uuid::Uuid::parse_str(v)?;
                    let v7_at = (u.get_version_num() == 7)
                        .then(|| u.get_timestamp())
                        .flatten()
                        .and_then(|t| {
                            let (s, n) = t.to_unix();
                            DateTime::from_timestamp(s as i64, n)
                        });
                    needles.push((v.clone(), Var::Id { v7_at }));
                } else if let Some(t) = stored_time(v) {
                    if seen.insert(v.clone()) {
                        needles.push((v.clone(), Var::Time(t)));
                    }
                }
            }
        }
    }
    let last = template_last_name(k);
    needles.push((TEMPLATE_AGENCY_ORG.to_owned(), Var::AgencyOrg));
    needles.push((TEMPLATE_AGENCY_NAME.to_owned(), Var::AgencyName));
    needles.push((
        refbridge_domain::person::normalize_name(&last),
        Var::NormLast,
    ));
    needles.push((last, Var::LastName));
    needles.push(((TEMPLATE_CLIENT_ID + k as i64).to_string(), Var::ClientId));
    // Longest first, so that a needle inside another is not found first.
    needles.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    let vars: Vec<Var> = needles.iter().map(|(_, v)| v.clone()).collect();

    let client_id = TEMPLATE_CLIENT_ID + k as i64;
    let mut tables = Vec::new();
    for (rows, (table, _, _)) in raw.into_iter().zip(TABLES) {
        let mut out = Vec::new();
        for row in &rows.rows {
            let cells = rows
                .columns
                .iter()
                .zip(row)
                .map(|(col, cell)| match cell {
                    Cell::Null => TCell::Null,
                    Cell::Int(_) if table == "events" && col == "position" => TCell::Position,
                    Cell::Int(v) if *v == client_id => TCell::ClientId,
                    Cell::Int(v) => TCell::Int(*v),
                    Cell::Text(s) => TCell::Text(pieces(s, &needles)),
                })
                .collect();
            out.push(cells);
        }
        tables.push((Rows::empty_like(&rows), out));
    }
    Ok(Template {
        status,
        vars,
        received_at: rec.received_at,
        tables,
    })
}

/// `s` cut into literal text and the needles found in it.
fn pieces(s: &str, needles: &[(String, Var)]) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    'outer: while !rest.is_empty() {
        for (i, (n, _)) in needles.iter().enumerate() {
            if rest.starts_with(n.as_str()) {
                if !lit.is_empty() {
                    out.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                out.push(Piece::Var(i));
                rest = &rest[n.len()..];
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        lit.push(c);
        rest = &rest[c.len_utf8()..];
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    out
}

// ---------------------------------------------------------------- clones

const SURNAMES: [&str; 40] = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
];

/// A bench surname of its own for clone `i`: a common surname and letters (no digits: names
/// have none).
fn clone_last_name(i: usize) -> String {
    let mut s = SURNAMES[i % SURNAMES.len()].to_owned();
    let mut n = i / SURNAMES.len();
    loop {
        s.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            break;
        }
    }
    s
}

/// Where a clone is: what the bench measures on.
#[derive(Debug, Clone, Copy)]
pub struct Landmark {
    pub request_id: uuid::Uuid,
    pub received_at: DateTime<Utc>,
}

struct Chunk {
    tables: Vec<Rows>,
    /// The clone at the middle of the store, when in this chunk.
    middle: Option<Landmark>,
    /// A sent clone past the middle, when in this chunk.
    sent: Option<Landmark>,
    referrals: usize,
}

struct Generator {
    templates: Vec<Template>,
    /// Template index per ten-thousandth, by [`STATUS_MIX`].
    mix: Vec<usize>,
    agencies: Vec<(String, String)>,
    start: DateTime<Utc>,
    step_us: i64,
    /// The clones written once this phase ends: its middle is the store's then.
    phase_end: usize,
    position: i64,
    rng: SmallRng,
}

impl Generator {
    fn chunk(&mut self, range: std::ops::Range<usize>) -> anyhow::Result<Chunk> {
        // Each table's columns from a template that has rows in it.
        let mut tables: Vec<Rows> = (0..TABLES.len())
            .map(|n| {
                self.templates
                    .iter()
                    .map(|t| &t.tables[n].0)
                    .find(|r| !r.columns.is_empty())
                    .map(Rows::empty_like)
                    .unwrap_or_default()
            })
            .collect();
        let mut chunk = Chunk {
            tables: Vec::new(),
            middle: None,
            sent: None,
            referrals: range.len(),
        };
        let mut values: Vec<String> = Vec::new();
        for i in range {
            let t = &self.templates[self.mix[self.rng.random_range(0..self.mix.len())]];
            let at = self.start + chrono::Duration::microseconds(self.step_us * i as i64);
            let shift = at - t.received_at;
            let (org, name) = &self.agencies[self.rng.random_range(0..self.agencies.len())];
            let last = clone_last_name(i);
            values.clear();
            for v in &t.vars {
                values.push(match v {
                    Var::Id { v7_at: Some(when) } => {
                        let ms = (*when + shift).timestamp_millis().max(0) as u64;
                        let bytes: [u8; 10] = self.rng.random();
                        uuid::Builder::from_unix_timestamp_millis(ms, &bytes)
                            .into_uuid()
                            .to_string()
                    }
                    Var::Id { v7_at: None } => {
                        let bytes: [u8; 16] = self.rng.random();
                        uuid::Builder::from_random_bytes(bytes)
                            .into_uuid()
                            .to_string()
                    }
                    Var::Time(when) => format_ts(*when + shift),
                    Var::AgencyOrg => org.clone(),
                    Var::AgencyName => name.clone(),
                    Var::LastName => last.clone(),
                    Var::NormLast => refbridge_domain::person::normalize_name(&last),
                    Var::ClientId => (10_000_000 + i as i64).to_string(),
                });
            }
            for (n, (_, rows)) in t.tables.iter().enumerate() {
                for row in rows {
                    let cells: Vec<Cell> = row
                        .iter()
                        .map(|c| match c {
                            TCell::Null => Cell::Null,
                            TCell::Int(v) => Cell::Int(*v),
                            TCell::ClientId => Cell::Int(10_000_000 + i as i64),
                            TCell::Position => {
                                self.position += 1;
                                Cell::Int(self.position)
                            }
                            TCell::Text(pieces) => {
                                let mut s = String::new();
                                for p in pieces {
                                    match p {
                                        Piece::Lit(l) => s.push_str(l),
                                        Piece::Var(v) => s.push_str(&values[*v]),
                                    }
                                }
                                Cell::Text(s)
                            }
                        })
                        .collect();
                    tables[n].rows.push(cells);
                }
            }
            let landmark = || -> anyhow::Result<Landmark> {
                let rr = &tables[3];
                let row = rr.rows.last().context("no referral row")?;
                let col = |name: &str| rr.columns.iter().position(|c| c == name);
                let text = |c: Option<usize>| match c.map(|c| &row[c]) {
                    Some(Cell::Text(s)) => Ok(s.clone()),
                    _ => bail!("a referral row without its columns"),
                };
                Ok(Landmark {
                    request_id: uuid::Uuid::parse_str(&text(col("request_id"))?)?,
                    received_at: parse_ts(&text(col("received_at"))?)?,
                })
            };
            if i == self.phase_end / 2 {
                chunk.middle = Some(landmark()?);
            }
            if i >= self.phase_end / 2 && t.status == ReferralStatus::Sent && chunk.sent.is_none() {
                chunk.sent = Some(landmark()?);
            }
        }
        chunk.tables = tables;
        Ok(chunk)
    }
}

/// What the fill did.
#[derive(Debug, Clone)]
pub struct Filled {
    pub templates: Vec<(ReferralStatus, RequestId)>,
    /// Referral requests in the store afterwards (templates included).
    pub referrals: usize,
    /// Rows written by the clones, over every table.
    pub rows: usize,
    pub elapsed: Duration,
    /// The clone at the middle (by receipt time) and a sent one past it.
    pub middle: Option<Landmark>,
    pub sent: Option<Landmark>,
    /// The agencies the clones came from (org id, name).
    pub agencies: Vec<(String, String)>,
}

/// The templates' rows, read once (before anything else reads them: a page shown adds
/// rows to the PHI access log, which the clones would copy).
pub struct Templates {
    ids: Vec<(ReferralStatus, RequestId)>,
    read: Vec<Template>,
}

pub async fn read_templates(
    state: &AppState,
    templates: &[(ReferralStatus, RequestId)],
) -> anyhow::Result<Templates> {
    let mut read = Vec::new();
    for (k, (status, id)) in templates.iter().enumerate() {
        read.push(read_template(state, *status, *id, k).await?);
    }
    Ok(Templates {
        ids: templates.to_vec(),
        read,
    })
}

/// A fill in phases: the clones of a store of `total` referral requests, written up to a
/// smaller store first (measured), then on. Each clone has the place in time and the agency
/// client it would have had in one fill.
pub struct Filler {
    /// Out (on the generating thread) while a phase runs.
    generator: Option<Generator>,
    /// Clones written so far.
    written: usize,
    pub filled: Filled,
}

impl Filler {
    /// Writes the clones' agencies; no referral yet.
    pub async fn new(
        state: &AppState,
        t: Templates,
        total: usize,
        days: u32,
    ) -> anyhow::Result<Filler> {
        let Templates {
            ids: templates,
            read,
        } = t;
        let mut mix = Vec::new();
        for (status, weight) in STATUS_MIX {
            let k = read
                .iter()
                .position(|t| t.status == status)
                .context("no template for a status")?;
            mix.extend(std::iter::repeat_n(k, weight as usize));
        }
        let mut rng = SmallRng::seed_from_u64(15);
        let agencies: Vec<(String, String)> = (0..AGENCIES)
            .map(|k| {
                let bytes: [u8; 16] = rng.random();
                (
                    uuid::Builder::from_random_bytes(bytes)
                        .into_uuid()
                        .to_string(),
                    format!("{} Home Care {}", SURNAMES[k], k + 1),
                )
            })
            .collect();
        let clones = total.saturating_sub(templates.len());
        let span_us = i64::from(days) * 86_400_000_000;
        let end = read.iter().map(|t| t.received_at).min().unwrap_or_else(now)
            - chrono::Duration::seconds(1);
        let generator = Generator {
            templates: read,
            mix,
            agencies: agencies.clone(),
            start: end - chrono::Duration::microseconds(span_us),
            step_us: span_us / clones.max(1) as i64,
            phase_end: clones,
            position: 0,
            rng,
        };
        // Agencies first: the console's filter reads them.
        let mut w = state.store.bulk_writer().await?;
        let last_seen = format_ts(end);
        w.insert(
            "agencies",
            &Rows {
                columns: vec!["org_id".into(), "name".into(), "last_seen_at".into()],
                integer: vec![false; 3],
                rows: agencies
                    .iter()
                    .map(|(id, name)| {
                        vec![
                            Cell::Text(id.clone()),
                            Cell::Text(name.clone()),
                            Cell::Text(last_seen.clone()),
                        ]
                    })
                    .collect(),
            },
        )
        .await?;
        w.commit().await?;
        Ok(Filler {
            generator: Some(generator),
            written: 0,
            filled: Filled {
                referrals: templates.len(),
                templates,
                rows: 0,
                elapsed: Duration::ZERO,
                middle: None,
                sent: None,
                agencies,
            },
        })
    }

    /// Writes clones until the store holds `referrals` referral requests (no more than the
    /// `total` it was made for). [`Filled::middle`] and [`Filled::sent`] are then those of
    /// the store as it stands.
    pub async fn fill_to(&mut self, state: &AppState, referrals: usize) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut generator = self.generator.take().context("a fill failed half way")?;
        let from = self.written;
        let to = referrals
            .saturating_sub(self.filled.templates.len())
            .max(from);
        // Past the head of the feed (a page shorter than asked ends at the head): what was
        // measured since the last phase may have added events.
        let head: i64 = match state.store.events_after(None, &[], i64::MAX).await? {
            refbridge_storage::FeedRead::Page(page) => page.next_cursor.max(0),
            refbridge_storage::FeedRead::Pruned(_) => bail!("the templates' events were pruned"),
        };
        generator.position = generator.position.max(head);
        generator.phase_end = to;
        // Generated on a blocking thread, written here, one chunk ahead.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<anyhow::Result<Chunk>>(2);
        let producer = tokio::task::spawn_blocking(move || {
            let mut at = from;
            while at < to {
                let end = (at + CHUNK).min(to);
                let chunk = generator.chunk(at..end);
                let failed = chunk.is_err();
                if tx.blocking_send(chunk).is_err() || failed {
                    return None;
                }
                at = end;
            }
            Some(generator)
        });
        let filled = &mut self.filled;
        let (mut middle, mut sent) = (None, None);
        let mut last_report = Instant::now();
        while let Some(chunk) = rx.recv().await {
            let chunk = chunk?;
            let mut w = state.store.bulk_writer().await?;
            for (rows, (table, _, _)) in chunk.tables.iter().zip(TABLES) {
                w.insert(table, rows)
                    .await
                    .with_context(|| format!("writing {table}"))?;
                filled.rows += rows.rows.len();
            }
            w.commit().await?;
            filled.referrals += chunk.referrals;
            middle = middle.or(chunk.middle);
            sent = sent.or(chunk.sent);
            if last_report.elapsed() > Duration::from_secs(10) {
                last_report = Instant::now();
                tracing::warn!(
                    referrals = filled.referrals,
                    rows = filled.rows,
                    secs = (filled.elapsed + started.elapsed()).as_secs(),
                    "bench scale: filling"
                );
            }
        }
        self.generator = producer.await.context("the generator panicked")?;
        if self.generator.is_none() {
            bail!("the generator stopped before the end of the phase");
        }
        self.written = to;
        filled.middle = middle.or(filled.middle);
        filled.sent = sent.or(filled.sent);
        state.store.after_bulk_load().await?;
        filled.elapsed += started.elapsed();
        Ok(())
    }
}

// ---------------------------------------------------------------- what is measured

/// The measures, in the order they are printed.
pub const MEASURES: [&str; 10] = [
    "worker claim, a started send (Store::claim_send_job)",
    "GET /v1/referral-requests",
    "GET /v1/referral-requests?status=received",
    "GET /v1/referral-requests?agency=…",
    "GET /v1/referral-requests?cursor=… (middle)",
    "GET /v1/referral-requests/{id}",
    "GET /metrics",
    "GET /readyz",
    "GET /console (inbox)",
    "GET /console/referrals/{id}",
];

/// Where the measures point: a referral at the middle of the store, a sent one, an agency.
#[derive(Debug, Clone)]
pub struct Targets {
    pub middle: Landmark,
    pub shown: uuid::Uuid,
    pub agency: String,
}

/// A worker's claim, timed, and the job given back at once (due again): the job claimed and
/// how long the claim took.
async fn claim_and_release(state: &AppState) -> anyhow::Result<(RequestId, Duration)> {
    let t = Instant::now();
    let lease = state
        .store
        .claim_send_job(
            "bench-scale-claim",
            Duration::from_secs(30),
            "bench-scale-claim",
        )
        .await?
        .context("no send job to claim")?;
    let took = t.elapsed();
    state
        .store
        .release_send_job(&lease, now())
        .await
        .map_err(|e| anyhow::anyhow!("release: {e}"))?;
    Ok((lease.request_id, took))
}

pub async fn measure(
    state: &AppState,
    targets: &Targets,
    samples: usize,
) -> anyhow::Result<Vec<Latency>> {
    let name = format!("bench-scale-{}", uuid::Uuid::new_v4().simple());
    let token = new_token(state, &name, Role::Reviewer).await?;
    let cookie = console_session(state, &name).await?;
    let app = refbridge_api::app(state.clone());
    let cursor = format!(
        "{}_{}",
        targets.middle.received_at.timestamp_micros(),
        targets.middle.request_id
    );
    let mut out = Vec::new();
    // The claim: a worker's claim call, the job given back at once (due again) so that the
    // next claim finds as many due jobs. Each due job is claimed once first, untimed: a first
    // claim also starts its send (the referral to `sending`, a history row), and the share of
    // such jobs differs from store to store, so the timed claims are all of one kind.
    let mut seen = std::collections::HashSet::new();
    while seen.insert(claim_and_release(state).await?.0) {}
    out.push(timed(samples, || async { Ok(claim_and_release(state).await?.1) }).await?);
    let auth = format!("Bearer {token}");
    let api = (header::AUTHORIZATION, auth.as_str());
    let console = (header::COOKIE, cookie.as_str());
    let open = (header::ACCEPT, "*/*");
    let paths = [
        ("/v1/referral-requests".to_owned(), &api),
        ("/v1/referral-requests?status=received".to_owned(), &api),
        (
            format!("/v1/referral-requests?agency={}", targets.agency),
            &api,
        ),
        (format!("/v1/referral-requests?cursor={cursor}"), &api),
        (format!("/v1/referral-requests/{}", targets.shown), &api),
        ("/metrics".to_owned(), &open),
        ("/readyz".to_owned(), &open),
        ("/console".to_owned(), &console),
        (format!("/console/referrals/{}", targets.shown), &console),
    ];
    for (path, (name, value)) in paths {
        let get = || async {
            let t = Instant::now();
            get_in_process(&app, &path, (name.clone(), value)).await?;
            Ok(t.elapsed())
        };
        // Once to warm the caches, as a second look would.
        get().await?;
        out.push(timed(samples, get).await?);
    }
    Ok(out)
}

async fn timed<F, Fut>(samples: usize, f: F) -> anyhow::Result<Latency>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Duration>>,
{
    let mut v = Vec::with_capacity(samples);
    for _ in 0..samples.max(1) {
        v.push(f().await?);
    }
    Ok(Latency::of(v))
}

// ---------------------------------------------------------------- the command

#[derive(Debug)]
pub struct ScaleReport {
    pub backend: &'static str,
    pub filled: Filled,
    pub size_bytes: Option<u64>,
    pub empty: Vec<Latency>,
    /// The store at `--small` referral requests, and its figures.
    pub small: Option<(usize, Vec<Latency>)>,
    pub full: Vec<Latency>,
    pub samples: usize,
}

pub async fn scale(cfg: &Config, args: &ScaleArgs) -> anyhow::Result<ScaleReport> {
    let dir = tempfile::tempdir().context("cannot make a temporary folder")?;
    let mut cfg = super::scratch_config(cfg, dir.path());
    let created = match &args.postgres {
        Some(admin) => {
            let db = format!("refbridge_bench_{}", uuid::Uuid::new_v4().simple());
            admin_sql(admin, &format!("CREATE DATABASE {db}")).await?;
            cfg.database_url = DatabaseUrl::new(refbridge_storage::with_database(admin, &db));
            Some((admin.clone(), db))
        }
        None => None,
    };
    let result = scale_in(&cfg, args).await;
    match (&created, args.keep) {
        (Some((_, db)), true) => eprintln!("kept PostgreSQL database {db}"),
        (Some((admin, db)), false) => {
            admin_sql(admin, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await?
        }
        (None, true) => eprintln!("kept {}", dir.keep().display()),
        (None, false) => {}
    }
    result
}

async fn scale_in(cfg: &Config, args: &ScaleArgs) -> anyhow::Result<ScaleReport> {
    let state = crate::open_state(cfg).await?;
    let backend = match state.store.backend() {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    };
    let templates = make_templates(&state, cfg).await?;
    let rows = read_templates(&state, &templates).await?;
    let landmark = |k: usize| -> anyhow::Result<Landmark> {
        let (_, id) = templates[k];
        Ok(Landmark {
            request_id: id.as_uuid(),
            received_at: now(),
        })
    };
    // The empty store's targets: its middle template, its sent one, its agency.
    let mut few = Targets {
        middle: landmark(templates.len() / 2)?,
        shown: landmark(3)?.request_id,
        agency: TEMPLATE_AGENCY_ORG.to_owned(),
    };
    let rec = state
        .store
        .get_referral(RequestId::from(few.middle.request_id))
        .await?
        .context("template")?;
    few.middle.received_at = rec.received_at;
    let empty = measure(&state, &few, args.samples).await?;
    let mut filler = Filler::new(&state, rows, args.referrals, args.days).await?;
    let targets_of = |filled: &Filled| Targets {
        middle: filled.middle.unwrap_or(few.middle),
        shown: filled.sent.map_or(few.shown, |l| l.request_id),
        agency: filled
            .agencies
            .first()
            .map_or(few.agency.clone(), |a| a.0.clone()),
    };
    // The small store: every page measured is a full one, as on the full store. Only below
    // the full store's middle clone, which the full store's measures point at (a phase
    // finds the landmarks among the clones it writes).
    let clones = |n: usize| n.saturating_sub(templates.len());
    let small = match args.small {
        0 => None,
        n if n > templates.len() && clones(n) <= clones(args.referrals) / 2 => {
            filler.fill_to(&state, n).await?;
            let targets = targets_of(&filler.filled);
            Some((n, measure(&state, &targets, args.samples).await?))
        }
        n => bail!(
            "--small {n}: the small store must hold more than the {} referrals of the real path \
             and at most half of --referrals ({}); --small 0 leaves it out",
            templates.len(),
            args.referrals
        ),
    };
    filler.fill_to(&state, args.referrals).await?;
    let filled = filler.filled;
    let full = measure(&state, &targets_of(&filled), args.samples).await?;
    let size_bytes = state.store.database_size().await.ok().flatten();
    state.store.close().await;
    Ok(ScaleReport {
        backend,
        filled,
        size_bytes,
        empty,
        small,
        full,
        samples: args.samples,
    })
}

async fn admin_sql(admin_url: &str, sql: &str) -> anyhow::Result<()> {
    use sqlx::{Connection, Executor};
    let mut conn = sqlx::postgres::PgConnection::connect(admin_url)
        .await
        .context("cannot connect to the PostgreSQL server given by --postgres")?;
    conn.execute(sql).await.with_context(|| sql.to_owned())?;
    conn.close().await?;
    Ok(())
}

impl fmt::Display for ScaleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fl = &self.filled;
        writeln!(
            f,
            "bench scale, {}: {} referral requests ({} made by the real path, the rest cloned: {} rows in {:.0} s, {:.0} referrals/s){}",
            self.backend,
            fl.referrals,
            fl.templates.len(),
            fl.rows,
            fl.elapsed.as_secs_f64(),
            (fl.referrals - fl.templates.len()) as f64 / fl.elapsed.as_secs_f64().max(1e-9),
            self.size_bytes
                .map(|b| format!(", database {:.2} GiB", b as f64 / (1u64 << 30) as f64))
                .unwrap_or_default()
        )?;
        let mix: Vec<String> = STATUS_MIX
            .iter()
            .map(|(s, w)| format!("{} {:.2} %", s.as_str(), *w as f64 / 100.0))
            .collect();
        writeln!(f, "statuses: {}", mix.join(", "))?;
        writeln!(
            f,
            "{} samples each, in process (router called without a socket; the claim is the store call)",
            self.samples
        )?;
        // p50 and p95 of each store measured, then the full store's over each smaller one.
        let mut stores: Vec<(&str, &[Latency])> = vec![("empty", &self.empty)];
        if let Some((n, small)) = &self.small {
            writeln!(
                f,
                "empty: the {} referrals of the real path (a list page holds them all); small: {n} referrals (every list page full)",
                fl.templates.len()
            )?;
            stores.push(("small", small));
        }
        stores.push(("full", &self.full));
        let bases = &stores[..stores.len() - 1];
        let mut head = vec!["measure".to_owned()];
        for (store, _) in &stores {
            head.extend([format!("{store} p50"), format!("{store} p95")]);
        }
        for (base, _) in bases {
            head.extend([format!("p50 full/{base}"), format!("p95 full/{base}")]);
        }
        writeln!(f, "| {} |", head.join(" | "))?;
        writeln!(f, "|{}", "---|".repeat(head.len()))?;
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
        for (i, name) in MEASURES.iter().enumerate() {
            let mut row = vec![(*name).to_owned()];
            for (_, figures) in &stores {
                let l = &figures[i];
                row.extend([
                    format!("{:.2} ms", ms(l.p50)),
                    format!("{:.2} ms", ms(l.p95)),
                ]);
            }
            let full = &self.full[i];
            for (_, figures) in bases {
                let l = &figures[i];
                row.extend([
                    format!("{:.1}", ratio(full.p50, l.p50)),
                    format!("{:.1}", ratio(full.p95, l.p95)),
                ]);
            }
            writeln!(f, "| {} |", row.join(" | "))?;
        }
        Ok(())
    }
}

/// Referral requests per status, read back through the store (the test's check).
pub async fn statuses(state: &AppState) -> anyhow::Result<BTreeMap<&'static str, usize>> {
    let mut out = BTreeMap::new();
    for s in ReferralStatus::ALL {
        out.insert(s.as_str(), super::count_status(state, s).await?);
    }
    Ok(out)
}
