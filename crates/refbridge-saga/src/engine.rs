//! The claim loop: claims a referral's send job under a lease, runs its steps in order, and
//! gives it back. Several jobs run at once; one job's steps never do.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use refbridge_accloud::{AcCloud, BranchId, RevisionGroupId};
use refbridge_domain::event::AttentionReason;
use refbridge_domain::send::StepState;
use refbridge_storage::{Blobs, DoneStep, Lease, SendError, StepRecord, Store, now};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::classify;
use crate::resolve::Resolver;
use crate::retry::RetryPolicy;
use crate::steps::{self, Ctx, Done, Input, Outcome, SendStep, StepCx, with_step};

/// The actor the audit trail shows for what workers do.
pub const ACTOR: &str = "worker";

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This worker's name in leases.
    pub owner: String,
    /// How long a claimed job is ours without renewal. A running job's lease is renewed every
    /// third of it (see [`Engine::keep_lease`]), so this bounds how long a dead worker's jobs
    /// wait before another worker takes them over.
    pub lease: Duration,
    /// Deadline of one ACCloud call.
    pub request_timeout: Duration,
    /// After an unknown outcome, a lookup that finds nothing is trusted only this long after
    /// the last attempt (longer than the request deadline: the request may still be running,
    /// or ACCloud's lists may lag).
    pub settle_delay: Duration,
    /// Idle wait between claims when nothing is due (a wake-up cuts it short).
    pub poll_interval: Duration,
    /// Jobs run at once by this worker.
    pub concurrency: usize,
    pub retry: RetryPolicy,
    pub hq_branch_id: i64,
    pub csi_group: String,
    /// The client attachments folder where outbox uploads land.
    pub attachments_folder: String,
    /// How stale the agency's status of a sent referral may get: idle workers re-read it
    /// (one ACCloud list call) when the last read is older. `None`: never re-read.
    pub agency_check_every: Option<Duration>,
    /// Referrals read per round of agency checks (a round at most every
    /// [`AGENCY_ROUND_EVERY`]): bounds the calls this spends.
    pub agency_check_batch: usize,
    /// How old the stored copy of CSI's trusted network (which approvals are checked
    /// against) may get before a worker reads it again. `None`: never read.
    pub trusted_network_every: Option<Duration>,
}

