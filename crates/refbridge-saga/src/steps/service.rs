//! The service: the client's single-funder service, keyed by the referral request's id as
//! its external id.

use refbridge_accloud::{
    AcCloudError, FunderId, FunderShare, FundingMethodology, NewService, ServiceClientRef,
    ServiceCodeId, ServiceCodeRef, ServiceId,
};
use refbridge_domain::send::{NaturalKey, ServiceResult, StepResult, keys};

use super::{Ctx, Done, Outcome, SendStep, StepCx, missing, wire};
use crate::resolve::Resolved;

pub struct Service;

impl SendStep for Service {
    type Request = NewService;

    async fn prepare(&self, cx: &StepCx<'_>) -> Result<Result<NewService, Outcome>, AcCloudError> {
        let Some(client) = cx.ctx.client else {
            return Ok(Err(missing("the client")));
        };
        let t = &cx.input.terms.service;
        let funder = match cx.resolver.funder(cx.ac, &t.funder).await? {
            Resolved::Found(id) => FunderId(id),
            Resolved::Missing(m) => return Ok(Err(Outcome::Fail(m))),
        };
        let code = match cx.resolver.service_code(cx.ac, &t.service_code).await? {
            Resolved::Found(id) => ServiceCodeId(id),
            Resolved::Missing(m) => return Ok(Err(Outcome::Fail(m))),
        };
        Ok(Ok(NewService {
            service_id: cx.input.rec.request_id.to_string(),
            name: t.name.clone(),
            client: ServiceClientRef::AlayaCare(client),
            start_date: t.start_date,
            projected_end_date: t.end_date,
            funding_methodology: FundingMethodology::SingleFunder,
            funders: vec![FunderShare {
                funder_id: funder,
                is_primary: true,
                percentage: 100,
            }],
            service_code: ServiceCodeRef::Id(code),
            service_instructions: t.instructions.clone(),
            notes: None,
            use_client_address: Some(true),
            profile: wire::service_profile(cx.input),
        }))
    }

    fn natural_key(&self, cx: &StepCx<'_>, _request: &NewService) -> NaturalKey {
        NaturalKey::Service(keys::service(&cx.input.rec.request_id.to_string()))
    }

    async fn find(
        &self,
        cx: &StepCx<'_>,
        _key: Option<&NaturalKey>,
    ) -> Result<Option<Outcome>, AcCloudError> {
        Ok(cx
            .ac
            .get_service_by_external_id(&cx.input.rec.request_id.to_string())
            .await?
            .map(|s| done(s.id, false).into()))
    }

    async fn call(&self, cx: &StepCx<'_>, request: &NewService) -> Result<Outcome, AcCloudError> {
        Ok(done(cx.ac.create_service(request).await?.id, false).into())
    }

    fn absorb(&self, ctx: &mut Ctx, result: &StepResult) {
        if let StepResult::Service(s) = result {
            ctx.service = Some(ServiceId(s.service_id));
        }
    }
}

pub(super) fn done(id: ServiceId, updated: bool) -> Done {
    Done::new(
        id.get().to_string(),
        StepResult::Service(ServiceResult {
            service_id: id.get(),
            updated,
        }),
    )
}
