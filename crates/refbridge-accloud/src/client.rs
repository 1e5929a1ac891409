//! [`HttpAcCloud`]: the real client, one `reqwest::Client` (rustls) shared by all clones.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::multipart::{Form, Part};
use reqwest::{Method, RequestBuilder};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::AcCloud;
use crate::error::AcCloudError;
use crate::ids::{AuthorizationId, BranchId, ClientId, ReferralId, ServiceId};
use crate::types::{
    AttachmentUpload, AttachmentUploaded, Authorization, AuthorizationFilter, AuthorizationUpdate,
    CancelReferral, ClientDetails, ClientGroup, ClientRef, ClientUpdate, FileEntry, Funder,
    FunderFilter, MAX_ATTACHMENT_BYTES, MAX_CANCEL_COMMENT_CHARS, NewAuthorization, NewClient,
    NewReferral, NewService, Organization, Page, PageRequest, Referral, ReferralFilter,
    ReferralUpdate, ServiceClientRef, ServiceCode, ServiceDetails, ServiceFilter, ServiceRef,
    ServiceSummary, ServiceUpdate, TrustedNetworkFilter,
};
use crate::wire::{AnyPage, FolderListing, UploadAnswer};

type Result<T> = std::result::Result<T, AcCloudError>;

/// The CSI ACCloud environments named in the integration guide (notes section 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AcCloudEnv {
    /// `https://csidev.uat.alayacare.com`
    Dev,
    /// `https://csiqa.uat.alayacare.com` (not available at the time of the guide)
    Qa,
    /// `https://csi.uat.alayacare.com`
    Uat,
    /// `https://csi.alayacare.com` (not available at the time of the guide)
    Prod,
}

impl AcCloudEnv {
    /// The environment's base URL.
    pub fn base_url(self) -> &'static str {
        match self {
            Self::Dev => "https://csidev.uat.alayacare.com",
            Self::Qa => "https://csiqa.uat.alayacare.com",
            Self::Uat => "https://csi.uat.alayacare.com",
            Self::Prod => "https://csi.alayacare.com",
        }
    }

    /// The environment's name (`dev`, `qa`, `uat`, `prod`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dev => "dev",
            Self::Qa => "qa",
            Self::Uat => "uat",
            Self::Prod => "prod",
        }
    }
}

impl FromStr for AcCloudEnv {
    type Err = AcCloudError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "dev" => Ok(Self::Dev),
            "qa" => Ok(Self::Qa),
            "uat" => Ok(Self::Uat),
            "prod" | "production" => Ok(Self::Prod),
            _ => Err(AcCloudError::InvalidRequest {
                reason: "unknown ACCloud environment (expected dev, qa, uat or prod)".to_owned(),
            }),
        }
    }
}

impl fmt::Display for AcCloudEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Default per-request deadline (connect to end of body).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default connect deadline.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach ACCloud. `Debug` redacts the credentials.
#[derive(Clone, Debug)]
pub struct AcCloudConfig {
    /// Base URL, e.g. [`AcCloudEnv::base_url`] or a simulator's `http://127.0.0.1:port`.
    /// A path prefix is kept.
    pub base_url: Url,
    /// The External API integration's key (Basic-auth user).
    pub api_key: SecretString,
    /// The External API integration's secret (Basic-auth password).
    pub api_secret: SecretString,
    /// Deadline of each request, from connect to the end of the answer's body.
    pub timeout: Duration,
    /// Deadline of the TCP + TLS connect alone.
    pub connect_timeout: Duration,
    /// `User-Agent` header.
    pub user_agent: String,
}

impl AcCloudConfig {
    /// A config with default timeouts. `base_url` must be an absolute `http(s)` URL.
    pub fn new(base_url: &str, api_key: SecretString, api_secret: SecretString) -> Result<Self> {
        let base_url = Url::parse(base_url).map_err(|_| AcCloudError::InvalidRequest {
            reason: "ACCloud base URL is not a valid URL".to_owned(),
        })?;
        if !matches!(base_url.scheme(), "http" | "https") || base_url.cannot_be_a_base() {
            return Err(AcCloudError::InvalidRequest {
                reason: "ACCloud base URL must be an http(s) URL".to_owned(),
            });
        }
        Ok(Self {
            base_url,
            api_key,
            api_secret,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            user_agent: concat!("refbridge-accloud/", env!("CARGO_PKG_VERSION")).to_owned(),
        })
    }

