//! Listeners, the accept loop, the connection cap, per-connection protocol limits and the
//! graceful drain.
//!
//! hyper-util's `GracefulShutdown` does not cover connections served with upgrades and has no
//! deadline of its own, so the drain here is explicit: stop accepting, ask every connection to
//! finish its in-flight requests, and give up after the grace period.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

use crate::drain::Activity;
use crate::proxy::{ConnInfo, Proxy};
use crate::state::Limits;

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

/// Counts open client connections and wakes the drain when the last one closes.
#[derive(Default)]
pub struct Connections {
    open: AtomicUsize,
    idle: Notify,
}

impl Connections {
    /// Open client connections now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    fn try_enter(self: &Arc<Self>, max: usize) -> Option<ConnGuard> {
        let mut cur = self.open.load(Ordering::Relaxed);
        loop {
            if cur >= max {
                return None;
            }
            match self
                .open
                .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Some(ConnGuard(Arc::clone(self))),
                Err(now) => cur = now,
            }
        }
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct ConnGuard(Arc<Connections>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Per-connection protocol settings, read from the snapshot in force when the connection opens.
fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
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
    pub fn start(proxy: Arc<Proxy>, listeners: Vec<TcpListener>) -> Self {
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
    listener: TcpListener,
    conns: Arc<Connections>,
    mut stop: watch::Receiver<bool>,
    draining: watch::Receiver<bool>,
) {
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
        let limits = proxy.state().load().limits.clone();
        let Some(guard) = conns.try_enter(limits.max_connections) else {
            tracing::debug!(%peer, "connection cap reached; answering 503");
            proxy.metrics().connection_rejected();
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let info = ConnInfo { peer, tls: false };
        tokio::spawn(serve_connection(
            Arc::clone(&proxy),
            stream,
            info,
            limits,
            guard,
            draining.clone(),
        ));
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

async fn serve_connection(
    proxy: Arc<Proxy>,
    stream: TcpStream,
    info: ConnInfo,
    limits: Limits,
    _guard: ConnGuard,
    mut draining: watch::Receiver<bool>,
) {
    let _open = proxy.metrics().client_connection();
    let b = builder(&limits);
    let activity = Activity::new();
    let tracker = Arc::clone(&activity);
    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        tracker.track(req.version(), Arc::clone(&proxy).handle(info, req))
    });
    let conn = b.serve_connection_with_upgrades(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopped(&mut draining) => {
            // See `drain`: answer at a request boundary instead of racing keep-alive clients.
            activity.start_draining();
            tokio::select! {
                r = conn.as_mut() => r,
                _ = activity.quiet() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %info.peer, error = %e, "client connection ended with an error");
    }
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
