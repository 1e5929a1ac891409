//! Binding and serving: our own accept loop (hyper HTTP/1.1), so that the
//! drop-after-commit fault can close a connection without a response.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

use crate::app::{ConnectionKiller, SimHandle};
use crate::config::{ConfigError, SimConfig};

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration (or seed file) is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Binding or reading the listener failed.
    #[error("simulator I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// A configured simulator, not yet serving.
pub struct Simulator {
    handle: SimHandle,
}

impl Simulator {
    /// Builds the state from a configuration (reads the seed file, checks
    /// the seed and the fault configuration).
    pub fn new(config: SimConfig) -> Result<Self, SimError> {
        Ok(Self {
            handle: SimHandle::new(config)?,
        })
    }

    /// The in-process control handle.
    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// The router (no socket), e.g. for `tower::ServiceExt::oneshot`.
    pub fn router(&self) -> Router {
        crate::router(self.handle.clone())
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), SimError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let app = self.router();
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        serve_loop(listener, app, stop_rx).await;
        Ok(())
    }

    /// Serves on `listener` in a background task until `shutdown`
    /// completes or the returned [`RunningSim`] is shut down or dropped.
    pub fn spawn(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<RunningSim, SimError> {
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let app = self.router();
        let external = stop_tx.clone();
        tokio::spawn(async move {
            // Ends with the server too (every receiver gone), so a
            // never-completing `shutdown` leaves no task behind.
            tokio::select! {
                () = shutdown => {
                    let _ = external.send(true);
                }
                () = external.closed() => {}
            }
        });
        let task = tokio::spawn(serve_loop(listener, app, stop_rx));
        tracing::info!(%addr, "ACCloud simulator listening");
        Ok(RunningSim {
            addr,
            handle: self.handle,
            stop: stop_tx,
            task: Some(task),
        })
    }
}

/// A simulator serving in the background. Dropping it stops the server.
pub struct RunningSim {
    addr: SocketAddr,
    handle: SimHandle,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningSim")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RunningSim {
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The in-process control handle.
    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// Stops accepting, closes open connections and waits for the server task.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn serve_loop(listener: TcpListener, app: Router, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            break;
        }
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let killer = Arc::new(Notify::new());
            let ext = ConnectionKiller(Arc::clone(&killer));
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ext.clone());
                app.clone().oneshot(req.map(Body::new))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            // Dropping `conn` closes the socket: that is how a fault drops a
            // connection, and how shutdown ends hung requests.
            tokio::select! {
                _ = conn => {}
                () = killer.notified() => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// Builds a simulator and serves it on `127.0.0.1:0` in the background.
pub async fn start(config: SimConfig) -> Result<RunningSim, SimError> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    start_on(listener, config, std::future::pending()).await
}

/// Builds a simulator and serves it on `listener` in the background until
/// `shutdown` completes or the [`RunningSim`] is shut down or dropped.
pub async fn start_on(
    listener: TcpListener,
    config: SimConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<RunningSim, SimError> {
    Simulator::new(config)?.spawn(listener, shutdown)
}

/// Builds a simulator and serves it on `listener` until `shutdown`
/// completes (the foreground form, for `refbridge sim`).
pub async fn serve(
    listener: TcpListener,
    config: SimConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SimError> {
    Simulator::new(config)?.serve(listener, shutdown).await
}
