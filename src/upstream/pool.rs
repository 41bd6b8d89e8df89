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
//!   and the oldest one at each checkin: lazily, with no timer per request or per connection
//!   (a pool nobody uses keeps its idle sockets until the storefront closes them or the pool is
//!   replaced by a reload with different settings). A connection the storefront has closed
//!   (or sent anything on while idle) is noticed at checkout, without a system call.
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
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
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
use super::UpstreamError;
use crate::body::{BoxError, UpstreamBody};
use crate::headers::outgoing::Outgoing;

/// An idle connection and when it became idle.
struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// The HTTP/1.1 connections to one storefront.
pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority/`, what the connector resolves and connects to.
    target: Uri,
    /// Oldest at the front, most recently used at the back.
    idle: Mutex<VecDeque<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
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
    /// A pool connecting to `target` (`scheme://authority/`) through `connector`.
    pub fn new(
        connector: HttpsConnector<HttpConnector>,
        target: Uri,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Self {
        Pool {
            connector,
            target,
            idle: Mutex::new(VecDeque::new()),
            max_idle,
            idle_timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        // Nothing panics while holding it; a poisoned stack is still a valid stack.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Idle connections currently kept (for tests and debugging).
    pub fn idle_count(&self) -> usize {
        self.lock().len()
    }

    /// Sends `req`, on a pooled connection when there is one. `retry_connect`: the request is
    /// idempotent and has no body, so a failed connect (or a pooled connection found closed) is
    /// tried once more; the caller decides.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<UpstreamBody>,
        outgoing: &Outgoing<'_>,
        retry_connect: bool,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        if req.headers().contains_key(UPGRADE) {
            outgoing.apply(req.headers_mut());
            return Box::pin(self.send_upgrade(req, retry_connect)).await;
        }
        let (parts, body) = req.into_parts();
        // Connecting is boxed, here and below: its futures (TCP, TLS) are kilobytes, and inline
        // they would be part of every request's future, pooled or not, and copied with it.
        let (mut conn, reused) = match self.checkout() {
            Some(conn) => (conn, true),
            None => (Box::pin(self.connect(retry_connect)).await?, false),
        };
        let head = match conn.send(&parts, Some(outgoing), body).await {
            Ok(head) => head,
            Err(e) if reused && retry_connect && !conn.received() => {
                tracing::debug!(error = %e, "pooled storefront connection was closed; sending on a new one");
                conn = Box::pin(self.connect(retry_connect)).await?;
                conn.send(&parts, Some(outgoing), UpstreamBody::Empty)
                    .await
                    .map_err(UpstreamError::H1)?
            }
            Err(e) => return Err(UpstreamError::H1(e)),
        };
        let pool = head.reusable.then(|| Arc::clone(self));
        let mut resp = Response::new(ResponseBody {
            inner: Inner::H1 {
                body: h1::Body::new(conn, head.framing, head.reusable),
                pool,
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
        retry_connect: bool,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        let io = self.connect_io(retry_connect).await?;
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
        let mut idle = self.lock();
        let c = idle.pop_back()?;
        if now.saturating_duration_since(c.since) >= self.idle_timeout {
            // LIFO: everything below has been idle longer still. Dropped outside the lock.
            let stale = std::mem::take(&mut *idle);
            drop(idle);
            drop((c, stale));
            return None;
        }
        Some(c.conn)
    }

    /// Puts a connection whose exchange ended back on top of the stack.
    fn checkin(&self, conn: Box<Conn>) {
        if self.max_idle == 0 {
            return;
        }
        let now = Instant::now();
        let mut idle = self.lock();
        // The oldest connection makes room; it is also swept when it has outlived
        // `idle_timeout` (at most one per checkin: the sweep stays O(1) on the request path).
        let evicted = match idle.front() {
            Some(old)
                if idle.len() >= self.max_idle
                    || now.saturating_duration_since(old.since) >= self.idle_timeout =>
            {
                idle.pop_front()
            }
            _ => None,
        };
        idle.push_back(Idle { conn, since: now });
        drop(idle);
        drop(evicted);
    }

    /// A new connection; `retry`: one more attempt if the first fails.
    async fn connect(&self, retry: bool) -> Result<Box<Conn>, UpstreamError> {
        let io = self.connect_io(retry).await?;
        Ok(Box::new(Conn::new(TokioIo::new(io))))
    }

    async fn connect_io(
        &self,
        retry: bool,
    ) -> Result<MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>, UpstreamError> {
        match self.connect_once().await {
            Err(e) if retry => {
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

/// A storefront's response body; returns its connection to the pool when the body ends.
#[derive(Debug)]
pub struct ResponseBody {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    /// From hyper: hyper-util's client, or an upgrade.
    Hyper(Incoming),
    /// From the pool; `pool` is where the connection goes back, if it may.
    H1 {
        body: h1::Body,
        pool: Option<Arc<Pool>>,
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

/// Hands the connection back once the body has ended.
fn checkin_if_done(body: &mut h1::Body, pool: &mut Option<Arc<Pool>>) {
    if pool.is_some() {
        if let Some(conn) = body.take_idle() {
            if let Some(pool) = pool.take() {
                pool.checkin(conn);
            }
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // Dropped at its end (hyper's server stops polling once `is_end_stream` says so, and
        // bodiless responses are never polled): the connection is reusable. Dropped earlier, the
        // rest of the body is still on the wire and the connection closes with the body.
        if let Inner::H1 { body, pool } = &mut self.inner {
            checkin_if_done(body, pool);
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
            Inner::H1 { body, pool } => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                if polled.is_ready() {
                    checkin_if_done(body, pool);
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
