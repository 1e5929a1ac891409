//! Patients: the people referrals are about. A patient's id is stable and is what ACCloud
//! later sees as the client's `external_id`.

use crate::writer::WriteTx;
use chrono::{DateTime, NaiveDate, Utc};
use refbridge_domain::PatientId;
use refbridge_domain::intake::ClientMeta;
use refbridge_domain::patient::PatientPut;
use refbridge_domain::person::normalize_name;
use serde::Serialize;
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::{StorageError, corrupt};
use crate::{Store, audit, format_ts, now, parse_ts};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatientRecord {
    pub id: PatientId,
    pub first_name: String,
    pub last_name: String,
    pub birthday: Option<NaiveDate>,
    pub gender: Option<String>,
    pub email: Option<String>,
    pub phone_main: Option<String>,
    pub address: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub country: Option<String>,
    pub timezone: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How an intake found its patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PatientMatch {
    /// The agency's client was seen before.
    AgencyClient,
    /// Same normalised first name, last name and birthday.
    Person,
    /// A new patient.
    Created,
}

impl PatientMatch {
    pub fn as_str(self) -> &'static str {
        match self {
            PatientMatch::AgencyClient => "agency_client",
            PatientMatch::Person => "person",
            PatientMatch::Created => "created",
        }
    }
}

const PATIENT_COLUMNS: &str = "id, first_name, last_name, birthday, gender, email, phone_main, \
    address, city, state, zip, country, timezone, created_at, updated_at";

fn from_row(r: &AnyRow) -> Result<PatientRecord, StorageError> {
    let id: String = r.try_get("id")?;
    let birthday: Option<String> = r.try_get("birthday")?;
    let created: String = r.try_get("created_at")?;
    let updated: String = r.try_get("updated_at")?;
    Ok(PatientRecord {
        id: PatientId::parse(&id).map_err(|e| corrupt("patient id", e))?,
        first_name: r.try_get("first_name")?,
        last_name: r.try_get("last_name")?,
        birthday: birthday
            .map(|b| NaiveDate::parse_from_str(&b, "%Y-%m-%d"))
            .transpose()
            .map_err(|e| corrupt("patient birthday", e))?,
        gender: r.try_get("gender")?,
        email: r.try_get("email")?,
        phone_main: r.try_get("phone_main")?,
        address: r.try_get("address")?,
        city: r.try_get("city")?,
        state: r.try_get("state")?,
        zip: r.try_get("zip")?,
        country: r.try_get("country")?,
        timezone: r.try_get("timezone")?,
        created_at: parse_ts(&created)?,
        updated_at: parse_ts(&updated)?,
    })
}

