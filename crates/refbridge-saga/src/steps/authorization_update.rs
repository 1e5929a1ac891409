//! After the send: fields ACCloud lets us update on an authorization changed (end date,
//! numbers, notes, case manager). A PUT, sent again after an unknown outcome.

use refbridge_accloud::{AcCloudError, AuthorizationId, AuthorizationUpdate as Update};
use refbridge_domain::send::{AuthorizationResult, NaturalKey, StepResult, keys::ObjectKey};

use super::{Done, Outcome, SendStep, StepCx, missing, wire};

/// The authorization at this index of the terms.
pub struct AuthorizationUpdate(pub usize);

impl SendStep for AuthorizationUpdate {
    type Request = (AuthorizationId, Update);
    const REPEATABLE: bool = true;

    async fn prepare(
        &self,
        cx: &StepCx<'_>,
    ) -> Result<Result<Self::Request, Outcome>, AcCloudError> {
        let (Some(id), Some(a)) = (
            cx.ctx.authorizations.get(&self.0),
            cx.input.terms.authorizations.get(self.0),
        ) else {
            return Ok(Err(missing("the authorization")));
        };
        Ok(Ok((
            *id,
            Update {
                end_at: Some(a.end_date),
                authorization_number: a.authorization_number.clone(),
                member_number: a.member_number.clone(),
                program_id: a.program_id.clone(),
                notes: a.notes.clone(),
                case_manager: wire::authorization_case_manager(&a.case_manager),
            },
        )))
    }

    fn natural_key(&self, _cx: &StepCx<'_>, (id, _): &Self::Request) -> NaturalKey {
        NaturalKey::Object(ObjectKey::Authorization(Some(id.get())))
    }

    async fn call(
        &self,
        cx: &StepCx<'_>,
        (id, update): &Self::Request,
    ) -> Result<Outcome, AcCloudError> {
        cx.ac.update_authorization(*id, update).await?;
        Ok(Done::new(
            id.get().to_string(),
            StepResult::Authorization(AuthorizationResult {
                authorization_id: Some(id.get()),
                updated: true,
                deleted: None,
            }),
        )
        .into())
    }
}
