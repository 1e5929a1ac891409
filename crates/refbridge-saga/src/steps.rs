//! The steps of a send: what each creates, how it is found again, and how each outcome of a
//! call is classified.
//!
//! | step | natural key | found again by |
//! |---|---|---|
//! | client | `external_id` = patient id | `clients/by_id/{external_id}` (a repeated create is 409) |
//! | service | `service_id` = request id | `services/by_id/{request_id}` |
//! | authorization | client + service + start + end + rule type + limits + number | authorization list filtered by client, service and start date; exact match |
//! | referral | service + supplier | outbox referral list by supplier and client; `service.outbox_id` match, not cancelled |
//! | attachment | a file name unique per document + size | Files API listing of the client's attachments folder |

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{NaiveDate, TimeZone as _};
use refbridge_accloud::{
    AcCloud, AcCloudError, AttachmentUpload, AuthorizationCaseManager, AuthorizationFilter,
    AuthorizationId, AuthorizationLimits, AuthorizationMethodology, BranchId, CaseManager,
    ClientDetails, ClientId, ClientUpdate, Demographics, FunderId, FunderShare, FundingMethodology,
    GroupId, NewAuthorization, NewClient, NewReferral, NewService, PageRequest, ReferralFilter,
    ReferralId, ReferralStatus, Revisions, RuleType, ServiceClientRef, ServiceCodeId,
    ServiceCodeRef, ServiceId, SupplyPersonaId,
};
use refbridge_accloud::{
    AuthorizationUpdate, CancelReason, CancelReferral, ReferralUpdate as RefUpdate,
    RevisionGroupId, RevisionRequest, ServiceUpdate,
};
use refbridge_domain::approval::{self, ApprovalTerms, AuthorizationTerms, ClientTerms, Limits};
use refbridge_storage::{ChangeRecord, FileRecord, ReferralRecord, StepState};
use serde_json::{Value, json};

use crate::resolve::Resolved;

/// One step of a send, parsed from its stored kind and item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Client,
    Service,
    /// The index of the authorization in the approved terms.
    Authorization(usize),
    Referral,
    /// The referral request file's id.
    Attachment(String),
    /// After the send: the client's demographics changed.
    ClientUpdate,
    /// After the send: the service's instructions changed.
    ServiceUpdate,
    /// After the send: fields ACCloud lets us update changed.
    AuthorizationUpdate(usize),
    /// After the send: the authorization at this index goes (replaced or removed).
    AuthorizationDelete(usize),
    /// A new revision of the referral, with the current authorizations, dates and reasons.
    ReferralUpdate,
    /// Cancel the latest revision, with this reason code.
    ReferralCancel(String),
    /// The authorization at this index was withdrawn mid-send: delete it from ACCloud if it
    /// exists there (created, or landing from an interrupted call).
    AuthorizationWithdraw(usize),
}

impl Step {
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Client => "client",
            Step::Service => "service",
            Step::Authorization(_) => "authorization",
            Step::Referral => "referral",
            Step::Attachment(_) => "attachment",
            Step::ClientUpdate => "client_update",
            Step::ServiceUpdate => "service_update",
            Step::AuthorizationUpdate(_) => "authorization_update",
            Step::AuthorizationDelete(_) => "authorization_delete",
            Step::ReferralUpdate => "referral_update",
            Step::ReferralCancel(_) => "referral_cancel",
            Step::AuthorizationWithdraw(_) => "authorization_withdraw",
        }
    }

    pub fn item(&self) -> String {
        match self {
            Step::Authorization(i)
            | Step::AuthorizationUpdate(i)
            | Step::AuthorizationDelete(i)
            | Step::AuthorizationWithdraw(i) => i.to_string(),
            Step::Attachment(f) | Step::ReferralCancel(f) => f.clone(),
            _ => String::new(),
        }
    }

    /// Calls that give the same result when repeated (PUT, DELETE): after an unknown outcome
    /// they are simply sent again.
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self,
            Step::ClientUpdate
                | Step::ServiceUpdate
                | Step::AuthorizationUpdate(_)
                | Step::AuthorizationDelete(_)
                | Step::AuthorizationWithdraw(_)
        )
    }

    pub fn parse(kind: &str, item: &str) -> Option<Step> {
        Some(match kind {
            "client" => Step::Client,
            "service" => Step::Service,
            "authorization" => Step::Authorization(item.parse().ok()?),
            "referral" => Step::Referral,
            "attachment" => Step::Attachment(item.to_owned()),
            "client_update" => Step::ClientUpdate,
            "service_update" => Step::ServiceUpdate,
            "authorization_update" => Step::AuthorizationUpdate(item.parse().ok()?),
            "authorization_delete" => Step::AuthorizationDelete(item.parse().ok()?),
            "referral_update" => Step::ReferralUpdate,
            "referral_cancel" => Step::ReferralCancel(item.to_owned()),
            "authorization_withdraw" => Step::AuthorizationWithdraw(item.parse().ok()?),
            _ => return None,
        })
    }

    /// The steps of a first send, in order.
    pub fn plan(terms: &ApprovalTerms, files: &[FileRecord]) -> Vec<Step> {
        let mut steps = vec![Step::Client, Step::Service];
        steps.extend((0..terms.authorizations.len()).map(Step::Authorization));
        steps.push(Step::Referral);
        steps.extend(files.iter().map(|f| Step::Attachment(f.id.to_string())));
        steps
    }
}

