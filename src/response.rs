//! What goes back to the shopper: the streamed storefront body, or a small local answer; and the
//! bookkeeping that runs when a response is finished (or abandoned).
//!
//! Layer: request. May import its own layer and config, snapshot, observe, clients, domain, policy,
//! wire; never edge, control, server.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};

use crate::access_log::AccessEntry;
use crate::body::{BoxError, IdleTimeout};
use crate::metrics::InFlightGuard;
use crate::routing::{Reason, RouteId, StorefrontId};
use crate::state::Snapshot;
use crate::upstream::{ResponseBody, UpstreamErrorKind};

/// Runs once per request when its response body ends, fails or is dropped: the single place
/// where a request is counted and logged, so a shopper who hangs up is counted too.
pub struct Finish {
    /// When the request arrived.
    pub started: Instant,
    /// The snapshot it was routed with (holds the metric handles of that generation).
    pub snap: Arc<Snapshot>,
    /// Where it went.
    pub storefront: StorefrontId,
    /// Which route matched.
    pub route: RouteId,
    /// Why.
    pub reason: Reason,
    /// Status sent.
    pub status: StatusCode,
    /// Time to the storefront's response headers, when one answered.
    pub upstream_ttfb: Option<Duration>,
    /// Request id; `None` until something needs one (see [`new_request_id`]).
    pub request_id: Option<HeaderValue>,
    /// Method.
    pub method: Method,
    /// Body bytes sent to the shopper.
    pub bytes: u64,
    /// Whether the body reached its end (false: aborted by either side).
    pub complete: bool,
    /// Holds the storefront's in-flight gauge up until the last byte.
    pub in_flight: Option<InFlightGuard>,
    /// What only the access log needs; `None` when it is off, so nothing is cloned for it.
    pub access: Option<AccessFields>,
    // inventory:
    /// What the URL inventory needs; `None` unless the inventory is on and a side of the split
    /// was asked (old's answers are counted, new's kept as evidence on URLs already counted).
    pub inventory: Option<InventoryFields>,
}

// inventory: cloned from the parsed request (reference-counted bytes, no allocation).
/// Request details kept for the URL inventory.
pub struct InventoryFields {
    /// Path and query as forwarded (staff override parameters stripped).
    pub path_and_query: http::uri::PathAndQuery,
    /// The Host header (or h2 authority).
    pub host: Option<HeaderValue>,
    /// The User-Agent header, for the crawler share.
    pub user_agent: Option<HeaderValue>,
}

impl Finish {
    /// The storefront's body failed after its head went to the shopper: counted apart (a
    /// rollout gate and the dashboard compare `body_*` failures of old and new) and logged once
    /// with what support needs to find it. The response is then aborted, so the shopper's client
    /// sees an error rather than a short page.
    fn body_failed(&mut self, cause: &BoxError) {
        let kind = if cause.is::<crate::body::IdleTimeoutError>() {
            UpstreamErrorKind::BodyTimeout
        } else {
            UpstreamErrorKind::BodyFailed
        };
        self.snap.metrics.upstream_error(self.storefront, kind);
        let request_id = self.request_id.get_or_insert_with(new_request_id).clone();
        tracing::warn!(
            request_id = request_id.to_str().unwrap_or("-"),
            storefront = %self.snap.storefronts[self.storefront].name,
            route = %self.snap.routing.routes[self.route].name,
            status = self.status.as_u16(),
            bytes_sent = self.bytes,
            kind = kind.as_str(),
            error = %cause,
            "storefront response body failed mid-way; aborting the shopper's response"
        );
    }
}

/// 128 random bits as 32 lowercase hex digits, formatted without `format!`, a byte (two
/// digits) per step.
pub fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = fastrand::u128(..).to_be_bytes();
    let mut id = [0u8; 32];
    for (pair, b) in id.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
    HeaderValue::from_bytes(&id).expect("hex is a valid header value")
}

