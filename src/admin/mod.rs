//! The admin listener: metrics, liveness and readiness, on its own socket.
//!
//! It is separate from the data plane so that a scrape or a probe never competes with shoppers for
//! connection slots, and so that it can stay on loopback (`127.0.0.1:9901` by default) while the
//! proxy listens publicly: admin endpoints grow mutations later, and an exposed admin port is how
//! Traefik's `api.insecure` and Envoy's admin interface became incidents.
//!
//! Layer: control. May import its own layer and server, request, config, snapshot, observe,
//! clients, domain, policy, wire; never edge.

pub mod client;
mod router;
mod slots;
// They count requests, which the `no-metrics` benchmark baseline does not.
#[cfg(all(test, not(feature = "no-metrics")))]
mod tests;

pub use router::{body_with_type, text, AdminResponse, HandlerFuture, Router};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::metrics::{self, Metrics};

/// Where the admin listener binds unless configured otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9901";
/// Concurrent admin connections; more are closed at accept. Prometheus, a probe and an operator's
/// curl need a few, and a runaway script must not exhaust file descriptors the data plane needs.
const MAX_CONNECTIONS: usize = 64;
/// A client that has not sent a full request head in this time is disconnected.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for in-flight admin requests (e.g. a scrape) before dropping them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the admin listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Binding the admin address failed.
    #[error("binding the admin listener on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS or library said.
        source: std::io::Error,
    },
}

/// The admin client's address, in every request's extensions: mutations without a configured
/// token are accepted from loopback peers only.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Binds the admin listener, with an error that names the address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, AdminError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AdminError::Bind { addr, source })
}

/// What the admin listener serves from.
pub struct AdminState {
    /// The process metrics.
    pub metrics: Arc<Metrics>,
    /// Owned by the core: true once the config is loaded and the data-plane listeners are up,
    /// false again as soon as draining starts so load balancers stop sending new shoppers.
    pub ready: Arc<AtomicBool>,
    /// Extra routes (status, mutations) added by later features; built-in routes take precedence.
    pub extra: Router,
}

impl AdminState {
    /// State serving `metrics`, reporting readiness from `ready`.
    pub fn new(metrics: Arc<Metrics>, ready: Arc<AtomicBool>) -> Self {
        AdminState {
            metrics,
            ready,
            extra: Router::new(),
        }
    }

    /// Adds routes beyond the built-in ones.
    pub fn with_routes(mut self, routes: Router) -> Self {
        self.extra = self.extra.merge(routes);
        self
    }

    /// The full route table: built-ins first, then the extra routes.
    pub fn router(self) -> Router {
        let metrics = self.metrics;
        let ready = self.ready;
        Router::new()
            .get("/metrics", move |_| {
                let body = metrics.encode();
                async move { body_with_type(StatusCode::OK, metrics::CONTENT_TYPE, body) }
            })
            .get("/healthz", |_| async { text(StatusCode::OK, "ok\n") })
            .get("/readyz", move |_| {
                let is_ready = ready.load(Ordering::Acquire);
                async move {
                    if is_ready {
                        text(StatusCode::OK, "ready\n")
                    } else {
                        text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            })
            .merge(self.extra)
    }
}

/// Serves the admin API on `listener` until `shutdown` completes, then waits (bounded) for requests
/// in progress. Accept errors such as running out of file descriptors are logged and retried rather
/// than ending the listener: losing metrics mid-cutover is worse than a noisy log.
pub async fn serve(listener: TcpListener, state: AdminState, shutdown: impl Future<Output = ()>) {
    let counters = Arc::clone(&state.metrics);
    let router = Arc::new(state.router());
    let graceful = GracefulShutdown::new();
    let slots = slots::Slots::new(MAX_CONNECTIONS);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let slot = match slots.acquire() {
            Ok((slot, evicted)) => {
                if evicted {
                    counters.connection_evicted(metrics::EvictedAt::Admin);
                    tracing::warn!(%peer, "admin connections at their limit ({MAX_CONNECTIONS}): closed the oldest idle one");
                }
                slot
            }
            Err(slots::Refused::AllBusy) => {
                tracing::warn!(%peer, "admin connections at their limit ({MAX_CONNECTIONS}), all answering; closing");
                continue;
            }
        };
        let router = router.clone();
        let counter = slot.counter();
        let service = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(PeerAddr(peer));
            let router = router.clone();
            counter.fetch_add(1, Ordering::AcqRel);
            let busy = slots::Busy::from_counted(Arc::clone(&counter));
            async move {
                let answer = router.dispatch(req).await;
                drop(busy);
                answer
            }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        let task = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "admin connection ended with an error");
            }
        });
        slot.set_abort(task.abort_handle());
        // The slot is freed when the connection ends, however it ends (aborted included).
        tokio::spawn(async move {
            let _ = task.await;
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("admin connections still open after {DRAIN_TIMEOUT:?}; dropping them");
    }
}