/// What earlier steps created, read back from their records.
#[derive(Debug, Default, Clone)]
pub struct Ctx {
    pub client: Option<ClientId>,
    pub service: Option<ServiceId>,
    /// The live authorization for each index of the current terms.
    pub authorizations: BTreeMap<usize, AuthorizationId>,
    /// The latest revision we know of.
    pub referral: Option<ReferralId>,
    pub revision_group: Option<RevisionGroupId>,
}

impl Ctx {
    /// Replays one done step, in order.
    pub fn absorb(&mut self, step: &Step, remote_id: Option<&str>, result: Option<&Value>) {
        let Some(remote) = remote_id else {
            return;
        };
        match step {
            Step::Client => self.client = remote.parse().ok().map(ClientId),
            Step::Service => self.service = remote.parse().ok().map(ServiceId),
            Step::Authorization(i) => {
                if let Ok(id) = remote.parse() {
                    self.authorizations.insert(*i, AuthorizationId(id));
                }
            }
            Step::AuthorizationDelete(i) | Step::AuthorizationWithdraw(i) => {
                self.authorizations.remove(i);
            }
            Step::Referral | Step::ReferralUpdate => {
                self.referral = remote.parse().ok().map(ReferralId);
                if let Some(g) = result
                    .and_then(|r| r.get("revision_group_id"))
                    .and_then(Value::as_str)
                    .and_then(|g| g.parse().ok())
                {
                    self.revision_group = Some(RevisionGroupId(g));
                }
            }
            _ => {}
        }
    }
}

/// How a step ended this time.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The object exists in ACCloud (created now or found).
    Done { remote_id: String, result: Value },
    /// Try again after `after`; `state` says whether something may have been created.
    Retry {
        state: StepState,
        after: Duration,
        error: String,
        /// A failure without a create call that still counts against the attempts.
        count: bool,
    },
    /// A definite problem a human must look at.
    Fail(String),
}

/// The request a step will send, built (and its reference data resolved) before its intent
/// is committed.
pub enum Prepared {
    Client(NewClient),
    Service(NewService),
    Authorization(Box<NewAuthorization>),
    Referral(ServiceId, NewReferral),
    Attachment(ReferralId, AttachmentUpload),
    ClientUpdate(ClientId, ClientUpdate),
    ServiceUpdate(ServiceId, ServiceUpdate),
    AuthorizationUpdate(AuthorizationId, AuthorizationUpdate),
    AuthorizationDelete(AuthorizationId),
    /// A revision of `base`, the latest revision when the step was prepared.
    ReferralUpdate {
        service: ServiceId,
        base: ReferralId,
        base_number: u32,
        /// The agency's status of the revision we revise (assigned, processed).
        base_status: String,
        body: RefUpdate,
    },
    ReferralCancel(ReferralId, CancelReferral),
}

/// Everything a step reads.
pub struct Input<'a> {
    pub rec: &'a ReferralRecord,
    /// Everything asked of this send (the reasons and comments of each change).
    pub changes: &'a [ChangeRecord],
    /// The change the running step belongs to.
    pub current_change: i64,
    pub terms: &'a ApprovalTerms,
    pub hq_branch: BranchId,
    pub csi_group: &'a str,
    pub attachments_folder: &'a str,
    pub files_root: &'a refbridge_storage::FileStore,
}

impl Input<'_> {
    fn supplier(&self) -> SupplyPersonaId {
        SupplyPersonaId(self.rec.request.agency.alayamarket_org_id)
    }

    fn file(&self, id: &str) -> Option<&FileRecord> {
        self.rec.files.iter().find(|f| f.id.to_string() == id)
    }

    fn tz(&self) -> chrono_tz::Tz {
        self.terms
            .client
            .timezone
            .parse()
            .unwrap_or_else(|_| self.rec.request.client.timezone.tz())
    }

    fn change(&self, change_no: i64) -> Option<&ChangeRecord> {
        self.changes.iter().find(|c| c.change_no == change_no)
    }
}

