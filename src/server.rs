//! Listeners, the accept loop, the connection cap, per-connection protocol limits and the
//! graceful drain.
//!
//! hyper-util's `GracefulShutdown` does not cover connections served with upgrades and has no
//! deadline of its own, so the drain here is explicit: stop accepting, ask every connection to
//! finish its in-flight requests, and give up after the grace period.
//!
//! Layer: server. May import its own layer and request, config, snapshot, observe, clients, domain,
//! policy, wire; never edge, control.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::drain::Activity;
use crate::fast_path::{self, Leave, Outcome, Prefixed};
use crate::metrics::{EvictedAt, TlsMetrics};
use crate::proxy::{ConnInfo, Proxy};
use crate::state::Limits;
use crate::timer::LazyTimer;
use crate::tls::TlsListener;

mod connections;
mod https_redirect;
mod on_wake;
mod reuse;

pub use connections::Connections;
use connections::{ConnGuard, Full};
use https_redirect::redirect_connection;
use on_wake::OnWake;

/// Binds a listening socket the way a proxy that gets restarted needs it: `SO_REUSEADDR` so a
/// restart does not wait out TIME_WAIT, `SO_REUSEPORT` so a new process can bind next to the old
/// one during a handover.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    listen(bind_std(addr)?)
}

/// [`bind`] as a std listener, which can be duplicated and handed to a successor process.
pub fn bind_std(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// A bound (or inherited) std listener, ready for the accept loop.
pub fn listen(listener: std::net::TcpListener) -> std::io::Result<TcpListener> {
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// Per-connection protocol settings, read from the snapshot in force when the connection opens.
fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // One timer per connection: it keeps the connection's armed timer entry (see `timer`).
    let timer = LazyTimer::new();
    b.http1()
        .timer(timer.clone())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    b.http2()
        .timer(timer)
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.max_header_bytes.min(u32::MAX as usize) as u32)
        .initial_stream_window_size(256 * 1024)
        .initial_connection_window_size(1024 * 1024)
        .max_pending_accept_reset_streams(50)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 39\r\nretry-after: 1\r\nconnection: close\r\n\r\ncutover: too many connections, retry\r\n\r\n";

/// A bound listening socket and what it serves.
pub struct Bound {
    /// The socket.
    pub listener: TcpListener,
    /// Index in the snapshot's listeners (for per-listener settings such as HSTS).
    pub index: usize,
    /// What it does with connections.
    pub kind: ListenerKind,
}

/// Plain HTTP, HTTPS, or the plain port that only sends shoppers to HTTPS.
#[derive(Clone)]
pub enum ListenerKind {
    /// Plain HTTP.
    Plain,
    /// TLS with certificates chosen by SNI, reloadable.
    Tls(Arc<TlsListener>, TlsMetrics),
    /// Answers every request with 308 to the same host, path and query over HTTPS.
    RedirectToHttps {
        /// Port of the HTTPS listener (omitted from Location when 443).
        https_port: u16,
    },
}

/// A running set of listeners.
pub struct Server {
    proxy: Arc<Proxy>,
    connections: Arc<Connections>,
    stop: watch::Sender<bool>,
    /// Connections close at their next request boundary once this is true (see `drain`).
    draining: watch::Sender<bool>,
    accept_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Starts accepting on every listener.
    pub fn start(proxy: Arc<Proxy>, listeners: Vec<Bound>) -> Self {
        let (stop, _) = watch::channel(false);
        let (draining, _) = watch::channel(false);
        let connections = Arc::new(Connections::default());
        let accept_tasks = listeners
            .into_iter()
            .map(|l| {
                tokio::spawn(accept_loop(
                    Arc::clone(&proxy),
                    l,
                    Arc::clone(&connections),
                    stop.subscribe(),
                    draining.subscribe(),
                ))
            })
            .collect();
        Server {
            proxy,
            connections,
            stop,
            draining,
            accept_tasks,
        }
    }

    /// Keeps accepting, but every connection closes at its next request boundary: the start of
    /// a drain while a load balancer still sends (`limits.drain_delay`).
    pub fn start_draining(&self) {
        let _ = self.draining.send(true);
    }

    /// Open client connections.
    pub fn connections(&self) -> Arc<Connections> {
        Arc::clone(&self.connections)
    }

    /// Stops accepting, lets in-flight requests finish, and returns when every connection has
    /// closed or the grace period (from the current snapshot) is over. Returns whether it was clean.
    pub async fn drain(self) -> bool {
        let grace = self.proxy.state().load().limits.drain_timeout;
        let _ = self.draining.send(true);
        let _ = self.stop.send(true);
        for t in self.accept_tasks {
            let _ = t.await;
        }
        let open = self.connections.open();
        tracing::info!(
            open_connections = open,
            grace_secs = grace.as_secs_f64(),
            "draining"
        );
        let clean = tokio::time::timeout(grace, self.connections.wait_idle())
            .await
            .is_ok();
        if !clean {
            tracing::warn!(
                open_connections = self.connections.open(),
                "grace period over; cutting the remaining connections"
            );
        }
        clean
    }
}

async fn accept_loop(
    proxy: Arc<Proxy>,
    bound: Bound,
    conns: Arc<Connections>,
    mut stop: watch::Receiver<bool>,
    draining: watch::Receiver<bool>,
) {
    let Bound {
        listener,
        index,
        kind,
    } = bound;
    let local = listener.local_addr().ok();
    let mut stopping = false;
    let mut backlog_left = BACKLOG_TAKEN_MAX;
    loop {
        let accepted = if stopping {
            use futures_util::FutureExt as _;
            if backlog_left == 0 {
                break;
            }
            backlog_left -= 1;
            match listener.accept().now_or_never() {
                Some(Ok(a)) => Ok(a),
                _ => break,
            }
        } else {
            tokio::select! {
                _ = stop.changed() => {
                    stopping = true;
                    continue;
                }
                a = listener.accept() => a,
            }
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(listener = ?local, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let snap = proxy.state().load();
        let limits = snap.limits.clone();
        // Behind trusted proxies every shopper arrives from a handful of addresses: no per-address
        // limit then (the proxies in front enforce their own).
        let per_client = if snap.headers.trust_forwarded {
            0
        } else {
            limits.max_connections_per_client
        };
        drop(snap);
        let guard = match conns.try_enter(limits.max_connections, peer.ip(), per_client) {
            Ok(guard) => guard,
            Err(full) => {
                match full {
                    Full::Total => tracing::debug!(%peer, "connection cap reached; refusing"),
                    Full::Client => {
                        tracing::debug!(%peer, "per-client connection limit reached; refusing")
                    }
                }
                proxy.metrics().connection_rejected();
                // A plain client gets a readable 503; a TLS client cannot, so it is closed.
                if matches!(kind, ListenerKind::Plain) {
                    tokio::spawn(refuse(stream));
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let info = ConnInfo {
            peer,
            tls: matches!(kind, ListenerKind::Tls(..)),
            listener: index,
        };
        let proxy = Arc::clone(&proxy);
        let stop = draining.clone();
        match &kind {
            ListenerKind::Plain => {
                let reset = ResetOnBodyError::dup(&stream);
                tokio::spawn(async move {
                    let failed = serve_connection(proxy, stream, info, limits, guard, stop).await;
                    reset.finish(failed);
                });
            }
            ListenerKind::Tls(tls, metrics) => {
                let acceptor = tls.acceptor();
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    // The handshake gets the same bound as a request head: a client that opens
                    // a socket and says nothing must not hold a connection slot.
                    match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls_stream)) => {
                            // A TLS client already tells a cut from an end: no close_notify.
                            let _ = serve_connection(proxy, tls_stream, info, limits, guard, stop)
                                .await;
                        }
                        Ok(Err(e)) => {
                            metrics.handshake_errors.inc();
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            metrics.handshake_errors.inc();
                            tracing::debug!(%peer, "TLS handshake timed out");
                        }
                    }
                });
            }
            ListenerKind::RedirectToHttps { https_port } => {
                tokio::spawn(redirect_connection(
                    stream,
                    *https_port,
                    limits,
                    guard,
                    stop,
                ));
            }
        }
    }
    tracing::debug!(listener = ?local, "listener closed");
}

/// Connections taken from the backlog once stopping, at most. Closing the listener would reset
/// the connections the kernel already completed; taking them lets them get an answer (with
/// `Connection: close`). Bounded, since a listener shared with a successor may never run dry.
const BACKLOG_TAKEN_MAX: usize = 256;

async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(OVERLOADED).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Makes a response body that failed mid-way end the plain TCP connection with a reset.
///
/// A response whose length the shopper's client cannot check (HTTP/1.0, close-delimited) looks
/// complete when the connection ends with a FIN: `curl` exits 0 with half a page. A reset is an
/// error to every client. hyper owns the socket and closes it with a FIN, so the accept loop keeps
/// a duplicate descriptor of the same socket (one `dup` per connection, not per request): the
/// socket closes when the last descriptor does, and when a body failed this one is closed with
/// `SO_LINGER` 0, which sends the RST.
struct ResetOnBodyError(Option<socket2::Socket>);

impl ResetOnBodyError {
    fn dup(stream: &tokio::net::TcpStream) -> Self {
        #[cfg(unix)]
        {
            use std::os::fd::AsFd as _;
            ResetOnBodyError(
                stream
                    .as_fd()
                    .try_clone_to_owned()
                    .ok()
                    .map(socket2::Socket::from),
            )
        }
        #[cfg(not(unix))]
        {
            let _ = stream;
            ResetOnBodyError(None)
        }
    }

    /// Closes the duplicate, with a reset when `body_failed`.
    fn finish(self, body_failed: bool) {
        if let (Some(socket), true) = (&self.0, body_failed) {
            let _ = socket.set_linger(Some(Duration::ZERO));
        }
    }
}

/// What ended a connection from outside.
enum Outside {
    /// The server drains.
    Draining,
    /// The connection cap chose this idle keep-alive connection for a new one (`reuse`).
    Chosen,
    /// No request within `header_read_timeout` of the accept.
    FirstRequestLate,
}

/// Serves one client connection; returns whether it ended because a response body failed.
async fn serve_connection<I>(
    proxy: Arc<Proxy>,
    stream: I,
    info: ConnInfo,
    limits: Limits,
    guard: ConnGuard,
    mut draining: watch::Receiver<bool>,
) -> bool
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let _open = proxy.metrics().client_connection();
    let accepted = tokio::time::Instant::now();
    let metrics = Arc::clone(proxy.metrics());
    let activity = Activity::new();
    // Whether a request was answered on this connection (the cap gives up only those that
    // answered one, and hyper's first-request deadline ends with it).
    let served = Arc::new(AtomicBool::new(false));
    let reusable = guard
        .0
        .reusable
        .register(Arc::clone(&activity), Arc::clone(&served));
    // Plain HTTP/1 requests are answered by the front until a request is hyper's (see
    // `fast_path`), unless `limits.http1_front` is off.
    let stream = if !limits.http1_front {
        Prefixed::new(BytesMut::new(), stream)
    } else {
        // Polled only when one of them was woken (see `on_wake`): the front looks at it once
        // per request, and a `watch` receiver and a `Notify` polled each time cost ~1,050
        // instructions per request.
        let outside = OnWake::new(async {
            tokio::select! {
                biased;
                () = stopped(&mut draining) => Leave::Drain,
                () = reusable.chosen() => Leave::Evict,
            }
        });
        tokio::pin!(outside);
        let busy = |busy: bool| {
            if busy {
                activity.request_began();
            } else {
                activity.request_ended();
                served.store(true, Ordering::Release);
            }
        };
        match fast_path::serve(&proxy, stream, info, &limits, outside, busy).await {
            Outcome::Closed => return false,
            Outcome::BodyFailed => return true,
            Outcome::Evicted => {
                tracing::debug!(peer = %info.peer, "connection cap reached: closing this idle keep-alive connection for a new one");
                metrics.connection_evicted(EvictedAt::Shopper);
                return false;
            }
            Outcome::HandOff { io, .. } => io,
        }
    };
    let b = builder(&limits);
    let tracker = Arc::clone(&activity);
    // hyper's header timer starts only once the auto builder has sniffed h1 vs h2, and the
    // sniffing waits for bytes with no deadline: a client that connects and sends nothing (or a
    // few bytes of the h2 preface) would hold its connection slot forever. So the first request
    // must reach the service within `header_read_timeout` of the accept.
    let seen = Arc::clone(&served);
    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        // In flight before marked served: `reuse` must never see a served connection with its
        // request not yet counted, and take it for idle.
        let tracked = tracker.track(req.version(), Arc::clone(&proxy).handle(info, req));
        seen.store(true, Ordering::Release);
        tracked
    });
    // Checked before the sleep is polled: once a request was served, this branch is never
    // ready and costs one load per wake-up instead of a timer poll.
    let mut deadline = Box::pin(tokio::time::sleep_until(
        accepted + limits.header_read_timeout,
    ));
    let first_request_deadline = std::future::poll_fn(move |cx| {
        if served.load(Ordering::Relaxed) {
            return std::task::Poll::Pending;
        }
        deadline.as_mut().poll(cx)
    });
    let conn = b.serve_connection_with_upgrades(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    // What ends the connection from outside, polled only when one of them was woken (see
    // `on_wake`), not at each of the connection's own wake-ups.
    let outside = OnWake::new(async {
        tokio::select! {
            biased;
            _ = stopped(&mut draining) => Outside::Draining,
            () = reusable.chosen() => Outside::Chosen,
            () = first_request_deadline => Outside::FirstRequestLate,
        }
    });
    let result = tokio::select! {
        biased;
        r = conn.as_mut() => r,
        outside = outside => match outside {
            Outside::Draining => {
                // See `drain`: answer at a request boundary instead of racing keep-alive
                // clients.
                activity.start_draining();
                tokio::select! {
                    r = conn.as_mut() => r,
                    _ = activity.quiet() => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                }
            }
            Outside::Chosen => {
                tracing::debug!(peer = %info.peer, "connection cap reached: closing this idle keep-alive connection for a new one");
                metrics.connection_evicted(EvictedAt::Shopper);
                conn.as_mut().graceful_shutdown();
                conn.await
            }
            Outside::FirstRequestLate => {
                tracing::debug!(peer = %info.peer, "no request within header_read_timeout; closing");
                return false;
            }
        },
    };
    match result {
        Ok(()) => false,
        Err(e) => {
            tracing::debug!(peer = %info.peer, error = %e, "client connection ended with an error");
            // Our service never fails, so a "user" error is a response body that did.
            e.downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_user)
        }
    }
}

/// The sizes of the request path's futures ([`crate::proxy::sizes`]) and of the future hyper
/// holds per request (the drain's tracker around `Proxy::handle`).
#[cfg(any(test, feature = "testkit"))]
pub fn future_sizes() -> Vec<(&'static str, usize)> {
    type Args = (
        Arc<Activity>,
        Arc<Proxy>,
        ConnInfo,
        http::Request<hyper::body::Incoming>,
    );
    let mut sizes = crate::proxy::sizes::future_sizes();
    sizes.push((
        "service future (drain::Track around Proxy::handle)",
        crate::proxy::sizes::returned(|(a, p, c, r): Args| {
            let version = r.version();
            a.track(version, p.handle(c, r))
        }),
    ));
    sizes
}

/// Resolves once the server is draining, including when it already was (a connection accepted
/// during the drain delay or taken from the backlog after the stop).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
