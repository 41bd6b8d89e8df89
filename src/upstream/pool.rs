//! cutover's own HTTP/1.1 connection pool, on `hyper::client::conn::http1`.
//!
//! Why not hyper-util's legacy `Client`: on the HTTP/1.1 path it hashed its pool key twice per
//! request, moved a large `send_request` future around, spawned a task per request to put the
//! connection back, and consumed the request, so the proxy cloned every idempotent request's
//! headers just in case a connect failure had to be retried. A storefront is one origin, so this
//! pool needs no key at all: one idle stack per [`super::Upstream`].
//!
//! - Checkout pops the most recently used idle connection (LIFO keeps the warmest sockets busy
//!   and lets the rest age out). Connections idle longer than `idle_timeout` are dropped there,
//!   and the oldest one at each checkin: lazily, with no timer per request or per connection
//!   (a pool nobody uses keeps its idle sockets until the storefront closes them or the pool is
//!   replaced by a reload with different settings).
//! - A connection goes back when its response body ends (or is dropped at its end), from
//!   [`ResponseBody`] itself: no task per request. Responses with `Connection: close`, HTTP/1.0
//!   responses and upgrades never go back.
//! - The connection is obtained before the request is sent, so a connect failure can be retried
//!   without a copy of the request; and a pooled connection the storefront closed before the
//!   request was written hands the request back (`TrySendError`), so that case is retried on a
//!   fresh connection the way hyper-util's `retry_canceled_requests` did.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

use super::UpstreamError;
use crate::body::UpstreamBody;

type Sender = SendRequest<UpstreamBody>;

/// An idle connection and when it became idle.
struct Idle {
    tx: Sender,
    since: Instant,
}

/// The HTTP/1.1 connections to one storefront.
pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority/`, what the connector resolves and connects to.
    target: Uri,
    h1: http1::Builder,
    /// Oldest at the front, most recently used at the back.
    idle: Mutex<VecDeque<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
    /// Bound on waiting for a pooled connection whose dispatcher has not yet noticed that its
    /// previous exchange ended; beyond it the connection is dropped and another one is used.
    ready_bound: Duration,
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
        ready_bound: Duration,
    ) -> Self {
        Pool {
            connector,
            target,
            h1: http1::Builder::new(),
            idle: Mutex::new(VecDeque::new()),
            max_idle,
            idle_timeout,
            ready_bound,
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

    /// Sends `req`, on a pooled connection when there is one. `retry_connect`: a failed connect
    /// is tried once more (only for idempotent requests without a body; the caller decides).
    pub async fn send(
        self: &Arc<Self>,
        req: http::Request<UpstreamBody>,
        retry_connect: bool,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        // Connecting is boxed, here and below: its futures (TCP, TLS, handshake) are kilobytes,
        // and inline they would be part of every request's future, pooled or not, and copied
        // with it.
        let (mut tx, reused) = match self.checkout().await {
            Some(tx) => (tx, true),
            None => (Box::pin(self.connect(retry_connect)).await?, false),
        };
        let resp = match tx.try_send_request(req).await {
            Ok(resp) => resp,
            Err(mut e) => match e.take_message() {
                // Nothing was written: the storefront had closed the idle connection. The
                // request, body untouched, goes out once more on a fresh connection.
                Some(req) if reused => {
                    tracing::debug!(error = %e.error(), "pooled storefront connection was closed; sending on a new one");
                    tx = Box::pin(self.connect(retry_connect)).await?;
                    tx.send_request(req).await.map_err(UpstreamError::Send)?
                }
                _ => return Err(UpstreamError::Send(e.into_error())),
            },
        };
        Ok(self.wrap(resp, tx))
    }

    /// The most recently used idle connection that can take a request now.
    async fn checkout(&self) -> Option<Sender> {
        loop {
            let mut tx = self.pop()?;
            if tx.is_ready() {
                return Some(tx);
            }
            // The previous response ended but the connection task has not run since; it is a
            // matter of a scheduler turn. A connection that fails or stalls is dropped.
            if let Ok(Ok(())) = tokio::time::timeout(self.ready_bound, tx.ready()).await {
                return Some(tx);
            }
        }
    }

    fn pop(&self) -> Option<Sender> {
        let now = Instant::now();
        let mut idle = self.lock();
        while let Some(c) = idle.pop_back() {
            if now.saturating_duration_since(c.since) >= self.idle_timeout {
                // LIFO: everything below has been idle longer still. Dropped outside the lock.
                let stale = std::mem::take(&mut *idle);
                drop(idle);
                drop((c, stale));
                return None;
            }
            if !c.tx.is_closed() {
                return Some(c.tx);
            }
        }
        None
    }

    /// Puts a connection whose exchange ended back on top of the stack.
    fn checkin(&self, tx: Sender) {
        if self.max_idle == 0 || tx.is_closed() {
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
        idle.push_back(Idle { tx, since: now });
        drop(idle);
        drop(evicted);
    }

    /// A new connection; `retry`: one more attempt if the first fails.
    async fn connect(&self, retry: bool) -> Result<Sender, UpstreamError> {
        match self.connect_once().await {
            Err(e) if retry => {
                tracing::debug!(target_uri = %self.target, error = %e, "connect failed; retrying once");
                self.connect_once().await
            }
            other => other,
        }
    }

    async fn connect_once(&self) -> Result<Sender, UpstreamError> {
        let mut connector = self.connector.clone();
        poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(UpstreamError::Connect)?;
        let io = connector
            .call(self.target.clone())
            .await
            .map_err(UpstreamError::Connect)?;
        let (tx, conn) = self
            .h1
            .handshake(io)
            .await
            .map_err(|e| UpstreamError::Connect(Box::new(e)))?;
        // One task per connection (not per request): it drives the socket, and hands it over
        // to the WebSocket tunnel when the storefront answers 101.
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "storefront connection ended with an error");
            }
        });
        Ok(tx)
    }

    fn wrap(self: &Arc<Self>, resp: Response<Incoming>, tx: Sender) -> Response<ResponseBody> {
        let reusable = resp.status() != StatusCode::SWITCHING_PROTOCOLS
            && resp.version() == Version::HTTP_11
            && !crate::headers::connection_has(resp.headers(), "close");
        let checkin = reusable.then(|| Checkin {
            tx,
            pool: Arc::clone(self),
        });
        resp.map(|inner| ResponseBody { inner, checkin })
    }
}

/// What a response body gives back to its pool when it ends.
#[derive(Debug)]
struct Checkin {
    tx: Sender,
    pool: Arc<Pool>,
}

/// A storefront's response body; returns its connection to the pool when the body ends.
#[derive(Debug)]
pub struct ResponseBody {
    inner: Incoming,
    checkin: Option<Checkin>,
}

impl ResponseBody {
    /// A body whose connection is managed elsewhere (hyper-util's client).
    pub fn unpooled(inner: Incoming) -> Self {
        ResponseBody {
            inner,
            checkin: None,
        }
    }

    fn done(&mut self) {
        if let Some(c) = self.checkin.take() {
            c.pool.checkin(c.tx);
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // Dropped at its end (hyper's server stops polling once `is_end_stream` says so, and
        // bodiless responses are never polled): the connection is reusable. Dropped earlier, the
        // rest of the body is still on the wire and the connection must close.
        if self.inner.is_end_stream() {
            self.done();
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.done(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.done(),
            Poll::Ready(Some(Err(_))) => this.checkin = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
