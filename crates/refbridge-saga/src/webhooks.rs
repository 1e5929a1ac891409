//! The webhook workers: position new events (the sequencer), then deliver each queued event
//! to its endpoints, signed as the Standard Webhooks specification says.
//!
//! - At least once: a delivery is claimed under a lease and done only when the receiver
//!   answers 2xx; a worker killed mid-delivery leaves it to be claimed again when the lease
//!   ends (same `webhook-id`, so receivers can drop the repeat).
//! - In order per referral: storage does not hand out a referral's next event for an
//!   endpoint while an earlier one is pending there.
//! - Backoff with jitter (`RetryPolicy`), a 429's or 503's `Retry-After` honoured; an
//!   endpoint that has failed for `disable_after` is disabled, with an event saying so.
//! - Only to the configured URL, with a deadline, no redirects followed, and never to a
//!   loopback, private, link-local or unique-local address (every address the name resolves
//!   to is checked, and the connection goes to a checked one) unless allowed.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use refbridge_domain::webhook::{WebhookUrl, is_forbidden_target};
use refbridge_storage::{AfterFailure, AttemptResult, DeliveryClaim, Store, now};
use sha2::Sha256;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::retry::RetryPolicy;

/// The most of a receiver's answer kept in the delivery log.
pub const RESPONSE_HEAD_BYTES: usize = 256;

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// This worker's name in leases.
    pub owner: String,
    /// Deliveries made at once.
    pub concurrency: usize,
    /// Deadline of one delivery; shorter than the lease.
    pub request_timeout: Duration,
    /// A claimed delivery is ours for this long.
    pub lease: Duration,
    /// Idle wait between claims when nothing is signalled.
    pub poll_interval: Duration,
    /// How often new events are positioned (a cheap read when there are none).
    pub sequence_every: Duration,
    /// Backoff after a failed attempt (its `max_attempts` is not used: an endpoint is
    /// retried until it is disabled).
    pub retry: RetryPolicy,
    /// An endpoint failing this long is disabled.
    pub disable_after: Duration,
    /// Send to loopback, private and link-local addresses too.
    pub allow_private_targets: bool,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            owner: format!("webhooks-{}", uuid::Uuid::new_v4()),
            concurrency: 4,
            request_timeout: Duration::from_secs(10),
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            sequence_every: Duration::from_millis(100),
            retry: RetryPolicy {
                base: Duration::from_secs(5),
                cap: Duration::from_secs(3600),
                max_attempts: u32::MAX,
            },
            disable_after: Duration::from_secs(24 * 3600),
            allow_private_targets: false,
        }
    }
}

/// `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` under the secret (the
/// base64 after `whsec_`). `None` when the secret is not one of ours.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(secret.strip_prefix("whsec_")?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!("v1,{}", b64.encode(mac.finalize().into_bytes())))
}

