//! The PHI access log: who read which referral's or patient's data, when, and through what.

use chrono::{DateTime, Utc};
use refbridge_domain::{PatientId, RequestId};
use serde::Serialize;
use sqlx::Row;

use crate::error::{StorageError, corrupt};
use crate::{Store, format_ts, now, parse_ts};

/// One read of personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PhiAccess {
    pub id: String,
    pub at: DateTime<Utc>,
    /// The user's or token's name.
    pub actor: String,
    /// `console` or `api`.
    pub via: String,
    /// What was shown: `referral`, `file`, `inbox`.
    pub what: String,
    pub request_id: Option<String>,
    pub patient_id: Option<String>,
}

/// Which entries to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AccessFilter {
    pub request_id: Option<RequestId>,
    /// Keyset cursor: entries strictly older than (at, id).
    pub before: Option<(DateTime<Utc>, String)>,
    pub limit: u32,
}

impl Store {
    /// Records that `actor` read `what` (of this referral and patient) through `via`.
    pub async fn record_phi_access(
        &self,
        actor: &str,
        via: &str,
        what: &str,
        request_id: Option<RequestId>,
        patient_id: Option<PatientId>,
    ) -> Result<(), StorageError> {
        let mut w = self.write_single().await?;
        sqlx::query(
            "INSERT INTO phi_access (id, at, actor, via, what, request_id, patient_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(format_ts(now()))
        .bind(actor)
        .bind(via)
        .bind(what)
        .bind(request_id.map(|r| r.to_string()))
        .bind(patient_id.map(|p| p.to_string()))
        .execute(&mut *w)
        .await?;
        w.commit().await?;
        Ok(())
    }

    pub async fn phi_access(&self, filter: &AccessFilter) -> Result<Vec<PhiAccess>, StorageError> {
        let mut sql = String::from(
            "SELECT id, at, actor, via, what, request_id, patient_id FROM phi_access WHERE 1 = 1",
        );
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if filter.request_id.is_some() {
            sql.push_str(&format!(" AND request_id = {}", next()));
        }
        if filter.before.is_some() {
            let (a, b, c) = (next(), next(), next());
            sql.push_str(&format!(" AND (at < {a} OR (at = {b} AND id < {c}))"));
        }
        sql.push_str(&format!(" ORDER BY at DESC, id DESC LIMIT {}", next()));
        let mut q = sqlx::query(&sql);
        if let Some(r) = filter.request_id {
            q = q.bind(r.to_string());
        }
        if let Some((at, id)) = &filter.before {
            q = q.bind(format_ts(*at)).bind(format_ts(*at)).bind(id.clone());
        }
        q = q.bind(i64::from(filter.limit.clamp(1, 500)));
        let rows = q.fetch_all(self.reader()).await?;
        rows.iter()
            .map(|r| {
                let at: String = r.try_get("at")?;
                Ok(PhiAccess {
                    id: r.try_get("id")?,
                    at: parse_ts(&at).map_err(|_| corrupt("access time", &at))?,
                    actor: r.try_get("actor")?,
                    via: r.try_get("via")?,
                    what: r.try_get("what")?,
                    request_id: r.try_get("request_id")?,
                    patient_id: r.try_get("patient_id")?,
                })
            })
            .collect()
    }
}
