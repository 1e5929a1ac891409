//! After the send: the client's demographics or time zone changed. A PUT, sent again after
//! an unknown outcome.

use refbridge_accloud::{AcCloudError, ClientId, ClientUpdate as Update};
use refbridge_domain::send::{ClientResult, NaturalKey, StepResult, keys::ObjectKey};

use super::{Done, Outcome, SendStep, StepCx, missing, wire};

pub struct ClientUpdate;

impl SendStep for ClientUpdate {
    type Request = (ClientId, Update);
    const REPEATABLE: bool = true;

    async fn prepare(
        &self,
        cx: &StepCx<'_>,
    ) -> Result<Result<Self::Request, Outcome>, AcCloudError> {
        let Some(client) = cx.ctx.client else {
            return Ok(Err(missing("the client")));
        };
        let c = &cx.input.terms.client;
        Ok(Ok((
            client,
            Update {
                demographics: Some(wire::demographics(c)),
                timezone: Some(c.timezone.clone()),
                ..Update::default()
            },
        )))
    }

    fn natural_key(&self, _cx: &StepCx<'_>, (id, _): &Self::Request) -> NaturalKey {
        NaturalKey::Object(ObjectKey::Client(Some(id.get())))
    }

    async fn call(
        &self,
        cx: &StepCx<'_>,
        (id, update): &Self::Request,
    ) -> Result<Outcome, AcCloudError> {
        cx.ac.update_client(*id, update).await?;
        Ok(Done::new(
            id.get().to_string(),
            StepResult::Client(ClientResult {
                client_id: id.get(),
                reused: false,
                updated: true,
            }),
        )
        .into())
    }
}
