//! The HTTP server: our own accept loop over hyper's HTTP/1.1 connections, so that slow and
//! idle clients cannot hold the API.
//!
//! - **Header read timeout** (`http.header_read_timeout_ms`, hyper's): a request's head must
//!   arrive within it, from the moment the connection waits for one: after the accept, and
//!   between requests on a kept-alive connection (so it is also the keep-alive idle time).
//!   Past it the connection is closed.
//! - **Body read timeout** (`http.body_read_timeout_ms`): the whole body must arrive within it
//!   after the head, however it trickles; past it the request is answered 408 and the
//!   connection closed.
//! - **Connection cap** (`http.max_connections`). Past it, up to [`SPARE_CONNECTIONS`] more
//!   are served health checks only (`/healthz`, `/readyz`; anything else a 503
//!   `too_many_connections`), each with a short header timeout and no keep-alive; when the
//!   spare ones are all taken, the oldest is closed to make room. So probes answer however
//!   many idle connections are held, and the process holds at most `max_connections +
//!   SPARE_CONNECTIONS` connections.
//! - **Keep-alive** (`http.keep_alive_max_requests`): a connection is closed after that many
//!   requests (`Connection: close` on the last answer).
//! - **Open files**: [`raise_open_file_limit`] lifts the soft limit to the hard one at start-up,
//!   so the cap, not `EMFILE`, is what refuses connections.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tracing::Instrument;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, header};
use axum::response::IntoResponse;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use refbridge_api::{ApiError, BodyReadTimeout};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tower::ServiceExt as _;

use crate::config::HttpSettings;

/// Connections past the cap that are still read, for health checks.
pub const SPARE_CONNECTIONS: usize = 32;

/// The header read timeout of a spare connection (at most the configured one).
const SPARE_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// Routes a spare connection answers.
const HEALTH: [&str; 2] = ["/healthz", "/readyz"];

/// How the server treats its clients (see the module doc).
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
    pub keep_alive_max_requests: usize,
}

impl Limits {
    pub fn from_settings(s: &HttpSettings) -> Self {
        Self {
            header_read_timeout: Duration::from_millis(s.header_read_timeout_ms),
            body_read_timeout: Duration::from_millis(s.body_read_timeout_ms),
            max_connections: s.max_connections,
            keep_alive_max_requests: s.keep_alive_max_requests,
        }
    }
}

impl Default for Limits {
    /// The built-in defaults of `config/default.toml`.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(300),
            max_connections: 512,
            keep_alive_max_requests: 1000,
        }
    }
}

/// Raises the soft open-file limit to the hard one; gives the limit now in force.
pub fn raise_open_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            None
        }
    }
}

/// Serves `app` on `listener` under `limits` until `shutdown` completes, then lets open
/// requests finish.
pub async fn serve(
    app: Router,
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let main = Arc::new(Semaphore::new(limits.max_connections));
    let spare = Spare::default();
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut refused = 0u64;
    let mut refused_logged = Instant::now();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A connection past the cap takes a spare slot, the oldest spare connection giving
        // way when they are all taken: a health probe always gets in, however many idle
        // connections are held.
        let (slot, health_only) = match main.clone().try_acquire_owned() {
            Ok(permit) => (Slot::Main(permit), false),
            Err(_) => {
                refused += 1;
                if refused_logged.elapsed() >= Duration::from_secs(10) {
                    tracing::warn!(
                        connections = refused,
                        max_connections = limits.max_connections,
                        "the connection cap is reached: connections served health checks only"
                    );
                    refused = 0;
                    refused_logged = Instant::now();
                }
                (Slot::Spare(spare.take()), true)
            }
        };
        let _ = stream.set_nodelay(true);
        let header_timeout = if health_only {
            limits.header_read_timeout.min(SPARE_HEADER_TIMEOUT)
        } else {
            limits.header_read_timeout
        };
        let service = ConnService {
            app: app.clone(),
            peer,
            served: Arc::new(AtomicUsize::new(0)),
            max_requests: limits.keep_alive_max_requests,
            body_timeout: limits.body_read_timeout,
            health_only,
        };
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(!health_only)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(
            async move {
                // Errors here are the client's (a timeout, a reset): nothing to report.
                match &slot {
                    Slot::Main(_) => {
                        let _ = conn.await;
                    }
                    Slot::Spare(held) => {
                        tokio::select! {
                            _ = conn => {}
                            () = held.evicted.notified() => {}
                        }
                    }
                }
                drop(slot);
            }
            .in_current_span(),
        );
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// What a connection holds while it is served: a place under the cap, or a spare slot.
enum Slot {
    /// Held, not read: dropping it frees the place.
    Main(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit),
    Spare(SpareSlot),
}

/// A spare connection in the queue: its id, and what evicts it.
type Held = (u64, Arc<Notify>);

/// The spare connections, oldest first; at most [`SPARE_CONNECTIONS`].
#[derive(Clone, Default)]
struct Spare {
    held: Arc<Mutex<VecDeque<Held>>>,
    next: Arc<AtomicU64>,
}

impl Spare {
    /// A spare slot, evicting the oldest spare connection when all are taken.
    fn take(&self) -> SpareSlot {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let evicted = Arc::new(Notify::new());
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.len() >= SPARE_CONNECTIONS {
            if let Some((_, oldest)) = held.pop_front() {
                oldest.notify_one();
            }
        }
        held.push_back((id, evicted.clone()));
        SpareSlot {
            id,
            evicted,
            spare: self.clone(),
        }
    }
}

/// A spare connection's slot: freed when dropped.
struct SpareSlot {
    id: u64,
    evicted: Arc<Notify>,
    spare: Spare,
}

impl Drop for SpareSlot {
    fn drop(&mut self) {
        let mut held = self
            .spare
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.retain(|(id, _)| *id != self.id);
    }
}

/// An accept that failed: out of file descriptors (wait a little, or the loop spins), or a
/// connection that died before it was accepted (nothing to do).
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// One connection's service: the app, each body under the read deadline.
#[derive(Clone)]
struct ConnService {
    app: Router,
    /// The client's address, given to handlers as `ConnectInfo<SocketAddr>` (as axum's
    /// `into_make_service_with_connect_info` would).
    peer: SocketAddr,
    served: Arc<AtomicUsize>,
    max_requests: usize,
    body_timeout: Duration,
    health_only: bool,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let n = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        let last = self.health_only || n >= self.max_requests;
        let refuse = self.health_only && !HEALTH.contains(&req.uri().path());
        let app = self.app.clone();
        let deadline = tokio::time::sleep(self.body_timeout);
        Box::pin(async move {
            let mut res = if refuse {
                ApiError::TooManyConnections.into_response()
            } else {
                let req = req.map(|b| {
                    Body::new(DeadlineBody {
                        inner: b,
                        deadline: Box::pin(deadline),
                    })
                });
                match app.oneshot(req).await {
                    Ok(res) => res,
                    Err(never) => match never {},
                }
            };
            if last {
                res.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(res)
        })
    }
}

/// A request body that fails with [`BodyReadTimeout`] once its deadline has passed.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyReadTimeout))));
        }
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map(|frame| frame.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
