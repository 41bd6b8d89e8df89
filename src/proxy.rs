//! The hyper service: a request's life in named phases, one file each.
//!
//! [`Proxy::handle`] loads the snapshot, then: admit (`admit`), decide ([`routing::decide`]),
//! answer from the redirect plan (`redirect`), offer a shadow copy (`shadow`), forward
//! (`forward`: prepare, send, then `failure` or `respond`, with the 404 fallback), and record:
//! every path hands its [`Finish`](crate::response::Finish) to the one place that counts and logs
//! (`record`, `response`).
//!
//! One snapshot is loaded per request and used throughout, so a reload in the middle of a request
//! never mixes two generations. Upstream failures map to status codes in one place
//! ([`UpstreamErrorKind::status`]), the way nginx and Envoy users expect.
//!
//! Layer: request. May import its own layer and config, snapshot, observe, clients, domain, policy,
//! wire; never edge, control, server.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;

use crate::http1::scan;
use crate::metrics::Metrics;
use crate::redirects::MissedRedirects;
use crate::response::{self, new_request_id, ProxyBody};
use crate::routing::cohort::FreshBuckets;
use crate::routing::{self, Decision, RequestView};
use crate::state::{SharedSnapshot, Snapshot};

mod admit;
mod decorate;
mod failure;
mod forward;
mod front;
mod prepare;
mod record;
mod redirect;
mod respond;
// shadow: the mirror offer and the 404 fallback.
mod shadow;
#[cfg(any(test, feature = "testkit"))]
pub mod sizes;

use decorate::Decoration;
use forward::{send, SendError};
pub(crate) use front::Front;

/// Header naming the storefront, to the shopper (optional) and to the storefront.
pub static STOREFRONT_HEADER: http::HeaderName =
    http::HeaderName::from_static("x-cutover-storefront");
/// Header telling the storefront why the request came to it.
pub static REASON_HEADER: http::HeaderName = http::HeaderName::from_static("x-cutover-reason");
/// Header telling the storefront which config generation routed the request (to correlate a
/// storefront's logs with `/admin/history`).
pub static GENERATION_HEADER: http::HeaderName =
    http::HeaderName::from_static("x-cutover-generation");

/// A shopper's request as the phases see it, from either server: hyper's (a body, maybe empty)
/// or the HTTP/1 front's (`None`: the front takes only requests without a body).
pub type ShopperRequest = Request<Option<Incoming>>;

/// A request being forwarded: the boxed future of the forward phase.
pub(crate) type Forwarding = Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send>>;

/// The future of [`Proxy::handle`]: an answer that is ready, or a boxed forward.
pub struct Handling(Step);

enum Step {
    /// Taken when polled.
    Ready(Option<Response<ProxyBody>>),
    Forward(Forwarding),
}

impl Future for Handling {
    type Output = Result<Response<ProxyBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Step::Ready(resp) => Poll::Ready(Ok(resp.take().expect("polled after completion"))),
            Step::Forward(forwarding) => forwarding.as_mut().poll(cx).map(Ok),
        }
    }
}

/// What the accept loop knows about a client connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// Whether the connection is TLS (cookie `Secure`, `X-Forwarded-Proto: https`).
    pub tls: bool,
    /// Index of the listener in the snapshot (for HSTS).
    pub listener: usize,
}

/// The proxy: shared by every connection.
pub struct Proxy {
    state: SharedSnapshot,
    fresh: FreshBuckets,
    metrics: Arc<Metrics>,
    /// Outlives reloads: a week of misses must survive a share change.
    missed: Arc<MissedRedirects>,
}

/// `host` without `:port`, IPv6 brackets kept.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return scan::find(host, b']').map_or(host, |i| &host[..=i]);
    }
    match scan::rsplit_once(host, b':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

fn valid_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
}

impl Proxy {
    /// A proxy reading the given snapshot handle.
    pub fn new(state: SharedSnapshot, metrics: Arc<Metrics>) -> Arc<Self> {
        let (k, per_host) = state.load().misses;
        Arc::new(Proxy {
            state,
            fresh: FreshBuckets::default(),
            metrics,
            missed: Arc::new(MissedRedirects::new(k).per_host(per_host)),
        })
    }

    /// URLs that had no redirect and that the new storefront answered with 404.
    pub fn missed(&self) -> &Arc<MissedRedirects> {
        &self.missed
    }

    /// The process metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The snapshot handle (for reloads and the admin API).
    pub fn state(&self) -> &SharedSnapshot {
        &self.state
    }

    /// Serves one request. Never fails: every error becomes a response.
    ///
    /// Not an `async fn`: everything before forwarding is synchronous, and a redirect or a
    /// local answer is ready at once. Forwarding holds a few KB of state across awaits and is
    /// boxed ([`Handling`]). As an `async fn` the request's future was 840 bytes (856 with the
    /// drain's tracker), which hyper moves by value into its dispatcher (and h2 into a task);
    /// see `examples/future_sizes.rs` for what it is now.
    pub fn handle(self: Arc<Self>, conn: ConnInfo, req: Request<Incoming>) -> Handling {
        Handling(match self.answer(conn, req.map(Some)) {
            Ok(resp) => Step::Ready(Some(resp)),
            Err(forwarding) => Step::Forward(forwarding),
        })
    }

