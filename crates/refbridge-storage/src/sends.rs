//! The approval and its send: the approved terms, the per-referral send job (claimed by
//! workers under a lease with a fencing token), and its ordered steps.
//!
//! Every write made on behalf of a worker checks the lease's fencing token, so a worker whose
//! lease was taken over cannot overwrite the new owner's progress.

use std::time::Duration;

use chrono::{DateTime, Utc};
use refbridge_domain::{ReferralStatus, RequestId};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{Any, Row, Transaction};

use crate::error::{StorageError, corrupt};
use crate::referrals::{insert_status, request_id_of};
use crate::{Backend, Store, audit, format_ts, now, parse_ts};

/// The state of one step of a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Not tried yet, or safe to try again (nothing was created).
    Pending,
    /// The intent is committed and the call may be under way.
    InFlight,
    /// The last call's outcome is unknown: look the object up before creating again.
    Unknown,
    Done,
    /// Stopped: a definite rejection or exhausted retries. A human resumes it.
    Failed,
    /// Not to be done any more (its authorization was withdrawn).
    Skipped,
    /// Skipped by a withdrawal, then planned again, after it, by a resume.
    Replanned,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InFlight => "in_flight",
            Self::Unknown => "unknown",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Replanned => "replanned",
        }
    }
    fn parse(s: &str) -> Result<Self, StorageError> {
        Ok(match s {
            "pending" => Self::Pending,
            "in_flight" => Self::InFlight,
            "unknown" => Self::Unknown,
            "done" => Self::Done,
            "failed" => Self::Failed,
            "skipped" => Self::Skipped,
            "replanned" => Self::Replanned,
            other => return Err(corrupt("step state", other)),
        })
    }
}

/// A step to plan: its kind and which item of that kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStep {
    pub kind: String,
    pub item: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    pub position: i64,
    /// 0 for the first send; then the change that added the step.
    pub change_no: i64,
    pub kind: String,
    pub item: String,
    pub state: StepState,
    pub attempts: i64,
    pub natural_key: Option<Value>,
    pub remote_id: Option<String>,
    pub result: Option<Value>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub not_before: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    pub state: String,
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
    pub terms: Value,
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

/// New terms given with a resume: the terms, their hash, and the plan of each authorization
/// (index, plan id).
#[derive(Debug, Clone, Copy)]
pub struct CorrectedTerms<'a> {
    pub terms: &'a Value,
    pub terms_hash: &'a str,
    pub plans: &'a [(usize, String)],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApproveOutcome {
    /// Recorded now; the send is queued.
    Approved,
    /// Approved before with the same terms: nothing changed.
    Unchanged,
}

async fn current_status(
    tx: &mut Transaction<'static, Any>,
    id: RequestId,
) -> Result<ReferralStatus, SendError> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM referral_requests WHERE request_id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut **tx)
            .await?;
    let s = status.ok_or(SendError::NotFound)?;
    ReferralStatus::parse(&s).ok_or_else(|| SendError::Storage(corrupt("referral status", s)))
}

