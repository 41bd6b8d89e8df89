//! cutover's own HTTP/1.1 connection pool.
//!
//! Why not hyper-util's legacy `Client`: on the HTTP/1.1 path it hashed its pool key twice per
//! request, moved a large `send_request` future around, spawned a task per request to put the
//! connection back, and consumed the request, so the proxy cloned every idempotent request's
//! headers just in case a connect failure had to be retried. A storefront is one origin, so this
//! pool needs no key at all: one idle stack per [`super::Upstream`]. Its connections are
//! [`h1::Conn`]s, driven from the request's own task (see that module for why).
//!
//! - Checkout pops the most recently used idle connection (LIFO keeps the warmest sockets busy
//!   and lets the rest age out). Connections idle longer than `idle_timeout` are dropped there,
//!   and the oldest one at each checkin: lazily, with no timer per request or per connection.
//!   A connection the storefront has closed (or sent anything on while idle) is noticed at
//!   checkout, without a system call.
//! - How many idle connections are kept follows the recent peak of requests in flight, within
//!   the cap ([`super::sizing`] says why): a checkin beyond that closes the oldest. One reaper
//!   task per pool (started by its first connect, ended when the pool is dropped) ticks every
//!   half peak window and closes what the decayed peak and `idle_timeout` no longer cover, so a
//!   burst's connections go away once it is over even when no request comes to close them.
//! - Counters for the metrics: connections opened, and requests on a reused connection vs on a
//!   new one (their ratio is the churn an operator alerts on). Plain atomics, read at scrape.
//! - A connection goes back when its response body ends (or is dropped at its end), from
//!   [`ResponseBody`] itself: no task per request. Responses with `Connection: close`, HTTP/1.0
//!   responses, bodies delimited by the end of the connection, and a request body the
//!   storefront answered before it was all sent never go back.
//! - The connection is obtained before the request is sent, so a connect failure can be retried
//!   without a copy of the request. A pooled connection that fails before any byte of the
//!   response arrives was closed by the storefront while idle (the race the checkout test
//!   cannot see); a bodyless idempotent request is then sent once more on a fresh connection.
//! - Upgrade requests (WebSocket) go through hyper's connection-level client on a connection of
//!   their own, which hands the socket over to the tunnel on a 101.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::UPGRADE;
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tower_service::Service;

use super::h1::{self, Conn};
use super::sizing::{Sizing, Window};
use super::{Retry, UpstreamError};
use crate::body::{BoxError, UpstreamBody};
use crate::headers::outgoing::Outgoing;

/// An idle connection and when it became idle.
struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// The idle connections, oldest at the front, and the peak window (both under one lock).
#[derive(Default)]
struct Stack {
    conns: VecDeque<Idle>,
    window: Window,
}