    /// A config for one of the named environments.
    pub fn for_env(
        env: AcCloudEnv,
        api_key: SecretString,
        api_secret: SecretString,
    ) -> Result<Self> {
        Self::new(env.base_url(), api_key, api_secret)
    }
}

struct Inner {
    http: reqwest::Client,
    base_url: Url,
    api_key: SecretString,
    api_secret: SecretString,
}

/// The real ACCloud client. Cheap to clone; clones share the connection pool.
///
/// Every call uses the client's timeout (from connect to the end of the answer's body);
/// [`HttpAcCloud::with_timeout`] (or [`AcCloud::with_timeout`] through the trait) gives a
/// handle with another one, so a worker can keep each call inside its lease.
#[derive(Clone)]
pub struct HttpAcCloud {
    inner: Arc<Inner>,
    timeout: Duration,
}

impl fmt::Debug for HttpAcCloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpAcCloud")
            .field("base_url", &self.inner.base_url.as_str())
            .field("timeout", &self.timeout)
            .field("credentials", &"[REDACTED]")
            .finish()
    }
}

impl HttpAcCloud {
    /// Builds the client (rustls, no redirects, the config's timeouts and `User-Agent`).
    pub fn new(config: AcCloudConfig) -> Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent)
            .connect_timeout(config.connect_timeout)
            // A redirect would turn a POST into a GET or leak credentials: never follow one.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| AcCloudError::InvalidRequest {
                reason: "HTTP client could not be built".to_owned(),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base_url: config.base_url,
                api_key: config.api_key,
                api_secret: config.api_secret,
            }),
            timeout: config.timeout,
        })
    }

    /// A handle on the same connection pool whose calls time out after `timeout`.
    #[must_use]
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            timeout,
        }
    }

    /// The current per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The base URL.
    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    /// The base URL with `segments` appended, each percent-encoded (a `/` inside a segment
    /// becomes `%2F`). An empty last segment gives a trailing `/`.
    fn url<S: AsRef<str>>(&self, segments: &[S]) -> Result<Url> {
        let mut url = self.inner.base_url.clone();
        url.set_query(None);
        url.set_fragment(None);
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| AcCloudError::InvalidRequest {
                    reason: "ACCloud base URL cannot take a path".to_owned(),
                })?;
            path.pop_if_empty();
            for s in segments {
                path.push(s.as_ref());
            }
        }
        Ok(url)
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.inner
            .http
            .request(method, url)
            .basic_auth(
                self.inner.api_key.expose_secret(),
                Some(self.inner.api_secret.expose_secret()),
            )
            .timeout(self.timeout)
    }

    /// Sends and reads the whole answer. Non-2xx answers and transport failures become the
    /// classified [`AcCloudError`]; see the `error` module for the rules.
    async fn send(&self, op: &'static str, req: RequestBuilder) -> Result<(u16, Bytes)> {
        let started = Instant::now();
        let result = self.send_once(op, req, started).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        metrics::counter!("refbridge_accloud_calls_total", "endpoint" => op, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("refbridge_accloud_call_duration_seconds", "endpoint" => op)
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn send_once(
        &self,
        op: &'static str,
        req: RequestBuilder,
        started: Instant,
    ) -> Result<(u16, Bytes)> {
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => {
                let err = AcCloudError::from_transport(&e);
                tracing::warn!(op, elapsed_ms = elapsed_ms(started), error = %err, "ACCloud call failed");
                return Err(err);
            }
        };
        let status = resp.status().as_u16();
        let retry_after = parse_retry_after(resp.headers());
        let body = match resp.bytes().await {
            Ok(body) => body,
            Err(e) => {
                let err = match AcCloudError::from_transport(&e) {
                    AcCloudError::Ambiguous {
                        reason, message, ..
                    } if (200..300).contains(&status) || status >= 500 => AcCloudError::Ambiguous {
                        reason,
                        status: Some(status),
                        message,
                    },
                    // The status alone is a definite answer.
                    _ if !(200..300).contains(&status) => {
                        AcCloudError::from_status(status, retry_after, b"")
                    }
                    other => other,
                };
                tracing::warn!(op, status, elapsed_ms = elapsed_ms(started), error = %err, "ACCloud answer unreadable");
                return Err(err);
            }
        };
        if (200..300).contains(&status) {
            tracing::debug!(
                op,
                status,
                elapsed_ms = elapsed_ms(started),
                "ACCloud call done"
            );
            Ok((status, body))
        } else {
            let err = AcCloudError::from_status(status, retry_after, &body);
            tracing::warn!(op, status, elapsed_ms = elapsed_ms(started), error = %err, "ACCloud call failed");
            Err(err)
        }
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        op: &'static str,
        url: Url,
        query: &[(&'static str, String)],
    ) -> Result<T> {
        let (status, body) = self
            .send(op, self.request(Method::GET, url).query(query))
            .await?;
        decode(status, &body)
    }

    /// GET that maps 404 to `None`.
    async fn get_json_opt<T: DeserializeOwned>(
        &self,
        op: &'static str,
        url: Url,
    ) -> Result<Option<T>> {
        match self.send(op, self.request(Method::GET, url)).await {
            Ok((status, body)) => decode(status, &body).map(Some),
            Err(AcCloudError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        op: &'static str,
        method: Method,
        url: Url,
        body: &B,
    ) -> Result<T> {
        let (status, bytes) = self.send(op, self.request(method, url).json(body)).await?;
        decode(status, &bytes)
    }

    async fn get_page<T: DeserializeOwned>(
        &self,
        op: &'static str,
        url: Url,
        query: &[(&'static str, String)],
        requested_page: u32,
    ) -> Result<Page<T>> {
        let page: AnyPage<T> = self.get_json(op, url, query).await?;
        Ok(page.into_page(requested_page))
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn decode<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| AcCloudError::decode(status, &e))
}

/// `Retry-After` as delta-seconds or an HTTP date (RFC 9110 10.2.3). A date in the past is 0.
pub(crate) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(raw).ok()?;
    let delta = when.signed_duration_since(chrono::Utc::now());
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

fn ext_page(q: &mut Vec<(&'static str, String)>, page: PageRequest) {
    q.push(("page", page.page.to_string()));
    q.push(("count", page.per_page.to_string()));
}

fn market_page(q: &mut Vec<(&'static str, String)>, page: Option<PageRequest>) {
    if let Some(p) = page {
        q.push(("page", p.page.to_string()));
        q.push(("items_per_page", p.per_page.to_string()));
    }
}

fn non_empty<'a>(what: &str, s: &'a str) -> Result<&'a str> {
    if s.trim().is_empty() {
        Err(AcCloudError::InvalidRequest {
            reason: format!("{what} is empty"),
        })
    } else {
        Ok(s)
    }
}

/// Splits a Files API path into segments, refusing `.`/`..` and empty input.
fn file_segments(path: &str) -> Result<Vec<&str>> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs.is_empty() || segs.iter().any(|s| *s == "." || *s == "..") {
        return Err(AcCloudError::InvalidRequest {
            reason: "file path must be a non-empty relative path without . or ..".to_owned(),
        });
    }
    Ok(segs)
}

const PATIENTS: [&str; 4] = ["ext", "api", "v2", "patients"];
const SCHEDULER: [&str; 4] = ["ext", "api", "v2", "scheduler"];
const ACCOUNTING: [&str; 4] = ["ext", "api", "v2", "accounting"];
const FILES: [&str; 4] = ["ext", "api", "v2", "files"];
const OUTBOX: [&str; 4] = ["api", "v1", "alayamarket", "outbox"];

fn path(prefix: &[&str], rest: &[&str]) -> Vec<String> {
    prefix
        .iter()
        .chain(rest.iter())
        .map(|s| (*s).to_owned())
        .collect()
}

#[async_trait]
impl AcCloud for HttpAcCloud {
    fn with_timeout(&self, timeout: Duration) -> Arc<dyn AcCloud> {
        Arc::new(HttpAcCloud::with_timeout(self, timeout))
    }

    #[tracing::instrument(name = "accloud.list_client_groups", skip_all, fields(page = page.page))]
    async fn list_client_groups(
        &self,
        branch_id: Option<BranchId>,
        page: PageRequest,
    ) -> Result<Page<ClientGroup>> {
        let url = self.url(&path(&PATIENTS, &["groups"]))?;
        let mut q = Vec::new();
        ext_page(&mut q, page);
        if let Some(b) = branch_id {
            q.push(("branch_id", b.to_string()));
        }
        self.get_page("list_client_groups", url, &q, page.page)
            .await
    }

    #[tracing::instrument(name = "accloud.create_client", skip_all)]
    async fn create_client(&self, client: &NewClient) -> Result<ClientRef> {
        non_empty("client external_id", &client.external_id)?;
        let url = self.url(&path(&PATIENTS, &["clients"]))?;
        let created: ClientRef = self
            .send_json("create_client", Method::POST, url, client)
            .await?;
        tracing::debug!(client_id = %created.id, "client created");
        Ok(created)
    }

    #[tracing::instrument(name = "accloud.get_client", skip_all, fields(client_id = %id))]
    async fn get_client(&self, id: ClientId) -> Result<Option<ClientDetails>> {
        let url = self.url(&path(&PATIENTS, &["clients", &id.to_string()]))?;
        self.get_json_opt("get_client", url).await
    }

    #[tracing::instrument(name = "accloud.get_client_by_external_id", skip_all)]
    async fn get_client_by_external_id(&self, external_id: &str) -> Result<Option<ClientDetails>> {
        let ext = non_empty("client external_id", external_id)?;
        let url = self.url(&path(&PATIENTS, &["clients", "by_id", ext]))?;
        self.get_json_opt("get_client_by_external_id", url).await
    }

    #[tracing::instrument(name = "accloud.update_client", skip_all, fields(client_id = %id))]
    async fn update_client(&self, id: ClientId, update: &ClientUpdate) -> Result<ClientRef> {
        let url = self.url(&path(&PATIENTS, &["clients", &id.to_string()]))?;
        self.send_json("update_client", Method::PUT, url, update)
            .await
    }

    #[tracing::instrument(name = "accloud.list_funders", skip_all, fields(page = filter.page.page))]
    async fn list_funders(&self, filter: &FunderFilter) -> Result<Page<Funder>> {
        let url = self.url(&path(&ACCOUNTING, &["funders"]))?;
        let mut q = Vec::new();
        if let Some(v) = &filter.name {
            q.push(("funder_name", v.clone()));
        }
        if let Some(v) = &filter.search {
            q.push(("search", v.clone()));
        }
        if let Some(v) = &filter.external_id {
            q.push(("funder_id", v.clone()));
        }
        if let Some(b) = filter.branch_id {
            q.push(("branch_id", b.to_string()));
        }
        ext_page(&mut q, filter.page);
        self.get_page("list_funders", url, &q, filter.page.page)
            .await
    }

    #[tracing::instrument(name = "accloud.list_service_codes", skip_all, fields(page = page.page))]
    async fn list_service_codes(
        &self,
        branch_id: Option<BranchId>,
        page: PageRequest,
    ) -> Result<Page<ServiceCode>> {
        let url = self.url(&path(&SCHEDULER, &["service_codes"]))?;
        let mut q = Vec::new();
        ext_page(&mut q, page);
        if let Some(b) = branch_id {
            q.push(("branch_id", b.to_string()));
        }
        self.get_page("list_service_codes", url, &q, page.page)
            .await
    }

    #[tracing::instrument(name = "accloud.create_service", skip_all, fields(service_external_id = %service.service_id))]
    async fn create_service(&self, service: &NewService) -> Result<ServiceRef> {
        non_empty("service_id", &service.service_id)?;
        let url = self.url(&path(&SCHEDULER, &["services"]))?;
        let created: ServiceRef = self
            .send_json("create_service", Method::POST, url, service)
            .await?;
        tracing::debug!(service_id = %created.id, "service created");
        Ok(created)
    }

    #[tracing::instrument(name = "accloud.get_service", skip_all, fields(service_id = %id))]
    async fn get_service(&self, id: ServiceId) -> Result<Option<ServiceDetails>> {
        let url = self.url(&path(&SCHEDULER, &["services", &id.to_string()]))?;
        self.get_json_opt("get_service", url).await
    }

    #[tracing::instrument(name = "accloud.get_service_by_external_id", skip_all, fields(service_external_id = %service_id))]
    async fn get_service_by_external_id(&self, service_id: &str) -> Result<Option<ServiceDetails>> {
        let ext = non_empty("service_id", service_id)?;
        let url = self.url(&path(&SCHEDULER, &["services", "by_id", ext]))?;
        self.get_json_opt("get_service_by_external_id", url).await
    }

    #[tracing::instrument(name = "accloud.update_service", skip_all, fields(service_id = %id))]
    async fn update_service(&self, id: ServiceId, update: &ServiceUpdate) -> Result<ServiceRef> {
        let url = self.url(&path(&SCHEDULER, &["services", &id.to_string()]))?;
        self.send_json("update_service", Method::PUT, url, update)
            .await
    }

    #[tracing::instrument(name = "accloud.list_services", skip_all, fields(page = filter.page.page))]
    async fn list_services(&self, filter: &ServiceFilter) -> Result<Page<ServiceSummary>> {
        let url = self.url(&path(&SCHEDULER, &["services"]))?;
        let mut q = Vec::new();
        match &filter.client {
            Some(ServiceClientRef::AlayaCare(id)) => {
                q.push(("alayacare_client_id", id.to_string()))
            }
            Some(ServiceClientRef::External(ext)) => q.push(("client_id", ext.clone())),
            None => {}
        }
        for ext in &filter.external_ids {
            q.push(("external_ids", ext.clone()));
        }
        if let Some(s) = &filter.status {
            q.push(("status", s.as_str().to_owned()));
        }
        ext_page(&mut q, filter.page);
        self.get_page("list_services", url, &q, filter.page.page)
            .await
    }

    #[tracing::instrument(name = "accloud.create_authorization", skip_all, fields(client_id = %authorization.client_id))]
    async fn create_authorization(
        &self,
        authorization: &NewAuthorization,
    ) -> Result<Authorization> {
        let url = self.url(&path(&SCHEDULER, &["authorizations"]))?;
        let created: Authorization = self
            .send_json("create_authorization", Method::POST, url, authorization)
            .await?;
        tracing::debug!(authorization_id = %created.id, "authorization created");
        Ok(created)
    }

    #[tracing::instrument(name = "accloud.list_authorizations", skip_all, fields(client_id = ?filter.client_id, page = filter.page.page))]
    async fn list_authorizations(
        &self,
        filter: &AuthorizationFilter,
    ) -> Result<Page<Authorization>> {
        let url = self.url(&path(&SCHEDULER, &["authorizations"]))?;
        let mut q = vec![
            ("start_at_from", filter.start_at_from.to_string()),
            ("start_at_to", filter.start_at_to.to_string()),
        ];
        if let Some(d) = filter.end_at_from {
            q.push(("end_at_from", d.to_string()));
        }
        if let Some(d) = filter.end_at_to {
            q.push(("end_at_to", d.to_string()));
        }
        if let Some(c) = filter.client_id {
            q.push(("client_id", c.to_string()));
        }
        for s in &filter.service_ids {
            q.push(("service_id", s.to_string()));
        }
        if let Some(n) = &filter.authorization_number {
            q.push(("authorization_number", n.clone()));
        }
        ext_page(&mut q, filter.page);
        self.get_page("list_authorizations", url, &q, filter.page.page)
            .await
    }

    #[tracing::instrument(name = "accloud.update_authorization", skip_all, fields(authorization_id = %id))]
    async fn update_authorization(
        &self,
        id: AuthorizationId,
        update: &AuthorizationUpdate,
    ) -> Result<Authorization> {
        let url = self.url(&path(&SCHEDULER, &["authorizations", &id.to_string()]))?;
        self.send_json("update_authorization", Method::PUT, url, update)
            .await
    }

    #[tracing::instrument(name = "accloud.delete_authorization", skip_all, fields(authorization_id = %id))]
    async fn delete_authorization(&self, id: AuthorizationId) -> Result<()> {
        let url = self.url(&path(&SCHEDULER, &["authorizations", &id.to_string()]))?;
        self.send("delete_authorization", self.request(Method::DELETE, url))
            .await
            .map(|_| ())
    }

    #[tracing::instrument(name = "accloud.create_referral", skip_all, fields(service_id = %service_id, supply_persona_id = %referral.supply_persona_id))]
    async fn create_referral(
        &self,
        service_id: ServiceId,
        referral: &NewReferral,
    ) -> Result<Referral> {
        let url = self.url(&path(
            &OUTBOX,
            &["referrals", "from_service", &service_id.to_string()],
        ))?;
        let created: Referral = self
            .send_json("create_referral", Method::POST, url, referral)
            .await?;
        tracing::debug!(referral_id = %created.id(), "referral created");
        Ok(created)
    }

    #[tracing::instrument(name = "accloud.update_referral", skip_all, fields(service_id = %service_id, referral_id = %referral_id))]
    async fn update_referral(
        &self,
        service_id: ServiceId,
        referral_id: ReferralId,
        update: &ReferralUpdate,
    ) -> Result<Referral> {
        if update.revision.reasons.iter().all(|r| r.trim().is_empty()) {
            return Err(AcCloudError::InvalidRequest {
                reason: "a referral revision needs at least one reason".to_owned(),
            });
        }
        let url = self.url(&path(
            &OUTBOX,
            &[
                "referrals",
                "from_service",
                &service_id.to_string(),
                "update",
                &referral_id.to_string(),
            ],
        ))?;
        let created: Referral = self
            .send_json("update_referral", Method::POST, url, update)
            .await?;
        tracing::debug!(new_referral_id = %created.id(), "referral revision created");
        Ok(created)
    }

    #[tracing::instrument(name = "accloud.cancel_referral", skip_all, fields(referral_id = %referral_id, reason_code = %cancel.reason_code))]
    async fn cancel_referral(
        &self,
        referral_id: ReferralId,
        cancel: &CancelReferral,
    ) -> Result<()> {
        if cancel
            .comment
            .as_ref()
            .is_some_and(|c| c.chars().count() > MAX_CANCEL_COMMENT_CHARS)
        {
            return Err(AcCloudError::InvalidRequest {
                reason: format!(
                    "cancel comment is longer than {MAX_CANCEL_COMMENT_CHARS} characters"
                ),
            });
        }
        let url = self.url(&path(
            &OUTBOX,
            &["referrals", &referral_id.to_string(), "cancel"],
        ))?;
        // Marketplace answers 204; ACCloud may answer 200 with a body. Any 2xx is success.
        self.send(
            "cancel_referral",
            self.request(Method::POST, url).json(cancel),
        )
        .await
        .map(|_| ())
    }

    #[tracing::instrument(name = "accloud.list_referrals", skip_all, fields(revision_group_id = ?filter.revision_group_id))]
    async fn list_referrals(&self, filter: &ReferralFilter) -> Result<Page<Referral>> {
        let url = self.url(&path(&OUTBOX, &["referrals"]))?;
        let mut q = Vec::new();
        if let Some(g) = filter.revision_group_id {
            q.push(("revision_group_id", g.to_string()));
        }
        if let Some(r) = filter.revisions {
            q.push(("revisions", r.as_str().to_owned()));
        }
        if let Some(s) = filter.supply_persona_id {
            q.push(("supply_persona_id", s.to_string()));
        }
        if let Some(s) = &filter.status {
            q.push(("status", s.as_str().to_owned()));
        }
        if let Some(c) = &filter.client_outbox_id {
            q.push(("client_outbox_id", c.clone()));
        }
        if let Some(s) = filter.sequence_id {
            q.push(("sequence_id", s.to_string()));
        }
        if let Some(c) = &filter.care_type {
            q.push(("care_type", c.as_str().to_owned()));
        }
        if let Some(r) = &filter.referral_type {
            q.push(("referral_type", r.as_str().to_owned()));
        }
        if let Some(s) = filter.sort_by {
            q.push(("sort_by", s.as_str().to_owned()));
        }
        if let Some(s) = filter.sort_order {
            q.push(("sort_order", s.as_str().to_owned()));
        }
        market_page(&mut q, filter.page);
        let requested = filter.page.map_or(1, |p| p.page);
        self.get_page("list_referrals", url, &q, requested).await
    }

    #[tracing::instrument(name = "accloud.get_referral", skip_all, fields(referral_id = %referral_id))]
    async fn get_referral(&self, referral_id: ReferralId) -> Result<Option<Referral>> {
        let url = self.url(&path(&OUTBOX, &["referrals", &referral_id.to_string()]))?;
        self.get_json_opt("get_referral", url).await
    }

    #[tracing::instrument(name = "accloud.list_trusted_network", skip_all)]
    async fn list_trusted_network(
        &self,
        filter: &TrustedNetworkFilter,
    ) -> Result<Page<Organization>> {
        let url = self.url(&path(&OUTBOX, &["organizations", "trusted_network"]))?;
        let mut q = Vec::new();
        if let Some(n) = &filter.name {
            q.push(("name", n.clone()));
        }
        for id in &filter.supply_persona_ids {
            q.push(("supply_persona_id", id.to_string()));
        }
        market_page(&mut q, filter.page);
        let requested = filter.page.map_or(1, |p| p.page);
        self.get_page("list_trusted_network", url, &q, requested)
            .await
    }

    #[tracing::instrument(name = "accloud.upload_client_attachment", skip_all, fields(referral_id = %referral_id, size))]
    async fn upload_client_attachment(
        &self,
        referral_id: ReferralId,
        upload: &AttachmentUpload,
    ) -> Result<AttachmentUploaded> {
        let name = upload.file_name.as_str();
        if name.trim().is_empty()
            || name
                .chars()
                .any(|c| c.is_control() || c == '/' || c == '\\')
        {
            return Err(AcCloudError::InvalidRequest {
                reason: "attachment file name is empty or has a control character or slash"
                    .to_owned(),
            });
        }
        let file = tokio::fs::File::open(&upload.path).await.map_err(|e| {
            AcCloudError::InvalidRequest {
                reason: format!("attachment file cannot be opened ({})", e.kind()),
            }
        })?;
        let size = file
            .metadata()
            .await
            .map_err(|e| AcCloudError::InvalidRequest {
                reason: format!("attachment file size cannot be read ({})", e.kind()),
            })?
            .len();
        tracing::Span::current().record("size", size);
        if size > MAX_ATTACHMENT_BYTES {
            return Err(AcCloudError::InvalidRequest {
                reason: format!(
                    "attachment is {size} bytes, over the {MAX_ATTACHMENT_BYTES}-byte limit"
                ),
            });
        }
        let part = Part::stream_with_length(reqwest::Body::from(file), size)
            .file_name(name.to_owned())
            .mime_str(
                upload
                    .content_type
                    .as_deref()
                    .unwrap_or("application/octet-stream"),
            )
            .map_err(|_| AcCloudError::InvalidRequest {
                reason: "attachment content type is not a valid MIME type".to_owned(),
            })?;
        let form = Form::new().part("file", part);
        let url = self.url(&path(
            &OUTBOX,
            &["referrals", &referral_id.to_string(), "client_attachment"],
        ))?;
        let (status, body) = self
            .send(
                "upload_client_attachment",
                self.request(Method::POST, url).multipart(form),
            )
            .await?;
        let answer: UploadAnswer = decode(status, &body)?;
        Ok(AttachmentUploaded {
            filepath: answer.filepath,
            size,
        })
    }

    #[tracing::instrument(name = "accloud.list_client_files", skip_all, fields(client_id = %client_id))]
    async fn list_client_files(
        &self,
        client_id: ClientId,
        folder: &str,
    ) -> Result<Option<Vec<FileEntry>>> {
        let id = client_id.to_string();
        let mut segs: Vec<&str> = vec!["client", &id];
        segs.extend(file_segments(folder)?);
        // The trailing `/` makes it a folder (Files API remark).
        segs.push("");
        let url = self.url(&path(&FILES, &segs))?;
        let listing: Option<FolderListing> = self.get_json_opt("list_client_files", url).await?;
        Ok(listing.map(FolderListing::into_entries))
    }

    #[tracing::instrument(name = "accloud.download_client_file", skip_all, fields(client_id = %client_id))]
    async fn download_client_file(
        &self,
        client_id: ClientId,
        file_path: &str,
    ) -> Result<Option<Bytes>> {
        let id = client_id.to_string();
        let mut segs: Vec<&str> = vec!["client", &id];
        segs.extend(file_segments(file_path)?);
        let url = self.url(&path(&FILES, &segs))?;
        match self
            .send("download_client_file", self.request(Method::GET, url))
            .await
        {
            Ok((_, body)) => Ok(Some(body)),
            Err(AcCloudError::NotFound { .. }) => Ok(None),
            // Documented as "400 File not found" with body code 404 (notes 10.1 \[CONFLICT\]).
            Err(AcCloudError::Rejected {
                status: 400,
                code: Some(code),
                ..
            }) if code == "404" => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> HttpAcCloud {
        let cfg = AcCloudConfig::new(
            base,
            SecretString::from("key-123"),
            SecretString::from("secret-456"),
        )
        .unwrap();
        HttpAcCloud::new(cfg).unwrap()
    }

    #[test]
    fn envs_map_to_the_guide_hosts() {
        assert_eq!(
            AcCloudEnv::Dev.base_url(),
            "https://csidev.uat.alayacare.com"
        );
        assert_eq!(AcCloudEnv::Qa.base_url(), "https://csiqa.uat.alayacare.com");
        assert_eq!(AcCloudEnv::Uat.base_url(), "https://csi.uat.alayacare.com");
        assert_eq!(AcCloudEnv::Prod.base_url(), "https://csi.alayacare.com");
        for env in [
            AcCloudEnv::Dev,
            AcCloudEnv::Qa,
            AcCloudEnv::Uat,
            AcCloudEnv::Prod,
        ] {
            assert_eq!(env.as_str().parse::<AcCloudEnv>().unwrap(), env);
            assert!(
                AcCloudConfig::for_env(env, SecretString::from("k"), SecretString::from("s"))
                    .is_ok()
            );
        }
        assert!("staging".parse::<AcCloudEnv>().is_err());
    }

    #[test]
    fn debug_redacts_credentials() {
        let c = client("http://127.0.0.1:9");
        let s = format!("{c:?}");
        assert!(!s.contains("key-123") && !s.contains("secret-456"), "{s}");
        let cfg = AcCloudConfig::new(
            "http://x",
            SecretString::from("key-123"),
            SecretString::from("secret-456"),
        )
        .unwrap();
        let s = format!("{cfg:?}");
        assert!(!s.contains("key-123") && !s.contains("secret-456"), "{s}");
    }

    #[test]
    fn urls_keep_a_prefix_and_encode_segments() {
        let c = client("http://h:1/prefix/");
        let u = c
            .url(&path(&PATIENTS, &["clients", "by_id", "a/b c?d"]))
            .unwrap();
        assert_eq!(
            u.as_str(),
            "http://h:1/prefix/ext/api/v2/patients/clients/by_id/a%2Fb%20c%3Fd"
        );
        let u = c
            .url(&path(&FILES, &["client", "7", "Marketplace Documents", ""]))
            .unwrap();
        assert_eq!(
            u.as_str(),
            "http://h:1/prefix/ext/api/v2/files/client/7/Marketplace%20Documents/"
        );
    }

    #[test]
    fn bad_base_urls_are_refused() {
        let k = || SecretString::from("k");
        assert!(AcCloudConfig::new("not a url", k(), k()).is_err());
        assert!(AcCloudConfig::new("ftp://h", k(), k()).is_err());
        assert!(AcCloudConfig::new("mailto:a@b", k(), k()).is_err());
    }

    #[test]
    fn file_paths_refuse_dot_segments() {
        assert!(file_segments("a/../b").is_err());
        assert!(file_segments("/").is_err());
        assert_eq!(
            file_segments("/Marketplace Documents/x.pdf").unwrap(),
            ["Marketplace Documents", "x.pdf"]
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "12".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(12)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(parse_retry_after(&h), Some(Duration::ZERO));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        h.insert(RETRY_AFTER, later.parse().unwrap());
        let d = parse_retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(parse_retry_after(&h), None);
    }
}
