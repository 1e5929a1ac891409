//! Patient plans: the PUT upsert (the decision itself is `refbridge_domain::plan::decide`),
//! reads, archive and the source_id fix-up.
//!
//! Each change runs in one write transaction with its audit entries. The patient's row is
//! locked first (`UPDATE patients … WHERE id`), so PUTs for one patient queue up on
//! PostgreSQL as they do on SQLite; the partial unique indexes of migration 0002 are the
//! guarantee behind that, and a unique violation from a concurrent writer makes the whole
//! procedure run again.
//!
//! **Authorizations.** Whether a plan has authorizations in progress, and withdrawing them
//! when it is archived, goes through [`authorizations`] only; an approval links each of its
//! authorizations to the patient plan it names.

use crate::writer::WriteTx;
use chrono::{DateTime, NaiveDate, Utc};
use refbridge_domain::form::{Insurance, StructuredReferral, Warning};
use refbridge_domain::plan::{
    ActivePlan, ConflictBehavior, ConflictReason, Decision, DeduplicationStrategy, GroupNumber,
    InsuranceType, MemberNumber, PayorName, PlanFields, PlanOrder, PlanPut, SourceId, decide,
};
use refbridge_domain::send;
use refbridge_domain::{FileId, PatientId, PayorId, PlanId, RequestId};
use serde::Serialize;
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::{StorageError, corrupt};
use crate::payors::payor_for_name;
use crate::sends::sql_names;
use crate::{Store, audit, format_ts, now, parse_ts};

/// How many times a PUT runs again after losing a race on a unique index.
const RETRIES: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    Active,
    Archived,
}