async fn set_status(
    tx: &mut Transaction<'static, Any>,
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
async fn check_fence(tx: &mut Transaction<'static, Any>, lease: &Lease) -> Result<(), SendError> {
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

#[allow(clippy::too_many_arguments)]
async fn insert_change(
    tx: &mut Transaction<'static, Any>,
    id: RequestId,
    change_no: i64,
    kind: &str,
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
    .bind(kind)
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
    tx: &mut Transaction<'static, Any>,
    id: RequestId,
    change_no: i64,
    steps: &[NewStep],
    ts: &str,
) -> Result<(), SendError> {
    let first_position: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(position), -1) + 1 FROM send_steps WHERE request_id = $1",
    )
    .bind(id.to_string())
    .fetch_one(&mut **tx)
    .await?;
    for (i, step) in steps.iter().enumerate() {
        sqlx::query(
            "INSERT INTO send_steps (request_id, position, change_no, kind, item, state, attempts, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6)",
        )
        .bind(id.to_string())
        .bind(first_position + i as i64)
        .bind(change_no)
        .bind(&step.kind)
        .bind(&step.item)
        .bind(ts)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Makes the job due now (it runs from its first step not done).
async fn requeue(
    tx: &mut Transaction<'static, Any>,
    id: RequestId,
    ts: &str,
) -> Result<(), SendError> {
    sqlx::query(
        "UPDATE send_jobs SET state = 'ready', run_at = $1, pause_reason = NULL, updated_at = $1 WHERE request_id = $2",
    )
    .bind(ts)
    .bind(id.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Replaces the terms in force.
async fn replace_terms(
    tx: &mut Transaction<'static, Any>,
    id: RequestId,
    terms: &Value,
    hash: &str,
    ts: &str,
) -> Result<(), SendError> {
    sqlx::query("UPDATE approvals SET terms_json = $1, terms_hash = $2, updated_at = $3 WHERE request_id = $4")
        .bind(terms.to_string())
        .bind(hash)
        .bind(ts)
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Which patient plan each authorization belongs to (index, plan id).
async fn insert_authorization_plans(
    tx: &mut Transaction<'static, Any>,
    id: RequestId,
    plans: &[(usize, String)],
) -> Result<(), SendError> {
    for (index, plan) in plans {
        sqlx::query(
            "INSERT INTO authorization_plans (request_id, auth_index, plan_id) VALUES ($1, $2, $3)",
        )
        .bind(id.to_string())
        .bind(*index as i64)
        .bind(plan)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn next_change_no(
    tx: &mut Transaction<'static, Any>,
    id: RequestId,
) -> Result<i64, SendError> {
    Ok(sqlx::query_scalar(
        "SELECT COALESCE(MAX(change_no), -1) + 1 FROM send_changes WHERE request_id = $1",
    )
    .bind(id.to_string())
    .fetch_one(&mut **tx)
    .await?)
}

/// After a withdrawal, what the first send still has to do, in order: the withdrawn
/// authorizations created anew, then every step the withdrawal skipped. Empty when nothing
/// was skipped.
async fn replan_after_withdrawal(
    tx: &mut Transaction<'static, Any>,
    id: RequestId,
) -> Result<Vec<NewStep>, SendError> {
    let rows = sqlx::query(
        "SELECT kind, item, state FROM send_steps WHERE request_id = $1 ORDER BY position",
    )
    .bind(id.to_string())
    .fetch_all(&mut **tx)
    .await?;
    let mut withdrawn = std::collections::BTreeSet::new();
    let mut skipped = Vec::new();
    for row in rows {
        let (kind, item, state): (String, String, String) = (
            row.try_get("kind")?,
            row.try_get("item")?,
            row.try_get("state")?,
        );
        match (kind.as_str(), state.as_str()) {
            (_, "skipped") => skipped.push(NewStep { kind, item }),
            (_, "replanned") => {}
            ("authorization_withdraw", _) => {
                withdrawn.insert(item.parse::<i64>().unwrap_or_default());
            }
            ("authorization", _) => {
                withdrawn.remove(&item.parse::<i64>().unwrap_or_default());
            }
            _ => {}
        }
    }
    if skipped.is_empty() {
        return Ok(Vec::new());
    }
    let mut steps: Vec<NewStep> = withdrawn
        .iter()
        .map(|i| NewStep {
            kind: "authorization".into(),
            item: i.to_string(),
        })
        .collect();
    for step in skipped {
        if !steps.contains(&step) {
            steps.push(step);
        }
    }
    Ok(steps)
}

/// Withdraws authorizations of a referral whose first send is under way (their plan was
/// archived), inside the caller's transaction: the remaining steps are skipped, a new
/// fencing token takes the send from any worker running it, a `withdrawal` change deletes
/// from ACCloud whatever of the authorizations may exist there (created, or being created),
/// and the referral needs attention with `reason`.
pub(crate) async fn withdraw(
    tx: &mut Transaction<'static, Any>,
    id: RequestId,
    indexes: &[i64],
    reason: &str,
    at: DateTime<Utc>,
    actor: &str,
) -> Result<(), SendError> {
    let ts = format_ts(at);
    let mut steps = Vec::new();
    for index in indexes {
        // The latest creation of that authorization (a resume after a withdrawal creates it
        // again).
        let state: Option<String> = sqlx::query_scalar(
            "SELECT state FROM send_steps WHERE request_id = $1 \
             AND kind = 'authorization' AND item = $2 ORDER BY position DESC LIMIT 1",
        )
        .bind(id.to_string())
        .bind(index.to_string())
        .fetch_optional(&mut **tx)
        .await?;
        if matches!(state.as_deref(), Some("done" | "in_flight" | "unknown")) {
            steps.push(NewStep {
                kind: "authorization_withdraw".into(),
                item: index.to_string(),
            });
        }
    }
    sqlx::query(
        "UPDATE send_steps SET state = 'skipped', updated_at = $1 WHERE request_id = $2 \
         AND state NOT IN ('done', 'skipped', 'replanned')",
    )
    .bind(&ts)
    .bind(id.to_string())
    .execute(&mut **tx)
    .await?;
    let change_no = next_change_no(tx, id).await?;
    insert_change(
        tx,
        id,
        change_no,
        "withdrawal",
        actor,
        &ts,
        &[reason.to_owned()],
        None,
    )
    .await?;
    insert_steps(tx, id, change_no, &steps, &ts).await?;
    sqlx::query(
        "UPDATE send_jobs SET state = $1, run_at = $2, lease_owner = NULL, lease_until = NULL, \
         fence = fence + 1, pause_reason = $3, updated_at = $2 WHERE request_id = $4",
    )
    .bind(if steps.is_empty() { "paused" } else { "ready" })
    .bind(&ts)
    .bind(reason)
    .bind(id.to_string())
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
    .await
}

/// What kind of change is asked after the first send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// New terms.
    Terms,
    Cancel,
    Documents,
}

impl ChangeKind {
    fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Terms => "change",
            ChangeKind::Cancel => "cancel",
            ChangeKind::Documents => "documents",
        }
    }
}

/// One thing asked of a send.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeRecord {
    pub change_no: i64,
    pub kind: String,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub reasons: Vec<String>,
    pub comment: Option<String>,
}

/// A change to record: its kind, the steps it needs, and (for new terms) the terms and the
/// reasons; for new documents, the files (an upload step is added for each).
#[derive(Debug, Clone)]
pub struct NewChange<'a> {
    pub kind: ChangeKind,
    pub steps: Vec<NewStep>,
    pub terms: Option<(&'a Value, &'a str)>,
    pub reasons: Vec<String>,
    pub comment: Option<&'a str>,
    pub files: Vec<crate::NewFile>,
}

fn step_from_row(r: &sqlx::any::AnyRow) -> Result<StepRecord, StorageError> {
    let opt_ts = |c: &str| -> Result<Option<DateTime<Utc>>, StorageError> {
        let v: Option<String> = r.try_get(c)?;
        v.map(|s| parse_ts(&s)).transpose()
    };
    let opt_json = |c: &str| -> Result<Option<Value>, StorageError> {
        let v: Option<String> = r.try_get(c)?;
        v.map(|s| serde_json::from_str(&s).map_err(|e| corrupt(c, e)))
            .transpose()
    };
    let state: String = r.try_get("state")?;
    let updated: String = r.try_get("updated_at")?;
    Ok(StepRecord {
        position: r.try_get("position")?,
        change_no: r.try_get("change_no")?,
        kind: r.try_get("kind")?,
        item: r.try_get("item")?,
        state: StepState::parse(&state)?,
        attempts: r.try_get("attempts")?,
        natural_key: opt_json("natural_key")?,
        remote_id: r.try_get("remote_id")?,
        result: opt_json("result_json")?,
        last_error: r.try_get("last_error")?,
        last_attempt_at: opt_ts("last_attempt_at")?,
        not_before: opt_ts("not_before")?,
        updated_at: parse_ts(&updated)?,
    })
}

impl Store {
    /// Records the approval, its audit entry, the planned steps and the queued send, in one
    /// transaction. The same terms again are a no-op; other terms are refused.
    /// `plans`: the patient plan of each authorization that has one (index, plan id).
    #[allow(clippy::too_many_arguments)]
    pub async fn approve(
        &self,
        id: RequestId,
        terms: &Value,
        terms_hash: &str,
        steps: &[NewStep],
        plans: &[(usize, String)],
        actor: &str,
    ) -> Result<ApproveOutcome, SendError> {
        let mut tx = self.begin_write().await?;
        let status = current_status(&mut tx, id).await?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT terms_hash FROM approvals WHERE request_id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(hash) = existing {
            tx.rollback().await?;
            return if hash == terms_hash {
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
        .bind(terms.to_string())
        .bind(terms_hash)
        .bind(actor)
        .bind(&ts)
        .execute(&mut *tx)
        .await?;
        insert_change(&mut tx, id, 0, "approval", actor, &ts, &[], None).await?;
        insert_authorization_plans(&mut tx, id, plans).await?;
        insert_steps(&mut tx, id, 0, steps, &ts).await?;
        sqlx::query(
            "INSERT INTO send_jobs (request_id, state, run_at, fence, created_at, updated_at) \
             VALUES ($1, 'ready', $2, 0, $2, $2)",
        )
        .bind(id.to_string())
        .bind(&ts)
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
        tx.commit().await?;
        Ok(ApproveOutcome::Approved)
    }

    pub async fn approval(&self, id: RequestId) -> Result<Option<ApprovalRecord>, StorageError> {
        let row = sqlx::query(
            "SELECT terms_json, terms_hash, approved_by, approved_at FROM approvals WHERE request_id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
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
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(step_from_row).collect()
    }

    pub async fn send_job(&self, id: RequestId) -> Result<Option<JobRecord>, StorageError> {
        let row = sqlx::query(
            "SELECT state, run_at, lease_owner, lease_until, fence, pause_reason, agency_status, \
             agency_checked_at FROM send_jobs WHERE request_id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let run_at: String = r.try_get("run_at")?;
            let until: Option<String> = r.try_get("lease_until")?;
            let checked: Option<String> = r.try_get("agency_checked_at")?;
            Ok(JobRecord {
                state: r.try_get("state")?,
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
        let rows = sqlx::query(
            "SELECT j.request_id, s.result_json FROM send_jobs j \
             JOIN send_steps s ON s.request_id = j.request_id AND s.kind = 'referral' AND s.state = 'done' \
             WHERE j.state = 'done' AND j.agency_checked_at < $1 \
             AND (j.agency_status IS NULL OR j.agency_status NOT IN ('processed', 'cancelled')) \
             ORDER BY j.agency_checked_at, j.request_id LIMIT $2",
        )
        .bind(&cutoff)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in rows {
            let id: String = r.try_get("request_id")?;
            // Taken only if no other worker took it since the read.
            let taken = sqlx::query(
                "UPDATE send_jobs SET agency_checked_at = $1 WHERE request_id = $2 AND state = 'done' \
                 AND agency_checked_at < $3",
            )
            .bind(&ts)
            .bind(&id)
            .bind(&cutoff)
            .execute(&self.pool)
            .await?
            .rows_affected()
                == 1;
            let result: Option<String> = r.try_get("result_json")?;
            let group = result
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|v| v.get("revision_group_id")?.as_str().map(str::to_owned));
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
        if before.flatten().as_deref() != Some(status) {
            audit::record(
                &mut tx,
                at,
                actor,
                "referral_request.agency_status",
                ("referral_request", &id.to_string()),
                &json!({ "agency_status": status }),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Claims the send job that is due soonest and not held by a live lease, bumping its
    /// fencing token. `None` when nothing is due.
    pub async fn claim_send_job(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Lease>, StorageError> {
        let at = now();
        let until = at + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30));
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE send_jobs SET lease_owner = $1, lease_until = $2, fence = fence + 1, updated_at = $3 \
             WHERE request_id = (SELECT request_id FROM send_jobs WHERE state = 'ready' AND run_at <= $3 \
               AND (lease_until IS NULL OR lease_until < $3) ORDER BY run_at, request_id LIMIT 1{lock}) \
             AND state = 'ready' AND (lease_until IS NULL OR lease_until < $3) \
             RETURNING request_id, fence"
        );
        let row = sqlx::query(&sql)
            .bind(owner)
            .bind(format_ts(until))
            .bind(format_ts(at))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let id: String = r.try_get("request_id")?;
            Ok(Lease {
                request_id: request_id_of(&id)?,
                owner: owner.to_owned(),
                fence: r.try_get("fence")?,
                until,
            })
        })
        .transpose()
    }

    /// Extends a lease that still holds.
    pub async fn renew_lease(&self, lease: &Lease, by: Duration) -> Result<Lease, SendError> {
        let until = now() + chrono::Duration::from_std(by).unwrap_or(chrono::Duration::seconds(30));
        let done = sqlx::query(
            "UPDATE send_jobs SET lease_until = $1 WHERE request_id = $2 AND lease_owner = $3 AND fence = $4",
        )
        .bind(format_ts(until))
        .bind(lease.request_id.to_string())
        .bind(&lease.owner)
        .bind(lease.fence)
        .execute(&self.pool)
        .await?;
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
        let done = sqlx::query(
            "UPDATE send_jobs SET lease_owner = NULL, lease_until = NULL, run_at = $1, updated_at = $2 \
             WHERE request_id = $3 AND lease_owner = $4 AND fence = $5",
        )
        .bind(format_ts(run_at))
        .bind(format_ts(now()))
        .bind(lease.request_id.to_string())
        .bind(&lease.owner)
        .bind(lease.fence)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(SendError::LeaseLost);
        }
        Ok(())
    }

    /// Moves an approved referral to `sending` (first claim).
    pub async fn mark_sending(&self, lease: &Lease, actor: &str) -> Result<(), SendError> {
        let mut tx = self.begin_write().await?;
        check_fence(&mut tx, lease).await?;
        let status = current_status(&mut tx, lease.request_id).await?;
        if status == ReferralStatus::Approved {
            set_status(
                &mut tx,
                lease.request_id,
                ReferralStatus::Sending,
                now(),
                actor,
                None,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Commits the intent of a step before its remote call: the natural key and the attempt.
    pub async fn step_intent(
        &self,
        lease: &Lease,
        position: i64,
        natural_key: &Value,
    ) -> Result<(), SendError> {
        let mut tx = self.begin_write().await?;
        check_fence(&mut tx, lease).await?;
        let ts = format_ts(now());
        sqlx::query(
            "UPDATE send_steps SET state = 'in_flight', attempts = attempts + 1, natural_key = $1, \
             last_attempt_at = $2, not_before = NULL, updated_at = $2 WHERE request_id = $3 AND position = $4",
        )
        .bind(natural_key.to_string())
        .bind(&ts)
        .bind(lease.request_id.to_string())
        .bind(position)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Commits a step's result (and so makes the next step the one to run).
    pub async fn step_done(
        &self,
        lease: &Lease,
        position: i64,
        remote_id: &str,
        result: &Value,
    ) -> Result<(), SendError> {
        let mut tx = self.begin_write().await?;
        check_fence(&mut tx, lease).await?;
        sqlx::query(
            "UPDATE send_steps SET state = 'done', remote_id = $1, result_json = $2, last_error = NULL, \
             not_before = NULL, updated_at = $3 WHERE request_id = $4 AND position = $5",
        )
        .bind(remote_id)
        .bind(result.to_string())
        .bind(format_ts(now()))
        .bind(lease.request_id.to_string())
        .bind(position)
        .execute(&mut *tx)
        .await?;
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
        actor: &str,
    ) -> Result<(), SendError> {
        let mut tx = self.begin_write().await?;
        check_fence(&mut tx, lease).await?;
        let at = now();
        let ts = format_ts(at);
        sqlx::query(
            "UPDATE send_steps SET state = 'failed', last_error = $1, updated_at = $2 WHERE request_id = $3 AND position = $4",
        )
        .bind(error)
        .bind(&ts)
        .bind(lease.request_id.to_string())
        .bind(position)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE send_jobs SET state = 'paused', pause_reason = $1, lease_owner = NULL, lease_until = NULL, \
             updated_at = $2 WHERE request_id = $3",
        )
        .bind(error)
        .bind(&ts)
        .bind(lease.request_id.to_string())
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
        tx.commit().await?;
        Ok(())
    }

    /// Every step is done: the referral is sent.
    pub async fn finish_send(&self, lease: &Lease, actor: &str) -> Result<(), SendError> {
        let mut tx = self.begin_write().await?;
        check_fence(&mut tx, lease).await?;
        let at = now();
        sqlx::query(
            "UPDATE send_jobs SET state = 'done', lease_owner = NULL, lease_until = NULL, updated_at = $1, \
             agency_status = NULL, agency_checked_at = $1 WHERE request_id = $2",
        )
        .bind(format_ts(at))
        .bind(lease.request_id.to_string())
        .execute(&mut *tx)
        .await?;
        let last_kind: Option<String> = sqlx::query_scalar(
            "SELECT kind FROM send_changes WHERE request_id = $1 ORDER BY change_no DESC LIMIT 1",
        )
        .bind(lease.request_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        if last_kind.as_deref() == Some("withdrawal") {
            // The withdrawn authorizations are gone from ACCloud; the referral stays with a
            // reviewer (its status was set when the plan was archived).
            sqlx::query(
                "UPDATE send_jobs SET state = 'paused', pause_reason = $1 WHERE request_id = $2",
            )
            .bind(
                "authorization withdrawn: resume, with corrected terms if the plan changed, to \
                 send the referral",
            )
            .bind(lease.request_id.to_string())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(());
        }
        let done = if last_kind.as_deref() == Some("cancel") {
            ReferralStatus::Cancelled
        } else {
            ReferralStatus::Sent
        };
        set_status(&mut tx, lease.request_id, done, at, actor, None).await?;
        audit::record(
            &mut tx,
            at,
            actor,
            if done == ReferralStatus::Cancelled {
                "send.cancelled"
            } else {
                "send.completed"
            },
            ("referral_request", &lease.request_id.to_string()),
            &json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Resumes a send that needs attention, from the step where it stopped, optionally with
    /// corrected terms. The stopped step starts with a lookup, in case its last call landed.
    pub async fn resume_send(
        &self,
        id: RequestId,
        corrected: Option<CorrectedTerms<'_>>,
        actor: &str,
    ) -> Result<(), SendError> {
        let mut tx = self.begin_write().await?;
        let status = current_status(&mut tx, id).await?;
        if status != ReferralStatus::NeedsAttention {
            return Err(SendError::NotResumable(status));
        }
        let at = now();
        let ts = format_ts(at);
        if let Some(c) = corrected {
            replace_terms(&mut tx, id, c.terms, c.terms_hash, &ts).await?;
            sqlx::query("DELETE FROM authorization_plans WHERE request_id = $1")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
            insert_authorization_plans(&mut tx, id, c.plans).await?;
        }
        // A withdrawal stopped the first send: plan what it skipped again, after it.
        let replan = replan_after_withdrawal(&mut tx, id).await?;
        if !replan.is_empty() {
            let change_no = next_change_no(&mut tx, id).await?;
            insert_change(&mut tx, id, change_no, "resume", actor, &ts, &[], None).await?;
            sqlx::query(
                "UPDATE send_steps SET state = 'replanned', updated_at = $1 \
                 WHERE request_id = $2 AND state = 'skipped'",
            )
            .bind(&ts)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
            insert_steps(&mut tx, id, change_no, &replan, &ts).await?;
        }
        sqlx::query(
            "UPDATE send_steps SET state = 'unknown', attempts = 0, not_before = NULL, updated_at = $1 \
             WHERE request_id = $2 AND state = 'failed'",
        )
        .bind(&ts)
        .bind(id.to_string())
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
        tx.commit().await?;
        Ok(())
    }

    /// Records a change asked after the send (new terms, a cancellation, new documents): the
    /// change, its steps after the existing ones, the new terms or files, the queued send,
    /// the status and the audit entry, in one transaction. Refused while another change (or
    /// the first send) is under way, and once the referral is cancelled or denied.
    pub async fn record_change(
        &self,
        id: RequestId,
        change: &NewChange<'_>,
        actor: &str,
    ) -> Result<i64, SendError> {
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
        match (status, job_state.as_deref()) {
            (ReferralStatus::Sent, Some("done")) => {}
            (
                ReferralStatus::Approved | ReferralStatus::Sending | ReferralStatus::NeedsAttention,
                _,
            ) => {
                return Err(SendError::ChangeInProgress(last_change));
            }
            (other, _) => return Err(SendError::NotChangeable(other)),
        }
        let at = now();
        let ts = format_ts(at);
        let change_no = last_change + 1;
        insert_change(
            &mut tx,
            id,
            change_no,
            change.kind.as_str(),
            actor,
            &ts,
            &change.reasons,
            change.comment,
        )
        .await?;
        let mut steps = change.steps.clone();
        if !change.files.is_empty() {
            // Each new file is uploaded by a step of its own, keyed by the file's new id.
            let ids = crate::referrals::insert_files(&mut tx, id, &change.files, &ts).await?;
            steps.extend(ids.into_iter().map(|f| NewStep {
                kind: "attachment".into(),
                item: f.to_string(),
            }));
        }
        insert_steps(&mut tx, id, change_no, &steps, &ts).await?;
        if let Some((terms, hash)) = change.terms {
            replace_terms(&mut tx, id, terms, hash, &ts).await?;
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
            &json!({ "change_no": change_no, "steps": change.steps.len(), "files": change.files.len() }),
        )
        .await?;
        tx.commit().await?;
        Ok(change_no)
    }

    pub async fn send_changes(&self, id: RequestId) -> Result<Vec<ChangeRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT change_no, kind, requested_by, requested_at, reasons_json, comment FROM send_changes \
             WHERE request_id = $1 ORDER BY change_no",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let at: String = r.try_get("requested_at")?;
                let reasons: String = r.try_get("reasons_json")?;
                Ok(ChangeRecord {
                    change_no: r.try_get("change_no")?,
                    kind: r.try_get("kind")?,
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
            sqlx::query_scalar("SELECT COUNT(*) FROM send_jobs WHERE state <> 'done'")
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
