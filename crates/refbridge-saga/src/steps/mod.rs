//! The steps of a send, one module per [`StepKind`]: what each sends, the natural key it
//! commits first, how it finds its object again after an unknown outcome, and what it keeps
//! of the answer. Each implements [`SendStep`]; the engine runs that trait and knows no step
//! by name. The natural keys are `refbridge_domain::send::keys`.

pub(crate) mod attachment;
pub(crate) mod authorization;
pub(crate) mod authorization_delete;
pub(crate) mod authorization_update;
pub(crate) mod authorization_withdraw;
pub(crate) mod client;
pub(crate) mod client_update;
pub(crate) mod referral;
pub(crate) mod referral_cancel;
pub(crate) mod referral_update;
pub(crate) mod service;
pub(crate) mod service_update;
pub mod wire;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use refbridge_accloud::{
    AcCloud, AcCloudError, AuthorizationId, BranchId, ClientId, ReferralId, RevisionGroupId,
    ServiceId, SupplyPersonaId,
};
use refbridge_domain::FileId;
use refbridge_domain::approval::ApprovalTerms;
use refbridge_domain::send::{NaturalKey, Step, StepResult, StepState};
use refbridge_storage::{ChangeRecord, FileRecord, ReferralRecord};

use crate::classify;
use crate::resolve::Resolver;
use crate::retry::RetryPolicy;

pub use wire::local_midnight;

/// One kind of send step.
pub trait SendStep: Sync {
    /// The request the call sends, built (its reference data resolved) before the intent is
    /// committed.
    type Request: Send + Sync;

    /// A call that gives the same result when repeated (PUT, DELETE): after an unknown
    /// outcome it is sent again instead of looked up.
    const REPEATABLE: bool = false;

    /// Builds the request. `Ok(Err(outcome))` when the step ends without a call: a name
    /// ACCloud does not know, an untrusted agency, nothing left to do.
    fn prepare(
        &self,
        cx: &StepCx<'_>,
    ) -> impl Future<Output = Result<Result<Self::Request, Outcome>, AcCloudError>> + Send;

    /// What the lookup after an unknown outcome matches on, committed before the call.
    fn natural_key(&self, cx: &StepCx<'_>, request: &Self::Request) -> NaturalKey;

    /// Looks the object up by its natural key (`key`: the one committed with the last
    /// attempt): `Ok(Some(Outcome::Done))` when found, `Ok(None)` when not there (yet). Repeatable steps find nothing: they are sent
    /// again.
    fn find(
        &self,
        _cx: &StepCx<'_>,
        _key: Option<&NaturalKey>,
    ) -> impl Future<Output = Result<Option<Outcome>, AcCloudError>> + Send {
        async { Ok(None) }
    }

    /// Sends the request. An error is classified by the engine (retry, look up, or stop).
    fn call(
        &self,
        cx: &StepCx<'_>,
        request: &Self::Request,
    ) -> impl Future<Output = Result<Outcome, AcCloudError>> + Send;

    /// Replays a done step's result into what later steps read.
    fn absorb(&self, _ctx: &mut Ctx, _result: &StepResult) {}

    /// Whether a definite rejection at this attempt is worth another try (a revision refused
    /// because another revision became the latest in between).
    fn retries_rejection(&self, _attempt: u32) -> bool {
        false
    }
}

/// Runs `$body` with `$s` bound to the [`SendStep`] of `$step`: the one table from a step to
/// its module.
macro_rules! with_step {
    ($step:expr, |$s:ident| $body:expr) => {{
        use refbridge_domain::send::Step;
        match $step {
            Step::Client => {
                let $s = &$crate::steps::client::Client;
                $body
            }
            Step::Service => {
                let $s = &$crate::steps::service::Service;
                $body
            }
            Step::Authorization(i) => {
                let $s = &$crate::steps::authorization::Authorization(*i);
                $body
            }
            Step::Referral => {
                let $s = &$crate::steps::referral::Referral;
                $body
            }
            Step::Attachment(f) => {
                let $s = &$crate::steps::attachment::Attachment(*f);
                $body
            }
            Step::ClientUpdate => {
                let $s = &$crate::steps::client_update::ClientUpdate;
                $body
            }
            Step::ServiceUpdate => {
                let $s = &$crate::steps::service_update::ServiceUpdate;
                $body
            }
            Step::AuthorizationUpdate(i) => {
                let $s = &$crate::steps::authorization_update::AuthorizationUpdate(*i);
                $body
            }
            Step::AuthorizationDelete(i) => {
                let $s = &$crate::steps::authorization_delete::AuthorizationDelete(*i);
                $body
            }
            Step::ReferralUpdate => {
                let $s = &$crate::steps::referral_update::ReferralUpdate;
                $body
            }
            Step::ReferralCancel(r) => {
                let $s = &$crate::steps::referral_cancel::ReferralCancel(*r);
                $body
            }
            Step::AuthorizationWithdraw(i) => {
                let $s = &$crate::steps::authorization_withdraw::AuthorizationWithdraw(*i);
                $body
            }
        }
    }};
}
pub(crate) use with_step;

/// Replays one done step into `ctx`.
pub fn absorb(step: &Step, ctx: &mut Ctx, result: &StepResult) {
    with_step!(step, |s| s.absorb(ctx, result))
}

/// What earlier steps created, read back from their results.
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

/// How a step ended this time.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The object exists in ACCloud (created now or found).
    Done(Done),
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
    /// The agency cancelled the referral in ACCloud: nothing more can reach it, and the send
    /// ends with the referral cancelled, for this reason.
    CancelledByAgency(String),
}

