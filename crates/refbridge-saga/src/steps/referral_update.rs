//! A revision of the referral after a change: the current authorizations and dates, with the
//! change's reasons in plain words. It always revises the latest revision, read fresh (the
//! agency or another change may have moved it on). It landed if the group has a revision
//! newer than the one revised, with our reasons.

use refbridge_accloud::{
    AcCloudError, ReferralId, ReferralStatus, ReferralUpdate as Update, RevisionRequest, Revisions,
    ServiceId,
};
use refbridge_domain::send::keys::ReferralUpdateKey;
use refbridge_domain::send::{NaturalKey, StepResult};

use super::{Ctx, Done, Outcome, SendStep, StepCx, missing, wire};

pub struct ReferralUpdate;

/// A revision of `base`, the latest revision when the step was prepared.
pub struct Revision {
    service: ServiceId,
    base: ReferralId,
    base_number: u32,
    /// The agency's status of the revision revised (assigned, processed).
    base_status: String,
    body: Update,
}

impl SendStep for ReferralUpdate {
    type Request = Revision;

    async fn prepare(&self, cx: &StepCx<'_>) -> Result<Result<Revision, Outcome>, AcCloudError> {
        let (Some(service), Some(group)) = (cx.ctx.service, cx.ctx.revision_group) else {
            return Ok(Err(missing("the referral")));
        };
        let Some(latest) = wire::latest_revision(cx.ac, group).await? else {
            return Ok(Err(Outcome::Fail(
                "ACCloud lists no revision of this referral".into(),
            )));
        };
        // No revision of a cancelled referral: the send ends with it cancelled, rather than
        // pausing for a resume that could never send it.
        if latest.referral.status == ReferralStatus::Cancelled {
            return Ok(Err(Outcome::CancelledByAgency(
                "the referral was cancelled in ACCloud before this change reached the agency"
                    .into(),
            )));
        }
        let parts = match wire::referral_parts(cx.input, cx.ctx) {
            Ok(p) => p,
            Err(why) => return Ok(Err(Outcome::Fail(why))),
        };
        let change = cx.input.current_change();
        let reasons = change.map(|c| c.reasons.clone()).unwrap_or_default();
        Ok(Ok(Revision {
            service,
            base: latest.id(),
            base_number: latest
                .revision
                .as_ref()
                .map(|r| r.revision_number)
                .unwrap_or(1),
            base_status: latest.referral.status.as_str().to_owned(),
            body: Update {
                start_at: parts.start_at,
                end_at: parts.end_at,
                authorization_ids: parts.authorization_ids,
                comment: cx.input.terms.referral.comment.clone(),
                case_manager: parts.case_manager,
                revision: RevisionRequest {
                    reasons: if reasons.is_empty() {
                        vec!["Referral updated".into()]
                    } else {
                        reasons
                    },
                    comment: change.and_then(|c| c.comment.clone()),
                },
            },
        }))
    }

    fn natural_key(&self, cx: &StepCx<'_>, r: &Revision) -> NaturalKey {
        NaturalKey::ReferralUpdate(ReferralUpdateKey {
            revision_group_id: cx.ctx.revision_group.map(|g| g.to_string()),
            base_referral_id: r.base.to_string(),
            base_revision_number: r.base_number,
            reasons: r.body.revision.reasons.clone(),
            start_at: r.body.start_at,
            end_at: r.body.end_at,
        })
    }

    async fn find(
        &self,
        cx: &StepCx<'_>,
        key: Option<&NaturalKey>,
    ) -> Result<Option<Outcome>, AcCloudError> {
        let (Some(group), Some(NaturalKey::ReferralUpdate(key))) = (cx.ctx.revision_group, key)
        else {
            return Ok(None);
        };
        let all = wire::revisions(cx.ac, group, Revisions::All).await?;
        Ok(all
            .iter()
            .find(|r| {
                r.revision.as_ref().is_some_and(|v| {
                    v.revision_number > key.base_revision_number
                        && v.revision_reasons == key.reasons
                })
            })
            .map(|r| wire::referral_done(r).into()))
    }

    async fn call(&self, cx: &StepCx<'_>, r: &Revision) -> Result<Outcome, AcCloudError> {
        let revised = cx.ac.update_referral(r.service, r.base, &r.body).await?;
        let mut result = wire::referral_result(&revised);
        result.base_status = Some(r.base_status.clone());
        result.reasons = Some(r.body.revision.reasons.clone());
        Ok(Done::new(revised.id().to_string(), StepResult::Referral(result)).into())
    }

    fn absorb(&self, ctx: &mut Ctx, result: &StepResult) {
        wire::absorb_referral(ctx, result);
    }

    /// Refused because another revision became the latest in between: read the latest again
    /// and revise that, a few times at most.
    fn retries_rejection(&self, attempt: u32) -> bool {
        attempt < 3
    }
}
