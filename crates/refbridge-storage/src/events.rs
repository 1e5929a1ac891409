//! Events for other systems: a transactional outbox, and the sequencer that gives committed
//! events their place in the feed.
//!
//! A change that matters outside calls [`record`] inside its own transaction, so the event
//! exists exactly when the change does. It is inserted without a `position`. The sequencer
//! ([`Store::sequence_events`]) takes the committed events that have none and numbers them
//! after the highest position, in one transaction, one sequencer at a time (PostgreSQL: a
//! transaction-level advisory lock; SQLite: the writer lock of `BEGIN IMMEDIATE`). Readers
//! page by `position` and see only positioned events.
//!
//! Why a cursor never skips an event: a plain sequence is taken at insert and becomes visible
//! at commit, so a transaction that took 5 and commits after one that took 6 appears behind a
//! reader already past 6. Here a position is given only to an event already committed, and
//! sequencer transactions follow one another, each numbering after what the last committed:
//! the positions a reader can see are always a prefix 1..=n, and an event that commits late
//! simply gets a later position.
//!
//! Retention (`retention.rs`) removes old positioned events and records the highest position
//! it removed (`event_retention.pruned_through`, the mark). The sequencer numbers after the
//! highest of that mark and the positions left, so a position is never given twice even when
//! every event is gone; events above the mark are never removed, so the feed after it has no
//! hole. A reader whose cursor is below the mark would miss what was removed: it is told so
//! ([`FeedRead::Pruned`]) instead of being given what is left.

use std::sync::Arc;

use crate::writer::WriteTx;
use chrono::{DateTime, Utc};
use refbridge_domain::event::EventType;
use refbridge_domain::{PatientId, RequestId};
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::{StorageError, corrupt};
use crate::{Backend, Store, format_ts, parse_ts};

/// The advisory lock key of the sequencer on PostgreSQL ("rbevents" in ASCII).
const SEQUENCER_LOCK: i64 = 0x7262_6576_656e_7473;

/// Events positioned by one sequencer transaction at most.
pub const SEQUENCE_BATCH: i64 = 1000;

/// One event as the feed and the webhooks show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRecord {
    pub id: String,
    /// Its place in the feed (1, 2, …): the cursor.
    pub position: i64,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub occurred_at: DateTime<Utc>,
    pub request_id: Option<String>,
    pub patient_id: Option<String>,
    /// Ids and statuses; never personal data.
    pub data: Value,
}

impl EventRecord {
    /// The body a webhook carries (and the feed lists): Standard Webhooks' `type`,
    /// `timestamp` and `data`, with our ids beside them.
    pub fn payload(&self) -> Value {
        serde_json::json!({
            "id": self.id,
            "type": self.event_type,
            "timestamp": self.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "position": self.position,
            "request_id": self.request_id,
            "patient_id": self.patient_id,
            "data": self.data,
        })
    }
}

/// Wakes this process's feed readers and delivery workers when the sequencer has positioned
/// events (a hint: they poll too).
#[derive(Debug, Clone, Default)]
pub struct EventSignal(Arc<tokio::sync::Notify>);

impl EventSignal {
    pub fn notify(&self) {
        self.0.notify_waiters();
    }

    /// A wake-up to await. It counts from when it is created (not first polled): create it
    /// before looking, then await it, and no signal in between is missed.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.0.notified()
    }
}