/// A step's object in ACCloud: its id there and what we keep of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    pub remote_id: String,
    pub result: StepResult,
}

impl Done {
    pub fn new(remote_id: impl Into<String>, result: StepResult) -> Self {
        Self {
            remote_id: remote_id.into(),
            result,
        }
    }
}

impl From<Done> for Outcome {
    fn from(d: Done) -> Self {
        Outcome::Done(d)
    }
}

/// Everything a send's steps read: the referral and what was asked of it.
#[derive(Clone, Copy)]
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
    /// The file bodies (any backend); an upload reads a local copy.
    pub files_root: &'a refbridge_storage::Blobs,
    /// The ACCloud paths of the uploads recorded by the done steps of the client's referrals
    /// (`Store::delivered_attachments`): a lookup never takes one of these as its own.
    pub claimed_files: &'a [String],
}

impl Input<'_> {
    fn supplier(&self) -> SupplyPersonaId {
        SupplyPersonaId(self.rec.request.agency.alayamarket_org_id)
    }

    fn file(&self, id: FileId) -> Option<&FileRecord> {
        self.rec.files.iter().find(|f| f.id == id)
    }

    fn tz(&self) -> chrono_tz::Tz {
        self.terms
            .client
            .timezone
            .parse()
            .unwrap_or_else(|_| self.rec.request.client.timezone.tz())
    }

    fn current_change(&self) -> Option<&ChangeRecord> {
        self.changes
            .iter()
            .find(|c| c.change_no == self.current_change)
    }
}

/// What one run of a step sees.
pub struct StepCx<'a> {
    pub ac: &'a dyn AcCloud,
    pub input: &'a Input<'a>,
    pub ctx: &'a Ctx,
    pub resolver: &'a Resolver,
    pub retry: &'a RetryPolicy,
    /// After an unknown outcome, how long a lookup that finds nothing is not trusted.
    pub settle_delay: Duration,
    /// Calls of this step made before this run.
    pub attempts: u32,
}

impl StepCx<'_> {
    /// The number of this attempt.
    pub fn attempt(&self) -> u32 {
        self.attempts + 1
    }
}

/// `Some(Fail)` when the referral's agency is not in CSI's trusted network.
async fn untrusted(cx: &StepCx<'_>) -> Result<Option<Outcome>, AcCloudError> {
    let supplier = cx.input.supplier();
    if cx.resolver.trusted(cx.ac, supplier).await? {
        return Ok(None);
    }
    Ok(Some(Outcome::Fail(format!(
        "the agency {} ({supplier}) is not in CSI's trusted network: add it to the trusted \
         network in ACCloud, then resume",
        cx.input.rec.request.agency.name
    ))))
}

fn not_known(what: &str) -> String {
    format!("internal: {what} is not known at this step")
}

fn missing(what: &str) -> Outcome {
    Outcome::Fail(not_known(what))
}

/// Sends `steps` one after the other with nothing recorded and no lookup: each request built
/// and each answer absorbed by the steps' own code. What a send costs without its store
/// (`refbridge bench send`'s baseline).
pub async fn run_unrecorded(
    ac: &dyn AcCloud,
    input: &Input<'_>,
    resolver: &Resolver,
    steps: &[Step],
) -> Result<Ctx, String> {
    let retry = RetryPolicy::default();
    let mut ctx = Ctx::default();
    for step in steps {
        let outcome = {
            let cx = StepCx {
                ac,
                input,
                ctx: &ctx,
                resolver,
                retry: &retry,
                settle_delay: Duration::ZERO,
                attempts: 0,
            };
            with_step!(step, |s| call_once(s, &cx).await)
        };
        match outcome {
            Outcome::Done(done) => absorb(step, &mut ctx, &done.result),
            other => return Err(format!("{}: {other:?}", step.kind().as_str())),
        }
    }
    Ok(ctx)
}

async fn call_once<S: SendStep>(s: &S, cx: &StepCx<'_>) -> Outcome {
    match s.prepare(cx).await {
        Ok(Ok(request)) => match s.call(cx, &request).await {
            Ok(outcome) => outcome,
            Err(e) => classify::create_failed(cx.retry, &e, cx.attempt(), false, "step"),
        },
        Ok(Err(outcome)) => outcome,
        Err(e) => classify::lookup_failed(cx.retry, &e, cx.attempt()),
    }
}