/// The least time between two rounds of agency checks by one worker.
pub const AGENCY_ROUND_EVERY: Duration = Duration::from_secs(10);

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            owner: format!("worker-{}", uuid::Uuid::new_v4()),
            lease: Duration::from_secs(10),
            request_timeout: Duration::from_secs(20),
            settle_delay: Duration::from_secs(25),
            poll_interval: Duration::from_secs(1),
            concurrency: 4,
            retry: RetryPolicy::default(),
            hq_branch_id: 1000,
            csi_group: "CSI".to_owned(),
            attachments_folder: "Marketplace Documents".to_owned(),
            agency_check_every: Some(Duration::from_secs(600)),
            agency_check_batch: 10,
            trusted_network_every: Some(Duration::from_secs(300)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Send(#[from] SendError),
    #[error(transparent)]
    Storage(#[from] refbridge_storage::StorageError),
    #[error("simulated crash after the remote call of step {0}")]
    Crashed(String),
}

/// Points where a test can make the worker stop dead right after a remote call returns and
/// before its result is committed, as a killed process would.
#[derive(Debug, Default)]
pub struct CrashPoints {
    after_call: Mutex<HashSet<String>>,
}

impl CrashPoints {
    /// The next call of a step of this kind (`client`, `service`, …) crashes once.
    pub fn arm(&self, kind: &str) {
        if let Ok(mut s) = self.after_call.lock() {
            s.insert(kind.to_owned());
        }
    }

    fn take(&self, kind: &str) -> bool {
        self.after_call
            .lock()
            .map(|mut s| s.remove(kind))
            .unwrap_or(false)
    }
}

pub struct Engine {
    store: Store,
    files: Blobs,
    accloud: Arc<dyn AcCloud>,
    cfg: EngineConfig,
    resolver: Resolver,
    wake: Arc<Notify>,
    pub crash_points: CrashPoints,
}

impl Engine {
    pub fn new(store: Store, files: Blobs, accloud: Arc<dyn AcCloud>, cfg: EngineConfig) -> Self {
        Self {
            store,
            files,
            accloud,
            cfg,
            resolver: Resolver::default(),
            wake: Arc::new(Notify::new()),
            crash_points: CrashPoints::default(),
        }
    }

    /// Notified when new work is queued, to cut the idle wait short.
    pub fn with_wake_handle(mut self, wake: Arc<Notify>) -> Self {
        self.wake = wake;
        self
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Claims and runs jobs until `shutdown` completes; jobs under way finish their current
    /// step first.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()> + Send) {
        let slots = Arc::new(Semaphore::new(self.cfg.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        // The agency checks' current round, if any (a set, so that dropping this future stops
        // it too), and when the last one started.
        let mut round = JoinSet::new();
        let mut last_round: Option<Instant> = None;
        tokio::pin!(shutdown);
        // On SQLite one process runs the workers: the leases a predecessor left are released
        // at once rather than waited out. The guard is held while the workers run.
        let _sole = match self.store.take_over_as_sole_worker().await {
            Ok(Some((guard, released))) => {
                if released > 0 {
                    tracing::info!(released, "released the leases of a previous worker process");
                }
                Some(guard)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take over a previous worker's leases");
                None
            }
        };
        tracing::info!(owner = %self.cfg.owner, "send worker started");
        loop {
            while tasks.try_join_next().is_some() {}
            while round.try_join_next().is_some() {}
            // A round of reads now and then (the agency's status of sent referrals, the
            // trusted network), beside the sends, never two at once.
            if (self.cfg.agency_check_every.is_some() || self.cfg.trusted_network_every.is_some())
                && last_round.is_none_or(|t| t.elapsed() >= AGENCY_ROUND_EVERY)
                && round.is_empty()
            {
                last_round = Some(Instant::now());
                let me = self.clone();
                round.spawn(
                    async move {
                        if let Err(e) = me.refresh_trusted_network_once().await {
                            tracing::warn!(error = %e, "reading the trusted network failed");
                        }
                        if let Err(e) = me.check_agency_once().await {
                            tracing::warn!(error = %e, "agency checks failed");
                        }
                    }
                    .in_current_span(),
                );
            }
            let permit = tokio::select! {
                () = &mut shutdown => break,
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            match self
                .store
                .claim_send_job(&self.cfg.owner, self.cfg.lease, ACTOR)
                .await
            {
                Ok(Some(lease)) => {
                    let me = self.clone();
                    tasks.spawn(
                        async move {
                            let _permit = permit;
                            me.process_logged(lease).await;
                        }
                        .in_current_span(),
                    );
                }
                Ok(None) => {
                    drop(permit);
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = self.wake.notified() => {},
                        () = tokio::time::sleep(self.cfg.poll_interval) => {},
                    }
                }
                Err(e) => {
                    drop(permit);
                    tracing::warn!(error = %e, "cannot claim send jobs");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(self.cfg.poll_interval) => {},
                    }
                }
            }
        }
        while tasks.join_next().await.is_some() {}
        while round.join_next().await.is_some() {}
        tracing::info!(owner = %self.cfg.owner, "send worker stopped");
    }

    /// Claims one due job and runs it. `Ok(false)` when nothing was due.
    pub async fn run_once(&self) -> Result<bool, EngineError> {
        match self
            .store
            .claim_send_job(&self.cfg.owner, self.cfg.lease, ACTOR)
            .await?
        {
            Some(lease) => {
                self.process_kept(lease).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Re-reads the agency's status of the sent referrals due a check (see
    /// [`EngineConfig::agency_check_every`]); returns how many were read. A failed read is
    /// logged and waits for the next due time.
    pub async fn check_agency_once(&self) -> Result<usize, EngineError> {
        let Some(every) = self.cfg.agency_check_every else {
            return Ok(0);
        };
        let batch = i64::try_from(self.cfg.agency_check_batch).unwrap_or(i64::MAX);
        let due = self.store.take_agency_checks(every, batch).await?;
        let ac = self.accloud.with_timeout(self.cfg.request_timeout);
        let mut read = 0;
        for check in due {
            let id = check.request_id;
            let Ok(group) = check.revision_group_id.parse().map(RevisionGroupId) else {
                tracing::warn!(request_id = %id, "the referral step's revision group is unreadable");
                continue;
            };
            match steps::wire::latest_revision(ac.as_ref(), group).await {
                Ok(Some(latest)) => {
                    let status = latest.referral.status.as_str();
                    self.store.record_agency_status(id, status, ACTOR).await?;
                    tracing::debug!(request_id = %id, status, "agency status read");
                    read += 1;
                }
                Ok(None) => {
                    tracing::warn!(request_id = %id, "ACCloud lists no revision of this referral")
                }
                Err(e) => {
                    tracing::warn!(request_id = %id, error = %e, "cannot read the agency's status")
                }
            }
        }
        Ok(read)
    }

    /// Reads CSI's trusted network again, and ACCloud's funders and service codes (which the
    /// console offers), when the stored copy is older than
    /// [`EngineConfig::trusted_network_every`] (or was never read); `Ok(true)` when it did.
    /// Several workers may read them at about the same time; the last read wins.
    pub async fn refresh_trusted_network_once(&self) -> Result<bool, EngineError> {
        let Some(every) = self.cfg.trusted_network_every else {
            return Ok(false);
        };
        let last = self.store.trusted_network_read_at().await?;
        let every = chrono::Duration::from_std(every).unwrap_or_default();
        if last.is_some_and(|at| now() - at < every) {
            return Ok(false);
        }
        let ac = self.accloud.with_timeout(self.cfg.request_timeout);
        let members = match refbridge_accloud::lookup::trusted_network(ac.as_ref()).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the trusted network");
                return Ok(false);
            }
        };
        let members: Vec<(String, String)> = members
            .into_iter()
            .map(|o| (o.id.to_string(), o.name))
            .collect();
        self.store.replace_trusted_network(&members).await?;
        tracing::debug!(members = members.len(), "trusted network read");
        let lookup = |e: refbridge_accloud::AcCloudError| {
            tracing::warn!(error = %e, "cannot read ACCloud's funders or service codes");
        };
        match refbridge_accloud::lookup::funders(ac.as_ref(), None).await {
            Ok(list) => {
                let items: Vec<(i64, String)> =
                    list.into_iter().map(|f| (f.id.get(), f.name)).collect();
                self.store
                    .replace_accloud_names(refbridge_storage::FUNDERS, &items)
                    .await?;
            }
            Err(e) => lookup(e),
        }
        match refbridge_accloud::lookup::service_codes(ac.as_ref(), None).await {
            Ok(list) => {
                let items: Vec<(i64, String)> =
                    list.into_iter().map(|c| (c.id.get(), c.name)).collect();
                self.store
                    .replace_accloud_names(refbridge_storage::SERVICE_CODES, &items)
                    .await?;
            }
            Err(e) => lookup(e),
        }
        Ok(true)
    }

    async fn process_logged(&self, lease: Lease) {
        let id = lease.request_id;
        if let Err(e) = self.process_kept(lease).await {
            match e {
                EngineError::Send(SendError::LeaseLost) => {
                    tracing::warn!(request_id = %id, "lease lost; another worker owns this send")
                }
                other => tracing::error!(request_id = %id, error = %other, "send run failed"),
            }
        }
    }

    /// Runs a claimed job ([`Engine::process`]) while keeping its lease; stops it (dropping
    /// a call under way, an unknown outcome for whoever runs the job next) as soon as the lease
    /// is lost.
    pub async fn process_kept(&self, lease: Lease) -> Result<(), EngineError> {
        let keeper = self.keep_lease(lease.clone());
        tokio::select! {
            biased;
            done = self.process(lease) => done,
            lost = keeper => Err(lost),
        }
    }

    /// Renews a running job's lease every third of its length, and returns when the lease is
    /// lost: taken over (its fencing token moved on), or not renewed before it ran out (the
    /// database unreachable): from then on another worker may claim the job. Never returns
    /// while the lease holds.
    async fn keep_lease(&self, mut lease: Lease) -> EngineError {
        let every = self.cfg.lease / 3;
        let mut holds_until = Instant::now() + self.cfg.lease;
        loop {
            tokio::time::sleep(every).await;
            let asked = Instant::now();
            match self.store.renew_lease(&lease, self.cfg.lease).await {
                Ok(renewed) => {
                    lease = renewed;
                    holds_until = asked + self.cfg.lease;
                }
                Err(SendError::LeaseLost) => return EngineError::Send(SendError::LeaseLost),
                Err(e) => {
                    tracing::warn!(request_id = %lease.request_id, error = %e, "cannot renew the lease");
                    if Instant::now() + every >= holds_until {
                        return EngineError::Send(SendError::LeaseLost);
                    }
                }
            }
        }
    }

    /// Runs the steps of one claimed job until it is done, must wait, or needs attention.
    /// The caller keeps the lease ([`Engine::process_kept`]).
    pub async fn process(&self, lease: Lease) -> Result<(), EngineError> {
        let id = lease.request_id;
        let Some(rec) = self.store.referral_to_send(id).await? else {
            return Ok(());
        };
        let Some(approval) = self.store.approval(id).await? else {
            return Ok(());
        };
        let changes = self.store.send_changes(id).await?;
        let records = self.store.send_steps(id).await?;
        // Read the client's recorded uploads only when a step still to do looks among them.
        let claimed = if records
            .iter()
            .any(|r| r.step.kind().finds_among_uploads() && r.state != StepState::Done)
        {
            self.store.delivered_attachments(rec.patient_id).await?
        } else {
            Vec::new()
        };
        let base = Input {
            rec: &rec,
            changes: &changes,
            current_change: 0,
            terms: &approval.terms,
            hq_branch: BranchId(self.cfg.hq_branch_id),
            csi_group: &self.cfg.csi_group,
            attachments_folder: &self.cfg.attachments_folder,
            files_root: &self.files,
            claimed_files: &claimed,
        };
        if records.iter().any(|r| r.state == StepState::InFlight) {
            // A run stopped between a call and its result (its worker died or lost the
            // lease): this claim takes its send over.
            metrics::counter!("refbridge_send_lease_takeovers_total").increment(1);
        }
        let mut ctx = Ctx::default();
        // The last step's result, not committed yet: it goes with the next step's intent (one
        // transaction), or with whatever this run records next. Until then the step is
        // `in_flight` in the store, as if this worker had died after the call: whoever runs
        // it next looks the object up first.
        let mut pending: Option<(i64, Done)> = None;
        for record in records {
            match record.state {
                StepState::Done => {
                    if let Some(result) = &record.result {
                        steps::absorb(&record.step, &mut ctx, result);
                    }
                    continue;
                }
                StepState::Failed => {
                    self.flush(&lease, &mut pending).await?;
                    return Ok(());
                }
                StepState::Skipped | StepState::Replanned => continue,
                StepState::Pending | StepState::InFlight | StepState::Unknown => {}
            }
            if let Some(nb) = record.not_before {
                if nb > now() {
                    self.flush(&lease, &mut pending).await?;
                    self.store.release_send_job(&lease, nb).await?;
                    return Ok(());
                }
            }
            let input = Input {
                current_change: record.change_no,
                ..base
            };
            let outcome = with_step!(&record.step, |s| {
                self.run_step(s, &lease, &record, &input, &ctx, &mut pending)
                    .await?
            });
            if !self
                .record_outcome(&lease, &record, outcome, &mut ctx, &mut pending)
                .await?
            {
                return Ok(());
            }
        }
        let last = pending.as_ref().map(|(position, done)| DoneStep {
            position: *position,
            remote_id: &done.remote_id,
            result: &done.result,
        });
        self.store
            .finish_send_after(&lease, ACTOR, last.as_ref())
            .await?;
        tracing::info!(request_id = %id, "referral sent");
        Ok(())
    }

    /// Commits the result left uncommitted by the last step, if any.
    async fn flush(
        &self,
        lease: &Lease,
        pending: &mut Option<(i64, Done)>,
    ) -> Result<(), EngineError> {
        if let Some((position, done)) = pending.take() {
            self.store
                .step_done(lease, position, &done.remote_id, &done.result)
                .await?;
        }
        Ok(())
    }

    /// Records what one attempt of a step ended with. `Ok(true)`: done, go on with the next
    /// step (its result is left in `pending`, committed with the next step's intent or the
    /// end of the send); `Ok(false)`: the job waits (given back to run later) or needs
    /// attention, committed now with any earlier result still pending.
    async fn record_outcome(
        &self,
        lease: &Lease,
        record: &StepRecord,
        outcome: Outcome,
        ctx: &mut Ctx,
        pending: &mut Option<(i64, Done)>,
    ) -> Result<bool, EngineError> {
        let (id, kind) = (lease.request_id, record.step.kind().as_str());
        let step = |result: &'static str| {
            metrics::counter!("refbridge_send_steps_total", "kind" => kind, "result" => result)
                .increment(1);
        };
        // A result still pending here belongs to an earlier step whose successor made no
        // call (found after an unknown outcome, or stopped before its intent).
        self.flush(lease, pending).await?;
        match outcome {
            Outcome::Done(done) => {
                let remote_id = if record.step.kind().id_may_be_logged() {
                    done.remote_id.as_str()
                } else {
                    "-"
                };
                tracing::info!(request_id = %id, step = kind, position = record.position,
                    remote_id, "send step done");
                steps::absorb(&record.step, ctx, &done.result);
                step("done");
                *pending = Some((record.position, done));
                Ok(true)
            }
            Outcome::Retry {
                state,
                after,
                error,
                count,
            } => {
                let attempts =
                    record.attempts as u32 + u32::from(state == StepState::Pending || count);
                if attempts >= self.cfg.retry.max_attempts {
                    let msg = format!("gave up after {attempts} attempts; last error: {error}");
                    tracing::warn!(request_id = %id, step = kind, "send step retries exhausted");
                    step("retries_exhausted");
                    self.store
                        .step_failed(
                            lease,
                            record.position,
                            &msg,
                            AttentionReason::RetriesExhausted,
                            ACTOR,
                        )
                        .await?;
                    return Ok(false);
                }
                tracing::info!(request_id = %id, step = kind, state = state.as_str(),
                    wait_ms = after.as_millis() as u64, error = %error, "send step will retry");
                step("retry");
                metrics::counter!("refbridge_send_retries_total", "kind" => kind).increment(1);
                let at = now() + chrono::Duration::from_std(after).unwrap_or_default();
                self.store
                    .step_retry(lease, record.position, state, at, &error, count)
                    .await?;
                Ok(false)
            }
            Outcome::Fail(msg) => {
                tracing::warn!(request_id = %id, step = kind, "send step needs attention");
                step("rejected");
                self.store
                    .step_failed(
                        lease,
                        record.position,
                        &msg,
                        AttentionReason::Rejected,
                        ACTOR,
                    )
                    .await?;
                Ok(false)
            }
            Outcome::CancelledByAgency(reason) => {
                tracing::info!(request_id = %id, step = kind, "the agency cancelled the referral");
                step("cancelled_by_agency");
                self.store
                    .cancelled_by_agency(lease, record.position, &reason, ACTOR)
                    .await?;
                Ok(false)
            }
        }
    }

    /// One attempt of a step: after an unknown outcome, look before creating again (a
    /// repeatable call is simply sent again); then prepare, commit the intent with the
    /// natural key, and call.
    async fn run_step<S: SendStep>(
        &self,
        step: &S,
        lease: &Lease,
        record: &StepRecord,
        input: &Input<'_>,
        ctx: &Ctx,
        pending: &mut Option<(i64, Done)>,
    ) -> Result<Outcome, EngineError> {
        let ac = self.accloud.with_timeout(self.cfg.request_timeout);
        let cx = StepCx {
            ac: ac.as_ref(),
            input,
            ctx,
            resolver: &self.resolver,
            retry: &self.cfg.retry,
            settle_delay: self.cfg.settle_delay,
            attempts: u32::try_from(record.attempts).unwrap_or(u32::MAX),
        };
        if matches!(record.state, StepState::InFlight | StepState::Unknown) && !S::REPEATABLE {
            let found = step.find(&cx, record.natural_key.as_ref()).await;
            if let Ok(f) = &found {
                let found = if f.is_some() { "true" } else { "false" };
                metrics::counter!("refbridge_send_unknown_outcome_lookups_total", "found" => found)
                    .increment(1);
            }
            match found {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {
                    if let Some(wait) = self.settling(record) {
                        return Ok(Outcome::Retry {
                            state: StepState::Unknown,
                            after: wait,
                            error: "not found after an unknown outcome; waiting for it to settle before creating again".into(),
                            count: false,
                        });
                    }
                }
                Err(e) => return Ok(classify::lookup_failed(cx.retry, &e, cx.attempt())),
            }
        }
        let request = match step.prepare(&cx).await {
            Ok(Ok(request)) => request,
            Ok(Err(outcome)) => return Ok(outcome),
            Err(e) => return Ok(classify::lookup_failed(cx.retry, &e, cx.attempt())),
        };
        let key = step.natural_key(&cx, &request);
        match pending.take() {
            // The previous step's result and this intent: one transaction.
            Some((position, done)) => {
                let done = DoneStep {
                    position,
                    remote_id: &done.remote_id,
                    result: &done.result,
                };
                self.store
                    .step_done_then_intent(lease, &done, record.position, &key)
                    .await?
            }
            None => self.store.step_intent(lease, record.position, &key).await?,
        }
        let result = step.call(&cx, &request).await;
        let kind = record.step.kind();
        if self.crash_points.take(kind.as_str()) {
            return Err(EngineError::Crashed(kind.as_str().to_owned()));
        }
        Ok(match result {
            Ok(outcome) => outcome,
            Err(e) => classify::create_failed(
                cx.retry,
                &e,
                cx.attempt(),
                step.retries_rejection(cx.attempt()),
                kind.label(),
            ),
        })
    }

    /// After an unknown outcome a lookup that missed is trusted only once the settle delay
    /// has passed since the last attempt: how long is left, if any.
    fn settling(&self, record: &StepRecord) -> Option<Duration> {
        let last = record.last_attempt_at?;
        let ready = last + chrono::Duration::from_std(self.cfg.settle_delay).unwrap_or_default();
        (now() < ready).then(|| (ready - now()).to_std().unwrap_or_default())
    }
}