/// Records an event about a referral request inside the caller's transaction; its patient is
/// read from the referral row.
pub(crate) async fn record(
    tx: &mut WriteTx,
    at: DateTime<Utc>,
    event_type: EventType,
    request_id: RequestId,
    data: Value,
) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO events (id, position, event_type, occurred_at, request_id, patient_id, data_json) \
         VALUES ($1, NULL, $2, $3, $4, (SELECT patient_id FROM referral_requests WHERE request_id = $4), $5)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(event_type.as_str())
    .bind(format_ts(at))
    .bind(request_id.to_string())
    .bind(data.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records an event that belongs to no referral request (a payor, an endpoint), or whose
/// patient is known, inside the caller's transaction.
pub(crate) async fn record_other(
    tx: &mut WriteTx,
    at: DateTime<Utc>,
    event_type: EventType,
    ids: (Option<RequestId>, Option<PatientId>),
    data: Value,
) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO events (id, position, event_type, occurred_at, request_id, patient_id, data_json) \
         VALUES ($1, NULL, $2, $3, $4, $5, $6)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(event_type.as_str())
    .bind(format_ts(at))
    .bind(ids.0.map(|r| r.to_string()))
    .bind(ids.1.map(|p| p.to_string()))
    .bind(data.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(crate) const EVENT_COLUMNS: &str =
    "e.id, e.position, e.event_type, e.occurred_at, e.request_id, e.patient_id, e.data_json";

pub(crate) fn event_from_row(r: &AnyRow) -> Result<EventRecord, StorageError> {
    let kind: String = r.try_get("event_type")?;
    let at: String = r.try_get("occurred_at")?;
    let data: String = r.try_get("data_json")?;
    let position: Option<i64> = r.try_get("position")?;
    Ok(EventRecord {
        id: r.try_get("id")?,
        position: position.unwrap_or(0),
        event_type: EventType::parse(&kind).ok_or_else(|| corrupt("event type", kind))?,
        occurred_at: parse_ts(&at)?,
        request_id: r.try_get("request_id")?,
        patient_id: r.try_get("patient_id")?,
        data: serde_json::from_str(&data).map_err(|e| corrupt("event data", e))?,
    })
}

/// `'a', 'b'`: event type names for an SQL `IN` list (the enum's own constants).
pub(crate) fn type_list(types: &[EventType]) -> String {
    crate::sends::sql_names(types, EventType::as_str)
}

/// The highest position given so far: the highest left, or the highest retention removed.
/// One statement, so that a prune committing meanwhile is seen whole or not at all.
const HEAD: &str = "SELECT COALESCE(MAX(p), 0) FROM (SELECT MAX(position) AS p FROM events \
     UNION ALL SELECT pruned_through AS p FROM event_retention) h";

/// What retention removed from the feed.
#[derive(Debug, Clone, PartialEq)]
pub struct PrunedEvents {
    /// The highest position removed (0: none): the feed is whole after it.
    pub through: i64,
    /// When the last prune that removed events ran.
    pub at: Option<DateTime<Utc>>,
    /// The retention that prune applied (`retention.event_days`).
    pub kept_days: Option<i64>,
}

impl PrunedEvents {
    /// The first position the feed still has (or will have).
    pub fn first_kept(&self) -> i64 {
        self.through + 1
    }
}

/// What a read of the feed found.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedRead {
    Page(EventPage),
    /// Retention removed events after the cursor: reading on from it would skip them.
    Pruned(PrunedEvents),
}

/// One page of the feed.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    pub events: Vec<EventRecord>,
    /// Where the next page starts: the last event's position, or, when the page ends before
    /// `limit`, the highest position read (events of other types included), so a filtered
    /// reader does not scan them again.
    pub next_cursor: i64,
}

impl Store {
    /// The signal this store's sequencer raises when it has positioned events.
    pub fn event_signal(&self) -> &EventSignal {
        &self.events
    }