impl PlanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::Active => "active",
            PlanStatus::Archived => "archived",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRecord {
    pub id: PlanId,
    pub patient_id: PatientId,
    pub source_id: Option<String>,
    pub fields: PlanFields,
    pub payor_name: String,
    pub status: PlanStatus,
    pub archived_at: Option<DateTime<Utc>>,
    /// `replaced` or `deleted`.
    pub archived_reason: Option<String>,
    pub replaced_by: Option<PlanId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which path a PUT took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanOutcome {
    SourceIdMatch,
    Deduplicated,
    Created,
    Replaced,
}

/// The result of a PUT (or of its dry run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanPutResult {
    Done {
        outcome: PlanOutcome,
        /// `None` only for a dry run that would create a plan.
        plan_id: Option<PlanId>,
        archived: Vec<PlanId>,
        withdrawn_authorizations: Vec<String>,
        /// Request fields that differ from the plan found, and were not applied.
        ignored_fields: Vec<&'static str>,
    },
    /// Refused by the conflict behaviour; nothing changed.
    Conflict {
        conflicting_plan_id: PlanId,
        reason: ConflictReason,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum PlanPutError {
    #[error("no such patient")]
    PatientNotFound,
    #[error("no such payor")]
    PayorNotFound,
    #[error("no such file")]
    FileNotFound(&'static str),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The outcome of archiving a plan through DELETE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveResult {
    /// False when the plan was archived before (nothing changed).
    pub archived_now: bool,
    pub withdrawn_authorizations: Vec<String>,
}

/// The one place plans meet authorizations.
pub(crate) mod authorizations {
    use super::*;

    /// The SQL condition on a referral `r` whose first send is not over: its send is open
    /// ([`send::SEND_OPEN_STATUSES`]) and every change asked is part of the first send
    /// ([`send::ChangeKind::is_first_send`]).
    fn in_progress() -> String {
        let later: Vec<send::ChangeKind> = send::ChangeKind::ALL
            .iter()
            .copied()
            .filter(|k| !k.is_first_send())
            .collect();
        format!(
            "r.status IN ({}) AND NOT EXISTS (SELECT 1 FROM send_changes c \
             WHERE c.request_id = r.request_id AND c.kind IN ({}))",
            sql_names(
                &send::SEND_OPEN_STATUSES,
                refbridge_domain::ReferralStatus::as_str
            ),
            sql_names(&later, send::ChangeKind::as_str),
        )
    }

    /// The plans among `plans` that have an authorization in progress: from the approval
    /// that names the plan until that referral's approval has been sent.
    pub(crate) async fn plans_with_in_progress(
        tx: &mut WriteTx,
        plans: &[PlanId],
    ) -> Result<Vec<PlanId>, StorageError> {
        let mut out = Vec::new();
        for plan in plans {
            let n: i64 = sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM authorization_plans ap JOIN referral_requests r ON r.request_id = ap.request_id \
                 WHERE ap.plan_id = $1 AND {}",
                in_progress()
            ))
            .bind(plan.to_string())
            .fetch_one(&mut **tx)
            .await?;
            if n > 0 {
                out.push(*plan);
            }
        }
        Ok(out)
    }

    /// Withdraws the in-progress authorizations of an archived plan, in the archiving
    /// transaction: the referral's remaining first-send steps are skipped (its worker loses
    /// its lease), a withdrawal change deletes from ACCloud whatever of the authorization may
    /// exist there, and the referral needs attention with the reason. Returns the withdrawn
    /// authorizations as `{request_id}/authorizations/{index}`.
    pub(crate) async fn withdraw_for_plan(
        tx: &mut WriteTx,
        plan: PlanId,
        at: DateTime<Utc>,
        actor: &str,
    ) -> Result<Vec<String>, StorageError> {
        let rows = sqlx::query(&format!(
            "SELECT ap.request_id, ap.auth_index FROM authorization_plans ap \
             JOIN referral_requests r ON r.request_id = ap.request_id \
             WHERE ap.plan_id = $1 AND {} ORDER BY ap.request_id, ap.auth_index",
            in_progress()
        ))
        .bind(plan.to_string())
        .fetch_all(&mut **tx)
        .await?;
        let mut by_request: Vec<(String, Vec<usize>)> = Vec::new();
        for r in rows {
            let id: String = r.try_get("request_id")?;
            let index: i64 = r.try_get("auth_index")?;
            let index = usize::try_from(index).map_err(|e| corrupt("authorization index", e))?;
            match by_request.last_mut() {
                Some((last, v)) if *last == id => v.push(index),
                _ => by_request.push((id, vec![index])),
            }
        }
        let mut withdrawn = Vec::new();
        for (id, indexes) in by_request {
            let request = RequestId::parse(&id).map_err(|e| corrupt("request id", e))?;
            let reason = format!("authorization withdrawn: patient plan {plan} was archived");
            crate::events::record(
                tx,
                at,
                refbridge_domain::event::EventType::AuthorizationWithdrawn,
                request,
                serde_json::json!({ "plan_id": plan.to_string(), "authorizations": indexes }),
            )
            .await?;
            crate::sends::withdraw(tx, request, &indexes, &reason, at, actor)
                .await
                .map_err(|e| match e {
                    crate::SendError::Storage(s) => s,
                    other => StorageError::Corrupt(other.to_string()),
                })?;
            crate::audit::record(
                tx,
                at,
                actor,
                "send.withdrawn",
                ("referral_request", &id),
                &serde_json::json!({ "plan_id": plan.to_string(), "authorizations": indexes }),
            )
            .await?;
            withdrawn.extend(indexes.iter().map(|i| format!("{id}/authorizations/{i}")));
        }
        Ok(withdrawn)
    }
}

const COLUMNS: &str = "p.id, p.patient_id, p.source_id, p.member_number, p.payor_id, \
    p.plan_order_number, p.group_number, p.start_date, p.end_date, p.insurance_type, \
    p.insurance_card_file_id, p.insurance_card_back_file_id, p.status, p.archived_at, \
    p.archived_reason, p.replaced_by, p.created_at, p.updated_at, y.name AS payor_name";
const FROM: &str = "FROM patient_plans p JOIN payors y ON y.id = p.payor_id";

fn date_of(s: Option<String>) -> Result<Option<NaiveDate>, StorageError> {
    s.map(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d"))
        .transpose()
        .map_err(|e| corrupt("plan date", e))
}

fn file_of(s: Option<String>) -> Result<Option<FileId>, StorageError> {
    s.map(|f| FileId::parse(&f))
        .transpose()
        .map_err(|e| corrupt("plan file id", e))
}

fn from_row(r: &AnyRow) -> Result<PlanRecord, StorageError> {
    let text = |c: &str| -> Result<String, StorageError> { Ok(r.try_get(c)?) };
    let opt = |c: &str| -> Result<Option<String>, StorageError> { Ok(r.try_get(c)?) };
    let order: i64 = r.try_get("plan_order_number")?;
    let status = match text("status")?.as_str() {
        "active" => PlanStatus::Active,
        "archived" => PlanStatus::Archived,
        other => return Err(corrupt("plan status", other)),
    };
    Ok(PlanRecord {
        id: PlanId::parse(&text("id")?).map_err(|e| corrupt("plan id", e))?,
        patient_id: PatientId::parse(&text("patient_id")?).map_err(|e| corrupt("patient id", e))?,
        source_id: opt("source_id")?,
        fields: PlanFields {
            member_number: MemberNumber::parse(&text("member_number")?)
                .map_err(|e| corrupt("member number", e))?,
            payor_id: PayorId::parse(&text("payor_id")?).map_err(|e| corrupt("payor id", e))?,
            plan_order: PlanOrder::parse(order).map_err(|e| corrupt("plan order", e))?,
            group_number: opt("group_number")?
                .map(|g| GroupNumber::parse(&g))
                .transpose()
                .map_err(|e| corrupt("group number", e))?,
            start_date: date_of(opt("start_date")?)?,
            end_date: date_of(opt("end_date")?)?,
            insurance_type: opt("insurance_type")?
                .map(|t| InsuranceType::parse(&t))
                .transpose()
                .map_err(|e| corrupt("insurance type", e))?,
            insurance_card_file_id: file_of(opt("insurance_card_file_id")?)?,
            insurance_card_back_file_id: file_of(opt("insurance_card_back_file_id")?)?,
        },
        payor_name: text("payor_name")?,
        status,
        archived_at: opt("archived_at")?.map(|t| parse_ts(&t)).transpose()?,
        archived_reason: opt("archived_reason")?,
        replaced_by: opt("replaced_by")?
            .map(|id| PlanId::parse(&id))
            .transpose()
            .map_err(|e| corrupt("plan id", e))?,
        created_at: parse_ts(&text("created_at")?)?,
        updated_at: parse_ts(&text("updated_at")?)?,
    })
}

/// Locks the patient's row for the rest of the transaction (a no-op write); false when the
/// patient does not exist.
async fn lock_patient(tx: &mut WriteTx, patient: PatientId) -> Result<bool, StorageError> {
    let n = sqlx::query("UPDATE patients SET updated_at = updated_at WHERE id = $1")
        .bind(patient.to_string())
        .execute(&mut **tx)
        .await?
        .rows_affected();
    Ok(n == 1)
}

async fn active_plans(
    tx: &mut WriteTx,
    patient: PatientId,
) -> Result<Vec<PlanRecord>, StorageError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} {FROM} WHERE p.patient_id = $1 AND p.status = 'active' \
         ORDER BY p.created_at, p.id"
    ))
    .bind(patient.to_string())
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(from_row).collect()
}

