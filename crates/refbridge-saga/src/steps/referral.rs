//! The referral approval, sent from the service to the agency (the supplier of the payload)
//! with the live authorizations. Found again among the outbox referrals of the supplier and
//! client by the service's outbox id, not cancelled.

use refbridge_accloud::{
    AcCloudError, NewReferral, PageRequest, ReferralFilter, ReferralStatus, Revisions, ServiceId,
};
use refbridge_domain::send::{NaturalKey, StepResult, keys};

use super::{Ctx, Outcome, SendStep, StepCx, missing, wire};

pub struct Referral;

impl SendStep for Referral {
    type Request = (ServiceId, NewReferral);

    async fn prepare(
        &self,
        cx: &StepCx<'_>,
    ) -> Result<Result<Self::Request, Outcome>, AcCloudError> {
        let Some(service) = cx.ctx.service else {
            return Ok(Err(missing("the service")));
        };
        let input = cx.input;
        // Checked before the client too; again here, in case the network changed since.
        if let Some(untrusted) = super::untrusted(cx).await? {
            return Ok(Err(untrusted));
        }
        let parts = match wire::referral_parts(input, cx.ctx) {
            Ok(p) => p,
            Err(why) => return Ok(Err(Outcome::Fail(why))),
        };
        let t = &input.terms.referral;
        Ok(Ok((
            service,
            NewReferral {
                care_type: wire::care_type(t.care_type),
                referral_type: wire::referral_type(t.referral_type),
                start_at: parts.start_at,
                end_at: parts.end_at,
                supply_persona_id: input.supplier(),
                authorization_ids: parts.authorization_ids,
                comment: t.comment.clone(),
                case_manager: parts.case_manager,
            },
        )))
    }

    fn natural_key(&self, cx: &StepCx<'_>, (service, _): &Self::Request) -> NaturalKey {
        NaturalKey::Referral(keys::referral(
            Some(service.get()),
            &cx.input.supplier().to_string(),
            cx.ctx.client.map(|c| c.get()),
        ))
    }

    async fn find(
        &self,
        cx: &StepCx<'_>,
        _key: Option<&NaturalKey>,
    ) -> Result<Option<Outcome>, AcCloudError> {
        let (Some(client), Some(service)) = (cx.ctx.client, cx.ctx.service) else {
            return Ok(Some(missing("the client or service")));
        };
        let supplier = cx.input.supplier();
        let outbox_id = service.get().to_string();
        let mut page = PageRequest::first(100);
        loop {
            let filter = ReferralFilter {
                supply_persona_id: Some(supplier),
                client_outbox_id: Some(client.get().to_string()),
                revisions: Some(Revisions::Latest),
                page: Some(page),
                ..ReferralFilter::default()
            };
            let list = cx.ac.list_referrals(&filter).await?;
            let hit = list.items.iter().find(|r| {
                r.service.as_ref().and_then(|s| s.outbox_id.as_deref()) == Some(outbox_id.as_str())
                    && r.referral.status != ReferralStatus::Cancelled
                    && r.supply.as_ref().is_none_or(|s| s.id == supplier)
            });
            if let Some(r) = hit {
                return Ok(Some(wire::referral_done(r).into()));
            }
            if !list.has_next() {
                return Ok(None);
            }
            page = page.next();
        }
    }

    async fn call(
        &self,
        cx: &StepCx<'_>,
        (service, referral): &Self::Request,
    ) -> Result<Outcome, AcCloudError> {
        let created = cx.ac.create_referral(*service, referral).await?;
        Ok(wire::referral_done(&created).into())
    }

    fn absorb(&self, ctx: &mut Ctx, result: &StepResult) {
        wire::absorb_referral(ctx, result);
    }
}
