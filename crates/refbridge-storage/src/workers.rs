//! What several worker processes share through the database: the wake-up channel
//! (PostgreSQL `LISTEN/NOTIFY`; polling covers SQLite and lost notifications), the ACCloud
//! rate budget, and the queue figures that readiness and metrics expose.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use refbridge_domain::send::{JobState, StepState};
use serde::Serialize;
use sqlx::Row;

use crate::error::StorageError;
use crate::{Backend, Store, format_ts, now, parse_ts};

/// The PostgreSQL channel a send job that becomes ready and due is announced on (by a trigger
/// on `send_jobs`, in the transaction that queues it); the payload is the request id.
pub const SEND_CHANNEL: &str = "refbridge_send";

/// Listens on [`SEND_CHANNEL`] of the PostgreSQL database at `url` and wakes this process's
/// engine (`notify_one`: a wake-up sent while it is busy is kept) on each notification.
/// Reconnects after a failure (waking the engine then too, since notifications sent meanwhile
/// are lost) and runs until the task is dropped. The engine's polling stays the fallback.
pub async fn listen_for_sends(url: String, wake: Arc<tokio::sync::Notify>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match sqlx::postgres::PgListener::connect(&url).await {
            Ok(mut listener) => match listener.listen(SEND_CHANNEL).await {
                Ok(()) => {
                    tracing::info!(channel = SEND_CHANNEL, "listening for queued sends");
                    backoff = Duration::from_millis(250);
                    wake.notify_one();
                    loop {
                        // `try_recv` gives `None` when the connection was lost.
                        match listener.try_recv().await {
                            Ok(Some(_)) => wake.notify_one(),
                            Ok(None) => {
                                tracing::warn!("send notifications: connection lost; reconnecting");
                                wake.notify_one();
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "send notifications failed; reconnecting");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot LISTEN for queued sends"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot connect to listen for queued sends"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Held by the one process that runs the send workers on a SQLite database: an exclusive lock
/// on a file beside it (`<database>.workers.lock`), released when dropped or when the process
/// dies.
#[derive(Debug)]
pub struct SoleWorker {
    _lock: std::fs::File,
}

impl Store {
    /// On SQLite, where one process runs the workers, takes the workers' lock; when this
    /// process gets it, every lease still in the database belongs to a process that is gone (a
    /// live one would hold the lock), so they are released at once and the sends move again
    /// without waiting the leases out. Their fencing tokens stay: a next claim moves them on.
    /// Returns the guard to hold while the workers run and how many leases were released.
    /// `None` on PostgreSQL (leases are waited out there), for a database in memory, or when
    /// another process holds the lock.
    pub async fn take_over_as_sole_worker(
        &self,
    ) -> Result<Option<(SoleWorker, u64)>, StorageError> {
        let Some(db) = &self.sqlite_file else {
            return Ok(None);
        };
        let mut path = db.clone().into_os_string();
        path.push(".workers.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StorageError::Connect(format!("workers' lock file: {e}")))?;
        // fs4's, the same as std's `File::try_lock` (newer than our minimum Rust).
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => return Ok(None),
            Err(fs4::TryLockError::Error(e)) => {
                return Err(StorageError::Connect(format!("workers' lock file: {e}")));
            }
        }
        let mut w = self.write_single().await?;
        let released = sqlx::query(
            "UPDATE send_jobs SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL",
        )
        .execute(&mut *w)
        .await?
        .rows_affected();
        w.commit().await?;
        Ok(Some((SoleWorker { _lock: file }, released)))
    }
}

/// The PostgreSQL channel on which a committed or newly positioned event is announced (by a
/// trigger on `events`, at commit).
pub const EVENT_CHANNEL: &str = "refbridge_event";

/// Listens on [`EVENT_CHANNEL`] and raises `signal` on each notification (and after each
/// reconnect, since notifications sent meanwhile are lost), until the task is dropped.
pub async fn listen_for_events(url: String, signal: crate::EventSignal) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match sqlx::postgres::PgListener::connect(&url).await {
            Ok(mut listener) => match listener.listen(EVENT_CHANNEL).await {
                Ok(()) => {
                    backoff = Duration::from_millis(250);
                    signal.notify();
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(_)) | Ok(None) => signal.notify(),
                            Err(e) => {
                                tracing::warn!(error = %e, "event notifications failed; reconnecting");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot LISTEN for events"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot connect to listen for events"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The send queue at a glance, for `/readyz`, `/metrics` and alerts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueMetrics {
    /// Send jobs waiting for a worker or for their next attempt (`ready`).
    pub queue_depth: i64,
    /// Of those, the ones due now.
    pub due: i64,
    /// Ready jobs a worker holds a live lease on.
    pub leased: i64,
    /// Sends stopped for a reviewer (`needs attention`).
    pub paused: i64,
    /// How long the most overdue job has waited for a worker (0 when none is due): grows when
    /// no worker is claiming.
    pub oldest_due_wait_seconds: f64,
    /// How long the longest-waiting ready send has been unfinished: since it last became
    /// ready (approved, or changed or resumed after a pause or its end; a change to a send
    /// still ready does not reset it), however many attempts its steps made since.
    pub oldest_pending_step_age_seconds: f64,
    /// Steps whose last call's outcome is unknown, waiting for a lookup.
    pub unknown_steps: i64,
    /// Steps whose intent is committed and whose call may be under way.
    pub in_flight_steps: i64,
    /// Age of the oldest unknown step.
    pub oldest_unknown_step_age_seconds: f64,
    /// PostgreSQL: age of the oldest open transaction of any other session (long-held
    /// transactions stop VACUUM and make the queue slow). `None` on SQLite.
    pub oldest_transaction_age_seconds: Option<f64>,
}

/// The longest-waiting send: the first entry of `send_jobs_ready_since (state, ready_since)`,
/// the index SQLite takes for it with no statistics too (migration 0018).
const OLDEST_READY: &str = "SELECT MIN(ready_since) FROM send_jobs WHERE state = 'ready'";

fn age_seconds(ts: Option<String>, at: chrono::DateTime<Utc>) -> Result<f64, StorageError> {
    Ok(match ts {
        Some(s) => ((at - parse_ts(&s)?).num_milliseconds().max(0) as f64) / 1000.0,
        None => 0.0,
    })
}

impl Store {
    /// The queue figures; a handful of indexed reads.
    pub async fn queue_metrics(&self) -> Result<QueueMetrics, StorageError> {
        let at = now();
        let ts = format_ts(at);
        let (ready, paused) = (JobState::Ready.as_str(), JobState::Paused.as_str());
        let (in_flight, unknown) = (StepState::InFlight.as_str(), StepState::Unknown.as_str());
        let sql = format!(
            "SELECT \
               COUNT(*) AS depth, \
               COALESCE(SUM(CASE WHEN run_at <= $1 THEN 1 ELSE 0 END), 0) AS due, \
               COALESCE(SUM(CASE WHEN lease_until > $1 THEN 1 ELSE 0 END), 0) AS leased, \
               MIN(CASE WHEN run_at <= $1 AND (lease_until IS NULL OR lease_until <= $1) \
                   THEN run_at END) AS oldest_due \
             FROM send_jobs WHERE state = '{ready}'"
        );
        let row = sqlx::query(&sql).bind(&ts).fetch_one(self.reader()).await?;
        let queue_depth: i64 = row.try_get("depth")?;
        let due: i64 = row.try_get("due")?;
        let leased: i64 = row.try_get("leased")?;
        let oldest_due: Option<String> = row.try_get("oldest_due")?;
        let paused: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM send_jobs WHERE state = '{paused}'"
        ))
        .fetch_one(self.reader())
        .await?;
        let oldest_pending: Option<String> = sqlx::query_scalar(OLDEST_READY)
            .fetch_one(self.reader())
            .await?;
        let sql = format!(
            "SELECT \
               COALESCE(SUM(CASE WHEN state = '{unknown}' THEN 1 ELSE 0 END), 0) AS unknown, \
               COALESCE(SUM(CASE WHEN state = '{in_flight}' THEN 1 ELSE 0 END), 0) AS in_flight, \
               MIN(CASE WHEN state = '{unknown}' THEN updated_at END) AS oldest_unknown \
             FROM send_steps WHERE state IN ('{unknown}', '{in_flight}')",
        );
        let row = sqlx::query(&sql).fetch_one(self.reader()).await?;
        let unknown_steps: i64 = row.try_get("unknown")?;
        let in_flight_steps: i64 = row.try_get("in_flight")?;
        let oldest_unknown: Option<String> = row.try_get("oldest_unknown")?;
        let oldest_transaction_age_seconds = match self.backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let ms: i64 = sqlx::query_scalar(
                    "SELECT COALESCE(CAST(EXTRACT(EPOCH FROM (clock_timestamp() - MIN(xact_start))) * 1000 AS BIGINT), 0) \
                     FROM pg_stat_activity WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()",
                )
                .fetch_one(&self.pool)
                .await?;
                Some(ms.max(0) as f64 / 1000.0)
            }
        };
        Ok(QueueMetrics {
            queue_depth,
            due,
            leased,
            paused,
            oldest_due_wait_seconds: age_seconds(oldest_due, at)?,
            oldest_pending_step_age_seconds: age_seconds(oldest_pending, at)?,
            unknown_steps,
            in_flight_steps,
            oldest_unknown_step_age_seconds: age_seconds(oldest_unknown, at)?,
            oldest_transaction_age_seconds,
        })
    }

    /// Creates the rate budget `name` when missing.
    pub async fn rate_budget_ensure(&self, name: &str) -> Result<(), StorageError> {
        let mut w = self.write_single().await?;
        sqlx::query(
            "INSERT INTO rate_budget (name, next_slot_us, blocked_until_us) VALUES ($1, 0, 0) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .execute(&mut *w)
        .await?;
        w.commit().await?;
        Ok(())
    }

    /// Reserves the next call slot of budget `name` (one statement, atomic across processes):
    /// the slot is the latest of the budget's next slot, `now_us` and its `Retry-After` block,
    /// and the next slot moves `interval_us` past it. Returns the slot's start (µs since the
    /// epoch).
    pub async fn rate_reserve(
        &self,
        name: &str,
        now_us: i64,
        interval_us: i64,
    ) -> Result<i64, StorageError> {
        let mut w = self.write_single().await?;
        let next: Option<i64> = sqlx::query_scalar(
            "UPDATE rate_budget SET next_slot_us = \
               (CASE WHEN next_slot_us >= blocked_until_us AND next_slot_us > $2 THEN next_slot_us \
                     WHEN blocked_until_us > $2 THEN blocked_until_us \
                     ELSE $2 END) + $3 \
             WHERE name = $1 RETURNING next_slot_us",
        )
        .bind(name)
        .bind(now_us)
        .bind(interval_us)
        .fetch_optional(&mut *w)
        .await?;
        w.commit().await?;
        match next {
            Some(n) => Ok(n - interval_us),
            None => {
                self.rate_budget_ensure(name).await?;
                Box::pin(self.rate_reserve(name, now_us, interval_us)).await
            }
        }
    }

    /// Until when budget `name` is blocked by a `Retry-After` (µs since the epoch; 0 when never).
    pub async fn rate_blocked_until(&self, name: &str) -> Result<i64, StorageError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT blocked_until_us FROM rate_budget WHERE name = $1")
                .bind(name)
                .fetch_optional(self.reader())
                .await?;
        Ok(v.unwrap_or(0))
    }

    /// Blocks budget `name` until `until_us` (never shortens a block): every process waits.
    pub async fn rate_block(&self, name: &str, until_us: i64) -> Result<(), StorageError> {
        self.rate_budget_ensure(name).await?;
        let mut w = self.write_single().await?;
        sqlx::query(
            "UPDATE rate_budget SET blocked_until_us = \
               CASE WHEN blocked_until_us > $2 THEN blocked_until_us ELSE $2 END WHERE name = $1",
        )
        .bind(name)
        .bind(until_us)
        .execute(&mut *w)
        .await?;
        w.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Referrals that became `status` in each hour since `since`: (hour as `YYYY-MM-DDTHH`,
    /// count), oldest first; hours with none are absent.
    pub async fn status_changes_by_hour(
        &self,
        status: refbridge_domain::ReferralStatus,
        since: chrono::DateTime<Utc>,
    ) -> Result<Vec<(String, i64)>, StorageError> {
        let rows = sqlx::query(
            "SELECT substr(at, 1, 13) AS hour, COUNT(*) AS n FROM status_history \
             WHERE status = $1 AND at >= $2 GROUP BY substr(at, 1, 13) ORDER BY 1",
        )
        .bind(status.as_str())
        .bind(format_ts(since))
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("hour")?, r.try_get("n")?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::sqlite_file_store;

    /// The longest-waiting send is read from its own index on SQLite as the service runs it,
    /// with no statistics: without them SQLite had answered from the index on `state` and read
    /// the row of every ready job (0.85 ms of `/readyz` at a million referrals).
    #[tokio::test]
    async fn the_longest_waiting_send_is_one_entry_of_its_index_without_statistics() {
        assert_eq!(
            OLDEST_READY,
            format!(
                "SELECT MIN(ready_since) FROM send_jobs WHERE state = '{}'",
                JobState::Ready.as_str()
            )
        );
        let (store, _dir) = sqlite_file_store().await;
        let stats: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'sqlite_stat%'")
                .fetch_one(store.reader())
                .await
                .unwrap();
        assert_eq!(stats, 0, "the service gathers no statistics");
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {OLDEST_READY}"))
            .fetch_all(store.reader())
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get::<String, _>("detail").unwrap())
            .collect();
        // The wording of a plan changes with SQLite's versions; what matters is one search of
        // this index (without migration 0018 it was `send_jobs_state_times`).
        assert!(
            plan.len() == 1
                && plan[0]
                    .starts_with("SEARCH send_jobs USING COVERING INDEX send_jobs_ready_since "),
            "{plan:?}"
        );
    }
}