/// The HTTP/1.1 connections to one storefront.
pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority/`, what the connector resolves and connects to.
    target: Uri,
    idle: Mutex<Stack>,
    sizing: Sizing,
    idle_timeout: Duration,
    reaper: AtomicBool,
    opened: AtomicU64,
    on_reused: AtomicU64,
    on_new: AtomicU64,
}

/// A pool's counters at one moment, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolCounts {
    /// Connections opened to the storefront (each is one the storefront accepted).
    pub opened: u64,
    /// Responses received on a connection that had served a request before.
    pub reused: u64,
    /// Responses received on a connection opened for that request.
    pub new: u64,
    /// Idle connections kept now.
    pub idle: u64,
    /// How many idle connections the pool would keep now: the recent peak within the cap.
    pub target: u64,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("target", &self.target)
            .field("idle", &self.idle_count())
            .finish()
    }
}

impl Pool {
    /// A pool connecting to `target` (`scheme://authority/`) through `connector`, keeping at
    /// most `max_idle` idle connections and fewer when the peak over `peak_window` was lower.
    pub fn new(
        connector: HttpsConnector<HttpConnector>,
        target: Uri,
        max_idle: usize,
        idle_timeout: Duration,
        peak_window: Duration,
    ) -> Self {
        Pool {
            connector,
            target,
            idle: Mutex::new(Stack::default()),
            sizing: Sizing::new(max_idle, peak_window),
            idle_timeout,
            reaper: AtomicBool::new(false),
            opened: AtomicU64::new(0),
            on_reused: AtomicU64::new(0),
            on_new: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Stack> {
        // Nothing panics while holding it; a poisoned stack is still a valid stack.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Idle connections currently kept (for tests and debugging).
    pub fn idle_count(&self) -> usize {
        self.lock().conns.len()
    }

    /// The counters and gauges, for a scrape.
    pub fn counts(&self) -> PoolCounts {
        let (idle, target) = {
            let mut stack = self.lock();
            let target = self.sizing.target(&mut stack.window, Instant::now());
            (stack.conns.len(), target)
        };
        PoolCounts {
            opened: self.opened.load(Relaxed),
            reused: self.on_reused.load(Relaxed),
            new: self.on_new.load(Relaxed),
            idle: idle as u64,
            target: target as u64,
        }
    }

    /// Sends `req`, on a pooled connection when there is one. A failed connect, or a pooled
    /// connection found closed before any answer, is tried once more when `retry` allows.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<UpstreamBody>,
        outgoing: &Outgoing<'_>,
        retry: Retry,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        if req.headers().contains_key(UPGRADE) {
            outgoing.apply(req.headers_mut());
            return Box::pin(self.send_upgrade(req, retry)).await;
        }
        let (parts, body) = req.into_parts();
        let mut lease = Lease::take(&self.sizing);
        // Connecting is boxed, here and below: its futures (TCP, TLS) are kilobytes, and inline
        // they would be part of every request's future, pooled or not, and copied with it.
        let (mut conn, mut reused) = match self.checkout() {
            Some(conn) => (conn, true),
            None => (Box::pin(self.connect(retry)).await?, false),
        };
        let head = match conn.send(&parts, Some(outgoing), body).await {
            Ok(head) => head,
            Err(e) if reused && retry.again() && !conn.received() => {
                tracing::debug!(error = %e, "pooled storefront connection was closed; sending on a new one");
                conn = Box::pin(self.connect(retry)).await?;
                reused = false;
                conn.send(&parts, Some(outgoing), UpstreamBody::Empty)
                    .await
                    .map_err(UpstreamError::H1)?
            }
            Err(e) => return Err(UpstreamError::H1(e)),
        };
        if reused {
            &self.on_reused
        } else {
            &self.on_new
        }
        .fetch_add(1, Relaxed);
        // From here the response body holds the lease and ends it.
        lease.keep();
        let mut resp = Response::new(ResponseBody {
            inner: Inner::H1 {
                body: h1::Body::new(conn, head.framing, head.reusable),
                pool: Some(Arc::clone(self)),
                reusable: head.reusable,
            },
        });
        *resp.status_mut() = head.status;
        *resp.version_mut() = head.version;
        *resp.headers_mut() = head.headers;
        Ok(resp)
    }

    /// An upgrade request, on a connection of its own that hyper hands over to the tunnel.
    async fn send_upgrade(
        &self,
        req: Request<UpstreamBody>,
        retry: Retry,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        let io = self.connect_io(retry).await?;
        self.opened.fetch_add(1, Relaxed);
        self.on_new.fetch_add(1, Relaxed);
        let (mut tx, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| UpstreamError::Connect(Box::new(e)))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upgraded storefront connection ended with an error");
            }
        });
        let resp = tx.send_request(req).await.map_err(UpstreamError::Send)?;
        Ok(resp.map(ResponseBody::unpooled))
    }

    /// The most recently used idle connection that is still usable.
    fn checkout(&self) -> Option<Box<Conn>> {
        loop {
            let mut conn = self.pop()?;
            if conn.idle_is_usable() {
                return Some(conn);
            }
        }
    }

    fn pop(&self) -> Option<Box<Conn>> {
        let now = Instant::now();
        let mut stack = self.lock();
        let c = stack.conns.pop_back()?;
        if now.saturating_duration_since(c.since) >= self.idle_timeout {
            // LIFO: everything below has been idle longer still. Dropped outside the lock.
            let stale = std::mem::take(&mut stack.conns);
            drop(stack);
            drop((c, stale));
            return None;
        }
        Some(c.conn)
    }

    /// Puts a connection whose exchange ended back on top of the stack (its request still
    /// counts as in flight: the caller ends the lease after this).
    fn checkin(&self, conn: Box<Conn>) {
        if self.sizing.cap() == 0 {
            return;
        }
        let now = Instant::now();
        let mut stack = self.lock();
        let keep = self.sizing.target(&mut stack.window, now);
        // The oldest connection makes room; it is also swept when it has outlived
        // `idle_timeout` (at most one per checkin: the sweep stays O(1) on the request path).
        let evicted = match stack.conns.front() {
            Some(old)
                if stack.conns.len() >= keep
                    || now.saturating_duration_since(old.since) >= self.idle_timeout =>
            {
                stack.conns.pop_front()
            }
            _ => None,
        };
        let kept = keep > 0;
        if kept {
            stack.conns.push_back(Idle { conn, since: now });
        }
        drop(stack);
        drop(evicted);
    }

    /// Closes the idle connections the decayed peak or `idle_timeout` no longer covers; the
    /// reaper's tick.
    fn reap(&self) {
        let now = Instant::now();
        let mut stack = self.lock();
        let keep = self.sizing.target(&mut stack.window, now);
        let mut closed = Vec::new();
        while let Some(old) = stack.conns.front() {
            if stack.conns.len() <= keep
                && now.saturating_duration_since(old.since) < self.idle_timeout
            {
                break;
            }
            closed.extend(stack.conns.pop_front());
        }
        drop(stack);
        drop(closed);
    }

    /// Starts this pool's reaper once; it holds only a weak reference, so it ends with the
    /// pool (a reload that replaced the storefront's settings).
    fn start_reaper(self: &Arc<Self>) {
        if self.reaper.load(Relaxed) || self.reaper.swap(true, Relaxed) {
            return;
        }
        let pool: Weak<Pool> = Arc::downgrade(self);
        let every = self.sizing.tick();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                pool.reap();
            }
        });
    }

    /// A new connection; one more attempt if the first fails and `retry` allows.
    async fn connect(self: &Arc<Self>, retry: Retry) -> Result<Box<Conn>, UpstreamError> {
        let io = self.connect_io(retry).await?;
        self.opened.fetch_add(1, Relaxed);
        self.start_reaper();
        Ok(Box::new(Conn::new(TokioIo::new(io))))
    }

    async fn connect_io(
        &self,
        retry: Retry,
    ) -> Result<MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>, UpstreamError> {
        match self.connect_once().await {
            Err(e) if retry.again() => {
                tracing::debug!(target_uri = %self.target, error = %e, "connect failed; retrying once");
                self.connect_once().await
            }
            other => other,
        }
    }

    async fn connect_once(
        &self,
    ) -> Result<MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>, UpstreamError> {
        let mut connector = self.connector.clone();
        poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(UpstreamError::Connect)?;
        connector
            .call(self.target.clone())
            .await
            .map_err(UpstreamError::Connect)
    }
}

