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
//!
//! [`Store::prune`] does it (or, `dry_run`, says what it would do); the service runs it on a
//! schedule in one process at a time ([`Store::take_maintenance_lease`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use refbridge_domain::ContentHash;
use refbridge_domain::send::{JobState, StepState};

use crate::blobs::{BlobError, Blobs};
use crate::error::StorageError;
use crate::{Store, format_ts, now};

/// How long each kind of data is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub idempotency_keys: Duration,
    /// `None`: finished sends' steps are kept whole.
    pub step_payloads: Option<Duration>,
    /// The grace period of a body no referral refers to.
    pub unreferenced_blobs: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            idempotency_keys: Duration::from_secs(24 * 3600),
            step_payloads: Some(Duration::from_secs(90 * 86_400)),
            unreferenced_blobs: Duration::from_secs(24 * 3600),
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
}

fn ago(d: Duration) -> DateTime<Utc> {
    now() - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

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
                let mut tx = self.begin_write().await?;
                let n = sqlx::query(&format!(
                    "UPDATE send_steps SET natural_key = NULL, last_error = NULL WHERE {FINISHED_STEPS}"
                ))
                .bind(&cutoff)
                .execute(&mut *tx)
                .await
                .map_err(StorageError::from)?
                .rows_affected();
                tx.commit().await.map_err(StorageError::from)?;
                n
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
                sqlx::query(
                    "DELETE FROM blobs WHERE sha256 = $1 \
                     AND NOT EXISTS (SELECT 1 FROM referral_files f WHERE f.sha256 = $1)",
                )
                .bind(hash.as_str())
                .execute(&self.pool)
                .await
                .map_err(StorageError::from)?;
            }
        }
        Ok(report)
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