fn demographics(c: &ClientTerms) -> Demographics {
    let mut demo = Demographics::new(c.first_name.clone(), c.last_name.clone());
    let gender = c
        .gender
        .as_deref()
        .map(|g| match g.to_ascii_uppercase().as_str() {
            "F" | "FEMALE" => "F",
            "M" | "MALE" => "M",
            _ => "O",
        });
    for (k, v) in [
        ("birthday", c.birthday.map(|b| b.to_string())),
        ("gender", gender.map(str::to_owned)),
        ("email", c.email.clone()),
        ("phone_main", c.phone_main.clone()),
        ("address", c.address.clone()),
        ("city", c.city.clone()),
        ("state", c.state.clone()),
        ("zip", c.zip.clone()),
        ("country", c.country.clone()),
    ] {
        if let Some(v) = v {
            demo = demo.with(k, v);
        }
    }
    demo
}

/// The attachment's name in ACCloud: unique per document (the request id's first block and
/// the file's position), so that the Files API listing can find it again exactly.
pub fn attachment_name(request_id: &str, file: &FileRecord) -> String {
    let prefix = request_id.split('-').next().unwrap_or(request_id);
    format!("rb-{prefix}-{}-{}", file.position + 1, file.name)
}

/// Local midnight of `date` in `tz`, as an instant with its offset.
pub fn local_midnight(
    date: NaiveDate,
    tz: chrono_tz::Tz,
) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    let naive = date.and_hms_opt(0, 0, 0)?;
    // Midnight can fall in a DST gap in a few zones: take the earliest valid instant.
    let local = tz.from_local_datetime(&naive).earliest().or_else(|| {
        tz.from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest()
    })?;
    Some(local.fixed_offset())
}

/// Our limits as ACCloud's authorization fields.
pub fn limits(l: &Limits) -> AuthorizationLimits {
    AuthorizationLimits {
        daily: l.rule_daily,
        weekly: l.rule_weekly,
        monthly: l.rule_monthly,
        period: l.rule_period,
        monday: l.rule_monday,
        tuesday: l.rule_tuesday,
        wednesday: l.rule_wednesday,
        thursday: l.rule_thursday,
        friday: l.rule_friday,
        saturday: l.rule_saturday,
        sunday: l.rule_sunday,
    }
}

/// Our rule type as ACCloud's.
pub fn rule_type(r: approval::RuleType) -> RuleType {
    match r {
        approval::RuleType::Hours => RuleType::Hours,
        approval::RuleType::Visits => RuleType::Visits,
    }
}

fn case_manager(c: &Option<approval::CaseManager>) -> AuthorizationCaseManager {
    let c = c.clone().unwrap_or_default();
    AuthorizationCaseManager {
        name: c.name,
        phone: c.phone,
        fax: c.fax,
        email: c.email,
    }
}

/// The natural key committed with a step's intent: what its lookup matches on.
pub fn natural_key(step: &Step, input: &Input<'_>, ctx: &Ctx, prepared: &Prepared) -> Value {
    match step {
        Step::Client => json!({ "external_id": input.rec.patient_id.to_string() }),
        Step::Service => json!({ "service_id": input.rec.request_id.to_string() }),
        Step::Authorization(i) => {
            let a = input.terms.authorizations.get(*i);
            json!({
                "client_id": ctx.client.map(|c| c.get()),
                "service_id": ctx.service.map(|s| s.get()),
                "start_at": a.map(|a| a.start_date),
                "end_at": a.map(|a| a.end_date),
                "rule_type": a.map(|a| a.rule_type),
                "limits": a.map(|a| &a.limits),
                "first_day_of_week": a.map(|a| a.first_day_of_week),
                "authorization_number": a.and_then(|a| a.authorization_number.clone()),
            })
        }
        Step::Referral => json!({
            "service_id": ctx.service.map(|s| s.get()),
            "supply_persona_id": input.supplier().to_string(),
            "client_outbox_id": ctx.client.map(|c| c.get().to_string()),
        }),
        Step::Attachment(file_id) => {
            let f = input.file(file_id);
            json!({
                "client_id": ctx.client.map(|c| c.get()),
                "folder": input.attachments_folder,
                "file_name": f.map(|f| attachment_name(&input.rec.request_id.to_string(), f)),
                "size": f.map(|f| f.size),
                "sha256": f.map(|f| f.sha256.to_string()),
            })
        }
        Step::ReferralUpdate => match prepared {
            Prepared::ReferralUpdate {
                base,
                base_number,
                body,
                ..
            } => json!({
                "revision_group_id": ctx.revision_group.map(|g| g.to_string()),
                "base_referral_id": base.to_string(),
                "base_revision_number": base_number,
                "reasons": body.revision.reasons,
                "start_at": body.start_at,
                "end_at": body.end_at,
            }),
            _ => Value::Null,
        },
        Step::ReferralCancel(reason) => json!({
            "revision_group_id": ctx.revision_group.map(|g| g.to_string()),
            "reason_code": reason,
        }),
        Step::ClientUpdate => json!({ "client_id": ctx.client.map(|c| c.get()) }),
        Step::ServiceUpdate => json!({ "service_id": ctx.service.map(|s| s.get()) }),
        Step::AuthorizationUpdate(i)
        | Step::AuthorizationDelete(i)
        | Step::AuthorizationWithdraw(i) => {
            json!({ "authorization_id": ctx.authorizations.get(i).map(|a| a.get()) })
        }
    }
}

