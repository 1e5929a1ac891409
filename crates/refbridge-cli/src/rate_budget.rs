//! The ACCloud rate budget shared by every process: a decorator of [`AcCloud`] that takes a
//! slot from a budget kept in the database before each call, and that blocks every process
//! until a `Retry-After` has passed when any one of them is told to slow down.
//!
//! - Calls are spaced by `1.25 s / max_requests_per_second` (slots reserved atomically in the
//!   `rate_budget` row), so no one-second window holds more calls than the budget, however
//!   many processes share it: the extra quarter absorbs up to 250 ms of difference in the time
//!   calls take to reach ACCloud (scheduling on a loaded machine, connections), which would
//!   otherwise let a few calls too many into a window (a 10 % margin let 63 calls into one
//!   second of a 60/s budget in the chaos test on 2 cores). `0` means unlimited: only `Retry-After` blocks.
//! - A 429 (or 503 with `Retry-After`) seen by one process moves the budget's block forward;
//!   every process waits for it before its next call.
//! - The wait counts against the call's deadline: when the wait leaves
//!   too little of it, the call is not made and reports [`AcCloudError::Unavailable`] (nothing
//!   was sent), which the worker retries later.
//! - Without the database the call is not made either (`Unavailable`).
//!
//! Clocks: slots are microseconds since the epoch from each process's clock; processes on
//! different machines need synchronised clocks (NTP), as leases already do.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use refbridge_accloud::*;
use refbridge_storage::Store;

/// The budget's row name.
pub const ACCLOUD_BUDGET: &str = "accloud";

/// One second and the margin for delays on the way, in microseconds.
const WINDOW_US: i64 = 1_250_000;

/// Shortest call worth making after a wait.
const MIN_CALL: Duration = Duration::from_millis(200);

/// Pause when a 429 carries no `Retry-After`.
const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

/// A budget shared through the database.
#[derive(Debug, Clone)]
pub struct Budget {
    store: Store,
    name: String,
    /// Microseconds between two calls; 0 = unlimited.
    interval_us: i64,
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl Budget {
    /// `requests_per_second` = 0: unlimited (only `Retry-After` blocks).
    pub fn new(store: Store, name: &str, requests_per_second: u32) -> Self {
        Self {
            store,
            name: name.to_owned(),
            interval_us: if requests_per_second == 0 {
                0
            } else {
                (WINDOW_US / i64::from(requests_per_second)).max(1)
            },
        }
    }

    /// Waits for this call's slot. `Ok(true)` when it had to wait.
    async fn take(&self) -> Result<bool, refbridge_storage::StorageError> {
        let mut waited = false;
        loop {
            let now = now_us();
            let slot = if self.interval_us > 0 {
                self.store
                    .rate_reserve(&self.name, now, self.interval_us)
                    .await?
            } else {
                self.store.rate_blocked_until(&self.name).await?.max(now)
            };
            if slot <= now {
                return Ok(waited);
            }
            let wait = Duration::from_micros(u64::try_from(slot - now).unwrap_or_default());
            tracing::debug!(
                wait_ms = wait.as_millis() as u64,
                "waiting for the ACCloud rate budget"
            );
            tokio::time::sleep(wait).await;
            waited = true;
            // Another process may have been told to slow down while we slept.
            if self.store.rate_blocked_until(&self.name).await? <= now_us() {
                return Ok(true);
            }
        }
    }

    /// Every process waits until `after` from now.
    async fn block(&self, after: Duration) {
        let until = now_us() + i64::try_from(after.as_micros()).unwrap_or(i64::MAX / 2);
        tracing::warn!(
            pause_ms = after.as_millis() as u64,
            "ACCloud asked to slow down; pausing every worker"
        );
        if let Err(e) = self.store.rate_block(&self.name, until).await {
            tracing::warn!(error = %e, "cannot record the ACCloud pause");
        }
    }
}

/// [`AcCloud`] behind the shared [`Budget`].
pub struct RateBudgeted {
    inner: Arc<dyn AcCloud>,
    budget: Arc<Budget>,
    /// The deadline of this handle's calls, when set by `with_timeout`.
    timeout: Option<Duration>,
}

impl RateBudgeted {
    pub fn new(inner: Arc<dyn AcCloud>, budget: Budget) -> Self {
        Self {
            inner,
            budget: Arc::new(budget),
            timeout: None,
        }
    }

    async fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(Arc<dyn AcCloud>) -> Fut + Send,
        Fut: Future<Output = Result<T>> + Send,
        T: Send,
    {
        let start = Instant::now();
        let waited = match self.budget.take().await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "rate budget unavailable; call not made");
                return Err(AcCloudError::Unavailable {
                    kind: "rate budget unavailable",
                });
            }
        };
        let ac = match (waited, self.timeout) {
            (true, Some(t)) => {
                let left = t.saturating_sub(start.elapsed());
                if left < MIN_CALL {
                    return Err(AcCloudError::Unavailable {
                        kind: "rate budget wait outlasted the deadline",
                    });
                }
                self.inner.with_timeout(left)
            }
            _ => self.inner.clone(),
        };
        let result = f(ac).await;
        if let Err(AcCloudError::RateLimited { retry_after, .. }) = &result {
            metrics::counter!("refbridge_accloud_rate_limited_total").increment(1);
            self.budget
                .block(retry_after.unwrap_or(DEFAULT_PAUSE))
                .await;
        }
        result
    }
}

