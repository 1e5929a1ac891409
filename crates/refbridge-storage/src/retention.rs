//! Retention: what is deleted or compacted, and when. Referrals, their files, the audit log
//! and the PHI access log are kept; nothing here touches them.
//!
//! - Idempotency keys: deleted once older than their time to live (24 h by default).
//! - Finished sends (every step done, the job `done`): once older than the policy's age, their
//!   steps drop what only a send in progress reads (the natural key, looked up after an
//!   unknown outcome, and the last error). Results and ACCloud ids stay: later changes read
//!   them.
//! - File bodies that no referral file refers to: deleted once stored longer ago than the
//!   grace period, so that the bodies of an intake still in flight (stored, not yet recorded)
//!   are never taken. A body stored again is refreshed ([`crate::Blobs::commit`]). So are the
//!   files a killed process left in its working folder's `tmp/`.
//! - Events (the feed and the webhooks' outbox): positioned events older than the policy's
//!   age, unless a webhook delivery of theirs is still pending; their finished deliveries go
//!   with them. An event not positioned yet is never taken. The highest position removed is
//!   recorded in the same transaction (`event_retention`): the sequencer numbers after it and
//!   the feed answers a cursor below it with what was removed (`events.rs`).
//! - The webhook delivery log (`webhook_attempts`): rows older than the policy's age.
//! - Console sessions a day after they ended (signed out, idle past the limit, or past their
//!   lifetime), and failed sign-ins once out of the window they are counted over. Neither is
//!   history anyone reads; the audit log keeps what people did.
//!
//! Deletions of tables that can hold many rows go in batches of [`PRUNE_BATCH`], each its own
//! short write transaction, so a prune never holds SQLite's writer lock for long.
//!
//! [`Store::prune`] does it (or, `dry_run`, says what it would do); the service runs it on a
//! schedule in one process at a time ([`Store::take_maintenance_lease`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use refbridge_domain::ContentHash;
use refbridge_domain::send::{JobState, StepState};
use sqlx::Row;

use crate::blobs::{BlobError, Blobs};
use crate::error::StorageError;
use crate::{SessionLimits, Store, format_ts, now};

/// Rows deleted per write transaction.
pub const PRUNE_BATCH: i64 = 500;

/// How long after its end an ended console session is kept.
const SESSION_GRACE: Duration = Duration::from_secs(24 * 3600);

/// How long each kind of data is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub idempotency_keys: Duration,
    /// `None`: finished sends' steps are kept whole.
    pub step_payloads: Option<Duration>,
    /// The grace period of a body no referral refers to.
    pub unreferenced_blobs: Duration,
    /// `None`: events are kept for ever. Positioned events older than this go, unless a
    /// webhook delivery of theirs is pending.
    pub events: Option<Duration>,
    /// `None`: the webhook delivery log is kept whole.
    pub webhook_attempts: Option<Duration>,
    /// The console's session limits: what ends a session that was not signed out.
    pub console_sessions: SessionLimits,
    /// The window failed sign-ins are counted over (the console's throttling); older ones go.
    pub sign_in_failures: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            idempotency_keys: Duration::from_secs(24 * 3600),
            step_payloads: Some(Duration::from_secs(90 * 86_400)),
            unreferenced_blobs: Duration::from_secs(24 * 3600),
            events: Some(Duration::from_secs(90 * 86_400)),
            webhook_attempts: Some(Duration::from_secs(30 * 86_400)),
            // The console's defaults (`[console]`, and its sign-in throttling window).
            console_sessions: SessionLimits {
                idle: Duration::from_secs(15 * 60),
                absolute: Duration::from_secs(12 * 3600),
            },
            sign_in_failures: Duration::from_secs(15 * 60),
        }
    }
}

/// What a prune removed (or, dry, would remove): counts and ids, never content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub dry_run: bool,
    pub idempotency_keys: u64,
    /// Steps compacted, and the referral requests they belong to.
    pub compacted_steps: u64,
    pub compacted_requests: Vec<String>,
    /// Bodies deleted.
    pub blobs: Vec<ContentHash>,
    /// Files left in this process's working folder (`tmp/`) by a killed process, older than
    /// the grace period.
    pub scratch_files: u64,
    /// Events deleted, and the highest position among them.
    pub events: u64,
    pub events_through: Option<i64>,
    /// Finished webhook deliveries of those events.
    pub webhook_deliveries: u64,
    /// Rows of the webhook delivery log.
    pub webhook_attempts: u64,
    /// Console sessions that had ended.
    pub console_sessions: u64,
    /// Failed sign-ins out of the throttling window.
    pub sign_in_failures: u64,
}

