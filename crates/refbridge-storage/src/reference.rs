//! ACCloud reference data the workers read and the API consults without calling ACCloud:
//! CSI's trusted network.

use chrono::{DateTime, Utc};

use crate::error::StorageError;
use crate::{Store, format_ts, now, parse_ts};

const TRUSTED_NETWORK: &str = "trusted_network";

/// Records that `what` was read from ACCloud now.
async fn mark_read(tx: &mut crate::writer::WriteTx, what: &str) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO reference_reads (what, read_at) VALUES ($1, $2) \
         ON CONFLICT (what) DO UPDATE SET read_at = EXCLUDED.read_at",
    )
    .bind(what)
    .bind(format_ts(now()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What the last read of the trusted network says of one agency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedNetworkRead {
    pub trusted: bool,
    pub read_at: DateTime<Utc>,
}

impl Store {
    /// Replaces the trusted network with what ACCloud listed now: (supply persona id, name).
    pub async fn replace_trusted_network(
        &self,
        members: &[(String, String)],
    ) -> Result<(), StorageError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM trusted_network")
            .execute(&mut *tx)
            .await?;
        for (id, name) in members {
            sqlx::query(
                "INSERT INTO trusted_network (supply_persona_id, name) VALUES ($1, $2) \
                 ON CONFLICT (supply_persona_id) DO NOTHING",
            )
            .bind(id.to_ascii_lowercase())
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
        mark_read(&mut tx, TRUSTED_NETWORK).await?;
        tx.commit().await?;
        Ok(())
    }

    /// When the trusted network was last read; `None` before the first read.
    pub async fn trusted_network_read_at(&self) -> Result<Option<DateTime<Utc>>, StorageError> {
        let at: Option<String> =
            sqlx::query_scalar("SELECT read_at FROM reference_reads WHERE what = $1")
                .bind(TRUSTED_NETWORK)
                .fetch_optional(self.reader())
                .await?;
        at.map(|a| parse_ts(&a)).transpose()
    }

    /// Whether the agency was in the trusted network at its last read; `None` before the
    /// first read.
    pub async fn trusted_network_read(
        &self,
        supply_persona_id: &str,
    ) -> Result<Option<TrustedNetworkRead>, StorageError> {
        let Some(read_at) = self.trusted_network_read_at().await? else {
            return Ok(None);
        };
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM trusted_network WHERE supply_persona_id = $1")
                .bind(supply_persona_id.to_ascii_lowercase())
                .fetch_one(self.reader())
                .await?;
        Ok(Some(TrustedNetworkRead {
            trusted: n > 0,
            read_at,
        }))
    }
}

/// ACCloud's funders, as read.
pub const FUNDERS: &str = "funders";
/// ACCloud's service codes, as read.
pub const SERVICE_CODES: &str = "service_codes";

impl Store {
    /// Replaces a list of ACCloud names (`FUNDERS`, `SERVICE_CODES`) with what was read now.
    pub async fn replace_accloud_names(
        &self,
        list: &str,
        items: &[(i64, String)],
    ) -> Result<(), StorageError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM accloud_names WHERE list = $1")
            .bind(list)
            .execute(&mut *tx)
            .await?;
        for (id, name) in items {
            sqlx::query(
                "INSERT INTO accloud_names (list, id, name) VALUES ($1, $2, $3) \
                 ON CONFLICT (list, id) DO NOTHING",
            )
            .bind(list)
            .bind(*id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
        mark_read(&mut tx, list).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A list of ACCloud names as last read, by name.
    pub async fn accloud_names(&self, list: &str) -> Result<Vec<(i64, String)>, StorageError> {
        let rows =
            sqlx::query("SELECT id, name FROM accloud_names WHERE list = $1 ORDER BY name, id")
                .bind(list)
                .fetch_all(self.reader())
                .await?;
        rows.iter()
            .map(|r| Ok((sqlx::Row::try_get(r, "id")?, sqlx::Row::try_get(r, "name")?)))
            .collect()
    }
}
