//! Webhook endpoints, their delivery queue and the delivery log.
//!
//! The sequencer queues one delivery per endpoint that wants the event as it positions it
//! (`events.rs`). Workers of any process claim a due delivery under a lease (`FOR UPDATE
//! SKIP LOCKED` on PostgreSQL) and record each attempt; a delivery is not claimed while an
//! earlier one of the same referral is pending for the same endpoint, so each endpoint gets a
//! referral's events in order. A worker that dies leaves its delivery leased; it is claimed
//! again when the lease ends (the receiver may see it twice, with the same `webhook-id`).

use std::time::Duration;

use crate::writer::WriteTx;
use chrono::{DateTime, Utc};
use refbridge_domain::event::EventType;
use serde::Serialize;
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::{StorageError, corrupt};
use crate::events::{EVENT_COLUMNS, EventRecord, event_from_row, type_list};
use crate::{Backend, Store, format_ts, now, parse_ts};

pub(crate) const PENDING: &str = "pending";
const DELIVERED: &str = "delivered";

/// A webhook endpoint as stored (its secrets apart).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointRecord {
    pub id: String,
    pub url: String,
    /// `None`: every event type.
    pub event_types: Option<Vec<EventType>>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// The first failed attempt since the last success.
    pub failing_since: Option<DateTime<Utc>>,
    /// After a rotation: until when the previous secret still signs.
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An enabled endpoint, as the sequencer fans events out to it.
pub(crate) struct EnabledEndpoint {
    pub id: String,
    types: Option<Vec<EventType>>,
}

impl EnabledEndpoint {
    pub fn wants(&self, t: EventType) -> bool {
        self.types.as_ref().is_none_or(|ts| ts.contains(&t))
    }
}

/// A delivery claimed by a worker: what to send, where, signed with which secrets.
#[derive(Debug, Clone)]
pub struct DeliveryClaim {
    pub endpoint_id: String,
    pub url: String,
    pub event: EventRecord,
    /// The secrets that sign: the current one, then the previous one while it is valid.
    pub secrets: Vec<String>,
    /// This attempt's number (1 for the first).
    pub attempt: i64,
    pub owner: String,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptResult {
    /// `delivered`, `http_error` (an answer other than 2xx), `network_error` (no answer:
    /// refused, timed out, reset) or `refused_target` (the host resolved to an address
    /// refbridge does not send to).
    pub outcome: &'static str,
    pub status: Option<u16>,
    pub latency: Duration,
    /// The first 256 bytes of the answer's body, as text.
    pub response_head: Option<String>,
    /// Why it failed, without the URL or the body.
    pub error: Option<String>,
}

/// One attempt of the delivery log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptRecord {
    pub event_id: String,
    pub event_type: Option<EventType>,
    pub attempt: i64,
    pub at: DateTime<Utc>,
    pub outcome: String,
    pub status: Option<i64>,
    pub latency_ms: i64,
    pub response_head: Option<String>,
    pub error: Option<String>,
}

/// What a failed attempt did to its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// The delivery waits for its next attempt.
    Retrying,
    /// The endpoint had failed for longer than allowed: it is disabled now.
    EndpointDisabled,
}

/// What to deliver again.
#[derive(Debug, Clone, PartialEq)]
pub enum Replay {
    Event(uuid::Uuid),
    /// Every event that occurred at or after this time (of the endpoint's types).
    Since(DateTime<Utc>),
}

/// Delivery figures per endpoint and outcome, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WebhookMetrics {
    /// (endpoint id, outcome, attempts, latency sum in ms).
    pub attempts: Vec<(String, String, i64, i64)>,
    /// (endpoint id, upper bound in ms, attempts at most that slow): a histogram.
    pub latency_buckets: Vec<(String, i64, i64)>,
    /// Age of the oldest event not yet delivered to an enabled endpoint that wants it (or
    /// not yet positioned), in seconds; 0 when none.
    pub oldest_undelivered_seconds: f64,
    pub pending_deliveries: i64,
    pub endpoints_disabled: i64,
    pub endpoints_failing: i64,
}

/// The latency histogram's bounds, in milliseconds.
pub const LATENCY_BUCKETS_MS: [i64; 8] = [50, 100, 250, 500, 1000, 2500, 5000, 10000];

fn types_text(types: Option<&[EventType]>) -> Option<String> {
    types.map(|ts| ts.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(","))
}