fn ago(d: Duration) -> DateTime<Utc> {
    now() - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Positioned events older than `$1`. (`e`: events.)
const OLD_EVENTS: &str = "e.position IS NOT NULL AND e.occurred_at < $1";
/// …that no pending delivery waits for.
const NONE_PENDING: &str = "NOT EXISTS (SELECT 1 FROM webhook_deliveries p \
     WHERE p.event_id = e.id AND p.state = 'pending')";
/// Sessions that ended before `$1`: signed out, idle since before `$2`, begun before `$3`.
const ENDED_SESSIONS: &str =
    "(ended_at IS NOT NULL AND ended_at < $1) OR last_seen_at < $2 OR created_at < $3";

const FINISHED_STEPS: &str = "state IN ('done', 'skipped', 'replanned') \
     AND (natural_key IS NOT NULL OR last_error IS NOT NULL) \
     AND request_id IN (SELECT request_id FROM send_jobs WHERE state = 'done' AND updated_at < $1)";

impl Store {
    /// Applies `policy` (or, `dry_run`, only counts what it would remove).
    pub async fn prune(
        &self,
        blobs: &Blobs,
        policy: &RetentionPolicy,
        dry_run: bool,
    ) -> Result<PruneReport, BlobError> {
        debug_assert_eq!(JobState::Done.as_str(), "done");
        debug_assert_eq!(StepState::Done.as_str(), "done");
        debug_assert_eq!(crate::webhooks::PENDING, "pending");
        let mut report = PruneReport {
            dry_run,
            ..PruneReport::default()
        };

        let keys_cutoff = format_ts(ago(policy.idempotency_keys));
        report.idempotency_keys = if dry_run {
            let n: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys WHERE created_at < $1")
                    .bind(&keys_cutoff)
                    .fetch_one(self.reader())
                    .await
                    .map_err(StorageError::from)?;
            n as u64
        } else {
            self.purge_idempotency_keys(policy.idempotency_keys).await?
        };

        if let Some(age) = policy.step_payloads {
            let cutoff = format_ts(ago(age));
            let ids: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT DISTINCT request_id FROM send_steps WHERE {FINISHED_STEPS} ORDER BY request_id"
            ))
            .bind(&cutoff)
            .fetch_all(self.reader())
            .await
            .map_err(StorageError::from)?;
            report.compacted_steps = if dry_run {
                let n: i64 = sqlx::query_scalar(&format!(
                    "SELECT COUNT(*) FROM send_steps WHERE {FINISHED_STEPS}"
                ))
                .bind(&cutoff)
                .fetch_one(self.reader())
                .await
                .map_err(StorageError::from)?;
                n as u64
            } else {
                // In batches, as the deletions: a compacted step leaves the filter.
                self.in_batches(
                    &format!(
                        "UPDATE send_steps SET natural_key = NULL, last_error = NULL \
                         WHERE (request_id, position) IN \
                           (SELECT request_id, position FROM send_steps WHERE {FINISHED_STEPS} LIMIT $2)"
                    ),
                    &[cutoff],
                )
                .await?
            };
            report.compacted_requests = ids;
        }

        let cutoff = ago(policy.unreferenced_blobs);
        let referenced: std::collections::HashSet<String> =
            sqlx::query_scalar("SELECT DISTINCT sha256 FROM referral_files")
                .fetch_all(self.reader())
                .await
                .map_err(StorageError::from)?
                .into_iter()
                .collect();
        for entry in blobs.list().await? {
            if entry.stored_at >= cutoff || referenced.contains(entry.hash.as_str()) {
                continue;
            }
            // Decided again at the moment of deleting: a referral may have come for it since.
            if dry_run || blobs.delete_unreferenced(self, &entry.hash, cutoff).await? {
                report.blobs.push(entry.hash);
            }
        }
        let tmp = blobs.local().root().join("tmp");
        report.scratch_files = blobs
            .local()
            .remove_stale_scratch(cutoff.into(), dry_run)
            .map_err(|source| BlobError::Io { path: tmp, source })?;
        // The metadata row of a body no referral refers to goes with it.
        if !dry_run && !report.blobs.is_empty() {
            for hash in &report.blobs {
                let mut w = self.write_single().await?;
                sqlx::query(
                    "DELETE FROM blobs WHERE sha256 = $1 \
                     AND NOT EXISTS (SELECT 1 FROM referral_files f WHERE f.sha256 = $1)",
                )
                .bind(hash.as_str())
                .execute(&mut *w)
                .await
                .map_err(StorageError::from)?;
                w.commit().await.map_err(StorageError::from)?;
            }
        }

        if let Some(age) = policy.events {
            self.prune_events(age, dry_run, &mut report).await?;
        }
        if let Some(age) = policy.webhook_attempts {
            let cutoff = [format_ts(ago(age))];
            report.webhook_attempts = self
                .delete_in_batches("webhook_attempts", "id", "at < $1", &cutoff, dry_run)
                .await?;
        }
        let limits = policy.console_sessions;
        let ended = [
            format_ts(ago(SESSION_GRACE)),
            format_ts(ago(limits.idle + SESSION_GRACE)),
            format_ts(ago(limits.absolute + SESSION_GRACE)),
        ];
        report.console_sessions = self
            .delete_in_batches(
                "console_sessions",
                "id_hash",
                ENDED_SESSIONS,
                &ended,
                dry_run,
            )
            .await?;
        let window = [format_ts(ago(policy.sign_in_failures))];
        report.sign_in_failures = self
            .delete_in_batches("sign_in_failures", "id", "at < $1", &window, dry_run)
            .await?;
        Ok(report)
    }

    /// Old positioned events with no pending delivery, and their finished deliveries; the
    /// highest position removed is recorded with each batch, in its transaction.
    async fn prune_events(
        &self,
        age: Duration,
        dry_run: bool,
        report: &mut PruneReport,
    ) -> Result<(), StorageError> {
        let cutoff = [format_ts(ago(age))];
        let finished = format!(
            "state <> 'pending' AND event_id IN \
             (SELECT e.id FROM events e WHERE {OLD_EVENTS} AND {NONE_PENDING})"
        );
        // The finished deliveries first (the events' foreign key), then the events that no
        // delivery refers to any more: one whose delivery was queued or finished meanwhile
        // stays, for the next prune.
        report.webhook_deliveries = self
            .delete_in_batches(
                "webhook_deliveries",
                "endpoint_id, event_id",
                &finished,
                &cutoff,
                dry_run,
            )
            .await?;
        if dry_run {
            let row = sqlx::query(&format!(
                "SELECT COUNT(*) AS n, MAX(e.position) AS through FROM events e \
                 WHERE {OLD_EVENTS} AND {NONE_PENDING}"
            ))
            .bind(&cutoff[0])
            .fetch_one(self.reader())
            .await?;
            let n: i64 = row.try_get("n")?;
            report.events = n as u64;
            report.events_through = row.try_get("through")?;
            return Ok(());
        }
        let sql = format!(
            "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE {OLD_EVENTS} \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id) \
             ORDER BY e.position LIMIT $2) RETURNING position"
        );
        let kept_days = (age.as_secs() / 86_400) as i64;
        loop {
            let mut tx = self.begin_write().await?;
            let positions: Vec<i64> = sqlx::query_scalar(&sql)
                .bind(&cutoff[0])
                .bind(PRUNE_BATCH)
                .fetch_all(&mut *tx)
                .await?;
            if let Some(through) = positions.iter().copied().max() {
                sqlx::query(
                    "UPDATE event_retention SET pruned_through = $1, pruned_at = $2, kept_days = $3 \
                     WHERE id = 1 AND pruned_through < $1",
                )
                .bind(through)
                .bind(format_ts(now()))
                .bind(kept_days)
                .execute(&mut *tx)
                .await?;
                report.events_through = report.events_through.max(Some(through));
            }
            tx.commit().await?;
            report.events += positions.len() as u64;
            if (positions.len() as i64) < PRUNE_BATCH {
                break;
            }
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    /// Deletes the rows of `table` (keyed by the columns `key`) that `filter` selects, its
    /// `$1…$n` bound to `binds`, in batches of one statement each (or, `dry_run`, counts them).
    pub(crate) async fn delete_in_batches(
        &self,
        table: &str,
        key: &str,
        filter: &str,
        binds: &[String],
        dry_run: bool,
    ) -> Result<u64, StorageError> {
        if dry_run {
            let sql = format!("SELECT COUNT(*) FROM {table} WHERE {filter}");
            let mut q = sqlx::query_scalar::<_, i64>(&sql);
            for b in binds {
                q = q.bind(b);
            }
            return Ok(q.fetch_one(self.reader()).await? as u64);
        }
        let sql = format!(
            "DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {filter} LIMIT ${})",
            binds.len() + 1
        );
        self.in_batches(&sql, binds).await
    }

    /// Runs `sql` (its `$1…$n` bound to `binds`, its last parameter the batch's `LIMIT`) again
    /// and again, one short write each, until it changes fewer rows than a batch: the rows it
    /// changes must leave its filter. Returns how many it changed in all.
    async fn in_batches(&self, sql: &str, binds: &[String]) -> Result<u64, StorageError> {
        let mut total = 0;
        loop {
            let mut q = sqlx::query(sql);
            for b in binds {
                q = q.bind(b);
            }
            let mut w = self.write_single().await?;
            let n = q.bind(PRUNE_BATCH).execute(&mut *w).await?.rows_affected();
            w.commit().await?;
            total += n;
            if n < PRUNE_BATCH as u64 {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Takes (or renews) the lease named `name` for `owner` for `ttl`, unless another owner
    /// holds it: whether this owner now holds it.
    pub async fn take_maintenance_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        let at = now();
        let until = format_ts(at + chrono::Duration::from_std(ttl).unwrap_or_default());
        let at = format_ts(at);
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO maintenance_leases (name, owner, lease_until) VALUES ($1, '', '') \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        let taken = sqlx::query(
            "UPDATE maintenance_leases SET owner = $2, lease_until = $3 \
             WHERE name = $1 AND (owner = $2 OR lease_until < $4)",
        )
        .bind(name)
        .bind(owner)
        .bind(&until)
        .bind(&at)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        tx.commit().await?;
        Ok(taken)
    }
}