fn missing(what: &str) -> Outcome {
    Outcome::Fail(format!("internal: {what} is not known at this step"))
}

/// Looks the step's object up by its natural key. `Ok(None)`: not there (yet).
pub async fn find(
    ac: &dyn AcCloud,
    step: &Step,
    input: &Input<'_>,
    ctx: &Ctx,
    csi_group: Option<GroupId>,
    key: Option<&Value>,
) -> Result<Option<Outcome>, AcCloudError> {
    match step {
        Step::Client => {
            let found = ac
                .get_client_by_external_id(&input.rec.patient_id.to_string())
                .await?;
            match found {
                None => Ok(None),
                Some(c) => ensure_group(ac, c, csi_group).await.map(Some),
            }
        }
        Step::Service => Ok(ac
            .get_service_by_external_id(&input.rec.request_id.to_string())
            .await?
            .map(|s| done(s.id.get().to_string(), json!({ "service_id": s.id.get() })))),
        Step::Authorization(i) => {
            let (Some(client), Some(service), Some(a)) =
                (ctx.client, ctx.service, input.terms.authorizations.get(*i))
            else {
                return Ok(Some(missing("the client or service")));
            };
            let taken: Vec<AuthorizationId> = ctx
                .authorizations
                .iter()
                .filter(|(k, _)| *k != i)
                .map(|(_, v)| *v)
                .collect();
            find_authorization(ac, client, service, a, &taken).await
        }
        Step::Referral => {
            let (Some(client), Some(service)) = (ctx.client, ctx.service) else {
                return Ok(Some(missing("the client or service")));
            };
            let mut page = PageRequest::first(100);
            loop {
                let filter = ReferralFilter {
                    supply_persona_id: Some(input.supplier()),
                    client_outbox_id: Some(client.get().to_string()),
                    revisions: Some(Revisions::Latest),
                    page: Some(page),
                    ..ReferralFilter::default()
                };
                let list = ac.list_referrals(&filter).await?;
                let hit = list.items.iter().find(|r| {
                    r.service.as_ref().and_then(|s| s.outbox_id.as_deref())
                        == Some(service.get().to_string().as_str())
                        && r.referral.status != ReferralStatus::Cancelled
                        && r.supply.as_ref().is_none_or(|s| s.id == input.supplier())
                });
                if let Some(r) = hit {
                    return Ok(Some(referral_done(r)));
                }
                if !list.has_next() {
                    return Ok(None);
                }
                page = page.next();
            }
        }
        Step::Attachment(file_id) => {
            let (Some(client), Some(file)) = (ctx.client, input.file(file_id)) else {
                return Ok(Some(missing("the client or file")));
            };
            let name = attachment_name(&input.rec.request_id.to_string(), file);
            let entries = ac
                .list_client_files(client, input.attachments_folder)
                .await?;
            Ok(entries.and_then(|entries| {
                entries
                    .into_iter()
                    .find(|e| !e.is_dir() && e.basename() == name && e.size == Some(file.size as u64))
                    .map(|e| {
                        done(
                            e.name.clone(),
                            json!({ "filepath": e.name, "file_name": name, "size": file.size, "found_by_lookup": true }),
                        )
                    })
            }))
        }
        Step::ReferralUpdate => {
            // Landed if the group has a revision newer than the one we revised, with our
            // reasons and dates.
            let (Some(group), Some(key)) = (ctx.revision_group, key) else {
                return Ok(None);
            };
            let base_number = key
                .get("base_revision_number")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let reasons: Vec<String> = key
                .get("reasons")
                .and_then(|r| serde_json::from_value(r.clone()).ok())
                .unwrap_or_default();
            let all = revisions(ac, group, Revisions::All).await?;
            Ok(all
                .iter()
                .find(|r| {
                    r.revision.as_ref().is_some_and(|v| {
                        u64::from(v.revision_number) > base_number && v.revision_reasons == reasons
                    })
                })
                .map(referral_done))
        }
        Step::ReferralCancel(_) => {
            let Some(group) = ctx.revision_group else {
                return Ok(Some(missing("the referral")));
            };
            let latest = revisions(ac, group, Revisions::Latest).await?;
            Ok(latest
                .first()
                .filter(|r| r.referral.status == ReferralStatus::Cancelled)
                .map(referral_done))
        }
        // Repeatable calls have nothing to find: they are sent again.
        Step::ClientUpdate
        | Step::ServiceUpdate
        | Step::AuthorizationUpdate(_)
        | Step::AuthorizationDelete(_)
        | Step::AuthorizationWithdraw(_) => Ok(None),
    }
}

