//! Cancelling the referral approval: its latest revision, read fresh, with the reason code
//! and the change's comment. A referral cancelled already (by an earlier attempt, or by the
//! agency) is done.

use refbridge_accloud::{AcCloudError, CancelReferral, ReferralId, ReferralStatus, Revisions};
use refbridge_domain::send::keys::ReferralCancelKey;
use refbridge_domain::send::{CancelReason, NaturalKey, ReferralResult, StepResult};

use super::{Done, Outcome, SendStep, StepCx, missing, wire};

pub struct ReferralCancel(pub CancelReason);

impl SendStep for ReferralCancel {
    type Request = (ReferralId, CancelReferral);

    async fn prepare(
        &self,
        cx: &StepCx<'_>,
    ) -> Result<Result<Self::Request, Outcome>, AcCloudError> {
        let (Some(_), Some(group)) = (cx.ctx.service, cx.ctx.revision_group) else {
            return Ok(Err(missing("the referral")));
        };
        let Some(latest) = wire::latest_revision(cx.ac, group).await? else {
            return Ok(Err(Outcome::Fail(
                "ACCloud lists no revision of this referral".into(),
            )));
        };
        if latest.referral.status == ReferralStatus::Cancelled {
            return Ok(Err(wire::referral_done(&latest).into()));
        }
        let comment = cx.input.current_change().and_then(|c| c.comment.clone());
        Ok(Ok((
            latest.id(),
            CancelReferral {
                reason_code: wire::cancel_reason(self.0),
                comment,
            },
        )))
    }

    fn natural_key(&self, cx: &StepCx<'_>, _request: &Self::Request) -> NaturalKey {
        NaturalKey::ReferralCancel(ReferralCancelKey {
            revision_group_id: cx.ctx.revision_group.map(|g| g.to_string()),
            reason_code: self.0.as_str().to_owned(),
        })
    }

    async fn find(
        &self,
        cx: &StepCx<'_>,
        _key: Option<&NaturalKey>,
    ) -> Result<Option<Outcome>, AcCloudError> {
        let Some(group) = cx.ctx.revision_group else {
            return Ok(Some(missing("the referral")));
        };
        let latest = wire::revisions(cx.ac, group, Revisions::Latest).await?;
        Ok(latest
            .first()
            .filter(|r| r.referral.status == ReferralStatus::Cancelled)
            .map(|r| wire::referral_done(r).into()))
    }

    async fn call(
        &self,
        cx: &StepCx<'_>,
        (id, cancel): &Self::Request,
    ) -> Result<Outcome, AcCloudError> {
        cx.ac.cancel_referral(*id, cancel).await?;
        Ok(Done::new(
            id.to_string(),
            StepResult::Referral(ReferralResult {
                referral_id: id.to_string(),
                revision_group_id: None,
                revision_number: None,
                sequence_id: None,
                status: ReferralStatus::Cancelled.as_str().to_owned(),
                base_status: None,
                reasons: None,
                reason_code: Some(cancel.reason_code.as_str().to_owned()),
            }),
        )
        .into())
    }
}
