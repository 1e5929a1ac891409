//! After the send: the service's instructions changed. A PUT, sent again after an unknown
//! outcome.

use refbridge_accloud::{AcCloudError, ServiceId, ServiceUpdate as Update};
use refbridge_domain::send::{NaturalKey, keys::ObjectKey};

use super::{Outcome, SendStep, StepCx, missing, service, wire};

pub struct ServiceUpdate;

impl SendStep for ServiceUpdate {
    type Request = (ServiceId, Update);
    const REPEATABLE: bool = true;

    async fn prepare(
        &self,
        cx: &StepCx<'_>,
    ) -> Result<Result<Self::Request, Outcome>, AcCloudError> {
        let Some(service) = cx.ctx.service else {
            return Ok(Err(missing("the service")));
        };
        Ok(Ok((
            service,
            Update {
                service_instructions: cx.input.terms.service.instructions.clone(),
                profile: Some(wire::service_profile(cx.input)),
                ..Update::default()
            },
        )))
    }

    fn natural_key(&self, _cx: &StepCx<'_>, (id, _): &Self::Request) -> NaturalKey {
        NaturalKey::Object(ObjectKey::Service(Some(id.get())))
    }

    async fn call(
        &self,
        cx: &StepCx<'_>,
        (id, update): &Self::Request,
    ) -> Result<Outcome, AcCloudError> {
        cx.ac.update_service(*id, update).await?;
        Ok(service::done(*id, true).into())
    }
}