async fn insert_plan(
    tx: &mut WriteTx,
    id: PlanId,
    patient: PatientId,
    source_id: Option<&SourceId>,
    f: &PlanFields,
    at: DateTime<Utc>,
    actor: &str,
) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO patient_plans (id, patient_id, source_id, member_number, payor_id, \
         plan_order_number, group_number, start_date, end_date, insurance_type, \
         insurance_card_file_id, insurance_card_back_file_id, status, created_by, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'active', $13, $14, $14)",
    )
    .bind(id.to_string())
    .bind(patient.to_string())
    .bind(source_id.map(SourceId::as_str))
    .bind(f.member_number.as_str())
    .bind(f.payor_id.to_string())
    .bind(f.plan_order.get())
    .bind(f.group_number.as_ref().map(GroupNumber::as_str))
    .bind(f.start_date.map(|d| d.to_string()))
    .bind(f.end_date.map(|d| d.to_string()))
    .bind(f.insurance_type.map(InsuranceType::as_str))
    .bind(f.insurance_card_file_id.map(|x| x.to_string()))
    .bind(f.insurance_card_back_file_id.map(|x| x.to_string()))
    .bind(actor)
    .bind(format_ts(at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Archives an active plan and withdraws its in-progress authorizations.
async fn archive(
    tx: &mut WriteTx,
    plan: PlanId,
    reason: &str,
    replaced_by: Option<PlanId>,
    at: DateTime<Utc>,
    actor: &str,
) -> Result<Vec<String>, StorageError> {
    let ts = format_ts(at);
    sqlx::query(
        "UPDATE patient_plans SET status = 'archived', archived_at = $2, archived_reason = $3, \
         replaced_by = $4, updated_at = $2 WHERE id = $1 AND status = 'active'",
    )
    .bind(plan.to_string())
    .bind(&ts)
    .bind(reason)
    .bind(replaced_by.map(|p| p.to_string()))
    .execute(&mut **tx)
    .await?;
    let withdrawn = authorizations::withdraw_for_plan(tx, plan, at, actor).await?;
    audit::record(
        tx,
        at,
        actor,
        "patient_plan.archived",
        ("patient_plan", &plan.to_string()),
        &json!({
            "reason": reason,
            "replaced_by": replaced_by.map(|p| p.to_string()),
            "withdrawn_authorizations": withdrawn,
        }),
    )
    .await?;
    Ok(withdrawn)
}

/// The PUT procedure inside the caller's transaction. A conflict changes nothing; the caller
/// commits or rolls back.
pub(crate) async fn apply_plan_put(
    tx: &mut WriteTx,
    put: &PlanPut,
    behavior: ConflictBehavior,
    dry_run: bool,
    at: DateTime<Utc>,
    actor: &str,
) -> Result<PlanPutResult, PlanPutError> {
    if !lock_patient(tx, put.patient_id).await? {
        return Err(PlanPutError::PatientNotFound);
    }
    let payor: Option<String> = sqlx::query_scalar("SELECT id FROM payors WHERE id = $1")
        .bind(put.fields.payor_id.to_string())
        .fetch_optional(&mut **tx)
        .await
        .map_err(StorageError::from)?;
    if payor.is_none() {
        return Err(PlanPutError::PayorNotFound);
    }
    for (field, file) in [
        ("insurance_card_file_id", put.fields.insurance_card_file_id),
        (
            "insurance_card_back_file_id",
            put.fields.insurance_card_back_file_id,
        ),
    ] {
        if let Some(file) = file {
            let found: Option<String> =
                sqlx::query_scalar("SELECT id FROM referral_files WHERE id = $1")
                    .bind(file.to_string())
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(StorageError::from)?;
            if found.is_none() {
                return Err(PlanPutError::FileNotFound(field));
            }
        }
    }

    let records = active_plans(tx, put.patient_id).await?;
    let ids: Vec<PlanId> = records.iter().map(|r| r.id).collect();
    let in_progress = authorizations::plans_with_in_progress(tx, &ids).await?;
    let active: Vec<ActivePlan> = records
        .iter()
        .map(|r| {
            Ok(ActivePlan {
                id: r.id,
                source_id: r
                    .source_id
                    .as_deref()
                    .map(SourceId::parse)
                    .transpose()
                    .map_err(|e| corrupt("plan source id", e))?,
                fields: r.fields.clone(),
                has_in_progress_authorization: in_progress.contains(&r.id),
            })
        })
        .collect::<Result<_, StorageError>>()?;
    let ignored = |id: PlanId| {
        records
            .iter()
            .find(|r| r.id == id)
            .map(|r| put.fields.differing_from(&r.fields))
            .unwrap_or_default()
    };

    let decision = decide(
        &put.source_id,
        &put.fields,
        put.deduplication_strategy,
        behavior,
        &active,
    );
    let details = json!({
        "patient_id": put.patient_id.to_string(),
        "plan_order_number": put.fields.plan_order.get(),
        "deduplication_strategy": put.deduplication_strategy,
        "conflict_behavior": behavior,
    });
    let result = match decision {
        Decision::SourceIdMatch(id) => PlanPutResult::Done {
            outcome: PlanOutcome::SourceIdMatch,
            plan_id: Some(id),
            archived: Vec::new(),
            withdrawn_authorizations: Vec::new(),
            ignored_fields: ignored(id),
        },
        Decision::Deduplicated(id) => {
            sqlx::query("UPDATE patient_plans SET source_id = $2, updated_at = $3 WHERE id = $1")
                .bind(id.to_string())
                .bind(put.source_id.as_str())
                .bind(format_ts(at))
                .execute(&mut **tx)
                .await
                .map_err(StorageError::from)?;
            audit::record(
                tx,
                at,
                actor,
                "patient_plan.deduplicated",
                ("patient_plan", &id.to_string()),
                &details,
            )
            .await?;
            PlanPutResult::Done {
                outcome: PlanOutcome::Deduplicated,
                plan_id: Some(id),
                archived: Vec::new(),
                withdrawn_authorizations: Vec::new(),
                ignored_fields: ignored(id),
            }
        }
        Decision::Create | Decision::Replace(_) => {
            let id = PlanId::new();
            let (outcome, archived, withdrawn) = match decision {
                Decision::Replace(old) => {
                    let w = archive(tx, old, "replaced", Some(id), at, actor).await?;
                    (PlanOutcome::Replaced, vec![old], w)
                }
                _ => (PlanOutcome::Created, Vec::new(), Vec::new()),
            };
            insert_plan(
                tx,
                id,
                put.patient_id,
                Some(&put.source_id),
                &put.fields,
                at,
                actor,
            )
            .await?;
            audit::record(
                tx,
                at,
                actor,
                "patient_plan.created",
                ("patient_plan", &id.to_string()),
                &json!({
                    "details": details,
                    "replaced": archived.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                }),
            )
            .await?;
            PlanPutResult::Done {
                outcome,
                plan_id: (!dry_run).then_some(id),
                archived,
                withdrawn_authorizations: withdrawn,
                ignored_fields: Vec::new(),
            }
        }
        Decision::Conflict(occupant, reason) => PlanPutResult::Conflict {
            conflicting_plan_id: occupant,
            reason,
        },
    };
    Ok(result)
}

/// Intake feeds plans: the referral's primary insurance becomes plan order 1 and its
/// secondary (when needed) order 2, through the PUT procedure, with a source_id derived from
/// the agency, its client and the member number, deduplication `MEMBER_NUMBER_AND_PAYOR` and
/// `RAISE_ERROR_ON_AUTH_WITHDRAWAL`. What cannot be recorded becomes a warning, never an
/// error. Unknown insurance names create unmapped payors.
pub(crate) async fn plans_from_intake(
    tx: &mut WriteTx,
    patient: PatientId,
    agency_org_id: &str,
    agency_client_id: i64,
    referral: &StructuredReferral,
    at: DateTime<Utc>,
    actor: &str,
) -> Result<Vec<Warning>, StorageError> {
    let mut warnings = Vec::new();
    let ranks: [(PlanOrder, Option<&Insurance>, &str, &str); 2] = [
        (
            PlanOrder::PRIMARY,
            referral.primary_insurance.as_ref(),
            "Primary insurance name",
            "Primary subscriber ID",
        ),
        (
            PlanOrder::SECONDARY,
            referral.secondary_insurance.as_ref(),
            "Secondary insurance name",
            "Secondary subscriber ID",
        ),
    ];
    for (order, insurance, name_label, member_label) in ranks {
        let Some(ins) = insurance else { continue };
        let (Some(name), Some(member)) = (ins.name.as_deref(), ins.subscriber_id.as_deref()) else {
            // A missing name or member number is already a parse warning (or unneeded).
            continue;
        };
        let mut not_recorded = |field: &str, why: &str| {
            warnings.push(Warning {
                field: field.to_owned(),
                code: "plan_not_recorded".to_owned(),
                message: format!("{why}; no patient plan was recorded"),
            });
        };
        let Ok(member) = MemberNumber::parse(member) else {
            not_recorded(member_label, "must be from 2 to 80 characters");
            continue;
        };
        let Ok(payor_name) = PayorName::parse(name) else {
            not_recorded(name_label, "is not a payor name");
            continue;
        };
        let (payor_id, _) = payor_for_name(tx, &payor_name, at, actor).await?;
        let source = format!("alayacare:{agency_org_id}:{agency_client_id}:{member}");
        let Ok(source_id) = SourceId::parse(&source) else {
            not_recorded(member_label, "makes too long a plan source id");
            continue;
        };
        let put = PlanPut {
            patient_id: patient,
            source_id,
            fields: PlanFields {
                member_number: member,
                payor_id,
                plan_order: order,
                group_number: ins
                    .group
                    .as_deref()
                    .and_then(|g| GroupNumber::parse(g).ok()),
                start_date: None,
                end_date: None,
                insurance_type: None,
                insurance_card_file_id: None,
                insurance_card_back_file_id: None,
            },
            conflict_behavior: Some(ConflictBehavior::RaiseErrorOnAuthWithdrawal),
            deduplication_strategy: DeduplicationStrategy::MemberNumberAndPayor,
        };
        let result = apply_plan_put(
            tx,
            &put,
            ConflictBehavior::RaiseErrorOnAuthWithdrawal,
            false,
            at,
            actor,
        )
        .await
        .map_err(|e| match e {
            PlanPutError::Storage(e) => e,
            other => corrupt("intake plan", other),
        })?;
        if let PlanPutResult::Conflict { .. } = result {
            warnings.push(Warning {
                field: name_label.to_owned(),
                code: "plan_conflict".to_owned(),
                message: format!(
                    "the patient's plan at order {} has an authorization in progress; this \
                     insurance was not recorded as a patient plan",
                    order.get()
                ),
            });
        }
    }
    Ok(warnings)
}

impl Store {
    /// `PUT /v1/patient-plans`. `behavior` is the request's, or the server's default.
    /// A dry run decides and answers the same, then rolls everything back.
    pub async fn put_patient_plan(
        &self,
        put: &PlanPut,
        behavior: ConflictBehavior,
        dry_run: bool,
        actor: &str,
    ) -> Result<PlanPutResult, PlanPutError> {
        let mut attempt = 0;
        loop {
            let mut tx = self.begin_write().await?;
            let at = now();
            match apply_plan_put(&mut tx, put, behavior, dry_run, at, actor).await {
                Ok(result) => {
                    let commit = !dry_run && matches!(result, PlanPutResult::Done { .. });
                    let done = if commit {
                        tx.commit().await
                    } else {
                        tx.rollback().await
                    };
                    match done.map_err(StorageError::from) {
                        Ok(()) => return Ok(result),
                        Err(e) if e.is_unique_violation() && attempt < RETRIES => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(PlanPutError::Storage(e)) if e.is_unique_violation() && attempt < RETRIES => {
                    tracing::debug!(attempt, "patient plan PUT lost a race; deciding again");
                }
                Err(e) => return Err(e),
            }
            attempt += 1;
        }
    }

    /// A bare insert of an active plan with its audit entry: no source_id matching, no
    /// deduplication, no conflict handling (a taken plan order is a `Conflict` error). The
    /// baseline of the PUT benchmark, and the base of a future POST.
    pub async fn insert_patient_plan(
        &self,
        patient: PatientId,
        source_id: Option<&SourceId>,
        fields: &PlanFields,
        actor: &str,
    ) -> Result<PlanId, StorageError> {
        let mut tx = self.begin_write().await?;
        let at = now();
        let id = PlanId::new();
        insert_plan(&mut tx, id, patient, source_id, fields, at, actor)
            .await
            .map_err(|e| {
                if e.is_unique_violation() {
                    StorageError::Conflict("patient_plans")
                } else {
                    e
                }
            })?;
        audit::record(
            &mut tx,
            at,
            actor,
            "patient_plan.created",
            ("patient_plan", &id.to_string()),
            &json!({ "patient_id": patient.to_string() }),
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn get_patient_plan(&self, id: PlanId) -> Result<Option<PlanRecord>, StorageError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} {FROM} WHERE p.id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// A patient's plans by plan order (active ones only, unless asked), oldest first within
    /// an order. `None` when the patient does not exist.
    pub async fn list_patient_plans(
        &self,
        patient: PatientId,
        include_archived: bool,
    ) -> Result<Option<Vec<PlanRecord>>, StorageError> {
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM patients WHERE id = $1")
            .bind(patient.to_string())
            .fetch_optional(self.reader())
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let filter = if include_archived {
            ""
        } else {
            " AND p.status = 'active'"
        };
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} {FROM} WHERE p.patient_id = $1{filter} \
             ORDER BY p.status, p.plan_order_number, p.created_at, p.id"
        ))
        .bind(patient.to_string())
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(from_row)
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// `DELETE /v1/patient-plans/{id}`: archives the plan and withdraws its in-progress
    /// authorizations. Idempotent; `None` when there is no such plan.
    pub async fn archive_patient_plan(
        &self,
        id: PlanId,
        actor: &str,
    ) -> Result<Option<ArchiveResult>, StorageError> {
        let mut tx = self.begin_write().await?;
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM patient_plans WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let result = match status.as_deref() {
            None => return Ok(None),
            Some("active") => {
                let withdrawn = archive(&mut tx, id, "deleted", None, now(), actor).await?;
                ArchiveResult {
                    archived_now: true,
                    withdrawn_authorizations: withdrawn,
                }
            }
            Some(_) => ArchiveResult {
                archived_now: false,
                withdrawn_authorizations: Vec::new(),
            },
        };
        tx.commit().await?;
        Ok(Some(result))
    }

    /// `PATCH /v1/patient-plans/{id}`: sets or clears the source_id. `Ok(false)` when there is
    /// no such plan; `Conflict` when another active plan of the patient has that source_id.
    pub async fn set_plan_source_id(
        &self,
        id: PlanId,
        source_id: Option<&SourceId>,
        actor: &str,
    ) -> Result<bool, StorageError> {
        let mut tx = self.begin_write().await?;
        let at = now();
        let n =
            sqlx::query("UPDATE patient_plans SET source_id = $2, updated_at = $3 WHERE id = $1")
                .bind(id.to_string())
                .bind(source_id.map(SourceId::as_str))
                .bind(format_ts(at))
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    let e = StorageError::from(e);
                    if e.is_unique_violation() {
                        StorageError::Conflict("patient_plans.source_id")
                    } else {
                        e
                    }
                })?
                .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        audit::record(
            &mut tx,
            at,
            actor,
            "patient_plan.source_id_set",
            ("patient_plan", &id.to_string()),
            &json!({ "cleared": source_id.is_none() }),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