/// A request counted in flight from checkout until its connection goes back (or closes); ends
/// the count on drop unless [`Lease::keep`] handed it to the response body.
struct Lease<'a>(Option<&'a Sizing>);

impl<'a> Lease<'a> {
    fn take(sizing: &'a Sizing) -> Self {
        sizing.begin();
        Lease(Some(sizing))
    }

    fn keep(&mut self) {
        self.0 = None;
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.0 {
            s.end();
        }
    }
}

/// A storefront's response body; returns its connection to the pool when the body ends.
#[derive(Debug)]
pub struct ResponseBody {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    /// From hyper: hyper-util's client, or an upgrade.
    Hyper(Incoming),
    /// From the pool; `pool` holds the request's lease until the connection goes back (when
    /// `reusable`) or the body is dropped.
    H1 {
        body: h1::Body,
        pool: Option<Arc<Pool>>,
        reusable: bool,
    },
}

impl ResponseBody {
    /// A body whose connection is managed by hyper.
    pub fn unpooled(inner: Incoming) -> Self {
        ResponseBody {
            inner: Inner::Hyper(inner),
        }
    }
}

/// Hands the connection back once the body has ended, and ends the lease.
fn checkin_if_done(body: &mut h1::Body, pool: &mut Option<Arc<Pool>>, reusable: bool) {
    if reusable && pool.is_some() {
        if let Some(conn) = body.take_idle() {
            if let Some(pool) = pool.take() {
                pool.checkin(conn);
                pool.sizing.end();
            }
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // Dropped at its end (hyper's server stops polling once `is_end_stream` says so, and
        // bodiless responses are never polled): the connection is reusable. Dropped earlier, the
        // rest of the body is still on the wire and the connection closes with the body.
        if let Inner::H1 {
            body,
            pool,
            reusable,
        } = &mut self.inner
        {
            checkin_if_done(body, pool, *reusable);
            if let Some(pool) = pool.take() {
                pool.sizing.end();
            }
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().inner {
            Inner::Hyper(inner) => Pin::new(inner).poll_frame(cx).map_err(Into::into),
            Inner::H1 {
                body,
                pool,
                reusable,
            } => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                if polled.is_ready() {
                    checkin_if_done(body, pool, *reusable);
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Hyper(inner) => inner.is_end_stream(),
            Inner::H1 { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Hyper(inner) => inner.size_hint(),
            Inner::H1 { body, .. } => body.size_hint(),
        }
    }
}
