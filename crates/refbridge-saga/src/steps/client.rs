//! The client: created in the HQ branch with the CSI group, keyed by our patient id as its
//! external id. A patient's existing client (an earlier attempt, or another referral of the
//! patient) is reused, with the CSI group added when it lacks it.

use refbridge_accloud::{
    AcCloud, AcCloudError, ClientDetails, ClientId, ClientUpdate, GroupId, NewClient,
};
use refbridge_domain::send::{ClientResult, NaturalKey, StepResult, StepState, keys};

use super::{Ctx, Done, Outcome, SendStep, StepCx, wire};
use crate::classify;
use crate::resolve::Resolved;

pub struct Client;

impl SendStep for Client {
    type Request = NewClient;

    async fn prepare(&self, cx: &StepCx<'_>) -> Result<Result<NewClient, Outcome>, AcCloudError> {
        // An agency outside CSI's trusted network cannot receive the referral: stop before
        // anything is created (a resume goes on once the network has it).
        if let Some(untrusted) = super::untrusted(cx).await? {
            return Ok(Err(untrusted));
        }
        let input = cx.input;
        let group = match cx
            .resolver
            .group(cx.ac, input.csi_group, input.hq_branch)
            .await?
        {
            Resolved::Found(id) => GroupId(id),
            Resolved::Missing(m) => return Ok(Err(Outcome::Fail(m))),
        };
        let c = &input.terms.client;
        Ok(Ok(NewClient {
            external_id: input.rec.patient_id.to_string(),
            branch_id: Some(input.hq_branch),
            demographics: wire::demographics(c),
            language: None,
            groups: vec![group],
            timezone: Some(c.timezone.clone()),
        }))
    }

    fn natural_key(&self, cx: &StepCx<'_>, _request: &NewClient) -> NaturalKey {
        NaturalKey::Client(keys::client(&cx.input.rec.patient_id.to_string()))
    }

    async fn find(
        &self,
        cx: &StepCx<'_>,
        _key: Option<&NaturalKey>,
    ) -> Result<Option<Outcome>, AcCloudError> {
        let input = cx.input;
        let Some(found) = cx
            .ac
            .get_client_by_external_id(&input.rec.patient_id.to_string())
            .await?
        else {
            return Ok(None);
        };
        let group = match cx
            .resolver
            .group(cx.ac, input.csi_group, input.hq_branch)
            .await?
        {
            Resolved::Found(id) => Some(GroupId(id)),
            Resolved::Missing(_) => None,
        };
        Ok(Some(ensure_group(cx.ac, found, group).await?.into()))
    }

    async fn call(&self, cx: &StepCx<'_>, request: &NewClient) -> Result<Outcome, AcCloudError> {
        match cx.ac.create_client(request).await {
            Ok(r) => Ok(done(r.id, false).into()),
            // The client exists already (an earlier attempt, or another referral of this
            // patient): find it by its external id and reuse it.
            Err(AcCloudError::Conflict { .. }) => Ok(match self.find(cx, None).await {
                Ok(Some(found)) => found,
                Ok(None) => Outcome::Retry {
                    state: StepState::Unknown,
                    after: cx.retry.backoff(1),
                    error: "ACCloud says the client exists but does not find it yet".into(),
                    count: true,
                },
                Err(e) => classify::lookup_failed(cx.retry, &e, cx.attempt()),
            }),
            Err(e) => Err(e),
        }
    }

    fn absorb(&self, ctx: &mut Ctx, result: &StepResult) {
        if let StepResult::Client(c) = result {
            ctx.client = Some(ClientId(c.client_id));
        }
    }
}

fn done(id: ClientId, reused: bool) -> Done {
    Done::new(
        id.get().to_string(),
        StepResult::Client(ClientResult {
            client_id: id.get(),
            reused,
            updated: false,
        }),
    )
}

/// An existing client is reused; its groups are corrected when the CSI group is missing.
async fn ensure_group(
    ac: &dyn AcCloud,
    c: ClientDetails,
    csi_group: Option<GroupId>,
) -> Result<Done, AcCloudError> {
    if let Some(group) = csi_group {
        if !c.has_group(group) {
            let mut groups: Vec<GroupId> = c.groups.iter().map(|g| g.id).collect();
            groups.push(group);
            let update = ClientUpdate {
                groups: Some(groups),
                ..ClientUpdate::default()
            };
            ac.update_client(c.id, &update).await?;
        }
    }
    Ok(done(c.id, true))
}
