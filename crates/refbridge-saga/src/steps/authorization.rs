//! One authorization of the service, created from the terms at its index. ACCloud gives an
//! authorization no external id: it is found again by its natural key (client, service,
//! dates, rule type, limits, first day of the week, number) among the client's
//! authorizations from its start date, skipping those the send already holds.

use refbridge_accloud::{
    AcCloudError, AuthorizationFilter, AuthorizationId, AuthorizationMethodology, ClientId,
    NewAuthorization, ServiceId,
};
use refbridge_domain::send::keys::{self, AuthorizationKey};
use refbridge_domain::send::{AuthorizationResult, NaturalKey, StepResult};

use super::{Ctx, Done, Outcome, SendStep, StepCx, missing, wire};

/// The authorization at this index of the terms.
pub struct Authorization(pub usize);

impl SendStep for Authorization {
    /// The request, and the key it is found again by.
    type Request = (AuthorizationKey, NewAuthorization);

    async fn prepare(
        &self,
        cx: &StepCx<'_>,
    ) -> Result<Result<Self::Request, Outcome>, AcCloudError> {
        let (Some(client), Some(service), Some(a), Some(key)) = (
            cx.ctx.client,
            cx.ctx.service,
            cx.input.terms.authorizations.get(self.0),
            key_of(cx, self.0),
        ) else {
            return Ok(Err(missing("the client or service")));
        };
        Ok(Ok((
            key,
            NewAuthorization {
                client_id: client,
                service_ids: vec![service],
                start_at: a.start_date,
                end_at: Some(a.end_date),
                methodology: AuthorizationMethodology::Service,
                rule_type: wire::rule_type(a.rule_type),
                limits: wire::limits(&a.limits),
                first_day_of_week: a.first_day_of_week,
                authorization_number: a.authorization_number.clone(),
                member_number: a.member_number.clone(),
                program_id: a.program_id.clone(),
                notes: a.notes.clone(),
                case_manager: wire::authorization_case_manager(&a.case_manager),
            },
        )))
    }

    fn natural_key(&self, _cx: &StepCx<'_>, (key, _): &Self::Request) -> NaturalKey {
        NaturalKey::Authorization(key.clone())
    }

    async fn find(
        &self,
        cx: &StepCx<'_>,
        _key: Option<&NaturalKey>,
    ) -> Result<Option<Outcome>, AcCloudError> {
        let (Some(client), Some(service), Some(key)) =
            (cx.ctx.client, cx.ctx.service, key_of(cx, self.0))
        else {
            return Ok(Some(missing("the client or service")));
        };
        let taken: Vec<AuthorizationId> = cx
            .ctx
            .authorizations
            .iter()
            .filter(|(k, _)| **k != self.0)
            .map(|(_, v)| *v)
            .collect();
        Ok(find(cx, client, service, &key, &taken)
            .await?
            .map(Outcome::Done))
    }

    async fn call(
        &self,
        cx: &StepCx<'_>,
        (_, request): &Self::Request,
    ) -> Result<Outcome, AcCloudError> {
        Ok(done(cx.ac.create_authorization(request).await?.id).into())
    }

    fn absorb(&self, ctx: &mut Ctx, result: &StepResult) {
        if let StepResult::Authorization(AuthorizationResult {
            authorization_id: Some(id),
            ..
        }) = result
        {
            ctx.authorizations.insert(self.0, AuthorizationId(*id));
        }
    }
}

/// The natural key of the authorization at `index` on the send's client and service.
pub(super) fn key_of(cx: &StepCx<'_>, index: usize) -> Option<AuthorizationKey> {
    let a = cx.input.terms.authorizations.get(index)?;
    Some(keys::authorization(
        cx.ctx.client.map(ClientId::get),
        cx.ctx.service.map(ServiceId::get),
        a,
    ))
}

pub(super) fn done(id: AuthorizationId) -> Done {
    Done::new(
        id.get().to_string(),
        StepResult::Authorization(AuthorizationResult {
            authorization_id: Some(id.get()),
            updated: false,
            deleted: None,
        }),
    )
}

/// The authorization of `client` and `service` that matches `key`, other than `taken`.
pub(super) async fn find(
    cx: &StepCx<'_>,
    client: ClientId,
    service: ServiceId,
    key: &AuthorizationKey,
    taken: &[AuthorizationId],
) -> Result<Option<Done>, AcCloudError> {
    let mut filter = AuthorizationFilter::new(key.start_at, key.start_at);
    filter.client_id = Some(client);
    filter.service_ids = vec![service];
    let (want_rule, want_limits) = (wire::rule_type(key.rule_type), wire::limits(&key.limits));
    loop {
        let list = cx.ac.list_authorizations(&filter).await?;
        let hit = list.items.iter().find(|x| {
            !taken.contains(&x.id)
                && x.start_at == Some(key.start_at)
                && x.end_at == Some(key.end_at)
                && x.rule_type.as_ref() == Some(&want_rule)
                && x.limits == want_limits
                && x.first_day_of_week == Some(i64::from(key.first_day_of_week))
                && x.authorization_number == key.authorization_number
                && (x.service_ids.is_empty() || x.service_ids.contains(&service))
        });
        if let Some(x) = hit {
            return Ok(Some(done(x.id)));
        }
        if !list.has_next() {
            return Ok(None);
        }
        filter.page = filter.page.next();
    }
}
