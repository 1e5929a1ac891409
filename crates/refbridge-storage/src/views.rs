//! Reads that the console's pages show, beside those the API has.

use sqlx::Row;

use crate::Store;
use crate::error::StorageError;

impl Store {
    /// The authorizations that belong to each of a patient's plans: (plan id, referral
    /// request id, authorization index).
    pub async fn plan_authorizations(
        &self,
        patient: refbridge_domain::PatientId,
    ) -> Result<Vec<(String, String, i64)>, StorageError> {
        let rows = sqlx::query(
            "SELECT ap.plan_id, ap.request_id, ap.auth_index FROM authorization_plans ap \
             JOIN referral_requests r ON r.request_id = ap.request_id \
             WHERE r.patient_id = $1 ORDER BY ap.plan_id, ap.request_id, ap.auth_index",
        )
        .bind(patient.to_string())
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("plan_id")?,
                    r.try_get("request_id")?,
                    r.try_get("auth_index")?,
                ))
            })
            .collect()
    }
}
