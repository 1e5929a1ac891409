//! The audit trail: who changed what, when. Details carry ids and statuses, never personal
//! data.

use crate::writer::WriteTx;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;

use crate::error::{StorageError, corrupt};
use crate::{Store, format_ts, parse_ts};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditEvent {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub subject_type: String,
    pub subject_id: String,
    pub details: Value,
}

pub(crate) async fn record(
    tx: &mut WriteTx,
    at: DateTime<Utc>,
    actor: &str,
    action: &str,
    subject: (&str, &str),
    details: &Value,
) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO audit_events (id, at, actor, action, subject_type, subject_id, details_json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(format_ts(at))
    .bind(actor)
    .bind(action)
    .bind(subject.0)
    .bind(subject.1)
    .bind(details.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Audit events about one subject, oldest first.
    pub async fn audit_trail(
        &self,
        subject_type: &str,
        subject_id: &str,
    ) -> Result<Vec<AuditEvent>, StorageError> {
        let rows = sqlx::query(
            "SELECT at, actor, action, subject_type, subject_id, details_json FROM audit_events \
             WHERE subject_type = $1 AND subject_id = $2 ORDER BY at, id",
        )
        .bind(subject_type)
        .bind(subject_id)
        .fetch_all(self.reader())
        .await?;
        rows.into_iter()
            .map(|r| {
                let at: String = r.try_get("at")?;
                let details: String = r.try_get("details_json")?;
                Ok(AuditEvent {
                    at: parse_ts(&at)?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    subject_type: r.try_get("subject_type")?,
                    subject_id: r.try_get("subject_id")?,
                    details: serde_json::from_str(&details)
                        .map_err(|e| corrupt("audit details", e))?,
                })
            })
            .collect()
    }
}