    /// Answers a request at once, or says how it is forwarded.
    fn answer(
        self: Arc<Self>,
        conn: ConnInfo,
        req: ShopperRequest,
    ) -> Result<Response<ProxyBody>, Forwarding> {
        let started = Instant::now();
        let snap = self.state.load_full();
        let rid_header = &snap.headers.request_id;
        // A shopper's own id is kept; a fresh one is made only when something will carry it
        // (a redirect with the access log off never does).
        let given = req
            .headers()
            .get(rid_header)
            .filter(|v| valid_request_id(v))
            .cloned();
        // Admit.
        let host = match admit::admit(&snap, &req) {
            Ok(host) => host,
            Err((status, detail)) => {
                let request_id = given.unwrap_or_else(new_request_id);
                return Ok(response::local(status, detail, &request_id, rid_header));
            }
        };
        // Decide.
        let view = RequestView {
            method: req.method(),
            host,
            path: req.uri().path(),
            query: req.uri().query(),
            headers: req.headers().into(),
        };
        let decision = self.route(&snap, &view);
        self.count_decision(&snap, &decision, given.as_ref());
        // Answer from the redirect plan.
        if let Some(resp) = self.redirect(
            &snap,
            &req,
            &decision,
            redirect::Asked {
                conn,
                started,
                request_id: given.as_ref(),
                host,
            },
        ) {
            return Ok(resp);
        }
        // Forward (a sample is first copied to the shadow mirror, off the shopper's path).
        self.offer_shadow(&snap, conn, &req, &decision, host);
        Err(self.start_forward(snap, conn, req, decision, given, started))
    }

    /// Forward, for either server, once the decision is counted and the shadow offered.
    ///
    /// Boxed: forwarding holds a few KB of state across awaits. Inline, it would make every
    /// request's future that big, and hyper and the drain tracker move the future by value, so
    /// each request (redirects and local answers included) would copy kilobytes.
    fn start_forward(
        self: Arc<Self>,
        snap: Arc<Snapshot>,
        conn: ConnInfo,
        req: ShopperRequest,
        decision: Decision,
        given: Option<HeaderValue>,
        started: Instant,
    ) -> Forwarding {
        let request_id = given.unwrap_or_else(new_request_id);
        // Written straight into its allocation: `Box::pin(future)` builds the future on the
        // stack and copies all of it, kilobytes of which are not yet in use, and with hundreds
        // of requests in flight that copy lands on memory no cache still holds.
        let slot = Box::new_uninit();
        let boxed: Pin<Box<_>> = Box::into_pin(Box::write(
            slot,
            self.forward(snap, conn, req, decision, request_id, started),
        ));
        boxed
    }

    /// Decides where a request goes, for either server's path (hyper's, or the HTTP/1 front).
    #[inline]
    fn route(&self, snap: &Snapshot, view: &RequestView<'_>) -> Decision {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        routing::decide(&snap.routing, view, now, || self.fresh.next())
    }

    /// What a decision leaves behind once the request is answered on it: the assignment metric
    /// and the refused-override log line. Separate from [`Proxy::route`] because the front
    /// decides requests it may then hand to hyper, which decides them again.
    fn count_decision(
        &self,
        snap: &Snapshot,
        decision: &Decision,
        request_id: Option<&HeaderValue>,
    ) {
        if decision.override_refused {
            tracing::debug!(request_id = ?request_id, "override refused");
        }
        if decision.newly_assigned {
            snap.metrics.assigned(decision.storefront);
        }
        if let Some(shopper) = &decision.shopper {
            snap.metrics.shopper_seen(decision.storefront, shopper);
        }
    }

    /// Headers cutover adds to every response: the storefront, and the cohort cookie.
    fn decorate(
        &self,
        snap: &Snapshot,
        resp: &mut Response<ProxyBody>,
        decision: &Decision,
        conn: ConnInfo,
    ) {
        Decoration::new(snap, decision, conn).apply(resp.headers_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("shop.example:8080"), "shop.example");
        assert_eq!(strip_port("shop.example"), "shop.example");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }

    #[test]
    fn request_ids_from_clients_are_vetted() {
        assert!(valid_request_id(&HeaderValue::from_static("abc-123_x.y:z")));
        assert!(!valid_request_id(&HeaderValue::from_static("")));
        assert!(!valid_request_id(&HeaderValue::from_static("has space")));
        let id = new_request_id();
        assert_eq!(id.len(), 32);
        assert!(id
            .as_bytes()
            .iter()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(id, new_request_id());
    }
}