/// The latest revision of a referral's revision group: what the agency sees.
pub async fn latest_revision(
    ac: &dyn AcCloud,
    group: RevisionGroupId,
) -> Result<Option<refbridge_accloud::Referral>, AcCloudError> {
    Ok(revisions(ac, group, Revisions::Latest)
        .await?
        .into_iter()
        .next())
}

/// The revisions of a group: all of them, or the latest only.
async fn revisions(
    ac: &dyn AcCloud,
    group: RevisionGroupId,
    which: Revisions,
) -> Result<Vec<refbridge_accloud::Referral>, AcCloudError> {
    let mut out = Vec::new();
    let mut page = PageRequest::first(100);
    loop {
        let filter = ReferralFilter {
            revision_group_id: Some(group),
            revisions: Some(which),
            page: Some(page),
            ..ReferralFilter::default()
        };
        let list = ac.list_referrals(&filter).await?;
        let more = list.has_next();
        out.extend(list.items);
        if !more {
            return Ok(out);
        }
        page = page.next();
    }
}

fn done(remote_id: String, result: Value) -> Outcome {
    Outcome::Done { remote_id, result }
}

fn referral_done(r: &refbridge_accloud::Referral) -> Outcome {
    done(
        r.id().to_string(),
        json!({
            "referral_id": r.id().to_string(),
            "revision_group_id": r.revision_group_id().map(|g| g.to_string()),
            "revision_number": r.revision.as_ref().map(|v| v.revision_number),
            "sequence_id": r.referral.sequence_id.map(|s| s.to_string()),
            "status": r.referral.status.as_str(),
        }),
    )
}

/// An existing client is reused; its groups are corrected when the CSI group is missing.
async fn ensure_group(
    ac: &dyn AcCloud,
    c: ClientDetails,
    csi_group: Option<GroupId>,
) -> Result<Outcome, AcCloudError> {
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
    Ok(done(
        c.id.get().to_string(),
        json!({ "client_id": c.id.get(), "reused": true }),
    ))
}

async fn find_authorization(
    ac: &dyn AcCloud,
    client: ClientId,
    service: ServiceId,
    a: &AuthorizationTerms,
    taken: &[AuthorizationId],
) -> Result<Option<Outcome>, AcCloudError> {
    let mut filter = AuthorizationFilter::new(a.start_date, a.start_date);
    filter.client_id = Some(client);
    filter.service_ids = vec![service];
    loop {
        let list = ac.list_authorizations(&filter).await?;
        let want = limits(&a.limits);
        let hit = list.items.iter().find(|x| {
            !taken.contains(&x.id)
                && x.start_at == Some(a.start_date)
                && x.end_at == Some(a.end_date)
                && x.rule_type.as_ref() == Some(&rule_type(a.rule_type))
                && x.limits == want
                && x.first_day_of_week == Some(i64::from(a.first_day_of_week))
                && x.authorization_number == a.authorization_number
                && (x.service_ids.is_empty() || x.service_ids.contains(&service))
        });
        if let Some(x) = hit {
            return Ok(Some(done(
                x.id.get().to_string(),
                json!({ "authorization_id": x.id.get() }),
            )));
        }
        if !list.has_next() {
            return Ok(None);
        }
        filter.page = filter.page.next();
    }
}

/// The referral's dates, authorizations and case manager from the current terms.
#[allow(clippy::type_complexity)]
fn referral_parts(
    input: &Input<'_>,
    ctx: &Ctx,
) -> Result<
    (
        chrono::DateTime<chrono::FixedOffset>,
        chrono::DateTime<chrono::FixedOffset>,
        Vec<AuthorizationId>,
        Option<CaseManager>,
    ),
    Outcome,
