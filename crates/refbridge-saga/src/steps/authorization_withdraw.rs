//! An authorization withdrawn during the first send (its patient plan was archived): deleted
//! from ACCloud if it exists there. Created, its id is known; being created when the plan
//! was archived, it is looked up by its natural key, and looked up once more after the settle
//! delay in case the interrupted call is still landing; not found then, it never existed.

use refbridge_accloud::{AcCloudError, AuthorizationId};
use refbridge_domain::send::{NaturalKey, StepResult, StepState};

use super::authorization_delete::{self, AuthorizationDelete};
use super::{Ctx, Outcome, SendStep, StepCx, authorization};

/// The authorization at this index of the terms.
pub struct AuthorizationWithdraw(pub usize);

impl SendStep for AuthorizationWithdraw {
    type Request = AuthorizationId;
    const REPEATABLE: bool = true;

    async fn prepare(
        &self,
        cx: &StepCx<'_>,
    ) -> Result<Result<AuthorizationId, Outcome>, AcCloudError> {
        if let Some(id) = cx.ctx.authorizations.get(&self.0) {
            return Ok(Ok(*id));
        }
        let found = match (
            cx.ctx.client,
            cx.ctx.service,
            authorization::key_of(cx, self.0),
        ) {
            (Some(client), Some(service), Some(key)) => {
                authorization::find(cx, client, service, &key, &[]).await?
            }
            _ => None,
        };
        let id = found.and_then(|d| d.remote_id.parse().ok().map(AuthorizationId));
        Ok(match id {
            Some(id) => Ok(id),
            None if cx.attempts == 0 => Err(Outcome::Retry {
                state: StepState::Unknown,
                after: cx.settle_delay,
                error: "the withdrawn authorization is not in ACCloud (yet)".into(),
                count: true,
            }),
            None => Err(authorization_delete::nothing_deleted().into()),
        })
    }

    // Once its id is known, a withdrawal is a delete.
    fn natural_key(&self, cx: &StepCx<'_>, id: &AuthorizationId) -> NaturalKey {
        self.as_delete().natural_key(cx, id)
    }

    async fn call(&self, cx: &StepCx<'_>, id: &AuthorizationId) -> Result<Outcome, AcCloudError> {
        self.as_delete().call(cx, id).await
    }

    fn absorb(&self, ctx: &mut Ctx, result: &StepResult) {
        self.as_delete().absorb(ctx, result);
    }
}

impl AuthorizationWithdraw {
    fn as_delete(&self) -> AuthorizationDelete {
        AuthorizationDelete(self.0)
    }
}