/// Request details kept for the access log line.
pub struct AccessFields {
    /// The request URI as received.
    pub uri: Uri,
    /// The Host header as received.
    pub host: Option<HeaderValue>,
    /// The client's address.
    pub client_ip: IpAddr,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let total = self.started.elapsed();
        let m = &self.snap.metrics;
        m.record(
            self.storefront,
            self.route,
            self.reason,
            self.status,
            self.upstream_ttfb,
            total,
        );
        if self.request_id.is_none()
            && (self.access.is_some() || tracing::enabled!(tracing::Level::DEBUG))
        {
            self.request_id = Some(new_request_id());
        }
        if let Some(a) = self.access.take() {
            let now = SystemTime::now();
            self.snap.access_log.log(AccessEntry {
                // The entry's time is when the request arrived, as documented, not when it ended.
                time: now.checked_sub(total).unwrap_or(now),
                request_id: self.request_id.clone(),
                method: self.method.clone(),
                host: a.host,
                uri: a.uri,
                status: self.status,
                storefront: m.storefronts().get(self.storefront).cloned(),
                route: m.routes().get(self.route).cloned(),
                reason: Some(self.reason),
                upstream: self.upstream_ttfb,
                total,
                bytes_sent: self.bytes,
                client_ip: Some(a.client_ip),
            });
        }
        // inventory: only answers the storefront itself gave (a local 502 is not the old store's).
        if let (Some(i), Some(inv), Some(_)) = (
            self.inventory.take(),
            self.snap.inventory.as_deref(),
            self.upstream_ttfb,
        ) {
            let host = i.host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("");
            let (pq, ua) = (
                i.path_and_query.as_str(),
                i.user_agent.as_ref().map_or(&[][..], HeaderValue::as_bytes),
            );
            if self.reason == Reason::Fallback {
                inv.record_fallback(&self.method, host, pq, self.status, ua);
            } else if self.storefront == self.snap.routing.split.from {
                inv.record(&self.method, host, pq, self.status, ua);
            } else {
                inv.observe_new(&self.method, host, pq, self.status);
            }
        }
        let sf = &self.snap.storefronts[self.storefront].name;
        tracing::debug!(
            request_id = ?self.request_id,
            method = %self.method,
            status = self.status.as_u16(),
            storefront = %sf,
            route = %self.snap.routing.routes[self.route].name,
            reason = self.reason.as_str(),
            upstream_ms = self.upstream_ttfb.map(|d| d.as_secs_f64() * 1000.0),
            total_ms = total.as_secs_f64() * 1000.0,
            bytes = self.bytes,
            complete = self.complete,
            "request"
        );
    }
}

enum Inner {
    Stream(IdleTimeout<ResponseBody>),
    Full(Option<Bytes>),
}

/// The response body type of the proxy service.
pub struct ProxyBody {
    inner: Inner,
    /// Boxed: a `Finish` is a few hundred bytes, and hyper and the drain tracker move the
    /// response by value several times per request; one small allocation is cheaper than
    /// copying it along each time (callgrind: ~1,700 instructions of memcpy per redirect).
    finish: Option<Box<Finish>>,
}

impl ProxyBody {
    /// A storefront's body, streamed with an idle bound.
    pub fn stream(body: ResponseBody, idle: Duration, finish: Option<Finish>) -> Self {
        ProxyBody {
            inner: Inner::Stream(IdleTimeout::new(body, idle)),
            finish: finish.map(Box::new),
        }
    }

    /// A body fully known up front.
    pub fn full(data: impl Into<Bytes>, finish: Option<Finish>) -> Self {
        let data = data.into();
        ProxyBody {
            inner: Inner::Full((!data.is_empty()).then_some(data)),
            finish: finish.map(Box::new),
        }
    }

    /// No body.
    pub fn empty(finish: Option<Finish>) -> Self {
        ProxyBody {
            inner: Inner::Full(None),
            finish: finish.map(Box::new),
        }
    }

    fn end(&mut self, complete: bool) {
        if let Some(mut f) = self.finish.take() {
            f.complete = complete;
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = match &mut this.inner {
            Inner::Stream(b) => Pin::new(b).poll_frame(cx),
            Inner::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(d), Some(f)) = (frame.data_ref(), this.finish.as_mut()) {
                    f.bytes += d.len() as u64;
                }
            }
            Poll::Ready(None) => this.end(true),
            Poll::Ready(Some(Err(e))) => {
                if let Some(f) = this.finish.as_mut() {
                    f.body_failed(e);
                }
                this.end(false);
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Stream(b) => b.is_end_stream(),
            Inner::Full(d) => d.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Stream(b) => b.size_hint(),
            Inner::Full(d) => SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}

/// A small plain-text answer from cutover itself (errors, limits). Says who failed and carries
/// the request id that the log line also has, so support can find it.
pub fn local(
    status: StatusCode,
    detail: &str,
    request_id: &HeaderValue,
    request_id_header: &http::HeaderName,
) -> Response<ProxyBody> {
    let text = format!(
        "{} {}: {}\nrequest id: {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        detail,
        request_id.to_str().unwrap_or("-")
    );
    let mut resp = Response::new(ProxyBody::full(text, None));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(request_id_header.clone(), request_id.clone());
    let len = resp.body().size_hint().exact().unwrap_or(0);
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// Attaches the bookkeeping to a local answer.
pub fn with_finish(resp: Response<ProxyBody>, finish: Finish) -> Response<ProxyBody> {
    let (parts, mut body) = resp.into_parts();
    body.finish = Some(Box::new(finish));
    Response::from_parts(parts, body)
}
