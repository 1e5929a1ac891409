//! After the send: an authorization goes (replaced by a new one, or removed from the terms).
//! A DELETE, sent again after an unknown outcome; one already gone is gone.

use refbridge_accloud::{AcCloudError, AuthorizationId};
use refbridge_domain::send::{AuthorizationResult, NaturalKey, StepResult, keys::ObjectKey};

use super::{Ctx, Done, Outcome, SendStep, StepCx};

/// The authorization at this index of the terms before the change.
pub struct AuthorizationDelete(pub usize);

impl SendStep for AuthorizationDelete {
    type Request = AuthorizationId;
    const REPEATABLE: bool = true;

    async fn prepare(
        &self,
        cx: &StepCx<'_>,
    ) -> Result<Result<AuthorizationId, Outcome>, AcCloudError> {
        Ok(match cx.ctx.authorizations.get(&self.0) {
            Some(id) => Ok(*id),
            // Never created: nothing to delete.
            None => Err(nothing_deleted().into()),
        })
    }

    fn natural_key(&self, _cx: &StepCx<'_>, id: &AuthorizationId) -> NaturalKey {
        NaturalKey::Object(ObjectKey::Authorization(Some(id.get())))
    }

    /// One already gone (an earlier attempt landed) meets the goal.
    async fn call(&self, cx: &StepCx<'_>, id: &AuthorizationId) -> Result<Outcome, AcCloudError> {
        match cx.ac.delete_authorization(*id).await {
            Ok(()) | Err(AcCloudError::NotFound { .. }) => Ok(Done::new(
                id.get().to_string(),
                StepResult::Authorization(AuthorizationResult {
                    authorization_id: Some(id.get()),
                    updated: false,
                    deleted: Some(true),
                }),
            )
            .into()),
            Err(e) => Err(e),
        }
    }

    fn absorb(&self, ctx: &mut Ctx, _result: &StepResult) {
        ctx.authorizations.remove(&self.0);
    }
}

/// The goal met with no call: there was nothing to delete.
pub(super) fn nothing_deleted() -> Done {
    Done::new(
        String::new(),
        StepResult::Authorization(AuthorizationResult {
            authorization_id: None,
            updated: false,
            deleted: None,
        }),
    )
}