    /// Commits a transaction that recorded events, then wakes this process's feed readers and
    /// webhook worker (other processes: `LISTEN`, or their polling).
    pub(crate) async fn commit_events(&self, tx: WriteTx) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        self.events.notify();
        Ok(())
    }

    /// Positions the committed events that have no position yet, in id order, after the
    /// highest position, and queues their webhook deliveries, in one transaction; one
    /// sequencer at a time across every process (on PostgreSQL, a caller that finds another
    /// sequencing returns at once: that one positions what is committed). Returns how many
    /// were positioned.
    pub async fn sequence_events(&self) -> Result<u64, StorageError> {
        let waiting: Option<String> =
            sqlx::query_scalar("SELECT id FROM events WHERE position IS NULL LIMIT 1")
                .fetch_optional(self.reader())
                .await?;
        if waiting.is_none() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            // Another process sequencing now will position these too (and announce it):
            // no need to queue behind it.
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                .bind(SEQUENCER_LOCK)
                .fetch_one(&mut *tx)
                .await?;
            if !locked {
                tx.rollback().await?;
                return Ok(0);
            }
        }
        // Read after the lock: under READ COMMITTED each statement sees every sequencer
        // transaction committed before it.
        let head: i64 = sqlx::query_scalar(HEAD).fetch_one(&mut *tx).await?;
        let rows = sqlx::query(
            "SELECT id, event_type, request_id FROM events WHERE position IS NULL ORDER BY id LIMIT $1",
        )
        .bind(SEQUENCE_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(0);
        }
        let endpoints = crate::webhooks::enabled_endpoints(&mut tx).await?;
        let ts = format_ts(crate::now());
        for (i, r) in rows.iter().enumerate() {
            let id: String = r.try_get("id")?;
            let position = head + 1 + i as i64;
            sqlx::query("UPDATE events SET position = $1 WHERE id = $2")
                .bind(position)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            let kind: String = r.try_get("event_type")?;
            let kind = EventType::parse(&kind).ok_or_else(|| corrupt("event type", kind))?;
            let request: Option<String> = r.try_get("request_id")?;
            for e in endpoints.iter().filter(|e| e.wants(kind)) {
                crate::webhooks::queue_delivery(
                    &mut tx,
                    &e.id,
                    &id,
                    position,
                    request.as_deref(),
                    &ts,
                )
                .await?;
            }
        }
        tx.commit().await?;
        self.events.notify();
        Ok(rows.len() as u64)
    }

    /// Events after `after` (a position), oldest first, at most `limit`; only `types` when
    /// not empty. `None`: from the first event still kept. A cursor before what retention
    /// removed reads [`FeedRead::Pruned`].
    pub async fn events_after(
        &self,
        after: Option<i64>,
        types: &[EventType],
        limit: i64,
    ) -> Result<FeedRead, StorageError> {
        let start = match after {
            Some(a) => a,
            None => self.events_pruned().await?.through,
        };
        let head: i64 = sqlx::query_scalar(HEAD).fetch_one(self.reader()).await?;
        let filter = if types.is_empty() {
            String::new()
        } else {
            format!(" AND e.event_type IN ({})", type_list(types))
        };
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE e.position > $1 AND e.position <= $2{filter} \
             ORDER BY e.position LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(start)
            .bind(head)
            .bind(limit)
            .fetch_all(self.reader())
            .await?;
        if after.is_some() {
            // Read after the events: a prune that removed any of them before they were read
            // has raised the mark by now (it does both in one transaction).
            let pruned = self.events_pruned().await?;
            if start < pruned.through {
                return Ok(FeedRead::Pruned(pruned));
            }
        }
        let events = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if (events.len() as i64) < limit {
            head.max(start)
        } else {
            events.last().map_or(start, |e| e.position)
        };
        Ok(FeedRead::Page(EventPage {
            events,
            next_cursor,
        }))
    }

    /// What retention has removed from the feed.
    pub async fn events_pruned(&self) -> Result<PrunedEvents, StorageError> {
        let row = sqlx::query(
            "SELECT pruned_through, pruned_at, kept_days FROM event_retention WHERE id = 1",
        )
        .fetch_one(self.reader())
        .await?;
        let at: Option<String> = row.try_get("pruned_at")?;
        Ok(PrunedEvents {
            through: row.try_get("pruned_through")?,
            at: at.map(|a| parse_ts(&a)).transpose()?,
            kept_days: row.try_get("kept_days")?,
        })
    }

    /// Every event about one referral request, in feed order (unpositioned ones last).
    pub async fn referral_events(&self, id: RequestId) -> Result<Vec<EventRecord>, StorageError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE e.request_id = $1 \
             ORDER BY CASE WHEN e.position IS NULL THEN 1 ELSE 0 END, e.position, e.id"
        ))
        .bind(id.to_string())
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Events not positioned yet, and the age of the oldest (seconds): the sequencer's lag.
    pub async fn unpositioned_events(&self) -> Result<(i64, Option<DateTime<Utc>>), StorageError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(occurred_at) AS oldest FROM events WHERE position IS NULL",
        )
        .fetch_one(self.reader())
        .await?;
        let oldest: Option<String> = row.try_get("oldest")?;
        Ok((row.try_get("n")?, oldest.map(|o| parse_ts(&o)).transpose()?))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::test_util;
    use crate::{StoreOptions, now};

    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = test_util::fresh_database_url(dir.path()).await;
        (
            Store::open(&url, &StoreOptions::default()).await.unwrap(),
            dir,
        )
    }

    async fn insert(tx: &mut WriteTx, n: i64) {
        record_other(
            tx,
            now(),
            EventType::PayorUnmapped,
            (None, None),
            serde_json::json!({ "n": n }),
        )
        .await
        .unwrap();
    }

    /// Reads the feed from `after` to its end, sequencing first as the API does.
    async fn read_all(store: &Store, after: &mut i64, seen: &mut Vec<i64>) {
        store.sequence_events().await.unwrap();
        loop {
            let FeedRead::Page(page) = store.events_after(Some(*after), &[], 2).await.unwrap()
            else {
                panic!("nothing is pruned here");
            };
            for e in &page.events {
                seen.push(e.data["n"].as_i64().unwrap());
            }
            let done = page.events.is_empty() || page.next_cursor == *after;
            *after = page.next_cursor;
            if done {
                break;
            }
        }
    }

    /// Two transactions commit out of order on purpose: A inserts its event first (the
    /// smaller id, the one a plain sequence would number first) and commits last, after a
    /// reader has already read B's. The reader still gets A, after B.
    #[tokio::test]
    async fn an_event_committed_late_is_not_skipped_by_the_cursor() {
        if test_util::test_backend() != Backend::Postgres {
            // SQLite has one writer at a time: transactions cannot interleave.
            return;
        }
        let (store, _dir) = store().await;
        let mut a = store.begin_write().await.unwrap();
        insert(&mut a, 1).await;
        let mut b = store.begin_write().await.unwrap();
        insert(&mut b, 2).await;
        b.commit().await.unwrap();

        let (mut cursor, mut seen) = (0, Vec::new());
        read_all(&store, &mut cursor, &mut seen).await;
        assert_eq!(seen, vec![2], "only B is committed");

        a.commit().await.unwrap();
        read_all(&store, &mut cursor, &mut seen).await;
        assert_eq!(
            seen,
            vec![2, 1],
            "A, committed late, comes after B: not skipped"
        );

        // What a plain sequence (insert order) would have done: A numbered before B, so a
        // reader past B never sees it. Ours put it after.
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT id, position FROM events ORDER BY id")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        assert!(rows[0].1 > rows[1].1, "{rows:?}");
    }

    /// On PostgreSQL a commit of an event wakes the listeners of every process, with no
    /// sequencer running here.
    #[tokio::test]
    async fn a_committed_event_is_announced_to_listeners_on_postgres() {
        if test_util::test_backend() != Backend::Postgres {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let url = test_util::fresh_database_url(dir.path()).await;
        let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
        let signal = EventSignal::default();
        let listener = tokio::spawn(crate::listen_for_events(url.clone(), signal.clone()));
        // The listener raises the signal once it listens; wait for that first.
        tokio::time::timeout(std::time::Duration::from_secs(10), signal.notified())
            .await
            .expect("listening");
        let woken = signal.notified();
        let mut tx = store.begin_write().await.unwrap();
        insert(&mut tx, 1).await;
        tx.commit().await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), woken)
            .await
            .expect("the commit was announced");
        listener.abort();
    }

    /// Many writers committing in random order while a reader follows the cursor: the reader
    /// sees every event exactly once.
    #[tokio::test]
    async fn concurrent_writers_and_a_following_reader_lose_and_repeat_nothing() {
        let (store, _dir) = store().await;
        let writers = if test_util::test_backend() == Backend::Postgres {
            6
        } else {
            2
        };
        let per_writer = 25;
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..writers {
            let store = store.clone();
            tasks.spawn(async move {
                for i in 0..per_writer {
                    let mut tx = store.begin_write().await.unwrap();
                    insert(&mut tx, w * 1000 + i).await;
                    // Hold the transaction open a little, so commits interleave.
                    if store.backend == Backend::Postgres {
                        tokio::time::sleep(std::time::Duration::from_millis(
                            ((w * 7 + i * 13) % 11) as u64,
                        ))
                        .await;
                    }
                    tx.commit().await.unwrap();
                }
            });
        }
        let (mut cursor, mut seen) = (0, Vec::new());
        let total = (writers * per_writer) as usize;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while seen.len() < total {
            read_all(&store, &mut cursor, &mut seen).await;
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {total}",
                seen.len()
            );
        }
        while tasks.join_next().await.is_some() {}
        read_all(&store, &mut cursor, &mut seen).await;
        let unique: HashSet<_> = seen.iter().collect();
        assert_eq!(seen.len(), total, "nothing repeated");
        assert_eq!(unique.len(), total, "nothing lost");
        // Each writer's events in its own commit order.
        for w in 0..writers {
            let mine: Vec<_> = seen.iter().filter(|n| **n / 1000 == w).collect();
            assert!(mine.windows(2).all(|p| p[0] < p[1]), "writer {w}: {mine:?}");
        }
    }
}