#[async_trait]
impl AcCloud for RateBudgeted {
    fn with_timeout(&self, timeout: Duration) -> Arc<dyn AcCloud> {
        Arc::new(RateBudgeted {
            inner: self.inner.with_timeout(timeout),
            budget: self.budget.clone(),
            timeout: Some(timeout),
        })
    }

    async fn list_client_groups(
        &self,
        branch_id: Option<BranchId>,
        page: PageRequest,
    ) -> Result<Page<ClientGroup>> {
        self.call(move |ac| async move { ac.list_client_groups(branch_id, page).await })
            .await
    }

    async fn create_client(&self, client: &NewClient) -> Result<ClientRef> {
        self.call(move |ac| async move { ac.create_client(client).await })
            .await
    }

    async fn get_client(&self, id: ClientId) -> Result<Option<ClientDetails>> {
        self.call(move |ac| async move { ac.get_client(id).await })
            .await
    }

    async fn get_client_by_external_id(&self, external_id: &str) -> Result<Option<ClientDetails>> {
        self.call(move |ac| async move { ac.get_client_by_external_id(external_id).await })
            .await
    }

    async fn update_client(&self, id: ClientId, update: &ClientUpdate) -> Result<ClientRef> {
        self.call(move |ac| async move { ac.update_client(id, update).await })
            .await
    }

    async fn list_funders(&self, filter: &FunderFilter) -> Result<Page<Funder>> {
        self.call(move |ac| async move { ac.list_funders(filter).await })
            .await
    }

    async fn list_service_codes(
        &self,
        branch_id: Option<BranchId>,
        page: PageRequest,
    ) -> Result<Page<ServiceCode>> {
        self.call(move |ac| async move { ac.list_service_codes(branch_id, page).await })
            .await
    }

    async fn create_service(&self, service: &NewService) -> Result<ServiceRef> {
        self.call(move |ac| async move { ac.create_service(service).await })
            .await
    }

    async fn get_service(&self, id: ServiceId) -> Result<Option<ServiceDetails>> {
        self.call(move |ac| async move { ac.get_service(id).await })
            .await
    }

    async fn get_service_by_external_id(&self, service_id: &str) -> Result<Option<ServiceDetails>> {
        self.call(move |ac| async move { ac.get_service_by_external_id(service_id).await })
            .await
    }

    async fn update_service(&self, id: ServiceId, update: &ServiceUpdate) -> Result<ServiceRef> {
        self.call(move |ac| async move { ac.update_service(id, update).await })
            .await
    }

    async fn list_services(&self, filter: &ServiceFilter) -> Result<Page<ServiceSummary>> {
        self.call(move |ac| async move { ac.list_services(filter).await })
            .await
    }

    async fn create_authorization(
        &self,
        authorization: &NewAuthorization,
    ) -> Result<Authorization> {
        self.call(move |ac| async move { ac.create_authorization(authorization).await })
            .await
    }

    async fn list_authorizations(
        &self,
        filter: &AuthorizationFilter,
    ) -> Result<Page<Authorization>> {
        self.call(move |ac| async move { ac.list_authorizations(filter).await })
            .await
    }

    async fn update_authorization(
        &self,
        id: AuthorizationId,
        update: &AuthorizationUpdate,
    ) -> Result<Authorization> {
        self.call(move |ac| async move { ac.update_authorization(id, update).await })
            .await
    }

    async fn delete_authorization(&self, id: AuthorizationId) -> Result<()> {
        self.call(move |ac| async move { ac.delete_authorization(id).await })
            .await
    }

    async fn create_referral(
        &self,
        service_id: ServiceId,
        referral: &NewReferral,
    ) -> Result<Referral> {
        self.call(move |ac| async move { ac.create_referral(service_id, referral).await })
            .await
    }

    async fn update_referral(
        &self,
        service_id: ServiceId,
        referral_id: ReferralId,
        update: &ReferralUpdate,
    ) -> Result<Referral> {
        self.call(
            move |ac| async move { ac.update_referral(service_id, referral_id, update).await },
        )
        .await
    }

    async fn cancel_referral(
        &self,
        referral_id: ReferralId,
        cancel: &CancelReferral,
    ) -> Result<()> {
        self.call(move |ac| async move { ac.cancel_referral(referral_id, cancel).await })
            .await
    }

    async fn list_referrals(&self, filter: &ReferralFilter) -> Result<Page<Referral>> {
        self.call(move |ac| async move { ac.list_referrals(filter).await })
            .await
    }

    async fn get_referral(&self, referral_id: ReferralId) -> Result<Option<Referral>> {
        self.call(move |ac| async move { ac.get_referral(referral_id).await })
            .await
    }

    async fn list_trusted_network(
        &self,
        filter: &TrustedNetworkFilter,
    ) -> Result<Page<Organization>> {
        self.call(move |ac| async move { ac.list_trusted_network(filter).await })
            .await
    }

    async fn upload_client_attachment(
        &self,
        referral_id: ReferralId,
        upload: &AttachmentUpload,
    ) -> Result<AttachmentUploaded> {
        self.call(move |ac| async move { ac.upload_client_attachment(referral_id, upload).await })
            .await
    }

    async fn list_client_files(
        &self,
        client_id: ClientId,
        folder: &str,
    ) -> Result<Option<Vec<FileEntry>>> {
        self.call(move |ac| async move { ac.list_client_files(client_id, folder).await })
            .await
    }

    async fn download_client_file(&self, client_id: ClientId, path: &str) -> Result<Option<Bytes>> {
        self.call(move |ac| async move { ac.download_client_file(client_id, path).await })
            .await
    }
}
