//! Referral Requests: intake, the review record, and the status history.

use crate::writer::WriteTx;
use chrono::{DateTime, Utc};
use refbridge_domain::form::{ParsedForm, StructuredReferral, Warning};
use refbridge_domain::intake::IntakeRequest;
use refbridge_domain::{ContentHash, FileId, PatientId, ReferralStatus, RequestId};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::error::{StorageError, corrupt};
use crate::files::StoredBlob;
use crate::patients::find_or_create_for_client;
use crate::plans::plans_from_intake;
use crate::{Store, audit, events, format_ts, now, parse_ts};
use refbridge_domain::event::EventType;

/// One file of a new Referral Request, already in the file store.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub name: String,
    pub blob: StoredBlob,
}

/// A validated, parsed Referral Request to record.
#[derive(Debug, Clone)]
pub struct NewReferral {
    pub request: IntakeRequest,
    pub parsed: ParsedForm,
    /// Identifies the request's content: the same document always has the same one.
    pub fingerprint: String,
    /// Top-level keys the contract does not define, kept as sent.
    pub extra: Option<Value>,
    pub files: Vec<NewFile>,
    /// The token name that posted it.
    pub actor: String,
}

#[derive(Debug)]
pub enum IntakeOutcome {
    /// Recorded now, with status `received`.
    Created(IntakeReceipt),
    /// The same document was recorded before: nothing changed.
    Replayed(Box<ReferralRecord>),
    /// A different document was recorded under this request id before.
    Conflict,
}