fn types_of(s: Option<String>) -> Result<Option<Vec<EventType>>, StorageError> {
    s.map(|s| {
        EventType::parse_all(s.split(',').filter(|t| !t.is_empty()))
            .map_err(|e| corrupt("endpoint event types", e))
    })
    .transpose()
}

fn opt_ts(r: &AnyRow, col: &str) -> Result<Option<DateTime<Utc>>, StorageError> {
    let v: Option<String> = r.try_get(col)?;
    v.map(|s| parse_ts(&s)).transpose()
}

const ENDPOINT_COLUMNS: &str = "id, url, event_types, enabled, disabled_reason, failing_since, \
    previous_secret_until, created_by, created_at, updated_at";

fn endpoint_from_row(r: &AnyRow) -> Result<EndpointRecord, StorageError> {
    let enabled: i64 = r.try_get("enabled")?;
    let created: String = r.try_get("created_at")?;
    let updated: String = r.try_get("updated_at")?;
    Ok(EndpointRecord {
        id: r.try_get("id")?,
        url: r.try_get("url")?,
        event_types: types_of(r.try_get("event_types")?)?,
        enabled: enabled != 0,
        disabled_reason: r.try_get("disabled_reason")?,
        failing_since: opt_ts(r, "failing_since")?,
        previous_secret_until: opt_ts(r, "previous_secret_until")?,
        created_by: r.try_get("created_by")?,
        created_at: parse_ts(&created)?,
        updated_at: parse_ts(&updated)?,
    })
}

pub(crate) async fn enabled_endpoints(
    tx: &mut WriteTx,
) -> Result<Vec<EnabledEndpoint>, StorageError> {
    let rows = sqlx::query("SELECT id, event_types FROM webhook_endpoints WHERE enabled = 1")
        .fetch_all(&mut **tx)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(EnabledEndpoint {
                id: r.try_get("id")?,
                types: types_of(r.try_get("event_types")?)?,
            })
        })
        .collect()
}