> {
    let t = input.terms;
    let ids: Vec<AuthorizationId> = (0..t.authorizations.len())
        .filter_map(|i| ctx.authorizations.get(&i).copied())
        .collect();
    if ids.len() != t.authorizations.len() {
        return Err(missing("an authorization"));
    }
    let Some((start, end)) = t.referral_dates() else {
        return Err(missing("the authorization dates"));
    };
    let (Some(start_at), Some(end_at)) = (
        local_midnight(start, input.tz()),
        local_midnight(end, input.tz()),
    ) else {
        return Err(Outcome::Fail(
            "the referral dates do not exist in the client's time zone".into(),
        ));
    };
    let cm = t.referral.case_manager.clone().map(|c| CaseManager {
        name: c.name,
        phone_number: c.phone,
        fax_number: c.fax,
        email: c.email,
    });
    Ok((start_at, end_at, ids, cm))
}

/// Resolves what the step needs and builds its request. `Err(Outcome)` when the step cannot
/// go on (a name ACCloud does not know, an untrusted agency).
pub async fn prepare(
    ac: &dyn AcCloud,
    step: &Step,
    input: &Input<'_>,
    ctx: &Ctx,
    resolver: &crate::resolve::Resolver,
) -> Result<Result<Prepared, Outcome>, AcCloudError> {
    let t = input.terms;
    Ok(Ok(match step {
        Step::Client => {
            let group = match resolver.group(ac, input.csi_group, input.hq_branch).await? {
                Resolved::Found(id) => GroupId(id),
                Resolved::Missing(m) => return Ok(Err(Outcome::Fail(m))),
            };
            let c = &t.client;
            Prepared::Client(NewClient {
                external_id: input.rec.patient_id.to_string(),
                branch_id: Some(input.hq_branch),
                demographics: demographics(c),
                language: None,
                groups: vec![group],
                timezone: Some(c.timezone.clone()),
            })
        }
        Step::Service => {
            let Some(client) = ctx.client else {
                return Ok(Err(missing("the client")));
            };
            let funder = match resolver.funder(ac, &t.service.funder).await? {
                Resolved::Found(id) => FunderId(id),
                Resolved::Missing(m) => return Ok(Err(Outcome::Fail(m))),
            };
            let code = match resolver.service_code(ac, &t.service.service_code).await? {
                Resolved::Found(id) => ServiceCodeId(id),
                Resolved::Missing(m) => return Ok(Err(Outcome::Fail(m))),
            };
            let mut profile = BTreeMap::new();
            profile.insert(
                "target_agency".to_owned(),
                Value::String(input.rec.request.agency.name.clone()),
            );
            Prepared::Service(NewService {
                service_id: input.rec.request_id.to_string(),
                name: t.service.name.clone(),
                client: ServiceClientRef::AlayaCare(client),
                start_date: t.service.start_date,
                projected_end_date: t.service.end_date,
                funding_methodology: FundingMethodology::SingleFunder,
                funders: vec![FunderShare {
                    funder_id: funder,
                    is_primary: true,
                    percentage: 100,
                }],
                service_code: ServiceCodeRef::Id(code),
                service_instructions: t.service.instructions.clone(),
                notes: None,
                use_client_address: Some(true),
                profile,
            })
        }
        Step::Authorization(i) => {
            let (Some(client), Some(service), Some(a)) =
                (ctx.client, ctx.service, t.authorizations.get(*i))
            else {
                return Ok(Err(missing("the client or service")));
            };
            Prepared::Authorization(Box::new(NewAuthorization {
                client_id: client,
                service_ids: vec![service],
                start_at: a.start_date,
                end_at: Some(a.end_date),
                methodology: AuthorizationMethodology::Service,
                rule_type: rule_type(a.rule_type),
                limits: limits(&a.limits),
                first_day_of_week: a.first_day_of_week,
                authorization_number: a.authorization_number.clone(),
                member_number: a.member_number.clone(),
                program_id: a.program_id.clone(),
                notes: a.notes.clone(),
                case_manager: case_manager(&a.case_manager),
            }))
        }
        Step::Referral => {
            let Some(service) = ctx.service else {
                return Ok(Err(missing("the service")));
            };
            if !resolver.trusted(ac, input.supplier()).await? {
                return Ok(Err(Outcome::Fail(format!(
                    "the agency {} is not in CSI's trusted network",
                    input.supplier()
                ))));
            }
            let (start_at, end_at, ids, cm) = match referral_parts(input, ctx) {
                Ok(p) => p,
                Err(o) => return Ok(Err(o)),
            };
            Prepared::Referral(
                service,
                NewReferral {
                    care_type: match t.referral.care_type {
                        approval::CareType::Nursing => refbridge_accloud::CareType::Nursing,
                        approval::CareType::Psw => refbridge_accloud::CareType::Psw,
                    },
                    referral_type: match t.referral.referral_type {
                        approval::ReferralType::Service => refbridge_accloud::ReferralType::Service,
                        approval::ReferralType::Visit => refbridge_accloud::ReferralType::Visit,
                    },
                    start_at,
                    end_at,
                    supply_persona_id: input.supplier(),
                    authorization_ids: ids,
                    comment: t.referral.comment.clone(),
                    case_manager: cm,
                },
            )
        }
        Step::Attachment(file_id) => {
            let (Some(referral), Some(file)) = (ctx.referral, input.file(file_id)) else {
                return Ok(Err(missing("the referral or file")));
            };
            Prepared::Attachment(
                referral,
                AttachmentUpload {
                    path: input.files_root.path_of(&file.sha256),
                    file_name: attachment_name(&input.rec.request_id.to_string(), file),
                    content_type: Some(file.media_type.clone()),
                },
            )
        }
        Step::ClientUpdate => {
            let Some(client) = ctx.client else {
                return Ok(Err(missing("the client")));
            };
            let c = &t.client;
            Prepared::ClientUpdate(
                client,
                ClientUpdate {
                    demographics: Some(demographics(c)),
                    timezone: Some(c.timezone.clone()),
                    ..ClientUpdate::default()
                },
            )
        }
        Step::ServiceUpdate => {
            let Some(service) = ctx.service else {
                return Ok(Err(missing("the service")));
            };
            let mut profile = BTreeMap::new();
            profile.insert(
                "target_agency".to_owned(),
                Value::String(input.rec.request.agency.name.clone()),
            );
            Prepared::ServiceUpdate(
                service,
                ServiceUpdate {
                    service_instructions: t.service.instructions.clone(),
                    profile: Some(profile),
                    ..ServiceUpdate::default()
                },
            )
        }
        Step::AuthorizationUpdate(i) => {
            let (Some(id), Some(a)) = (ctx.authorizations.get(i), t.authorizations.get(*i)) else {
                return Ok(Err(missing("the authorization")));
            };
            Prepared::AuthorizationUpdate(
                *id,
                AuthorizationUpdate {
                    end_at: Some(a.end_date),
                    authorization_number: a.authorization_number.clone(),
                    member_number: a.member_number.clone(),
                    program_id: a.program_id.clone(),
                    notes: a.notes.clone(),
                    case_manager: case_manager(&a.case_manager),
                },
            )
        }
        Step::AuthorizationWithdraw(i) => {
            // Created: its id is known. Being created when the plan was archived: find it.
            let id = match ctx.authorizations.get(i) {
                Some(id) => Some(*id),
                None => match (ctx.client, ctx.service, t.authorizations.get(*i)) {
                    (Some(client), Some(service), Some(a)) => {
                        match find_authorization(ac, client, service, a, &[]).await? {
                            Some(Outcome::Done { remote_id, .. }) => {
                                remote_id.parse().ok().map(AuthorizationId)
                            }
                            _ => None,
                        }
                    }
                    _ => None,
                },
            };
            match id {
                Some(id) => Prepared::AuthorizationDelete(id),
                None => {
                    return Ok(Err(Outcome::Retry {
                        state: StepState::Unknown,
                        after: Duration::ZERO,
                        error: NOT_FOUND_YET.into(),
                        count: true,
                    }));
                }
            }
        }
        Step::AuthorizationDelete(i) => match ctx.authorizations.get(i) {
            Some(id) => Prepared::AuthorizationDelete(*id),
            // Never created: nothing to delete.
            None => return Ok(Err(done(String::new(), json!({ "deleted": null })))),
        },
        Step::ReferralUpdate | Step::ReferralCancel(_) => {
            let (Some(service), Some(group)) = (ctx.service, ctx.revision_group) else {
                return Ok(Err(missing("the referral")));
            };
            // Always the latest revision, read fresh: the agency or another change may have
            // moved it on.
            let latest = revisions(ac, group, Revisions::Latest).await?;
            let Some(latest) = latest.into_iter().next() else {
                return Ok(Err(Outcome::Fail(
                    "ACCloud lists no revision of this referral".into(),
                )));
            };
            if let Step::ReferralCancel(reason) = step {
                if latest.referral.status == ReferralStatus::Cancelled {
                    return Ok(Err(referral_done(&latest)));
                }
                let Some(reason_code) = CancelReason::parse(reason) else {
                    return Ok(Err(Outcome::Fail(format!(
                        "unknown cancel reason {reason}"
                    ))));
                };
                let comment = input
                    .change(input.current_change)
                    .and_then(|c| c.comment.clone());
                Prepared::ReferralCancel(
                    latest.id(),
                    CancelReferral {
                        reason_code,
                        comment,
                    },
                )
            } else {
                if latest.referral.status == ReferralStatus::Cancelled {
                    return Ok(Err(Outcome::Fail(
                        "the referral was cancelled in ACCloud".into(),
                    )));
                }
                let (start_at, end_at, ids, cm) = match referral_parts(input, ctx) {
                    Ok(p) => p,
                    Err(o) => return Ok(Err(o)),
                };
                let change = input.change(input.current_change);
                let reasons = change.map(|c| c.reasons.clone()).unwrap_or_default();
                Prepared::ReferralUpdate {
                    service,
                    base: latest.id(),
                    base_number: latest
                        .revision
                        .as_ref()
                        .map(|r| r.revision_number)
                        .unwrap_or(1),
                    base_status: latest.referral.status.as_str().to_owned(),
                    body: RefUpdate {
                        start_at,
                        end_at,
                        authorization_ids: ids,
                        comment: t.referral.comment.clone(),
                        case_manager: cm,
                        revision: RevisionRequest {
                            reasons: if reasons.is_empty() {
                                vec!["Referral updated".into()]
                            } else {
                                reasons
                            },
                            comment: change.and_then(|c| c.comment.clone()),
                        },
                    },
                }
            }
        }
    }))
}
/// Sends the prepared request.
pub async fn create(ac: &dyn AcCloud, prepared: &Prepared) -> Result<Outcome, AcCloudError> {
    Ok(match prepared {
        Prepared::Client(c) => {
            let r = ac.create_client(c).await?;
            done(r.id.get().to_string(), json!({ "client_id": r.id.get() }))
        }
        Prepared::Service(s) => {
            let r = ac.create_service(s).await?;
            done(r.id.get().to_string(), json!({ "service_id": r.id.get() }))
        }
        Prepared::Authorization(a) => {
            let r = ac.create_authorization(a).await?;
            done(
                r.id.get().to_string(),
                json!({ "authorization_id": r.id.get() }),
            )
        }
        Prepared::Referral(service, r) => referral_done(&ac.create_referral(*service, r).await?),
        Prepared::Attachment(referral, upload) => {
            let r = ac.upload_client_attachment(*referral, upload).await?;
            done(
                r.filepath.clone(),
                json!({ "filepath": r.filepath, "file_name": upload.file_name, "size": r.size }),
            )
        }
        Prepared::ClientUpdate(id, u) => {
            ac.update_client(*id, u).await?;
            done(
                id.get().to_string(),
                json!({ "client_id": id.get(), "updated": true }),
            )
        }
        Prepared::ServiceUpdate(id, u) => {
            ac.update_service(*id, u).await?;
            done(
                id.get().to_string(),
                json!({ "service_id": id.get(), "updated": true }),
            )
        }
        Prepared::AuthorizationUpdate(id, u) => {
            ac.update_authorization(*id, u).await?;
            done(
                id.get().to_string(),
                json!({ "authorization_id": id.get(), "updated": true }),
            )
        }
        Prepared::AuthorizationDelete(id) => match ac.delete_authorization(*id).await {
            // Already gone (an earlier attempt landed): the goal is met.
            Ok(()) | Err(AcCloudError::NotFound { .. }) => done(
                id.get().to_string(),
                json!({ "authorization_id": id.get(), "deleted": true }),
            ),
            Err(e) => return Err(e),
        },
        Prepared::ReferralUpdate {
            service,
            base,
            body,
            base_status,
            ..
        } => {
            let mut out = referral_done(&ac.update_referral(*service, *base, body).await?);
            if let Outcome::Done { result, .. } = &mut out {
                result["base_status"] = Value::String(base_status.clone());
                result["reasons"] = json!(body.revision.reasons);
            }
            out
        }
        Prepared::ReferralCancel(id, c) => {
            ac.cancel_referral(*id, c).await?;
            done(
                id.to_string(),
                json!({ "referral_id": id.to_string(), "status": "cancelled", "reason_code": c.reason_code.as_str() }),
            )
        }
    })
}

/// What a withdrawal's lookup says when the authorization is not (yet) in ACCloud.
pub const NOT_FOUND_YET: &str = "the withdrawn authorization is not in ACCloud (yet)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_midnight_carries_the_zone_offset() {
        let d = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let t = local_midnight(d, chrono_tz::America::Denver).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-01T00:00:00-07:00");
        let summer = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap();
        assert_eq!(
            local_midnight(summer, chrono_tz::America::Denver)
                .unwrap()
                .to_rfc3339(),
            "2026-07-01T00:00:00-06:00"
        );
    }

    #[test]
    fn steps_round_trip_through_kind_and_item() {
        for s in [
            Step::Client,
            Step::Service,
            Step::Authorization(3),
            Step::Referral,
            Step::Attachment("f".into()),
        ] {
            assert_eq!(Step::parse(s.kind(), &s.item()), Some(s));
        }
        assert_eq!(Step::parse("authorization", "x"), None);
    }
}