/// Finds the patient for an agency's client, or creates one, inside the caller's transaction:
/// first by the agency's client (org + client id), then by normalised first name, last name
/// and birthday, else a new patient. The agency client is linked to the patient either way.
pub(crate) async fn find_or_create_for_client(
    tx: &mut WriteTx,
    org_id: &str,
    client: &ClientMeta,
    at: DateTime<Utc>,
) -> Result<(PatientId, PatientMatch), StorageError> {
    let linked: Option<String> = sqlx::query_scalar(
        "SELECT patient_id FROM patient_agency_clients WHERE org_id = $1 AND client_id = $2",
    )
    .bind(org_id)
    .bind(client.id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(id) = linked {
        let id = PatientId::parse(&id).map_err(|e| corrupt("patient id", e))?;
        return Ok((id, PatientMatch::AgencyClient));
    }

    let norm_first = normalize_name(&client.first_name);
    let norm_last = normalize_name(&client.last_name);
    let birthday = client.birthday.map(|d| d.to_string());
    let by_person: Option<String> = match &birthday {
        // Without a birthday two people with one name are too likely to be different people.
        None => None,
        Some(b) => sqlx::query_scalar(
            "SELECT id FROM patients WHERE norm_last = $1 AND norm_first = $2 AND birthday = $3 \
                 ORDER BY created_at, id LIMIT 1",
        )
        .bind(&norm_last)
        .bind(&norm_first)
        .bind(b)
        .fetch_optional(&mut **tx)
        .await?,
    };
    let (id, how) = match by_person {
        Some(id) => (
            PatientId::parse(&id).map_err(|e| corrupt("patient id", e))?,
            PatientMatch::Person,
        ),
        None => {
            let id = PatientId::new();
            let ts = format_ts(at);
            sqlx::query(
                "INSERT INTO patients (id, first_name, last_name, birthday, gender, email, phone_main, \
                 address, city, state, zip, country, timezone, norm_first, norm_last, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16)",
            )
            .bind(id.to_string())
            .bind(&client.first_name)
            .bind(&client.last_name)
            .bind(&birthday)
            .bind(&client.gender)
            .bind(&client.email)
            .bind(&client.phone_main)
            .bind(&client.address)
            .bind(&client.city)
            .bind(&client.state)
            .bind(&client.zip)
            .bind(&client.country)
            .bind(client.timezone.name())
            .bind(&norm_first)
            .bind(&norm_last)
            .bind(&ts)
            .execute(&mut **tx)
            .await?;
            (id, PatientMatch::Created)
        }
    };
    sqlx::query(
        "INSERT INTO patient_agency_clients (org_id, client_id, patient_id, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(org_id)
    .bind(client.id)
    .bind(id.to_string())
    .bind(format_ts(at))
    .execute(&mut **tx)
    .await?;
    Ok((id, how))
}

impl Store {
    pub async fn get_patient(&self, id: PatientId) -> Result<Option<PatientRecord>, StorageError> {
        let row = sqlx::query(&format!(
            "SELECT {PATIENT_COLUMNS} FROM patients WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(from_row).transpose()
    }
}

/// Which path `PUT /v1/patients` took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PatientPutOutcome {
    /// A patient with this source_id: updated.
    SourceIdMatch,
    /// Same normalised first name, last name and birthday: updated and given the source_id.
    Deduplicated,
    Created,
}

impl Store {
    /// `PUT /v1/patients`: by source_id, else by person (normalised first name, last name and
    /// birthday; the oldest such patient, whose source_id is overwritten), else a new patient.
    /// Updates replace every field. One transaction with its audit entry; a unique violation
    /// from a concurrent PUT runs it again.
    pub async fn put_patient(
        &self,
        put: &PatientPut,
        actor: &str,
    ) -> Result<(PatientId, PatientPutOutcome), StorageError> {
        let mut attempt = 0;
        loop {
            match self.try_put_patient(put, actor).await {
                Err(e) if e.is_unique_violation() && attempt < 3 => attempt += 1,
                other => return other,
            }
        }
    }

    async fn try_put_patient(
        &self,
        put: &PatientPut,
        actor: &str,
    ) -> Result<(PatientId, PatientPutOutcome), StorageError> {
        let at = now();
        let ts = format_ts(at);
        let norm_first = normalize_name(&put.first_name);
        let norm_last = normalize_name(&put.last_name);
        let birthday = put.birthday.to_string();
        let mut tx = self.begin_write().await?;
        let by_source: Option<String> =
            sqlx::query_scalar("SELECT id FROM patients WHERE source_id = $1")
                .bind(put.source_id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let found = match by_source {
            Some(id) => Some((id, PatientPutOutcome::SourceIdMatch)),
            None => sqlx::query_scalar::<_, String>(
                "SELECT id FROM patients WHERE norm_last = $1 AND norm_first = $2 AND birthday = $3 \
                 ORDER BY created_at, id LIMIT 1",
            )
            .bind(&norm_last)
            .bind(&norm_first)
            .bind(&birthday)
            .fetch_optional(&mut *tx)
            .await?
            .map(|id| (id, PatientPutOutcome::Deduplicated)),
        };
        let (id, outcome) = match found {
            Some((id, outcome)) => {
                sqlx::query(
                    "UPDATE patients SET first_name = $2, last_name = $3, birthday = $4, gender = $5, \
                     email = $6, phone_main = $7, address = $8, city = $9, state = $10, zip = $11, \
                     country = $12, timezone = $13, norm_first = $14, norm_last = $15, \
                     source_id = $16, updated_at = $17 WHERE id = $1",
                )
                .bind(&id)
                .bind(&put.first_name)
                .bind(&put.last_name)
                .bind(&birthday)
                .bind(&put.gender)
                .bind(&put.email)
                .bind(&put.phone_main)
                .bind(&put.address)
                .bind(&put.city)
                .bind(&put.state)
                .bind(&put.zip)
                .bind(&put.country)
                .bind(put.timezone.map(|t| t.name()))
                .bind(&norm_first)
                .bind(&norm_last)
                .bind(put.source_id.as_str())
                .bind(&ts)
                .execute(&mut *tx)
                .await?;
                (id, outcome)
            }
            None => {
                let id = PatientId::new().to_string();
                sqlx::query(
                    "INSERT INTO patients (id, first_name, last_name, birthday, gender, email, phone_main, \
                     address, city, state, zip, country, timezone, norm_first, norm_last, source_id, \
                     created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17)",
                )
                .bind(&id)
                .bind(&put.first_name)
                .bind(&put.last_name)
                .bind(&birthday)
                .bind(&put.gender)
                .bind(&put.email)
                .bind(&put.phone_main)
                .bind(&put.address)
                .bind(&put.city)
                .bind(&put.state)
                .bind(&put.zip)
                .bind(&put.country)
                .bind(put.timezone.map(|t| t.name()))
                .bind(&norm_first)
                .bind(&norm_last)
                .bind(put.source_id.as_str())
                .bind(&ts)
                .execute(&mut *tx)
                .await?;
                (id, PatientPutOutcome::Created)
            }
        };
        audit::record(
            &mut tx,
            at,
            actor,
            match outcome {
                PatientPutOutcome::Created => "patient.created",
                _ => "patient.updated",
            },
            ("patient", &id),
            &json!({ "outcome": outcome }),
        )
        .await?;
        tx.commit().await?;
        let id = PatientId::parse(&id).map_err(|e| corrupt("patient id", e))?;
        Ok((id, outcome))
    }

    /// The caller's id for a patient, if it has one.
    pub async fn patient_source_id(&self, id: PatientId) -> Result<Option<String>, StorageError> {
        let s: Option<Option<String>> =
            sqlx::query_scalar("SELECT source_id FROM patients WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(self.reader())
                .await?;
        Ok(s.flatten())
    }
}
