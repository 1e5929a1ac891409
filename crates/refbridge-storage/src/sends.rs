//! The approval and its send: the approved terms, the per-referral send job (claimed by
//! workers under a lease with a fencing token), and its ordered steps.
//!
//! Every write made on behalf of a worker checks the lease's fencing token, so a worker whose
//! lease was taken over cannot overwrite the new owner's progress.

use std::time::Duration;

use crate::writer::WriteTx;
use chrono::{DateTime, Utc};
use refbridge_domain::approval::ApprovalTerms;
use refbridge_domain::send::{
    self, ChangeKind, ChangeRefused, JobState, NaturalKey, RunEnd, Step, StepResult, StepState,
};
use refbridge_domain::{ReferralStatus, RequestId};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::{Any, Row};
use uuid::Uuid;

use crate::error::{StorageError, corrupt};
use crate::referrals::{insert_status, request_id_of};
use crate::{Backend, Store, audit, events, format_ts, now, parse_ts};
use refbridge_domain::event::{AttentionReason, EventType};

/// `'a', 'b'`: names of enum values for an SQL `IN` list. The names are the enums' own
/// constants, so they are written into the statement (a partial index's predicate matches
/// only a literal).
pub(crate) fn sql_names<T: Copy>(values: &[T], name: fn(T) -> &'static str) -> String {
    values
        .iter()
        .map(|v| format!("'{}'", name(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The hash that tells two sets of approved terms apart.
pub fn terms_hash(terms: &ApprovalTerms) -> String {
    let json = serde_json::to_vec(terms).expect("approval terms are plain data");
    let digest: [u8; 32] = Sha256::digest(&json).into();
    refbridge_domain::ContentHash::from_digest(&digest).to_string()
}

/// One step of a send as stored, read back typed.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    pub position: i64,
    /// 0 for the first send; then the change that added the step.
    pub change_no: i64,
    pub step: Step,
    pub state: StepState,
    pub attempts: i64,
    /// Committed with the intent of its last call.
    pub natural_key: Option<NaturalKey>,
    pub remote_id: Option<String>,
    pub result: Option<StepResult>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub not_before: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    pub state: JobState,
    pub run_at: DateTime<Utc>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub fence: i64,
    pub pause_reason: Option<String>,
    /// What the agency showed at the last periodic check since the send last ran.
    pub agency_status: Option<String>,
    pub agency_checked_at: Option<DateTime<Utc>>,
}

/// A sent referral whose agency status is due for a check.
#[derive(Debug, Clone, PartialEq)]
pub struct AgencyCheck {
    pub request_id: RequestId,
    /// The ACCloud revision group of the referral (from its `referral` step).
    pub revision_group_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRecord {
    pub terms: ApprovalTerms,
    pub terms_hash: String,
    pub approved_by: String,
    pub approved_at: DateTime<Utc>,
}

/// A worker's hold on one send job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub request_id: RequestId,
    pub owner: String,
    pub fence: i64,
    pub until: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no such referral request")]
    NotFound,
    #[error("a referral request that is {} cannot be approved", .0.as_str())]
    NotApprovable(ReferralStatus),
    #[error("the referral request was approved with other terms and is {}", .0.as_str())]
    TermsDiffer(ReferralStatus),
    #[error("the referral request is {} and has nothing to resume", .0.as_str())]
    NotResumable(ReferralStatus),
    #[error("the lease on this send was lost")]
    LeaseLost,
    #[error("a change is still being sent (change {0}); try again when it is done")]
    ChangeInProgress(i64),
    #[error("the referral request is {} and cannot be changed", .0.as_str())]
    NotChangeable(ReferralStatus),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<sqlx::Error> for SendError {
    fn from(e: sqlx::Error) -> Self {
        SendError::Storage(e.into())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApproveOutcome {
    /// Recorded now; the send is queued.
    Approved,
    /// Approved before with the same terms: nothing changed.
    Unchanged,
}

async fn current_status(tx: &mut WriteTx, id: RequestId) -> Result<ReferralStatus, SendError> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM referral_requests WHERE request_id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut **tx)
            .await?;
    let s = status.ok_or(SendError::NotFound)?;
    ReferralStatus::parse(&s).ok_or_else(|| SendError::Storage(corrupt("referral status", s)))
}

async fn set_status(
    tx: &mut WriteTx,
    id: RequestId,
    status: ReferralStatus,
    at: DateTime<Utc>,
    actor: &str,
    reason: Option<&str>,
) -> Result<(), SendError> {
    sqlx::query("UPDATE referral_requests SET status = $1, updated_at = $2 WHERE request_id = $3")
        .bind(status.as_str())
        .bind(format_ts(at))
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    insert_status(tx, id, status, at, actor, reason).await?;
    Ok(())
}

/// Checks inside a transaction that the lease still holds.
async fn check_fence(tx: &mut WriteTx, lease: &Lease) -> Result<(), SendError> {
    let fence: Option<i64> = sqlx::query_scalar(
        "SELECT fence FROM send_jobs WHERE request_id = $1 AND lease_owner = $2",
    )
    .bind(lease.request_id.to_string())
    .bind(&lease.owner)
    .fetch_optional(&mut **tx)
    .await?;
    if fence == Some(lease.fence) {
        Ok(())
    } else {
        Err(SendError::LeaseLost)
    }
}

/// A step's result, to commit ([`Store::step_done`], [`Store::step_done_then_intent`],
/// [`Store::finish_send_after`]).
#[derive(Debug, Clone, Copy)]
pub struct DoneStep<'a> {
    pub position: i64,
    pub remote_id: &'a str,
    pub result: &'a StepResult,
}

/// `Ok` when a fenced write changed its row; a fenced write that changed nothing found the
/// lease gone (the step's row always exists while its job does).
fn fenced(rows_affected: u64) -> Result<(), SendError> {
    if rows_affected == 0 {
        Err(SendError::LeaseLost)
    } else {
        Ok(())
    }
}

/// The intent of a step, fenced in the statement itself: the write happens only while the
/// lease holds (the `EXISTS` reads the job in the same statement, so there is no gap between
/// the check and the write). One SQL string, so the prepared statement is reused.
fn intent_query<'q>(
    lease: &'q Lease,
    position: i64,
    natural_key: &NaturalKey,
    ts: &str,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    sqlx::query(
        "UPDATE send_steps SET state = $5, attempts = attempts + 1, natural_key = $1, \
         last_attempt_at = $2, not_before = NULL, updated_at = $2 WHERE request_id = $3 AND position = $4 \
         AND EXISTS (SELECT 1 FROM send_jobs j WHERE j.request_id = $3 AND j.lease_owner = $6 AND j.fence = $7)",
    )
    .bind(natural_key.to_json())
    .bind(ts.to_owned())
    .bind(lease.request_id.to_string())
    .bind(position)
    .bind(StepState::InFlight.as_str())
    .bind(lease.owner.as_str())
    .bind(lease.fence)
}

/// A step's result, fenced like [`intent_query`].
fn done_query<'q>(
    lease: &'q Lease,
    done: &DoneStep<'q>,
    ts: &str,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    sqlx::query(
        "UPDATE send_steps SET state = $6, remote_id = $1, result_json = $2, last_error = NULL, \
         not_before = NULL, updated_at = $3 WHERE request_id = $4 AND position = $5 \
         AND EXISTS (SELECT 1 FROM send_jobs j WHERE j.request_id = $4 AND j.lease_owner = $7 AND j.fence = $8)",
    )
    .bind(done.remote_id)
    .bind(done.result.to_json())
    .bind(ts.to_owned())
    .bind(lease.request_id.to_string())
    .bind(done.position)
    .bind(StepState::Done.as_str())
    .bind(lease.owner.as_str())
    .bind(lease.fence)
}

#[allow(clippy::too_many_arguments)]
async fn insert_change(
    tx: &mut WriteTx,
    id: RequestId,
    change_no: i64,
    kind: ChangeKind,
    actor: &str,
    ts: &str,
    reasons: &[String],
    comment: Option<&str>,
) -> Result<(), SendError> {
    sqlx::query(
        "INSERT INTO send_changes (request_id, change_no, kind, requested_by, requested_at, reasons_json, comment) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id.to_string())
    .bind(change_no)
    .bind(kind.as_str())
    .bind(actor)
    .bind(ts)
    .bind(serde_json::to_string(reasons).unwrap_or_else(|_| "[]".into()))
    .bind(comment)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Appends `steps` after the send's existing ones, for change `change_no`.
async fn insert_steps(
    tx: &mut WriteTx,
    id: RequestId,
    change_no: i64,
    steps: &[Step],
    ts: &str,
) -> Result<(), SendError> {
    let first_position: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(position), -1) + 1 FROM send_steps WHERE request_id = $1",
    )
    .bind(id.to_string())
    .fetch_one(&mut **tx)
    .await?;
    insert_steps_at(tx, id, change_no, first_position, steps, ts).await
}

/// Rows inserted by one `INSERT` of [`insert_steps_at`] at most (SQLite allows 32,766 bound
/// parameters; PostgreSQL 65,535).
const STEPS_PER_INSERT: usize = 100;

/// Inserts `steps` from `first_position` on: one multi-row `INSERT` per hundred steps. The
/// statement's text depends only on the number of rows, so a send of the usual shape reuses
/// one prepared statement.
async fn insert_steps_at(
    tx: &mut WriteTx,
    id: RequestId,
    change_no: i64,
    first_position: i64,
    steps: &[Step],
    ts: &str,
) -> Result<(), SendError> {
    let id = id.to_string();
    for (chunk_no, chunk) in steps.chunks(STEPS_PER_INSERT).enumerate() {
        let mut sql = String::from(
            "INSERT INTO send_steps (request_id, position, change_no, kind, item, state, attempts, updated_at) VALUES ",
        );
        for i in 0..chunk.len() {
            let p = 5 + 3 * i;
            if i > 0 {
                sql.push_str(", ");
            }
            // $1 request, $2 change, $3 state, $4 time; then per row position, kind, item.
            sql.push_str(&format!(
                "($1, ${p}, $2, ${}, ${}, $3, 0, $4)",
                p + 1,
                p + 2
            ));
        }
        let mut q = sqlx::query(&sql)
            .bind(&id)
            .bind(change_no)
            .bind(StepState::Pending.as_str())
            .bind(ts);
        for (i, step) in chunk.iter().enumerate() {
            let position = first_position + (chunk_no * STEPS_PER_INSERT + i) as i64;
            q = q
                .bind(position)
                .bind(step.kind().as_str())
                .bind(step.item());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Makes the job due now (it runs from its first step not done).
async fn requeue(tx: &mut WriteTx, id: RequestId, ts: &str) -> Result<(), SendError> {
    sqlx::query(
        "UPDATE send_jobs SET state = $3, run_at = $1, pause_reason = NULL, updated_at = $1, \
         ready_since = CASE WHEN state = $3 THEN ready_since ELSE $1 END WHERE request_id = $2",
    )
    .bind(ts)
    .bind(id.to_string())
    .bind(JobState::Ready.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Replaces the terms in force.
async fn replace_terms(
    tx: &mut WriteTx,
    id: RequestId,
    terms: &ApprovalTerms,
    ts: &str,
) -> Result<(), SendError> {
    sqlx::query("UPDATE approvals SET terms_json = $1, terms_hash = $2, updated_at = $3 WHERE request_id = $4")
        .bind(terms_json(terms))
        .bind(terms_hash(terms))
        .bind(ts)
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn terms_json(terms: &ApprovalTerms) -> String {
    serde_json::to_string(terms).expect("approval terms are plain data")
}

/// Which patient plan each authorization belongs to.
async fn insert_authorization_plans(
    tx: &mut WriteTx,
    id: RequestId,
    terms: &ApprovalTerms,
) -> Result<(), SendError> {
    for (index, plan) in terms.plan_links() {
        sqlx::query(
            "INSERT INTO authorization_plans (request_id, auth_index, plan_id) VALUES ($1, $2, $3)",
        )
        .bind(id.to_string())
        .bind(index as i64)
        .bind(plan)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn next_change_no(tx: &mut WriteTx, id: RequestId) -> Result<i64, SendError> {
    Ok(sqlx::query_scalar(
        "SELECT COALESCE(MAX(change_no), -1) + 1 FROM send_changes WHERE request_id = $1",
    )
    .bind(id.to_string())
    .fetch_one(&mut **tx)
    .await?)
}

/// The send's steps and their states, in order: what the planners read.
async fn step_states(tx: &mut WriteTx, id: RequestId) -> Result<Vec<(Step, StepState)>, SendError> {
    let rows = sqlx::query(
        "SELECT kind, item, state FROM send_steps WHERE request_id = $1 ORDER BY position",
    )
    .bind(id.to_string())
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            let (kind, item, state): (String, String, String) =
                (r.try_get("kind")?, r.try_get("item")?, r.try_get("state")?);
            Ok((parse_step(&kind, &item)?, parse_step_state(&state)?))
        })
        .collect()
}

fn parse_step(kind: &str, item: &str) -> Result<Step, StorageError> {
    Step::parse(kind, item).ok_or_else(|| corrupt("send step", format!("{kind} {item}")))
}

fn parse_step_state(s: &str) -> Result<StepState, StorageError> {
    StepState::parse(s).ok_or_else(|| corrupt("step state", s))
}

fn parse_job_state(s: &str) -> Result<JobState, StorageError> {
    JobState::parse(s).ok_or_else(|| corrupt("job state", s))
}

/// Skips every step of the send that is not settled ([`StepState::SETTLED`]).
async fn skip_unsettled(tx: &mut WriteTx, id: RequestId, ts: &str) -> Result<(), SendError> {
    sqlx::query(&format!(
        "UPDATE send_steps SET state = $1, updated_at = $2 WHERE request_id = $3 \
         AND state NOT IN ({})",
        sql_names(&StepState::SETTLED, StepState::as_str)
    ))
    .bind(StepState::Skipped.as_str())
    .bind(ts)
    .bind(id.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Withdraws authorizations of a referral whose first send is under way (their plan was
/// archived), inside the caller's transaction, as [`send::plan::withdrawal`] plans it: the
/// steps not settled are skipped, a new fencing token takes the send from any worker running
/// it, a `withdrawal` change deletes whatever of the authorizations may exist in ACCloud, and
/// the referral needs attention with `reason`.
pub(crate) async fn withdraw(
    tx: &mut WriteTx,
    id: RequestId,
    indexes: &[usize],
    reason: &str,
    at: DateTime<Utc>,
    actor: &str,
) -> Result<(), SendError> {
    let ts = format_ts(at);
    let plan = send::plan::withdrawal(&step_states(tx, id).await?, indexes);
    skip_unsettled(tx, id, &ts).await?;
    let change_no = next_change_no(tx, id).await?;
    insert_change(
        tx,
        id,
        change_no,
        ChangeKind::Withdrawal,
        actor,
        &ts,
        &[reason.to_owned()],
        None,
    )
    .await?;
    insert_steps(tx, id, change_no, &plan.steps, &ts).await?;
    sqlx::query(
        "UPDATE send_jobs SET state = $1, run_at = $2, lease_owner = NULL, lease_until = NULL, \
         fence = fence + 1, pause_reason = $3, updated_at = $2, \
         ready_since = CASE WHEN state = $5 THEN ready_since ELSE $2 END WHERE request_id = $4",
    )
    .bind(plan.job.as_str())
    .bind(&ts)
    .bind(reason)
    .bind(id.to_string())
    .bind(JobState::Ready.as_str())
    .execute(&mut **tx)
    .await?;
    set_status(
        tx,
        id,
        ReferralStatus::NeedsAttention,
        at,
        actor,
        Some(reason),
    )
    .await?;
    events::record(
        tx,
        at,
        EventType::SendNeedsAttention,
        id,
        json!({ "status": ReferralStatus::NeedsAttention,
                "reason": AttentionReason::AuthorizationWithdrawn.as_str(), "change_no": change_no }),
    )
    .await?;
    Ok(())
}

/// One thing asked of a send.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeRecord {
    pub change_no: i64,
    pub kind: ChangeKind,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub reasons: Vec<String>,
    pub comment: Option<String>,
}

/// What [`Store::record_change`] recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedChange {
    /// The change's number; `None` when nothing was left to record (every file's content
    /// was there already).
    pub change_no: Option<i64>,
    /// The positions of the change's files whose content the referral already had.
    pub files_already_there: Vec<usize>,
}

/// The contents of a referral's files.
async fn delivered_contents(
    tx: &mut WriteTx,
    id: RequestId,
) -> Result<Vec<refbridge_domain::ContentHash>, SendError> {
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT sha256 FROM referral_files WHERE request_id = $1")
            .bind(id.to_string())
            .fetch_all(&mut **tx)
            .await?;
    Ok(rows
        .iter()
        .map(|h| refbridge_domain::ContentHash::parse(h).map_err(|e| corrupt("file hash", e)))
        .collect::<Result<_, _>>()?)
}

/// A change to record: its kind, the steps it needs, and (for new terms) the terms and the
/// reasons; for new documents, the files (an upload step is added for each).
#[derive(Debug, Clone)]
pub struct NewChange<'a> {
    /// Terms, cancel or documents.
    pub kind: ChangeKind,
    pub steps: Vec<Step>,
    /// New terms in force.
    pub terms: Option<&'a ApprovalTerms>,
    pub reasons: Vec<String>,
    pub comment: Option<&'a str>,
    pub files: Vec<crate::NewFile>,
}

fn step_from_row(r: &sqlx::any::AnyRow) -> Result<StepRecord, StorageError> {
    let opt_ts = |c: &str| -> Result<Option<DateTime<Utc>>, StorageError> {
        let v: Option<String> = r.try_get(c)?;
        v.map(|s| parse_ts(&s)).transpose()
    };
    let (kind, item): (String, String) = (r.try_get("kind")?, r.try_get("item")?);
    let step = parse_step(&kind, &item)?;
    let key: Option<String> = r.try_get("natural_key")?;
    let natural_key = key
        .map(|k| NaturalKey::from_json(step.kind(), &k).map_err(|e| corrupt("natural key", e)))
        .transpose()?;
    let result: Option<String> = r.try_get("result_json")?;
    let result = result
        .map(|j| StepResult::from_json(step.kind(), &j).map_err(|e| corrupt("step result", e)))
        .transpose()?;
    let state: String = r.try_get("state")?;
    let updated: String = r.try_get("updated_at")?;
    Ok(StepRecord {
        position: r.try_get("position")?,
        change_no: r.try_get("change_no")?,
        step,
        state: parse_step_state(&state)?,
        attempts: r.try_get("attempts")?,
        natural_key,
        remote_id: r.try_get("remote_id")?,
        result,
        last_error: r.try_get("last_error")?,
        last_attempt_at: opt_ts("last_attempt_at")?,
        not_before: opt_ts("not_before")?,
        updated_at: parse_ts(&updated)?,
    })
}

impl Store {
    /// Records the approval, its audit entry, the links of its authorizations to patient
    /// plans, the planned steps and the queued send, in one transaction. The same terms
    /// again are a no-op; other terms are refused.
    pub async fn approve(
        &self,
        id: RequestId,
        terms: &ApprovalTerms,
        steps: &[Step],
        actor: &str,
    ) -> Result<ApproveOutcome, SendError> {
        let terms_hash = &terms_hash(terms);
        let mut tx = self.begin_write().await?;
        // The status and any earlier approval's hash, in one read.
        let row: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT r.status, a.terms_hash FROM referral_requests r \
             LEFT JOIN approvals a ON a.request_id = r.request_id WHERE r.request_id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let (status, existing) = row.ok_or(SendError::NotFound)?;
        let status = ReferralStatus::parse(&status)
            .ok_or_else(|| SendError::Storage(corrupt("referral status", status)))?;
        if let Some(hash) = existing {
            tx.rollback().await?;
            return if hash == *terms_hash {
                Ok(ApproveOutcome::Unchanged)
            } else {
                Err(SendError::TermsDiffer(status))
            };
        }
        if !status.can_become(ReferralStatus::Approved) {
            return Err(SendError::NotApprovable(status));
        }
        let at = now();
        let ts = format_ts(at);
        sqlx::query(
            "INSERT INTO approvals (request_id, terms_json, terms_hash, approved_by, approved_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(id.to_string())
        .bind(terms_json(terms))
        .bind(terms_hash)
        .bind(actor)
        .bind(&ts)
        .execute(&mut *tx)
        .await?;
        insert_change(&mut tx, id, 0, ChangeKind::Approval, actor, &ts, &[], None).await?;
        insert_authorization_plans(&mut tx, id, terms).await?;
        // A first approval: the send has no steps yet.
        insert_steps_at(&mut tx, id, 0, 0, steps, &ts).await?;
        sqlx::query(
            "INSERT INTO send_jobs (request_id, state, run_at, fence, created_at, updated_at, ready_since) \
             VALUES ($1, $3, $2, 0, $2, $2, $2)",
        )
        .bind(id.to_string())
        .bind(&ts)
        .bind(JobState::Ready.as_str())
        .execute(&mut *tx)
        .await?;
        set_status(&mut tx, id, ReferralStatus::Approved, at, actor, None).await?;
        audit::record(
            &mut tx,
            at,
            actor,
            "referral_request.approved",
            ("referral_request", &id.to_string()),
            &json!({ "terms_hash": terms_hash, "steps": steps.len() }),
        )
        .await?;
        events::record(
            &mut tx,
            at,
            EventType::ReferralApproved,
            id,
            json!({ "status": ReferralStatus::Approved, "steps": steps.len() }),
        )
        .await?;
        self.commit_events(tx).await?;
        Ok(ApproveOutcome::Approved)
    }

    pub async fn approval(&self, id: RequestId) -> Result<Option<ApprovalRecord>, StorageError> {
        let row = sqlx::query(
            "SELECT terms_json, terms_hash, approved_by, approved_at FROM approvals WHERE request_id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(self.reader())
        .await?;
        row.map(|r| {
            let terms: String = r.try_get("terms_json")?;
            let at: String = r.try_get("approved_at")?;
            Ok(ApprovalRecord {
                terms: serde_json::from_str(&terms).map_err(|e| corrupt("terms", e))?,
                terms_hash: r.try_get("terms_hash")?,
                approved_by: r.try_get("approved_by")?,
                approved_at: parse_ts(&at)?,
            })
        })
        .transpose()
    }

    pub async fn send_steps(&self, id: RequestId) -> Result<Vec<StepRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT position, change_no, kind, item, state, attempts, natural_key, remote_id, result_json, last_error, \
             last_attempt_at, not_before, updated_at FROM send_steps WHERE request_id = $1 ORDER BY position",
        )
        .bind(id.to_string())
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(step_from_row).collect()
    }

    pub async fn send_job(&self, id: RequestId) -> Result<Option<JobRecord>, StorageError> {
        let row = sqlx::query(
            "SELECT state, run_at, lease_owner, lease_until, fence, pause_reason, agency_status, \
             agency_checked_at FROM send_jobs WHERE request_id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(self.reader())
        .await?;
        row.map(|r| {
            let run_at: String = r.try_get("run_at")?;
            let until: Option<String> = r.try_get("lease_until")?;
            let checked: Option<String> = r.try_get("agency_checked_at")?;
            let state: String = r.try_get("state")?;
            Ok(JobRecord {
                state: parse_job_state(&state)?,
                run_at: parse_ts(&run_at)?,
                lease_owner: r.try_get("lease_owner")?,
                lease_until: until.map(|u| parse_ts(&u)).transpose()?,
                fence: r.try_get("fence")?,
                pause_reason: r.try_get("pause_reason")?,
                agency_status: r.try_get("agency_status")?,
                agency_checked_at: checked.map(|c| parse_ts(&c)).transpose()?,
            })
        })
        .transpose()
    }

    /// Takes up to `limit` sent referrals whose agency may still act on them (status not yet
    /// processed or cancelled) and whose last check is older than `every`, marking them
    /// checked now so that other workers pass them by.
    pub async fn take_agency_checks(
        &self,
        every: Duration,
        limit: i64,
    ) -> Result<Vec<AgencyCheck>, StorageError> {
        let at = now();
        let ts = format_ts(at);
        let cutoff = format_ts(at - chrono::Duration::from_std(every).unwrap_or_default());
        let sql = format!(
            "SELECT j.request_id, s.result_json FROM send_jobs j \
             JOIN send_steps s ON s.request_id = j.request_id AND s.kind = '{referral}' AND s.state = '{step_done}' \
             WHERE j.state = '{job_done}' AND j.agency_checked_at < $1 \
             AND (j.agency_status IS NULL OR j.agency_status NOT IN ({settled})) \
             ORDER BY j.agency_checked_at, j.request_id LIMIT $2",
            referral = send::StepKind::Referral.as_str(),
            step_done = StepState::Done.as_str(),
            job_done = JobState::Done.as_str(),
            settled = sql_names(&send::AGENCY_SETTLED_STATUSES, |s| s),
        );
        let rows = sqlx::query(&sql)
            .bind(&cutoff)
            .bind(limit)
            .fetch_all(self.reader())
            .await?;
        let mut out = Vec::new();
        for r in rows {
            let id: String = r.try_get("request_id")?;
            // Taken only if no other worker took it since the read.
            let mut w = self.write_single().await?;
            let taken = sqlx::query(
                "UPDATE send_jobs SET agency_checked_at = $1 WHERE request_id = $2 AND state = $4 \
                 AND agency_checked_at < $3",
            )
            .bind(&ts)
            .bind(&id)
            .bind(&cutoff)
            .bind(JobState::Done.as_str())
            .execute(&mut *w)
            .await?
            .rows_affected()
                == 1;
            w.commit().await?;
            let result: Option<String> = r.try_get("result_json")?;
            let group = result
                .and_then(|j| StepResult::from_json(send::StepKind::Referral, &j).ok())
                .and_then(|r| r.referral()?.revision_group_id.clone());
            if let (true, Some(revision_group_id)) = (taken, group) {
                out.push(AgencyCheck {
                    request_id: request_id_of(&id)?,
                    revision_group_id,
                });
            }
        }
        Ok(out)
    }

    /// Records what a check read. A change of status is audited.
    pub async fn record_agency_status(
        &self,
        id: RequestId,
        status: &str,
        actor: &str,
    ) -> Result<(), StorageError> {
        let mut tx = self.begin_write().await?;
        let at = now();
        let before: Option<Option<String>> =
            sqlx::query_scalar("SELECT agency_status FROM send_jobs WHERE request_id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query(
            "UPDATE send_jobs SET agency_status = $1, agency_checked_at = $2 WHERE request_id = $3",
        )
        .bind(status)
        .bind(format_ts(at))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        let before = before.flatten();
        if before.as_deref() != Some(status) {
            audit::record(
                &mut tx,
                at,
                actor,
                "referral_request.agency_status",
                ("referral_request", &id.to_string()),
                &json!({ "agency_status": status }),
            )
            .await?;
            events::record(
                &mut tx,
                at,
                EventType::AgencyStatusChanged,
                id,
                json!({ "agency_status": status, "previous": before }),
            )
            .await?;
        }
        self.commit_events(tx).await?;
        Ok(())
    }

    /// Claims the send job that is due soonest and not held by a live lease, bumping its
    /// fencing token. `None` when nothing is due.
    ///
    /// A first send starts with its claim: an approved referral moves to `sending` (with its
    /// history row, by `actor`) in the claim's own transaction, conditional on the status. On
    /// PostgreSQL the three writes are one statement (data-modifying `WITH`s), one round trip
    /// whatever it finds; SQLite has no writes inside `WITH`, so there a claim is a writer's
    /// member of two statements (three when it starts a send), local calls all.
    pub async fn claim_send_job(
        &self,
        owner: &str,
        lease: Duration,
        actor: &str,
    ) -> Result<Option<Lease>, StorageError> {
        let at = now();
        let ts = format_ts(at);
        let until = at + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30));
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let claim = format!(
            "UPDATE send_jobs SET lease_owner = $1, lease_until = $2, fence = fence + 1, updated_at = $3 \
             WHERE request_id = (SELECT request_id FROM send_jobs WHERE state = '{ready}' AND run_at <= $3 \
               AND (lease_until IS NULL OR lease_until < $3) ORDER BY run_at, request_id LIMIT 1{lock}) \
             AND state = '{ready}' AND (lease_until IS NULL OR lease_until < $3) \
             RETURNING request_id, fence",
            ready = JobState::Ready.as_str(),
        );
        let lease_of = |row: sqlx::any::AnyRow| -> Result<Lease, StorageError> {
            let id: String = row.try_get("request_id")?;
            Ok(Lease {
                request_id: request_id_of(&id)?,
                owner: owner.to_owned(),
                fence: row.try_get("fence")?,
                until,
            })
        };
        if self.backend == Backend::Postgres {
            let sql = format!(
                "WITH claimed AS ({claim}), \
                 started AS (UPDATE referral_requests SET status = $4, updated_at = $3 \
                   WHERE request_id = (SELECT request_id FROM claimed) AND status = $5 RETURNING request_id), \
                 history AS (INSERT INTO status_history (id, request_id, status, at, actor, reason) \
                   SELECT $6, request_id, $4, $3, $7, NULL FROM started) \
                 SELECT request_id, fence FROM claimed"
            );
            let mut w = self.write_single().await?;
            let row = sqlx::query(&sql)
                .bind(owner)
                .bind(format_ts(until))
                .bind(&ts)
                .bind(ReferralStatus::Sending.as_str())
                .bind(ReferralStatus::Approved.as_str())
                .bind(Uuid::now_v7().to_string())
                .bind(actor)
                .fetch_optional(&mut *w)
                .await?;
            w.commit().await?;
            return row.map(lease_of).transpose();
        }
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&claim)
            .bind(owner)
            .bind(format_ts(until))
            .bind(&ts)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            // Nothing written: committing keeps the writer's group going.
            tx.commit().await?;
            return Ok(None);
        };
        let lease = lease_of(row)?;
        let started = sqlx::query(
            "UPDATE referral_requests SET status = $1, updated_at = $2 WHERE request_id = $3 AND status = $4",
        )
        .bind(ReferralStatus::Sending.as_str())
        .bind(&ts)
        .bind(lease.request_id.to_string())
        .bind(ReferralStatus::Approved.as_str())
        .execute(&mut *tx)
        .await?;
        if started.rows_affected() == 1 {
            insert_status(
                &mut tx,
                lease.request_id,
                ReferralStatus::Sending,
                at,
                actor,
                None,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Some(lease))
    }

    /// Extends a lease that still holds.
    pub async fn renew_lease(&self, lease: &Lease, by: Duration) -> Result<Lease, SendError> {
        let until = now() + chrono::Duration::from_std(by).unwrap_or(chrono::Duration::seconds(30));
        let mut w = self.write_single().await?;
        let done = sqlx::query(
            "UPDATE send_jobs SET lease_until = $1 WHERE request_id = $2 AND lease_owner = $3 AND fence = $4",
        )
        .bind(format_ts(until))
        .bind(lease.request_id.to_string())
        .bind(&lease.owner)
        .bind(lease.fence)
        .execute(&mut *w)
        .await?;
        w.commit().await?;
        if done.rows_affected() == 0 {
            return Err(SendError::LeaseLost);
        }
        Ok(Lease {
            until,
            ..lease.clone()
        })
    }

    /// Gives the job back, to run again at `run_at`.
    pub async fn release_send_job(
        &self,
        lease: &Lease,
        run_at: DateTime<Utc>,
    ) -> Result<(), SendError> {
        let mut w = self.write_single().await?;
        let done = sqlx::query(
            "UPDATE send_jobs SET lease_owner = NULL, lease_until = NULL, run_at = $1, updated_at = $2 \
             WHERE request_id = $3 AND lease_owner = $4 AND fence = $5",
        )
        .bind(format_ts(run_at))
        .bind(format_ts(now()))
        .bind(lease.request_id.to_string())
        .bind(&lease.owner)
        .bind(lease.fence)
        .execute(&mut *w)
        .await?;
        w.commit().await?;
        if done.rows_affected() == 0 {
            return Err(SendError::LeaseLost);
        }
        Ok(())
    }

    /// Commits the intent of a step before its remote call: the natural key and the attempt.
    /// One statement, fenced by the lease in its own `WHERE` (no transaction around it).
    pub async fn step_intent(
        &self,
        lease: &Lease,
        position: i64,
        natural_key: &NaturalKey,
    ) -> Result<(), SendError> {
        let mut w = self.write_single().await?;
        let done = intent_query(lease, position, natural_key, &format_ts(now()))
            .execute(&mut *w)
            .await?;
        fenced(done.rows_affected())?;
        w.commit().await?;
        Ok(())
    }

    /// Commits a step's result (and so makes the next step the one to run).
    pub async fn step_done(
        &self,
        lease: &Lease,
        position: i64,
        remote_id: &str,
        result: &StepResult,
    ) -> Result<(), SendError> {
        let step = DoneStep {
            position,
            remote_id,
            result,
        };
        let mut w = self.write_single().await?;
        let done = done_query(lease, &step, &format_ts(now()))
            .execute(&mut *w)
            .await?;
        fenced(done.rows_affected())?;
        w.commit().await?;
        Ok(())
    }

    /// Commits a step's result and the intent of the step after it in one transaction: the
    /// intent is durable before the next step's remote call, as [`Store::step_intent`] makes
    /// it, with one commit instead of two.
    pub async fn step_done_then_intent(
        &self,
        lease: &Lease,
        done: &DoneStep<'_>,
        position: i64,
        natural_key: &NaturalKey,
    ) -> Result<(), SendError> {
        let ts = format_ts(now());
        let mut tx = self.begin_write().await?;
        let first = done_query(lease, done, &ts).execute(&mut *tx).await?;
        fenced(first.rows_affected())?;
        let second = intent_query(lease, position, natural_key, &ts)
            .execute(&mut *tx)
            .await?;
        fenced(second.rows_affected())?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a transient failure: the step waits until `not_before`, in `state` (pending
    /// when nothing was created, unknown when something may have been), and the job is given
    /// back to run then. `count_attempt` counts a failure that made no create call (a failed
    /// lookup) against the step's attempts, so an outage cannot retry forever.
    pub async fn step_retry(
        &self,
        lease: &Lease,
        position: i64,
        state: StepState,
        not_before: DateTime<Utc>,
        error: &str,
        count_attempt: bool,
    ) -> Result<(), SendError> {
        let mut tx = self.begin_write().await?;
        check_fence(&mut tx, lease).await?;
        let ts = format_ts(now());
        sqlx::query(
            "UPDATE send_steps SET state = $1, last_error = $2, not_before = $3, updated_at = $4, \
             attempts = attempts + $7 WHERE request_id = $5 AND position = $6",
        )
        .bind(state.as_str())
        .bind(error)
        .bind(format_ts(not_before))
        .bind(&ts)
        .bind(lease.request_id.to_string())
        .bind(position)
        .bind(i64::from(count_attempt))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE send_jobs SET lease_owner = NULL, lease_until = NULL, run_at = $1, updated_at = $2 \
             WHERE request_id = $3",
        )
        .bind(format_ts(not_before))
        .bind(&ts)
        .bind(lease.request_id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stops the send at a step: the referral needs attention, with the reason.
    pub async fn step_failed(
        &self,
        lease: &Lease,
        position: i64,
        error: &str,
        reason: AttentionReason,
        actor: &str,
    ) -> Result<(), SendError> {
        let mut tx = self.begin_write().await?;
        check_fence(&mut tx, lease).await?;
        let at = now();
        let ts = format_ts(at);
        sqlx::query(
            "UPDATE send_steps SET state = $5, last_error = $1, updated_at = $2 WHERE request_id = $3 AND position = $4",
        )
        .bind(error)
        .bind(&ts)
        .bind(lease.request_id.to_string())
        .bind(position)
        .bind(StepState::Failed.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE send_jobs SET state = $4, pause_reason = $1, lease_owner = NULL, lease_until = NULL, \
             updated_at = $2 WHERE request_id = $3",
        )
        .bind(error)
        .bind(&ts)
        .bind(lease.request_id.to_string())
        .bind(JobState::Paused.as_str())
        .execute(&mut *tx)
        .await?;
        set_status(
            &mut tx,
            lease.request_id,
            ReferralStatus::NeedsAttention,
            at,
            actor,
            Some(error),
        )
        .await?;
        audit::record(
            &mut tx,
            at,
            actor,
            "send.needs_attention",
            ("referral_request", &lease.request_id.to_string()),
            &json!({ "step": position }),
        )
        .await?;
        let kind: Option<String> = sqlx::query_scalar(
            "SELECT kind FROM send_steps WHERE request_id = $1 AND position = $2",
        )
        .bind(lease.request_id.to_string())
        .bind(position)
        .fetch_optional(&mut *tx)
        .await?;
        events::record(
            &mut tx,
            at,
            EventType::SendNeedsAttention,
            lease.request_id,
            json!({ "status": ReferralStatus::NeedsAttention, "reason": reason.as_str(),
                    "step": position, "step_kind": kind }),
        )
        .await?;
        self.commit_events(tx).await?;
        Ok(())
    }

    /// The agency cancelled the referral in ACCloud while a change was being sent: the step
    /// at `position` and every step not settled are skipped (with `reason`), the job is done,
    /// and the referral is cancelled.
    pub async fn cancelled_by_agency(
        &self,
        lease: &Lease,
        position: i64,
        reason: &str,
        actor: &str,
    ) -> Result<(), SendError> {
        let mut tx = self.begin_write().await?;
        check_fence(&mut tx, lease).await?;
        let at = now();
        let ts = format_ts(at);
        let id = lease.request_id.to_string();
        sqlx::query(
            "UPDATE send_steps SET last_error = $1, updated_at = $2 WHERE request_id = $3 AND position = $4",
        )
        .bind(reason)
        .bind(&ts)
        .bind(&id)
        .bind(position)
        .execute(&mut *tx)
        .await?;
        skip_unsettled(&mut tx, lease.request_id, &ts).await?;
        sqlx::query(
            "UPDATE send_jobs SET state = $1, lease_owner = NULL, lease_until = NULL, pause_reason = NULL, \
             agency_status = $2, agency_checked_at = $3, updated_at = $3 WHERE request_id = $4",
        )
        .bind(JobState::Done.as_str())
        .bind(send::AGENCY_CANCELLED)
        .bind(&ts)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        set_status(
            &mut tx,
            lease.request_id,
            ReferralStatus::Cancelled,
            at,
            actor,
            Some(reason),
        )
        .await?;
        audit::record(
            &mut tx,
            at,
            actor,
            "send.cancelled_by_agency",
            ("referral_request", &id),
            &json!({ "step": position }),
        )
        .await?;
        events::record(
            &mut tx,
            at,
            EventType::AgencyStatusChanged,
            lease.request_id,
            json!({ "agency_status": send::AGENCY_CANCELLED }),
        )
        .await?;
        events::record(
            &mut tx,
            at,
            EventType::SendCancelled,
            lease.request_id,
            json!({ "status": ReferralStatus::Cancelled, "by": "agency" }),
        )
        .await?;
        self.commit_events(tx).await?;
        Ok(())
    }

    /// Every step is done: the referral is sent.
    pub async fn finish_send(&self, lease: &Lease, actor: &str) -> Result<(), SendError> {
        self.finish_send_after(lease, actor, None).await
    }

    /// [`Store::finish_send`], committing the last step's result in the same transaction.
    pub async fn finish_send_after(
        &self,
        lease: &Lease,
        actor: &str,
        last: Option<&DoneStep<'_>>,
    ) -> Result<(), SendError> {
        let mut tx = self.begin_write().await?;
        let at = now();
        let ts = format_ts(at);
        // Fenced in the statement; on PostgreSQL it also locks the job's row until commit, so
        // no claim can slip in before the rest of this transaction.
        let job = sqlx::query(
            "UPDATE send_jobs SET state = $3, lease_owner = NULL, lease_until = NULL, updated_at = $1, \
             agency_status = NULL, agency_checked_at = $1 WHERE request_id = $2 AND lease_owner = $4 AND fence = $5",
        )
        .bind(&ts)
        .bind(lease.request_id.to_string())
        .bind(JobState::Done.as_str())
        .bind(&lease.owner)
        .bind(lease.fence)
        .execute(&mut *tx)
        .await?;
        fenced(job.rows_affected())?;
        if let Some(step) = last {
            // The job's row now says no one holds the lease: the step is written unfenced,
            // inside the transaction that checked it.
            sqlx::query(
                "UPDATE send_steps SET state = $6, remote_id = $1, result_json = $2, last_error = NULL, \
                 not_before = NULL, updated_at = $3 WHERE request_id = $4 AND position = $5",
            )
            .bind(step.remote_id)
            .bind(step.result.to_json())
            .bind(&ts)
            .bind(lease.request_id.to_string())
            .bind(step.position)
            .bind(StepState::Done.as_str())
            .execute(&mut *tx)
            .await?;
        }
        let last: Option<(String, i64)> = sqlx::query_as(
            "SELECT kind, change_no FROM send_changes WHERE request_id = $1 ORDER BY change_no DESC LIMIT 1",
        )
        .bind(lease.request_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let (last_kind, change_no) = match last {
            Some((k, n)) => (
                ChangeKind::parse(&k).ok_or_else(|| corrupt("change kind", k))?,
                n,
            ),
            None => (ChangeKind::Approval, 0),
        };
        let (status, event) = match last_kind.run_end() {
            RunEnd::AwaitingResume(reason) => {
                // The referral stays with a reviewer (its status was set when the change that
                // interrupted the send was recorded).
                sqlx::query(
                    "UPDATE send_jobs SET state = $1, pause_reason = $2 WHERE request_id = $3",
                )
                .bind(JobState::Paused.as_str())
                .bind(reason)
                .bind(lease.request_id.to_string())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Ok(());
            }
            RunEnd::Cancelled => (ReferralStatus::Cancelled, "send.cancelled"),
            RunEnd::Sent => (ReferralStatus::Sent, "send.completed"),
        };
        set_status(&mut tx, lease.request_id, status, at, actor, None).await?;
        audit::record(
            &mut tx,
            at,
            actor,
            event,
            ("referral_request", &lease.request_id.to_string()),
            &json!({}),
        )
        .await?;
        let (event_type, data) = match last_kind {
            ChangeKind::Cancel => (
                EventType::SendCancelled,
                json!({ "status": status, "by": "reviewer", "change_no": change_no }),
            ),
            ChangeKind::Terms => (
                EventType::SendChangeSent,
                json!({ "status": status, "change_no": change_no }),
            ),
            ChangeKind::Documents => (
                EventType::SendDocumentsDelivered,
                json!({ "status": status, "change_no": change_no }),
            ),
            ChangeKind::Approval | ChangeKind::Resume | ChangeKind::Withdrawal => (
                EventType::SendCompleted,
                json!({ "status": status, "change_no": change_no }),
            ),
        };
        events::record(&mut tx, at, event_type, lease.request_id, data).await?;
        self.commit_events(tx).await?;
        Ok(())
    }

    /// Resumes a send that needs attention, from the step where it stopped, optionally with
    /// corrected terms. The stopped step starts with a lookup, in case its last call landed.
    pub async fn resume_send(
        &self,
        id: RequestId,
        corrected: Option<&ApprovalTerms>,
        actor: &str,
    ) -> Result<(), SendError> {
        let mut tx = self.begin_write().await?;
        let status = current_status(&mut tx, id).await?;
        if status != ReferralStatus::NeedsAttention {
            return Err(SendError::NotResumable(status));
        }
        let at = now();
        let ts = format_ts(at);
        if let Some(terms) = corrected {
            replace_terms(&mut tx, id, terms, &ts).await?;
            sqlx::query("DELETE FROM authorization_plans WHERE request_id = $1")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
            insert_authorization_plans(&mut tx, id, terms).await?;
        }
        // A withdrawal stopped the first send: plan what it skipped again, after it.
        let replan = send::plan::replan_after_withdrawal(&step_states(&mut tx, id).await?);
        if !replan.is_empty() {
            let change_no = next_change_no(&mut tx, id).await?;
            insert_change(
                &mut tx,
                id,
                change_no,
                ChangeKind::Resume,
                actor,
                &ts,
                &[],
                None,
            )
            .await?;
            sqlx::query(
                "UPDATE send_steps SET state = $3, updated_at = $1 \
                 WHERE request_id = $2 AND state = $4",
            )
            .bind(&ts)
            .bind(id.to_string())
            .bind(StepState::Replanned.as_str())
            .bind(StepState::Skipped.as_str())
            .execute(&mut *tx)
            .await?;
            insert_steps(&mut tx, id, change_no, &replan, &ts).await?;
        }
        // The stopped step starts with a lookup, in case its last call landed.
        sqlx::query(
            "UPDATE send_steps SET state = $3, attempts = 0, not_before = NULL, updated_at = $1 \
             WHERE request_id = $2 AND state = $4",
        )
        .bind(&ts)
        .bind(id.to_string())
        .bind(StepState::Unknown.as_str())
        .bind(StepState::Failed.as_str())
        .execute(&mut *tx)
        .await?;
        requeue(&mut tx, id, &ts).await?;
        set_status(
            &mut tx,
            id,
            ReferralStatus::Sending,
            at,
            actor,
            Some("resumed"),
        )
        .await?;
        audit::record(
            &mut tx,
            at,
            actor,
            "send.resumed",
            ("referral_request", &id.to_string()),
            &json!({ "terms_corrected": corrected.is_some(), "replanned_steps": replan.len() }),
        )
        .await?;
        events::record(
            &mut tx,
            at,
            EventType::SendResumed,
            id,
            json!({ "status": ReferralStatus::Sending, "terms_corrected": corrected.is_some(),
                    "replanned_steps": replan.len() }),
        )
        .await?;
        self.commit_events(tx).await?;
        Ok(())
    }

    /// Records a change asked after the send (new terms, a cancellation, new documents): the
    /// change, its steps after the existing ones, the new terms or files, the queued send,
    /// the status and the audit entry, in one transaction. Refused while another change (or
    /// the first send) is under way, and once the referral is cancelled or denied. A file
    /// whose content the referral already has is not recorded again
    /// ([`send::files::by_content`]); when no file is left, nothing is recorded.
    pub async fn record_change(
        &self,
        id: RequestId,
        change: &NewChange<'_>,
        actor: &str,
    ) -> Result<RecordedChange, SendError> {
        let mut tx = self.begin_write().await?;
        let status = current_status(&mut tx, id).await?;
        let job_state: Option<String> =
            sqlx::query_scalar("SELECT state FROM send_jobs WHERE request_id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let last_change: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(change_no), 0) FROM send_changes WHERE request_id = $1",
        )
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let job_state = job_state.as_deref().map(parse_job_state).transpose()?;
        match send::may_change(status, job_state) {
            Ok(()) => {}
            Err(ChangeRefused::InProgress) => return Err(SendError::ChangeInProgress(last_change)),
            Err(ChangeRefused::NotChangeable(s)) => return Err(SendError::NotChangeable(s)),
        }
        let sorted = if change.files.is_empty() {
            send::files::ByContent::default()
        } else {
            let delivered = delivered_contents(&mut tx, id).await?;
            let sorted =
                send::files::by_content(&delivered, change.files.iter().map(|f| &f.blob.hash));
            if sorted.send.is_empty() {
                tx.rollback().await?;
                return Ok(RecordedChange {
                    change_no: None,
                    files_already_there: sorted.already_there,
                });
            }
            sorted
        };
        let at = now();
        let ts = format_ts(at);
        let change_no = last_change + 1;
        let reasons = if change.files.is_empty() {
            change.reasons.clone()
        } else {
            vec![send::plan::documents_reason(sorted.send.len())]
        };
        insert_change(
            &mut tx,
            id,
            change_no,
            change.kind,
            actor,
            &ts,
            &reasons,
            change.comment,
        )
        .await?;
        let mut steps = change.steps.clone();
        if !sorted.send.is_empty() {
            // Each new file is uploaded by a step of its own, keyed by the file's new id.
            let files: Vec<crate::NewFile> = sorted
                .send
                .iter()
                .map(|&i| change.files[i].clone())
                .collect();
            let ids = crate::referrals::insert_files(&mut tx, id, &files, &ts).await?;
            steps.extend(send::plan::documents(ids));
        }
        insert_steps(&mut tx, id, change_no, &steps, &ts).await?;
        if let Some(terms) = change.terms {
            replace_terms(&mut tx, id, terms, &ts).await?;
        }
        requeue(&mut tx, id, &ts).await?;
        set_status(
            &mut tx,
            id,
            ReferralStatus::Sending,
            at,
            actor,
            Some(change.kind.as_str()),
        )
        .await?;
        audit::record(
            &mut tx,
            at,
            actor,
            &format!("send.{}", change.kind.as_str()),
            ("referral_request", &id.to_string()),
            &json!({ "change_no": change_no, "steps": steps.len(), "files": sorted.send.len() }),
        )
        .await?;
        tx.commit().await?;
        Ok(RecordedChange {
            change_no: Some(change_no),
            files_already_there: sorted.already_there,
        })
    }

    /// The ACCloud paths of the files delivered to the client of `patient` (by any of its
    /// referrals): an upload found after an unknown outcome is never one of these.
    pub async fn delivered_attachments(
        &self,
        patient: refbridge_domain::PatientId,
    ) -> Result<Vec<String>, StorageError> {
        let sql = format!(
            "SELECT s.result_json FROM send_steps s JOIN referral_requests r ON r.request_id = s.request_id \
             WHERE r.patient_id = $1 AND s.kind = '{}' AND s.state = '{}' AND s.result_json IS NOT NULL",
            send::StepKind::Attachment.as_str(),
            StepState::Done.as_str(),
        );
        let rows: Vec<String> = sqlx::query_scalar(&sql)
            .bind(patient.to_string())
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|json| {
                match StepResult::from_json(send::StepKind::Attachment, json)
                    .map_err(|e| corrupt("step result", e))?
                {
                    StepResult::Attachment(a) => Ok(a.filepath),
                    _ => Err(corrupt("step result", "not an attachment's")),
                }
            })
            .collect()
    }

    pub async fn send_changes(&self, id: RequestId) -> Result<Vec<ChangeRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT change_no, kind, requested_by, requested_at, reasons_json, comment FROM send_changes \
             WHERE request_id = $1 ORDER BY change_no",
        )
        .bind(id.to_string())
        .fetch_all(self.reader())
        .await?;
        rows.into_iter()
            .map(|r| {
                let at: String = r.try_get("requested_at")?;
                let reasons: String = r.try_get("reasons_json")?;
                let kind: String = r.try_get("kind")?;
                Ok(ChangeRecord {
                    change_no: r.try_get("change_no")?,
                    kind: ChangeKind::parse(&kind).ok_or_else(|| corrupt("change kind", kind))?,
                    requested_by: r.try_get("requested_by")?,
                    requested_at: parse_ts(&at)?,
                    reasons: serde_json::from_str(&reasons).map_err(|e| corrupt("reasons", e))?,
                    comment: r.try_get("comment")?,
                })
            })
            .collect()
    }

    /// Send jobs not finished: ready or paused, for operators and tests.
    pub async fn count_unfinished_sends(&self) -> Result<i64, StorageError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM send_jobs WHERE state <> $1")
                .bind(JobState::Done.as_str())
                .fetch_one(self.reader())
                .await?,
        )
    }
}

/// A send that needs attention, as the needs-attention list shows it: ids, the agency, why
/// and since when; no personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PausedSend {
    pub request_id: RequestId,
    pub agency_name: String,
    pub reason: Option<String>,
    pub paused_since: DateTime<Utc>,
    /// The kind of the step it stopped at, in plain words.
    pub step: Option<String>,
}

impl Store {
    /// The paused sends, longest waiting first (at most `limit`).
    pub async fn paused_sends(&self, limit: i64) -> Result<Vec<PausedSend>, StorageError> {
        let sql = format!(
            "SELECT j.request_id, j.pause_reason, j.updated_at, r.agency_name, \
             (SELECT s.kind FROM send_steps s WHERE s.request_id = j.request_id AND s.state = '{failed}' \
              ORDER BY s.position LIMIT 1) AS step \
             FROM send_jobs j JOIN referral_requests r ON r.request_id = j.request_id \
             WHERE j.state = '{paused}' ORDER BY j.updated_at, j.request_id LIMIT $1",
            failed = StepState::Failed.as_str(),
            paused = JobState::Paused.as_str(),
        );
        let rows = sqlx::query(&sql)
            .bind(limit)
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("request_id")?;
                let at: String = r.try_get("updated_at")?;
                let step: Option<String> = r.try_get("step")?;
                Ok(PausedSend {
                    request_id: request_id_of(&id)?,
                    agency_name: r.try_get("agency_name")?,
                    reason: r.try_get("pause_reason")?,
                    paused_since: parse_ts(&at)?,
                    step: step
                        .and_then(|k| send::StepKind::parse(&k))
                        .map(|k| k.label().to_owned()),
                })
            })
            .collect()
    }
}