/// What a new intake recorded, known without reading it back.
#[derive(Debug)]
pub struct IntakeReceipt {
    pub patient_id: PatientId,
    pub files: usize,
    /// The form's warnings and those of recording its insurances as plans.
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileRecord {
    pub id: FileId,
    pub position: i64,
    pub name: String,
    pub sha256: ContentHash,
    pub size: i64,
    pub media_type: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusChange {
    pub status: ReferralStatus,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub reason: Option<String>,
}

/// Everything known about one Referral Request.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferralRecord {
    pub request_id: RequestId,
    pub status: ReferralStatus,
    pub fingerprint: String,
    pub patient_id: PatientId,
    pub patient_match: String,
    pub received_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub request: IntakeRequest,
    pub referral: StructuredReferral,
    pub warnings: Vec<Warning>,
    pub extra: Option<Value>,
    pub denial_reason: Option<String>,
    pub files: Vec<FileRecord>,
    pub history: Vec<StatusChange>,
}

/// One line of the review list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferralSummary {
    pub request_id: RequestId,
    pub status: ReferralStatus,
    pub agency_name: String,
    pub agency_org_id: String,
    pub patient_id: PatientId,
    pub service_requested: Option<String>,
    pub warning_count: i64,
    pub received_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Filters and page of the review list, newest first.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<ReferralStatus>,
    /// AlayaMarket org id of the agency.
    pub agency_org_id: Option<Uuid>,
    pub received_from: Option<DateTime<Utc>>,
    pub received_to: Option<DateTime<Utc>>,
    /// Keyset cursor: only rows strictly older than this (received_at, request_id).
    pub before: Option<(DateTime<Utc>, RequestId)>,
    pub limit: u32,
    /// A request id, an agency client id, a plan's member number, or words of the patient's
    /// name (each the start of the first or last name).
    pub search: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DenyError {
    #[error("no such referral request")]
    NotFound,
    #[error("a referral request that is {} cannot be denied", .0.as_str())]
    NotAllowed(ReferralStatus),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn status_of(s: &str) -> Result<ReferralStatus, StorageError> {
    ReferralStatus::parse(s).ok_or_else(|| corrupt("referral status", s))
}

pub(crate) fn request_id_of(s: &str) -> Result<RequestId, StorageError> {
    RequestId::parse(s).map_err(|e| corrupt("request id", e))
}

fn json_of<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T, StorageError> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

fn to_json<T: Serialize>(what: &str, v: &T) -> Result<String, StorageError> {
    serde_json::to_string(v).map_err(|e| corrupt(what, e))
}

/// A referral's status history, oldest first: a range of the table's own key
/// `(request_id, at, id)` (migration 0019), read in the key's order.
const STATUS_HISTORY: &str =
    "SELECT status, at, actor, reason FROM status_history WHERE request_id = $1 ORDER BY at, id";

impl Store {
    /// Records a Referral Request, its patient link, its files, the first status and the audit
    /// entry, in one transaction. Idempotent on `request_id`: the same fingerprint replays,
    /// a different one is a conflict, and nothing is stored twice.
    pub async fn record_intake(&self, new: &NewReferral) -> Result<IntakeOutcome, StorageError> {
        // A concurrent insert of the same request id loses the race on the primary key; the
        // second attempt then sees the row and replays or conflicts.
        match self.try_record_intake(new).await {
            Err(e) if e.is_unique_violation() => self.try_record_intake(new).await,
            other => other,
        }
    }

    async fn try_record_intake(&self, new: &NewReferral) -> Result<IntakeOutcome, StorageError> {
        let id = new.request.request_id;
        let mut tx = self.begin_write().await?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT fingerprint FROM referral_requests WHERE request_id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(fp) = existing {
            tx.rollback().await?;
            if fp != new.fingerprint {
                return Ok(IntakeOutcome::Conflict);
            }
            let rec = self.get_referral(id).await?.ok_or(StorageError::NotFound)?;
            return Ok(IntakeOutcome::Replayed(Box::new(rec)));
        }

        let at = now();
        let ts = format_ts(at);
        let org = new.request.agency.alayamarket_org_id.to_string();
        let (patient_id, how) =
            find_or_create_for_client(&mut tx, &org, &new.request.client, at).await?;
        // Intake feeds plans; what cannot be recorded is a warning on the referral.
        let mut warnings = new.parsed.warnings.clone();
        warnings.extend(
            plans_from_intake(
                &mut tx,
                patient_id,
                &org,
                new.request.client.id,
                &new.parsed.referral,
                at,
                &new.actor,
            )
            .await?,
        );
        sqlx::query(
            "INSERT INTO referral_requests (request_id, fingerprint, status, agency_org_id, agency_name, \
             agency_client_id, patient_id, patient_match, service_requested, warning_count, received_at, \
             updated_at, request_json, parsed_json, warnings_json, extra_json) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14, $15)",
        )
        .bind(id.to_string())
        .bind(&new.fingerprint)
        .bind(ReferralStatus::Received.as_str())
        .bind(&org)
        .bind(&new.request.agency.name)
        .bind(new.request.client.id)
        .bind(patient_id.to_string())
        .bind(how.as_str())
        .bind(&new.parsed.referral.service.requested)
        .bind(warnings.len() as i64)
        .bind(&ts)
        .bind(to_json("request", &new.request)?)
        .bind(to_json("referral", &new.parsed.referral)?)
        .bind(to_json("warnings", &warnings)?)
        .bind(new.extra.as_ref().map(Value::to_string))
        .execute(&mut *tx)
        .await?;

        insert_files(&mut tx, id, &new.files, &ts).await?;
        sqlx::query(
            "INSERT INTO agencies (org_id, name, last_seen_at) VALUES ($1, $2, $3) \
             ON CONFLICT (org_id) DO UPDATE SET name = excluded.name, last_seen_at = excluded.last_seen_at",
        )
        .bind(&org)
        .bind(&new.request.agency.name)
        .bind(&ts)
        .execute(&mut *tx)
        .await?;

        insert_status(&mut tx, id, ReferralStatus::Received, at, &new.actor, None).await?;
        audit::record(
            &mut tx,
            at,
            &new.actor,
            "referral_request.received",
            ("referral_request", &id.to_string()),
            &json!({
                "patient_id": patient_id.to_string(),
                "patient_match": how,
                "files": new.files.len(),
                "warnings": warnings.len(),
            }),
        )
        .await?;
        events::record(
            &mut tx,
            at,
            EventType::ReferralReceived,
            id,
            json!({
                "status": ReferralStatus::Received,
                "agency_org_id": org,
                "files": new.files.len(),
                "warnings": warnings.len(),
            }),
        )
        .await?;
        self.commit_events(tx).await?;
        Ok(IntakeOutcome::Created(IntakeReceipt {
            patient_id,
            files: new.files.len(),
            warnings,
        }))
    }

    pub async fn get_referral(
        &self,
        id: RequestId,
    ) -> Result<Option<ReferralRecord>, StorageError> {
        self.referral_record(id, true).await
    }

    /// The referral request as a send reads it: [`Store::get_referral`] without the status
    /// history (`history` is empty), one read fewer per claim.
    pub async fn referral_to_send(
        &self,
        id: RequestId,
    ) -> Result<Option<ReferralRecord>, StorageError> {
        self.referral_record(id, false).await
    }

    async fn referral_record(
        &self,
        id: RequestId,
        with_history: bool,
    ) -> Result<Option<ReferralRecord>, StorageError> {
        let Some(row) = sqlx::query(
            "SELECT request_id, status, fingerprint, patient_id, patient_match, received_at, updated_at, \
             request_json, parsed_json, warnings_json, extra_json, denial_reason \
             FROM referral_requests WHERE request_id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(self.reader())
        .await?
        else {
            return Ok(None);
        };
        let files = self.referral_files(id).await?;
        let history = if with_history {
            self.status_history(id).await?
        } else {
            Vec::new()
        };
        let text = |col: &str| -> Result<String, StorageError> { Ok(row.try_get(col)?) };
        let extra: Option<String> = row.try_get("extra_json")?;
        Ok(Some(ReferralRecord {
            request_id: request_id_of(&text("request_id")?)?,
            status: status_of(&text("status")?)?,
            fingerprint: text("fingerprint")?,
            patient_id: PatientId::parse(&text("patient_id")?)
                .map_err(|e| corrupt("patient id", e))?,
            patient_match: text("patient_match")?,
            received_at: parse_ts(&text("received_at")?)?,
            updated_at: parse_ts(&text("updated_at")?)?,
            request: json_of("request", &text("request_json")?)?,
            referral: json_of("referral", &text("parsed_json")?)?,
            warnings: json_of("warnings", &text("warnings_json")?)?,
            extra: extra.map(|e| json_of("extra", &e)).transpose()?,
            denial_reason: row.try_get("denial_reason")?,
            files,
            history,
        }))
    }

    /// A referral request's status alone (one indexed read, nothing decoded).
    pub async fn referral_status(
        &self,
        id: RequestId,
    ) -> Result<Option<ReferralStatus>, StorageError> {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM referral_requests WHERE request_id = $1")
                .bind(id.to_string())
                .fetch_optional(self.reader())
                .await?;
        status.map(|s| status_of(&s)).transpose()
    }

    pub async fn referral_files(&self, id: RequestId) -> Result<Vec<FileRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT f.id, f.position, f.file_name, f.sha256, b.size, b.media_type \
             FROM referral_files f JOIN blobs b ON b.sha256 = f.sha256 \
             WHERE f.request_id = $1 ORDER BY f.position",
        )
        .bind(id.to_string())
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(file_from_row).collect()
    }

    pub async fn referral_file(
        &self,
        id: RequestId,
        file_id: FileId,
    ) -> Result<Option<FileRecord>, StorageError> {
        let row = sqlx::query(
            "SELECT f.id, f.position, f.file_name, f.sha256, b.size, b.media_type \
             FROM referral_files f JOIN blobs b ON b.sha256 = f.sha256 \
             WHERE f.request_id = $1 AND f.id = $2",
        )
        .bind(id.to_string())
        .bind(file_id.to_string())
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(file_from_row).transpose()
    }

    pub async fn status_history(&self, id: RequestId) -> Result<Vec<StatusChange>, StorageError> {
        let rows = sqlx::query(STATUS_HISTORY)
            .bind(id.to_string())
            .fetch_all(self.reader())
            .await?;
        rows.into_iter()
            .map(|r| {
                let status: String = r.try_get("status")?;
                let at: String = r.try_get("at")?;
                Ok(StatusChange {
                    status: status_of(&status)?,
                    at: parse_ts(&at)?,
                    actor: r.try_get("actor")?,
                    reason: r.try_get("reason")?,
                })
            })
            .collect()
    }

    /// The review list, newest first.
    pub async fn list_referrals(
        &self,
        filter: &ListFilter,
    ) -> Result<Vec<ReferralSummary>, StorageError> {
        let mut sql = String::from(
            "SELECT request_id, status, agency_name, agency_org_id, patient_id, service_requested, \
             warning_count, received_at, updated_at FROM referral_requests WHERE 1 = 1",
        );
        let mut binds: Vec<String> = Vec::new();
        let mut push = |sql: &mut String, clause: &str, value: String| {
            binds.push(value);
            sql.push_str(&clause.replace('?', &format!("${}", binds.len())));
        };
        if let Some(s) = filter.status {
            push(&mut sql, " AND status = ?", s.as_str().to_owned());
        }
        if let Some(org) = filter.agency_org_id {
            push(&mut sql, " AND agency_org_id = ?", org.to_string());
        }
        if let Some(from) = filter.received_from {
            push(&mut sql, " AND received_at >= ?", format_ts(from));
        }
        if let Some(to) = filter.received_to {
            push(&mut sql, " AND received_at < ?", format_ts(to));
        }
        // What was typed, without what no field holds (control characters) and cut short.
        let search = filter.search.as_deref().map(refbridge_domain::text::typed);
        if let Some(q) = search.as_deref().filter(|q| !q.is_empty()) {
            if let Ok(id) = RequestId::parse(q) {
                push(&mut sql, " AND request_id = ?", id.to_string());
            } else {
                sql.push_str(" AND (");
                if q.bytes().all(|b| b.is_ascii_digit()) {
                    push(
                        &mut sql,
                        "CAST(agency_client_id AS TEXT) = ? OR ",
                        q.to_owned(),
                    );
                }
                // Uncorrelated subqueries: each is read once (by its index), and the referrals
                // of the patients found come from `referral_requests_by_patient`.
                push(
                    &mut sql,
                    "patient_id IN (SELECT pp.patient_id FROM patient_plans pp WHERE pp.member_number = ?)",
                    q.to_owned(),
                );
                // Every word the start of the first or the last name (normalised: letters and
                // digits only, so no word can carry a LIKE wildcard).
                let words: Vec<String> = q
                    .split(|c: char| c.is_whitespace() || c == ',')
                    .map(refbridge_domain::person::normalize_name)
                    .filter(|w| !w.is_empty())
                    .collect();
                if !words.is_empty() {
                    sql.push_str(" OR patient_id IN (SELECT p.id FROM patients p WHERE 1 = 1");
                    for w in words {
                        push(&mut sql, " AND (p.norm_first LIKE ?", format!("{w}%"));
                        push(&mut sql, " OR p.norm_last LIKE ?)", format!("{w}%"));
                    }
                    sql.push(')');
                }
                sql.push(')');
            }
        }
        if let Some((at, id)) = filter.before {
            // (received_at, request_id) < (at, id), spelled so that both backends read it as
            // a range of the index from `at` down: the first term bounds the range (SQLite
            // does not take an `a < ? OR (a = ? AND …)` with bound values as one, and would
            // walk the index from the newest to the cursor: a deep page read half the store).
            let at = format_ts(at);
            push(&mut sql, " AND received_at <= ?", at.clone());
            push(&mut sql, " AND (received_at < ?", at);
            push(&mut sql, " OR request_id < ?)", id.to_string());
        }
        sql.push_str(&format!(
            " ORDER BY received_at DESC, request_id DESC LIMIT {}",
            filter.limit.clamp(1, 1000)
        ));
        let mut q = sqlx::query(&sql);
        for b in &binds {
            q = q.bind(b);
        }
        let rows = q.fetch_all(self.reader()).await?;
        rows.into_iter()
            .map(|r| {
                let text = |c: &str| -> Result<String, StorageError> { Ok(r.try_get(c)?) };
                Ok(ReferralSummary {
                    request_id: request_id_of(&text("request_id")?)?,
                    status: status_of(&text("status")?)?,
                    agency_name: text("agency_name")?,
                    agency_org_id: text("agency_org_id")?,
                    patient_id: PatientId::parse(&text("patient_id")?)
                        .map_err(|e| corrupt("patient id", e))?,
                    service_requested: r.try_get("service_requested")?,
                    warning_count: r.try_get("warning_count")?,
                    received_at: parse_ts(&text("received_at")?)?,
                    updated_at: parse_ts(&text("updated_at")?)?,
                })
            })
            .collect()
    }

    /// Denies a received Referral Request. Terminal.
    pub async fn deny_referral(
        &self,
        id: RequestId,
        reason: &str,
        actor: &str,
    ) -> Result<ReferralRecord, DenyError> {
        let mut tx = self.begin_write().await?;
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM referral_requests WHERE request_id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(StorageError::from)?;
        let current = status_of(&status.ok_or(DenyError::NotFound)?)?;
        if !current.can_become(ReferralStatus::Denied) {
            return Err(DenyError::NotAllowed(current));
        }
        let at = now();
        sqlx::query(
            "UPDATE referral_requests SET status = $1, denial_reason = $2, updated_at = $3 WHERE request_id = $4",
        )
        .bind(ReferralStatus::Denied.as_str())
        .bind(reason)
        .bind(format_ts(at))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(StorageError::from)?;
        insert_status(&mut tx, id, ReferralStatus::Denied, at, actor, Some(reason)).await?;
        audit::record(
            &mut tx,
            at,
            actor,
            "referral_request.denied",
            ("referral_request", &id.to_string()),
            &json!({ "from": current, "to": ReferralStatus::Denied }),
        )
        .await?;
        events::record(
            &mut tx,
            at,
            EventType::ReferralDenied,
            id,
            json!({ "from": current, "status": ReferralStatus::Denied }),
        )
        .await?;
        self.commit_events(tx).await.map_err(StorageError::from)?;
        self.get_referral(id).await?.ok_or(DenyError::NotFound)
    }
}

fn file_from_row(r: &AnyRow) -> Result<FileRecord, StorageError> {
    let id: String = r.try_get("id")?;
    let sha: String = r.try_get("sha256")?;
    Ok(FileRecord {
        id: FileId::parse(&id).map_err(|e| corrupt("file id", e))?,
        position: r.try_get("position")?,
        name: r.try_get("file_name")?,
        sha256: ContentHash::parse(&sha).map_err(|e| corrupt("file hash", e))?,
        size: r.try_get("size")?,
        media_type: r.try_get("media_type")?,
    })
}

/// Records files of a referral request (after any it has), their bodies being in the file
/// store already.
pub(crate) async fn insert_files(
    tx: &mut WriteTx,
    id: RequestId,
    files: &[NewFile],
    ts: &str,
) -> Result<Vec<FileId>, StorageError> {
    let first: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(position), -1) + 1 FROM referral_files WHERE request_id = $1",
    )
    .bind(id.to_string())
    .fetch_one(&mut **tx)
    .await?;
    let mut ids = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        sqlx::query(
            "INSERT INTO blobs (sha256, size, media_type, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(file.blob.hash.as_str())
        .bind(file.blob.size as i64)
        .bind(&file.blob.media_type)
        .bind(ts)
        .execute(&mut **tx)
        .await?;
        let file_id = FileId::new();
        sqlx::query(
            "INSERT INTO referral_files (id, request_id, position, file_name, sha256) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(file_id.to_string())
        .bind(id.to_string())
        .bind(first + i as i64)
        .bind(&file.name)
        .bind(file.blob.hash.as_str())
        .execute(&mut **tx)
        .await?;
        ids.push(file_id);
    }
    Ok(ids)
}

