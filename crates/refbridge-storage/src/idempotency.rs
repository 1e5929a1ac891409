//! Idempotency keys: the first answer to a caller's POST, PUT or PATCH under a key, replayed
//! for a while. The key is reserved (a row with no status) before the request runs, so a
//! concurrent duplicate sees it in flight instead of running twice.

use std::time::Duration;

use sqlx::Row;

use crate::error::StorageError;
use crate::{Store, format_ts, now, parse_ts};

/// A reservation left in flight longer than this is from a crashed process: taken over.
const ABANDONED_AFTER: Duration = Duration::from_secs(300);

/// What to do with a request carrying an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyReservation {
    /// First use: run the request, then `complete` or `release` the key.
    Reserved,
    /// Answered before: send this again.
    Replay {
        status: u16,
        content_type: Option<String>,
        body: String,
    },
    /// The first request with this key is still running.
    InFlight,
    /// The key was used for another method, path or body.
    Mismatch,
}

/// Identifies one request under one key.
#[derive(Debug, Clone)]
pub struct KeyedRequest<'a> {
    pub caller: &'a str,
    pub key: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    /// SHA-256 of the body (and query), hex.
    pub fingerprint: &'a str,
}

impl Store {
    /// Reserves `req.key` for `req.caller`, or says how it was used within `ttl`.
    pub async fn reserve_idempotency_key(
        &self,
        req: &KeyedRequest<'_>,
        ttl: Duration,
    ) -> Result<KeyReservation, StorageError> {
        for _ in 0..3 {
            let at = now();
            let mut w = self.write_single().await?;
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (caller, idem_key, method, path, body_sha256, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (caller, idem_key) DO NOTHING",
            )
            .bind(req.caller)
            .bind(req.key)
            .bind(req.method)
            .bind(req.path)
            .bind(req.fingerprint)
            .bind(format_ts(at))
            .execute(&mut *w)
            .await?
            .rows_affected()
                == 1;
            w.commit().await?;
            if inserted {
                return Ok(KeyReservation::Reserved);
            }
            let Some(row) = sqlx::query(
                "SELECT method, path, body_sha256, status, content_type, response_body, created_at \
                 FROM idempotency_keys WHERE caller = $1 AND idem_key = $2",
            )
            .bind(req.caller)
            .bind(req.key)
            .fetch_optional(self.reader())
            .await?
            else {
                continue;
            };
            let created: String = row.try_get("created_at")?;
            let age = (at - parse_ts(&created)?).to_std().unwrap_or_default();
            let status: Option<i64> = row.try_get("status")?;
            let expired = age > ttl || (status.is_none() && age > ABANDONED_AFTER);
            if expired {
                let mut w = self.write_single().await?;
                sqlx::query(
                    "DELETE FROM idempotency_keys WHERE caller = $1 AND idem_key = $2 AND created_at = $3",
                )
                .bind(req.caller)
                .bind(req.key)
                .bind(&created)
                .execute(&mut *w)
                .await?;
                w.commit().await?;
                continue;
            }
            let method: String = row.try_get("method")?;
            let path: String = row.try_get("path")?;
            let hash: String = row.try_get("body_sha256")?;
            if method != req.method || path != req.path || hash != req.fingerprint {
                return Ok(KeyReservation::Mismatch);
            }
            return Ok(match status {
                None => KeyReservation::InFlight,
                Some(status) => KeyReservation::Replay {
                    status: u16::try_from(status).unwrap_or(500),
                    content_type: row.try_get("content_type")?,
                    body: row
                        .try_get::<Option<String>, _>("response_body")?
                        .unwrap_or_default(),
                },
            });
        }
        // Three rounds of someone else inserting and expiring the same key: treat as busy.
        Ok(KeyReservation::InFlight)
    }

    /// Stores the answer to replay.
    pub async fn complete_idempotency_key(
        &self,
        caller: &str,
        key: &str,
        status: u16,
        content_type: Option<&str>,
        body: &str,
    ) -> Result<(), StorageError> {
        let mut w = self.write_single().await?;
        sqlx::query(
            "UPDATE idempotency_keys SET status = $3, content_type = $4, response_body = $5 \
             WHERE caller = $1 AND idem_key = $2",
        )
        .bind(caller)
        .bind(key)
        .bind(i64::from(status))
        .bind(content_type)
        .bind(body)
        .execute(&mut *w)
        .await?;
        w.commit().await?;
        Ok(())
    }

    /// Forgets a reservation whose request should be allowed to run again (a server error).
    pub async fn release_idempotency_key(
        &self,
        caller: &str,
        key: &str,
    ) -> Result<(), StorageError> {
        let mut w = self.write_single().await?;
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE caller = $1 AND idem_key = $2 AND status IS NULL",
        )
        .bind(caller)
        .bind(key)
        .execute(&mut *w)
        .await?;
        w.commit().await?;
        Ok(())
    }

    /// Deletes answers older than `ttl`. Returns how many.
    pub async fn purge_idempotency_keys(&self, ttl: Duration) -> Result<u64, StorageError> {
        let cutoff =
            now() - chrono::Duration::from_std(ttl).unwrap_or_else(|_| chrono::Duration::days(1));
        // In batches: a day of keys can be many rows, and the writer is held while it runs.
        self.delete_in_batches(
            "idempotency_keys",
            "caller, idem_key",
            "created_at < $1",
            &[format_ts(cutoff)],
            false,
        )
        .await
    }
}