pub(crate) async fn queue_delivery(
    tx: &mut WriteTx,
    endpoint: &str,
    event: &str,
    position: i64,
    request_id: Option<&str>,
    ts: &str,
) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO webhook_deliveries (endpoint_id, event_id, position, order_key, state, attempts, \
         next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $6) \
         ON CONFLICT (endpoint_id, event_id) DO NOTHING",
    )
    .bind(endpoint)
    .bind(event)
    .bind(position)
    .bind(request_id.unwrap_or(""))
    .bind(PENDING)
    .bind(ts)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Creates the endpoint for `url`, or updates the event types of the one that has it
    /// (an upsert by URL). `secret` is stored only when it is created. Returns the endpoint
    /// and whether it was created.
    pub async fn put_webhook_endpoint(
        &self,
        url: &str,
        types: Option<&[EventType]>,
        secret: &str,
        actor: &str,
    ) -> Result<(EndpointRecord, bool), StorageError> {
        let at = now();
        let ts = format_ts(at);
        let mut tx = self.begin_write().await?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM webhook_endpoints WHERE url = $1")
                .bind(url)
                .fetch_optional(&mut *tx)
                .await?;
        let created = existing.is_none();
        let id = match existing {
            Some(id) => {
                sqlx::query(
                    "UPDATE webhook_endpoints SET event_types = $1, updated_at = $2 WHERE id = $3",
                )
                .bind(types_text(types))
                .bind(&ts)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
                id
            }
            None => {
                let id = uuid::Uuid::now_v7().to_string();
                sqlx::query(
                    "INSERT INTO webhook_endpoints (id, url, event_types, secret, enabled, created_by, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, 1, $5, $6, $6)",
                )
                .bind(&id)
                .bind(url)
                .bind(types_text(types))
                .bind(secret)
                .bind(actor)
                .bind(&ts)
                .execute(&mut *tx)
                .await?;
                id
            }
        };
        crate::audit::record(
            &mut tx,
            at,
            actor,
            if created {
                "webhook_endpoint.created"
            } else {
                "webhook_endpoint.updated"
            },
            ("webhook_endpoint", &id),
            &json!({ "event_types": types_text(types) }),
        )
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1"
        ))
        .bind(&id)
        .fetch_one(&mut *tx)
        .await?;
        let rec = endpoint_from_row(&row)?;
        tx.commit().await?;
        Ok((rec, created))
    }

    pub async fn list_webhook_endpoints(&self) -> Result<Vec<EndpointRecord>, StorageError> {
        let rows = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at, id"
        ))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    pub async fn get_webhook_endpoint(
        &self,
        id: &str,
    ) -> Result<Option<EndpointRecord>, StorageError> {
        let row = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(endpoint_from_row).transpose()
    }

    /// Enables or disables an endpoint. Enabling clears its failure and makes its pending
    /// deliveries due now. `false` when there is no such endpoint.
    pub async fn set_webhook_endpoint_enabled(
        &self,
        id: &str,
        enabled: bool,
        actor: &str,
    ) -> Result<bool, StorageError> {
        let at = now();
        let ts = format_ts(at);
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE webhook_endpoints SET enabled = $1, disabled_reason = $2, failing_since = NULL, \
             updated_at = $3 WHERE id = $4",
        )
        .bind(i64::from(enabled))
        .bind((!enabled).then_some("disabled by an admin"))
        .bind(&ts)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        if enabled {
            sqlx::query(
                "UPDATE webhook_deliveries SET next_attempt_at = $1 WHERE endpoint_id = $2 AND state = $3",
            )
            .bind(&ts)
            .bind(id)
            .bind(PENDING)
            .execute(&mut *tx)
            .await?;
        }
        crate::audit::record(
            &mut tx,
            at,
            actor,
            if enabled {
                "webhook_endpoint.enabled"
            } else {
                "webhook_endpoint.disabled"
            },
            ("webhook_endpoint", id),
            &json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes an endpoint with its queue and log. `false` when there is none.
    pub async fn delete_webhook_endpoint(
        &self,
        id: &str,
        actor: &str,
    ) -> Result<bool, StorageError> {
        let at = now();
        let mut tx = self.begin_write().await?;
        for table in ["webhook_attempts", "webhook_deliveries"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE endpoint_id = $1"))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let n = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        crate::audit::record(
            &mut tx,
            at,
            actor,
            "webhook_endpoint.deleted",
            ("webhook_endpoint", id),
            &json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Replaces the endpoint's secret; the one it replaces keeps signing for `overlap`.
    /// `false` when there is no such endpoint.
    pub async fn rotate_webhook_secret(
        &self,
        id: &str,
        secret: &str,
        overlap: Duration,
        actor: &str,
    ) -> Result<bool, StorageError> {
        let at = now();
        let until = at + chrono::Duration::from_std(overlap).unwrap_or_default();
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_until = $1, \
             secret = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(format_ts(until))
        .bind(secret)
        .bind(format_ts(at))
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        crate::audit::record(
            &mut tx,
            at,
            actor,
            "webhook_endpoint.secret_rotated",
            ("webhook_endpoint", id),
            &json!({ "previous_valid_until": format_ts(until) }),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Queues events for the endpoint again (or for the first time: events from before it
    /// existed). Returns how many deliveries were queued.
    pub async fn replay_webhook(&self, id: &str, what: &Replay) -> Result<u64, StorageError> {
        let Some(endpoint) = self.get_webhook_endpoint(id).await? else {
            return Err(StorageError::NotFound);
        };
        let ts = format_ts(now());
        let (filter, bind) = match what {
            Replay::Event(e) => ("e.id = $3".to_owned(), e.to_string()),
            Replay::Since(t) => {
                let types = endpoint
                    .event_types
                    .as_deref()
                    .map(|ts| format!(" AND e.event_type IN ({})", type_list(ts)))
                    .unwrap_or_default();
                (format!("e.occurred_at >= $3{types}"), format_ts(*t))
            }
        };
        let sql = format!(
            "INSERT INTO webhook_deliveries (endpoint_id, event_id, position, order_key, state, attempts, \
             next_attempt_at, created_at) \
             SELECT $1, e.id, e.position, COALESCE(e.request_id, ''), '{PENDING}', 0, $2, $2 FROM events e \
             WHERE e.position IS NOT NULL AND {filter} \
             ON CONFLICT (endpoint_id, event_id) DO UPDATE SET state = '{PENDING}', attempts = 0, \
             next_attempt_at = $2, delivered_at = NULL"
        );
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(&sql)
            .bind(id)
            .bind(&ts)
            .bind(bind)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// Claims the due delivery that waited longest whose referral has no earlier delivery
    /// pending for the same endpoint, under a lease. `None` when nothing is due.
    pub async fn claim_webhook_delivery(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<DeliveryClaim>, StorageError> {
        let at = now();
        let ts = format_ts(at);
        let until = at + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30));
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE OF d SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // `= (row subquery)`, not `IN (…)`: a row subquery runs once, whereas PostgreSQL may
        // run an `IN` subquery again per row and lease several deliveries in one claim (seen:
        // the extra ones then sat leased, undelivered, until their leases ran out).
        let sql = format!(
            "UPDATE webhook_deliveries SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
             WHERE (endpoint_id, event_id) = (\
               SELECT d.endpoint_id, d.event_id FROM webhook_deliveries d \
               JOIN webhook_endpoints w ON w.id = d.endpoint_id \
               WHERE d.state = '{PENDING}' AND w.enabled = 1 AND d.next_attempt_at <= $3 \
               AND (d.lease_until IS NULL OR d.lease_until < $3) \
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.endpoint_id = d.endpoint_id \
                 AND p.order_key = d.order_key AND p.state = '{PENDING}' AND p.position < d.position) \
               ORDER BY d.next_attempt_at, d.position LIMIT 1{lock}) \
             AND state = '{PENDING}' AND (lease_until IS NULL OR lease_until < $3) \
             RETURNING endpoint_id, event_id, attempts"
        );
        let mut w = self.write_single().await?;
        let claimed = sqlx::query(&sql)
            .bind(owner)
            .bind(format_ts(until))
            .bind(&ts)
            .fetch_optional(&mut *w)
            .await?;
        w.commit().await?;
        let Some(row) = claimed else {
            return Ok(None);
        };
        let endpoint_id: String = row.try_get("endpoint_id")?;
        let event_id: String = row.try_get("event_id")?;
        let attempt: i64 = row.try_get("attempts")?;
        let ep = sqlx::query(
            "SELECT url, secret, previous_secret, previous_secret_until FROM webhook_endpoints WHERE id = $1",
        )
        .bind(&endpoint_id)
        .fetch_one(self.reader())
        .await?;
        let mut secrets = vec![ep.try_get::<String, _>("secret")?];
        let previous: Option<String> = ep.try_get("previous_secret")?;
        if let (Some(p), Some(until)) = (previous, opt_ts(&ep, "previous_secret_until")?) {
            if until > at {
                secrets.push(p);
            }
        }
        let event = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE e.id = $1"
        ))
        .bind(&event_id)
        .fetch_one(self.reader())
        .await?;
        Ok(Some(DeliveryClaim {
            endpoint_id,
            url: ep.try_get("url")?,
            event: event_from_row(&event)?,
            secrets,
            attempt,
            owner: owner.to_owned(),
        }))
    }

    async fn insert_attempt(
        tx: &mut WriteTx,
        claim: &DeliveryClaim,
        result: &AttemptResult,
        ts: &str,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO webhook_attempts (id, endpoint_id, event_id, attempt, at, outcome, status, \
             latency_ms, response_head, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&claim.endpoint_id)
        .bind(&claim.event.id)
        .bind(claim.attempt)
        .bind(ts)
        .bind(result.outcome)
        .bind(result.status.map(i64::from))
        .bind(result.latency.as_millis() as i64)
        .bind(&result.response_head)
        .bind(&result.error)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// The receiver took the delivery: it is done, and the endpoint is not failing.
    pub async fn webhook_delivered(
        &self,
        claim: &DeliveryClaim,
        result: &AttemptResult,
    ) -> Result<(), StorageError> {
        let ts = format_ts(now());
        let mut tx = self.begin_write().await?;
        Self::insert_attempt(&mut tx, claim, result, &ts).await?;
        // Done even if the lease was taken over meanwhile: the receiver has it.
        sqlx::query(
            "UPDATE webhook_deliveries SET state = $1, delivered_at = $2, lease_owner = NULL, \
             lease_until = NULL, last_status = $3, last_error = NULL WHERE endpoint_id = $4 AND event_id = $5",
        )
        .bind(DELIVERED)
        .bind(&ts)
        .bind(result.status.map(i64::from))
        .bind(&claim.endpoint_id)
        .bind(&claim.event.id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL",
        )
        .bind(&claim.endpoint_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The attempt failed: the delivery waits until `next_attempt_at`. When the endpoint has
    /// been failing for `disable_after`, it is disabled, with an event saying so.
    pub async fn webhook_failed(
        &self,
        claim: &DeliveryClaim,
        result: &AttemptResult,
        next_attempt_at: DateTime<Utc>,
        disable_after: Duration,
    ) -> Result<AfterFailure, StorageError> {
        let at = now();
        let ts = format_ts(at);
        let mut tx = self.begin_write().await?;
        Self::insert_attempt(&mut tx, claim, result, &ts).await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET next_attempt_at = $1, lease_owner = NULL, lease_until = NULL, \
             last_status = $2, last_error = $3 WHERE endpoint_id = $4 AND event_id = $5 AND state = $6 \
             AND lease_owner = $7",
        )
        .bind(format_ts(next_attempt_at))
        .bind(result.status.map(i64::from))
        .bind(&result.error)
        .bind(&claim.endpoint_id)
        .bind(&claim.event.id)
        .bind(PENDING)
        .bind(&claim.owner)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE webhook_endpoints SET failing_since = $1 WHERE id = $2 AND failing_since IS NULL",
        )
        .bind(&ts)
        .bind(&claim.endpoint_id)
        .execute(&mut *tx)
        .await?;
        let cutoff = format_ts(at - chrono::Duration::from_std(disable_after).unwrap_or_default());
        let disabled = sqlx::query(
            "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = $1, updated_at = $2 \
             WHERE id = $3 AND enabled = 1 AND failing_since <= $4",
        )
        .bind("failing for too long")
        .bind(&ts)
        .bind(&claim.endpoint_id)
        .bind(&cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if disabled {
            let since: Option<String> =
                sqlx::query_scalar("SELECT failing_since FROM webhook_endpoints WHERE id = $1")
                    .bind(&claim.endpoint_id)
                    .fetch_one(&mut *tx)
                    .await?;
            crate::events::record_other(
                &mut tx,
                at,
                EventType::WebhookEndpointDisabled,
                (None, None),
                json!({ "endpoint_id": claim.endpoint_id, "failing_since": since,
                        "last_status": result.status }),
            )
            .await?;
            crate::audit::record(
                &mut tx,
                at,
                "worker",
                "webhook_endpoint.disabled",
                ("webhook_endpoint", &claim.endpoint_id),
                &json!({ "reason": "failing for too long" }),
            )
            .await?;
        }
        self.commit_events(tx).await?;
        Ok(if disabled {
            AfterFailure::EndpointDisabled
        } else {
            AfterFailure::Retrying
        })
    }

    /// The endpoint's latest attempts, newest first.
    pub async fn webhook_attempts(
        &self,
        endpoint: &str,
        limit: i64,
    ) -> Result<Vec<AttemptRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT a.event_id, e.event_type, a.attempt, a.at, a.outcome, a.status, a.latency_ms, \
             a.response_head, a.error FROM webhook_attempts a LEFT JOIN events e ON e.id = a.event_id \
             WHERE a.endpoint_id = $1 ORDER BY a.at DESC, a.id DESC LIMIT $2",
        )
        .bind(endpoint)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                let at: String = r.try_get("at")?;
                let kind: Option<String> = r.try_get("event_type")?;
                Ok(AttemptRecord {
                    event_id: r.try_get("event_id")?,
                    event_type: kind.and_then(|k| EventType::parse(&k)),
                    attempt: r.try_get("attempt")?,
                    at: parse_ts(&at)?,
                    outcome: r.try_get("outcome")?,
                    status: r.try_get("status")?,
                    latency_ms: r.try_get("latency_ms")?,
                    response_head: r.try_get("response_head")?,
                    error: r.try_get("error")?,
                })
            })
            .collect()
    }

    /// Deliveries of the endpoint still to be made.
    pub async fn pending_webhook_deliveries(&self, endpoint: &str) -> Result<i64, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND state = $2",
        )
        .bind(endpoint)
        .bind(PENDING)
        .fetch_one(self.reader())
        .await?)
    }

    /// The delivery figures for `/metrics` and the console.
    pub async fn webhook_metrics(&self) -> Result<WebhookMetrics, StorageError> {
        let at = now();
        let rows = sqlx::query(
            "SELECT endpoint_id, outcome, COUNT(*) AS n, CAST(COALESCE(SUM(latency_ms), 0) AS BIGINT) AS ms \
             FROM webhook_attempts GROUP BY endpoint_id, outcome ORDER BY endpoint_id, outcome",
        )
        .fetch_all(self.reader())
        .await?;
        let attempts = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("endpoint_id")?,
                    r.try_get("outcome")?,
                    r.try_get("n")?,
                    r.try_get("ms")?,
                ))
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        let buckets = LATENCY_BUCKETS_MS
            .iter()
            .enumerate()
            .map(|(i, b)| {
                format!("COALESCE(SUM(CASE WHEN latency_ms <= {b} THEN 1 ELSE 0 END), 0) AS b{i}")
            })
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!(
            "SELECT endpoint_id, {buckets} FROM webhook_attempts GROUP BY endpoint_id ORDER BY endpoint_id"
        ))
        .fetch_all(self.reader())
        .await?;
        let mut latency_buckets = Vec::new();
        for r in &rows {
            let id: String = r.try_get("endpoint_id")?;
            for (i, b) in LATENCY_BUCKETS_MS.iter().enumerate() {
                latency_buckets.push((id.clone(), *b, r.try_get(format!("b{i}").as_str())?));
            }
        }
        // From the pending deliveries (a partial index of them) to their events and endpoints,
        // in that order whatever the statistics say: `CROSS JOIN` fixes SQLite's join order
        // (PostgreSQL plans it as the inner join it is). With statistics taken when the
        // events were few, SQLite read every event first (0.4 s at a million referrals).
        let row = sqlx::query(&format!(
            "SELECT COUNT(*) AS n, MIN(e.occurred_at) AS oldest FROM webhook_deliveries d \
             CROSS JOIN events e CROSS JOIN webhook_endpoints w \
             WHERE e.id = d.event_id AND w.id = d.endpoint_id AND d.state = '{PENDING}' AND w.enabled = 1"
        ))
        .fetch_one(self.reader())
        .await?;
        let pending_deliveries: i64 = row.try_get("n")?;
        let oldest_pending = opt_ts(&row, "oldest")?;
        let (_, oldest_unpositioned) = self.unpositioned_events().await?;
        let oldest = match (oldest_pending, oldest_unpositioned) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let row = sqlx::query(
            "SELECT COALESCE(SUM(CASE WHEN enabled = 0 THEN 1 ELSE 0 END), 0) AS disabled, \
             COALESCE(SUM(CASE WHEN enabled = 1 AND failing_since IS NOT NULL THEN 1 ELSE 0 END), 0) AS failing \
             FROM webhook_endpoints",
        )
        .fetch_one(self.reader())
        .await?;
        Ok(WebhookMetrics {
            attempts,
            latency_buckets,
            oldest_undelivered_seconds: oldest
                .map(|o| ((at - o).num_milliseconds().max(0) as f64) / 1000.0)
                .unwrap_or(0.0),
            pending_deliveries,
            endpoints_disabled: row.try_get("disabled")?,
            endpoints_failing: row.try_get("failing")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util;
    use crate::{StoreOptions, events};

    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = test_util::fresh_database_url(dir.path()).await;
        (
            Store::open(&url, &StoreOptions::default()).await.unwrap(),
            dir,
        )
    }

    /// An event of "referral" `key` (its request id), committed and positioned.
    async fn event(store: &Store, key: u128) {
        let mut tx = store.begin_write().await.unwrap();
        events::record_other(
            &mut tx,
            now(),
            EventType::SendCompleted,
            (
                Some(refbridge_domain::RequestId::from(uuid::Uuid::from_u128(
                    key,
                ))),
                None,
            ),
            json!({}),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        store.sequence_events().await.unwrap();
    }

    async fn leased(store: &Store) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE lease_owner IS NOT NULL")
            .fetch_one(&store.pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_claim_leases_one_delivery_and_a_referrals_next_waits_for_its_first() {
        let (store, _dir) = store().await;
        store
            .put_webhook_endpoint("https://example.com/h", None, "whsec_AAAA", "t")
            .await
            .unwrap();
        for key in [1, 1, 2, 3] {
            event(&store, key).await;
        }
        let lease = Duration::from_secs(30);
        let first = store
            .claim_webhook_delivery("w", lease)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.event.position, 1);
        assert_eq!(leased(&store).await, 1, "one claim, one lease");
        // Referral 1's second event waits for its first; referrals 2 and 3 go ahead.
        let mut next = Vec::new();
        while let Some(c) = store.claim_webhook_delivery("w", lease).await.unwrap() {
            next.push(c.event.position);
        }
        assert_eq!(next, vec![3, 4]);
        store
            .webhook_delivered(
                &first,
                &AttemptResult {
                    outcome: "delivered",
                    status: Some(200),
                    latency: Duration::from_millis(3),
                    response_head: None,
                    error: None,
                },
            )
            .await
            .unwrap();
        let second = store
            .claim_webhook_delivery("w", lease)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(second.event.position, 2, "now referral 1's second event");
        assert_eq!(second.event.id.len(), 36);
    }
}