pub(crate) async fn insert_status(
    tx: &mut WriteTx,
    id: RequestId,
    status: ReferralStatus,
    at: DateTime<Utc>,
    actor: &str,
    reason: Option<&str>,
) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO status_history (id, request_id, status, at, actor, reason) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(Uuid::now_v7().to_string())
    .bind(id.to_string())
    .bind(status.as_str())
    .bind(format_ts(at))
    .bind(actor)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::sqlite_file_store;

    /// On SQLite a status change writes one b-tree (migration 0019: the table stored in its
    /// key's order, no rowid, no index of its own), and a referral's history is one search of
    /// that key with no sort.
    #[tokio::test]
    async fn the_status_history_is_one_b_tree_read_in_its_keys_order() {
        let (store, _dir) = sqlite_file_store().await;
        let btrees: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE tbl_name = 'status_history' ORDER BY name",
        )
        .fetch_all(store.reader())
        .await
        .unwrap();
        assert_eq!(btrees, ["status_history"], "no index beside the table");
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {STATUS_HISTORY}"))
            .bind("r")
            .fetch_all(store.reader())
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get::<String, _>("detail").unwrap())
            .collect();
        assert!(
            plan.len() == 1 && plan[0].starts_with("SEARCH status_history USING PRIMARY KEY"),
            "{plan:?}"
        );
    }
}