/// The `webhook-signature` header: one signature per secret, space-separated.
pub fn signature_header(secrets: &[String], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .filter_map(|s| sign(s, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A name that resolved to an address we do not send to.
#[derive(Debug, thiserror::Error)]
#[error("the receiver's host resolves to a loopback, private or link-local address")]
pub struct RefusedTarget;

/// Resolves like the system, then refuses a name when any of its addresses is forbidden, so
/// that the connection only ever goes to an address that was checked (no second lookup to
/// rebind).
#[derive(Debug, Clone)]
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if !allow && addrs.iter().any(|a| is_forbidden_target(a.ip())) {
                return Err(Box::new(RefusedTarget) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The HTTP client webhooks go out with.
pub fn http_client(cfg: &DeliveryConfig) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(cfg.request_timeout)
        .connect_timeout(cfg.request_timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("refbridge-webhooks/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(GuardedResolver {
            allow_private: cfg.allow_private_targets,
        }))
        .build()
}

/// Runs the sequencer and the deliveries.
pub struct Deliverer {
    store: Store,
    http: reqwest::Client,
    cfg: DeliveryConfig,
    /// A delivery finished: the next event of its referral may be due.
    kick: Notify,
}

impl Deliverer {
    pub fn new(store: Store, cfg: DeliveryConfig) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: http_client(&cfg)?,
            store,
            cfg,
            kick: Notify::new(),
        })
    }

    pub fn config(&self) -> &DeliveryConfig {
        &self.cfg
    }

    /// Positions events and delivers until `shutdown` completes; deliveries under way are
    /// left to finish (or to their lease).
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()> + Send) {
        let slots = Arc::new(Semaphore::new(self.cfg.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        let mut sequenced = Instant::now() - self.cfg.sequence_every;
        let mut signalled = false;
        let signal = self.store.event_signal().clone();
        tokio::pin!(shutdown);
        tracing::info!(owner = %self.cfg.owner, "webhook worker started");
        loop {
            while tasks.try_join_next().is_some() {}
            if signalled || sequenced.elapsed() >= self.cfg.sequence_every {
                signalled = false;
                sequenced = Instant::now();
                if let Err(e) = self.store.sequence_events().await {
                    tracing::warn!(error = %e, "positioning events failed");
                }
            }
            let permit = tokio::select! {
                () = &mut shutdown => break,
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            let woken = signal.notified();
            let kicked = self.kick.notified();
            match self
                .store
                .claim_webhook_delivery(&self.cfg.owner, self.cfg.lease)
                .await
            {
                Ok(Some(claim)) => {
                    let me = self.clone();
                    tasks.spawn(
                        async move {
                            let _permit = permit;
                            me.deliver(claim).await;
                            me.kick.notify_waiters();
                        }
                        .in_current_span(),
                    );
                }
                Ok(None) => {
                    drop(permit);
                    let wait = self.cfg.poll_interval.min(self.cfg.sequence_every);
                    tokio::select! {
                        () = &mut shutdown => break,
                        // An event committed or positioned (this process, or any on
                        // PostgreSQL): position it now.
                        () = woken => signalled = true,
                        () = kicked => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                Err(e) => {
                    drop(permit);
                    tracing::warn!(error = %e, "claiming a webhook delivery failed");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(self.cfg.poll_interval) => {}
                    }
                }
            }
        }
        tasks.detach_all();
    }

    /// One attempt of one claimed delivery, and its record.
    pub async fn deliver(&self, claim: DeliveryClaim) {
        let endpoint = claim.endpoint_id.clone();
        let event = claim.event.id.clone();
        let (result, retry_after) = self.attempt(&claim).await;
        let record = if result.outcome == "delivered" {
            tracing::info!(endpoint_id = %endpoint, event_id = %event, attempt = claim.attempt,
                status = result.status, latency_ms = result.latency.as_millis() as u64, "webhook delivered");
            self.store
                .webhook_delivered(&claim, &result)
                .await
                .map(|()| None)
        } else {
            let attempt = u32::try_from(claim.attempt).unwrap_or(u32::MAX);
            let wait = self.cfg.retry.wait(attempt, retry_after);
            tracing::info!(endpoint_id = %endpoint, event_id = %event, attempt = claim.attempt,
                outcome = result.outcome, status = result.status, wait_ms = wait.as_millis() as u64,
                "webhook delivery failed; will retry");
            let next = now() + chrono::Duration::from_std(wait).unwrap_or_default();
            self.store
                .webhook_failed(&claim, &result, next, self.cfg.disable_after)
                .await
                .map(Some)
        };
        match record {
            Ok(Some(AfterFailure::EndpointDisabled)) => {
                tracing::warn!(endpoint_id = %endpoint, "webhook endpoint disabled: failing for too long");
            }
            Ok(_) => {}
            Err(e) => {
                // The lease ends and the delivery is claimed again: at least once.
                tracing::warn!(endpoint_id = %endpoint, event_id = %event, error = %e,
                    "recording a webhook attempt failed");
            }
        }
    }

    async fn attempt(&self, claim: &DeliveryClaim) -> (AttemptResult, Option<Duration>) {
        let started = Instant::now();
        let fail = |outcome, error: &str| AttemptResult {
            outcome,
            status: None,
            latency: started.elapsed(),
            response_head: None,
            error: Some(error.to_owned()),
        };
        // Checked again at delivery: the setting may have changed since the PUT.
        let url = match WebhookUrl::parse(&claim.url, self.cfg.allow_private_targets) {
            Ok(u) => u,
            Err(e) => return (fail("refused_target", &e.to_string()), None),
        };
        let body = match serde_json::to_vec(&claim.event.payload()) {
            Ok(b) => b,
            Err(e) => return (fail("network_error", &e.to_string()), None),
        };
        let timestamp = now().timestamp();
        let signature = signature_header(&claim.secrets, &claim.event.id, timestamp, &body);
        let sent = self
            .http
            .post(url.url().clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &claim.event.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let mut res = match sent {
            Ok(r) => r,
            Err(e) => {
                let refused =
                    std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |c| {
                        c.source()
                    })
                    .any(|c| c.is::<RefusedTarget>());
                return if refused {
                    (fail("refused_target", &RefusedTarget.to_string()), None)
                } else {
                    (fail("network_error", &network_problem(&e)), None)
                };
            }
        };
        let status = res.status();
        let retry_after = (status.as_u16() == 429 || status.as_u16() == 503)
            .then(|| {
                res.headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs)
            })
            .flatten();
        let mut head = Vec::new();
        while head.len() < RESPONSE_HEAD_BYTES {
            match res.chunk().await {
                Ok(Some(c)) => head.extend_from_slice(&c),
                Ok(None) | Err(_) => break,
            }
        }
        head.truncate(RESPONSE_HEAD_BYTES);
        let response_head = (!head.is_empty()).then(|| String::from_utf8_lossy(&head).into_owned());
        let ok = status.is_success();
        (
            AttemptResult {
                outcome: if ok { "delivered" } else { "http_error" },
                status: Some(status.as_u16()),
                latency: started.elapsed(),
                response_head,
                error: (!ok).then(|| format!("the receiver answered {}", status.as_u16())),
            },
            retry_after,
        )
    }
}

/// What went wrong on the way, in words that carry no URL (reqwest's messages name it).
fn network_problem(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer within the request timeout".to_owned()
    } else if e.is_connect() {
        "could not connect to the receiver".to_owned()
    } else if e.is_redirect() {
        "the receiver redirected (redirects are not followed)".to_owned()
    } else if e.is_body() || e.is_decode() {
        "the answer broke off".to_owned()
    } else {
        "the request failed on the way".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's own example (its test vectors).
    #[test]
    fn signs_as_the_specification_example() {
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(
            sig.as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert_eq!(sign("not-a-secret", "id", 1, b"x"), None);
    }

    /// A one-shot HTTP server on loopback answering 204.
    async fn answering_server() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        port
    }

    /// A host name is checked after DNS, on the connection's own lookup: `localhost`
    /// resolves to loopback and is refused, unless private targets are allowed.
    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused_on_the_way_out() {
        let port = answering_server().await;
        let url = format!("http://localhost:{port}/hook");
        let guarded = http_client(&DeliveryConfig::default()).unwrap();
        let err = guarded.post(&url).send().await.unwrap_err();
        let refused =
            std::iter::successors(Some(&err as &(dyn std::error::Error + 'static)), |c| {
                c.source()
            })
            .any(|c| c.is::<RefusedTarget>());
        assert!(refused, "{err:?}");
        let allowed = http_client(&DeliveryConfig {
            allow_private_targets: true,
            ..DeliveryConfig::default()
        })
        .unwrap();
        assert_eq!(allowed.post(&url).send().await.unwrap().status(), 204);
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(b"HTTP/1.1 307 Temporary Redirect\r\nlocation: http://169.254.169.254/\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let client = http_client(&DeliveryConfig {
            allow_private_targets: true,
            ..DeliveryConfig::default()
        })
        .unwrap();
        let res = client
            .post(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            307,
            "the redirect is the answer (a failure), not followed"
        );
    }

    #[test]
    fn a_header_carries_one_signature_per_secret() {
        let secrets = vec![
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
        ];
        let h = signature_header(&secrets, "id", 1, b"{}");
        let parts: Vec<_> = h.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
        assert_ne!(parts[0], parts[1]);
    }
}
