//! Payors (insurers) and their mapping to ACCloud funders. Names are matched after
//! normalisation; a payor without a funder is `unmapped`, waiting for a reviewer.

use crate::writer::WriteTx;
use chrono::{DateTime, Utc};
use refbridge_domain::PayorId;
use refbridge_domain::event::EventType;
use refbridge_domain::plan::{PayorName, PayorPut};
use serde::Serialize;
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::{StorageError, corrupt};
use crate::{Store, audit, format_ts, now, parse_ts};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PayorRecord {
    pub id: PayorId,
    pub name: String,
    pub accloud_funder_id: Option<i64>,
    pub accloud_funder_name: Option<String>,
    /// No ACCloud funder yet: a reviewer must map it before an approval can name it.
    pub unmapped: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, accloud_funder_id, accloud_funder_name, unmapped, created_by, \
    created_at, updated_at";

fn from_row(r: &AnyRow) -> Result<PayorRecord, StorageError> {
    let id: String = r.try_get("id")?;
    let unmapped: i64 = r.try_get("unmapped")?;
    let created: String = r.try_get("created_at")?;
    let updated: String = r.try_get("updated_at")?;
    Ok(PayorRecord {
        id: PayorId::parse(&id).map_err(|e| corrupt("payor id", e))?,
        name: r.try_get("name")?,
        accloud_funder_id: r.try_get("accloud_funder_id")?,
        accloud_funder_name: r.try_get("accloud_funder_name")?,
        unmapped: unmapped != 0,
        created_by: r.try_get("created_by")?,
        created_at: parse_ts(&created)?,
        updated_at: parse_ts(&updated)?,
    })
}

/// The payor with this name (after normalisation), created unmapped when unknown, inside the
/// caller's transaction. Returns the id and whether it was created now.
pub(crate) async fn payor_for_name(
    tx: &mut WriteTx,
    name: &PayorName,
    at: DateTime<Utc>,
    actor: &str,
) -> Result<(PayorId, bool), StorageError> {
    let norm = name.normalized();
    let id = PayorId::new();
    let ts = format_ts(at);
    let inserted = sqlx::query(
        "INSERT INTO payors (id, name, norm_name, accloud_funder_id, accloud_funder_name, unmapped, \
         created_by, created_at, updated_at) VALUES ($1, $2, $3, NULL, NULL, 1, $4, $5, $5) \
         ON CONFLICT (norm_name) DO NOTHING",
    )
    .bind(id.to_string())
    .bind(name.as_str())
    .bind(&norm)
    .bind(actor)
    .bind(&ts)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        audit::record(
            tx,
            at,
            actor,
            "payor.created",
            ("payor", &id.to_string()),
            &json!({ "unmapped": true }),
        )
        .await?;
        crate::events::record_other(
            tx,
            at,
            EventType::PayorUnmapped,
            (None, None),
            json!({ "payor_id": id.to_string(), "created": true }),
        )
        .await?;
        return Ok((id, true));
    }
    let existing: String = sqlx::query_scalar("SELECT id FROM payors WHERE norm_name = $1")
        .bind(&norm)
        .fetch_one(&mut **tx)
        .await?;
    Ok((
        PayorId::parse(&existing).map_err(|e| corrupt("payor id", e))?,
        false,
    ))
}

impl Store {
    /// Creates or updates the payor with this (normalised) name and its funder mapping.
    /// PUT semantics: a funder left out is cleared, and the payor becomes unmapped.
    /// Returns the payor and whether it was created.
    pub async fn put_payor(
        &self,
        put: &PayorPut,
        actor: &str,
    ) -> Result<(PayorRecord, bool), StorageError> {
        let mut attempt = 0;
        loop {
            match self.try_put_payor(put, actor).await {
                Err(e) if e.is_unique_violation() && attempt < 3 => attempt += 1,
                other => return other,
            }
        }
    }

    async fn try_put_payor(
        &self,
        put: &PayorPut,
        actor: &str,
    ) -> Result<(PayorRecord, bool), StorageError> {
        let at = now();
        let ts = format_ts(at);
        let norm = put.name.normalized();
        let unmapped = i64::from(put.unmapped());
        let mut tx = self.begin_write().await?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM payors WHERE norm_name = $1")
                .bind(&norm)
                .fetch_optional(&mut *tx)
                .await?;
        let (id, created) = match existing {
            Some(id) => {
                let was_unmapped: i64 =
                    sqlx::query_scalar("SELECT unmapped FROM payors WHERE id = $1")
                        .bind(&id)
                        .fetch_one(&mut *tx)
                        .await?;
                if was_unmapped == 0 && put.unmapped() {
                    crate::events::record_other(
                        &mut tx,
                        at,
                        EventType::PayorUnmapped,
                        (None, None),
                        json!({ "payor_id": id, "created": false }),
                    )
                    .await?;
                }
                sqlx::query(
                    "UPDATE payors SET name = $2, accloud_funder_id = $3, accloud_funder_name = $4, \
                     unmapped = $5, updated_at = $6 WHERE id = $1",
                )
                .bind(&id)
                .bind(put.name.as_str())
                .bind(put.accloud_funder_id)
                .bind(&put.accloud_funder_name)
                .bind(unmapped)
                .bind(&ts)
                .execute(&mut *tx)
                .await?;
                (id, false)
            }
            None => {
                let id = PayorId::new().to_string();
                sqlx::query(
                    "INSERT INTO payors (id, name, norm_name, accloud_funder_id, accloud_funder_name, \
                     unmapped, created_by, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
                )
                .bind(&id)
                .bind(put.name.as_str())
                .bind(&norm)
                .bind(put.accloud_funder_id)
                .bind(&put.accloud_funder_name)
                .bind(unmapped)
                .bind(actor)
                .bind(&ts)
                .execute(&mut *tx)
                .await?;
                if put.unmapped() {
                    crate::events::record_other(
                        &mut tx,
                        at,
                        EventType::PayorUnmapped,
                        (None, None),
                        json!({ "payor_id": id, "created": true }),
                    )
                    .await?;
                }
                (id, true)
            }
        };
        audit::record(
            &mut tx,
            at,
            actor,
            if created {
                "payor.created"
            } else {
                "payor.updated"
            },
            ("payor", &id),
            &json!({ "unmapped": put.unmapped(), "accloud_funder_id": put.accloud_funder_id }),
        )
        .await?;
        let rec = sqlx::query(&format!("SELECT {COLUMNS} FROM payors WHERE id = $1"))
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
        let rec = from_row(&rec)?;
        self.commit_events(tx).await?;
        Ok((rec, created))
    }

    pub async fn get_payor(&self, id: PayorId) -> Result<Option<PayorRecord>, StorageError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM payors WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Every payor by name, or only the unmapped ones.
    pub async fn list_payors(&self, unmapped_only: bool) -> Result<Vec<PayorRecord>, StorageError> {
        let sql = if unmapped_only {
            format!("SELECT {COLUMNS} FROM payors WHERE unmapped = 1 ORDER BY norm_name")
        } else {
            format!("SELECT {COLUMNS} FROM payors ORDER BY norm_name")
        };
        let rows = sqlx::query(&sql).fetch_all(self.reader()).await?;
        rows.iter().map(from_row).collect()
    }
}
