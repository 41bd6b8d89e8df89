//! The hyper service: snapshot -> decision -> local answer or forward to a storefront.
//!
//! One snapshot is loaded per request and used throughout, so a reload in the middle of a request
//! never mixes two generations. Upstream failures map to status codes in one place
//! ([`UpstreamErrorKind::status`]), the way nginx and Envoy users expect.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::header::{HOST, UPGRADE};
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::body::{ClientBodyError, IdleTimeout, UpstreamBody};
use crate::headers::outgoing::Outgoing;
use crate::headers::{self, Hop};
use crate::http1::scan;
use crate::metrics::Metrics;
use crate::redirects::MissedRedirects;
use crate::response::{self, new_request_id, AccessFields, Finish, ProxyBody};
use crate::routing::cohort::FreshBuckets;
use crate::routing::staff_override;
use crate::routing::{self, Decision, RequestView};
use crate::state::{SharedSnapshot, Snapshot};
use crate::upstream::HostHeader;
use crate::upstream::{self, ResponseBody, Upstream, UpstreamError, UpstreamErrorKind};

mod decorate;
mod redirect;
// shadow: the mirror offer and the 404 fallback.
mod shadow;

use decorate::Decoration;

/// Header naming the storefront, to the shopper (optional) and to the storefront.
pub static STOREFRONT_HEADER: http::HeaderName =
    http::HeaderName::from_static("x-cutover-storefront");
/// Header telling the storefront why the request came to it.
pub static REASON_HEADER: http::HeaderName = http::HeaderName::from_static("x-cutover-reason");
/// Header telling the storefront which config generation routed the request (to correlate a
/// storefront's logs with `/admin/history`).
pub static GENERATION_HEADER: http::HeaderName =
    http::HeaderName::from_static("x-cutover-generation");

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

/// Idempotent per RFC 9110: safe to send again when nothing reached the storefront.
fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

enum SendError {
    HeaderTimeout,
    Client(UpstreamError),
}

/// Connect (retried once when `retry_connect`) and send, bounded by the response-header timeout.
async fn send(
    up: &Upstream,
    req: Request<UpstreamBody>,
    outgoing: &Outgoing<'_>,
    retry_connect: bool,
) -> Result<Response<ResponseBody>, SendError> {
    // Pinned where it is built: `timeout` then holds a pointer, not the kilobyte-sized future,
    // which would otherwise be copied at every hand-over.
    let exchange = std::pin::pin!(up.send(req, outgoing, retry_connect));
    match crate::timer::timeout(up.settings.response_header_timeout, exchange).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err(SendError::Client(e)),
        Err(_) => Err(SendError::HeaderTimeout),
    }
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
    pub async fn handle(
        self: Arc<Self>,
        conn: ConnInfo,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
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
        let path_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
        if path_len > snap.limits.max_uri_length {
            return Ok(response::local(
                StatusCode::URI_TOO_LONG,
                "the URL is too long",
                &given.unwrap_or_else(new_request_id),
                rid_header,
            ));
        }
        // RFC 9112 section 3.2: more than one Host is a 400; routing and the storefront must
        // never disagree about which one counts.
        let mut hosts = req.headers().get_all(HOST).iter();
        let host_header = hosts.next();
        if hosts.next().is_some() {
            return Ok(response::local(
                StatusCode::BAD_REQUEST,
                "more than one Host header",
                &given.unwrap_or_else(new_request_id),
                rid_header,
            ));
        }
        if req.method() == Method::CONNECT {
            return Ok(response::local(
                StatusCode::METHOD_NOT_ALLOWED,
                "CONNECT is not supported",
                &given.unwrap_or_else(new_request_id),
                rid_header,
            ));
        }
        // The URI's authority when the request has one (an absolute-form HTTP/1 target, whose
        // Host header a server must ignore per RFC 9112 section 3.2.2; an h2 `:authority`), else
        // the Host header; `""` for HTTP/1.0 without Host. Routing and per-host redirect rows see
        // the same host either way.
        let host = strip_port(
            req.uri()
                .authority()
                .map(|a| a.as_str())
                .or_else(|| host_header.and_then(|h| h.to_str().ok()))
                .unwrap_or(""),
        );
        let view = RequestView {
            method: req.method(),
            host,
            path: req.uri().path(),
            query: req.uri().query(),
            headers: req.headers().into(),
        };
        let decision = self.route(&snap, &view);
        self.count_decision(&snap, &decision, given.as_ref());
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
        // shadow: copy a sample to the mirror, off the shopper's path.
        self.offer_shadow(&snap, conn, &req, &decision, host);
        let request_id = given.unwrap_or_else(new_request_id);
        // Boxed: forwarding holds a few KB of state across awaits. Inline, it would make every
        // request's future that big, and hyper and the drain tracker move the future by value,
        // so each request (redirects and local answers included) would copy kilobytes.
        let resp = Box::pin(self.forward(&snap, conn, req, &decision, &request_id, started)).await;
        Ok(resp)
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
    }

    async fn forward(
        &self,
        snap: &Arc<Snapshot>,
        conn: ConnInfo,
        req: Request<Incoming>,
        decision: &Decision,
        request_id: &HeaderValue,
        started: Instant,
    ) -> Response<ProxyBody> {
        let sf = &snap.storefronts[decision.storefront];
        let up = &sf.upstream;
        let in_flight = snap.metrics.start(decision.storefront);
        let access = snap.access_log.is_enabled().then(|| AccessFields {
            uri: req.uri().clone(),
            host: req.headers().get(HOST).cloned(),
            client_ip: conn.peer.ip(),
        });
        let (mut parts, body) = req.into_parts();
        let client_version = parts.version;
        // `Upgrade` first: a standard name's lookup is cheaper than scanning `Connection`.
        let upgrade = client_version == Version::HTTP_11
            && parts.headers.contains_key(UPGRADE)
            && headers::connection_has(&parts.headers, "upgrade");
        let client_upgrade = if upgrade {
            parts.extensions.remove::<OnUpgrade>()
        } else {
            None
        };

        let host = parts.headers.get(HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let miss_host = host.clone();
        let pq = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let pq = match staff_override::strip_path_and_query(
            pq.path(),
            pq.query(),
            &snap.routing.overrides,
        ) {
            None => pq,
            Some(stripped) => PathAndQuery::try_from(stripped).unwrap_or(pq),
        };
        // Recorded without the override parameters: the staff token must not reach the list.
        let miss_pq = pq.clone();
        // inventory: kept for the split's `from` storefront only, and only while it is on.
        let inventory = (snap.inventory_config.is_some()
            && decision.storefront == snap.routing.split.from
            && matches!(parts.method, Method::GET | Method::HEAD))
        .then(|| response::InventoryFields {
            path_and_query: pq.clone(),
            host: miss_host.clone(),
            user_agent: parts.headers.get(http::header::USER_AGENT).cloned(),
        });
        let mut inventory = inventory;
        let uri = up.request_uri(pq);

        let h = &mut parts.headers;
        headers::strip_hop_by_hop(h, upgrade);
        if client_version == Version::HTTP_2 {
            headers::join_cookies(h);
        }
        // What cutover sets travels beside the shopper's headers and is written with them.
        let reason = HeaderValue::from_static(decision.reason.as_str());
        let decision_headers = snap.headers.decision_upstream;
        let outgoing = Outgoing {
            hop: Hop {
                client: conn.peer.ip(),
                proto: if conn.tls { "https" } else { "http" },
                host: host.as_ref(),
            },
            trust_forwarded: snap.headers.trust_forwarded,
            via: snap.headers.via.then_some(client_version),
            host: match up.settings.host_header {
                HostHeader::Upstream => Some(&up.authority_header),
                HostHeader::Client => host.as_ref(),
            },
            remove: [
                &snap.routing.overrides.header,
                &staff_override::TOKEN_HEADER_NAME,
            ],
            set: [
                Some((&snap.headers.request_id, request_id)),
                decision_headers.then_some((&STOREFRONT_HEADER, &sf.name_header)),
                decision_headers.then_some((&REASON_HEADER, &reason)),
                decision_headers.then_some((&GENERATION_HEADER, &snap.generation_header)),
            ],
        };

        let body_empty = hyper::body::Body::is_end_stream(&body);
        // shadow: what the 404 fallback would replay to old (fallback routes only).
        let replay = Self::keep_for_fallback(snap, decision, &parts, &miss_pq, !body_empty);
        // Nothing reaches the storefront before the connection is up, so a bodyless idempotent
        // request can safely be tried again when connecting fails.
        let retry_connect = idempotent(&parts.method) && body_empty && !upgrade;
        let mut up_req = Request::new(if body_empty {
            UpstreamBody::Empty
        } else {
            UpstreamBody::Client(IdleTimeout::new(body, snap.limits.body_idle_timeout))
        });
        *up_req.method_mut() = parts.method.clone();
        *up_req.uri_mut() = uri;
        *up_req.version_mut() = Version::HTTP_11;
        *up_req.headers_mut() = parts.headers;

        let upstream_started = Instant::now();
        let result = send(up, up_req, &outgoing, retry_connect).await;

        let mut in_flight = Some(in_flight);
        let mut access = access;
        let mut finish = |status, ttfb| Finish {
            started,
            snap: Arc::clone(snap),
            storefront: decision.storefront,
            route: decision.route,
            reason: decision.reason,
            status,
            upstream_ttfb: ttfb,
            request_id: Some(request_id.clone()),
            method: parts.method.clone(),
            bytes: 0,
            complete: false,
            in_flight: in_flight.take(),
            access: access.take(),
            // inventory:
            inventory: inventory.take(),
        };

        let resp = match result {
            Ok(resp) => resp,
            Err(SendError::Client(e)) if client_body_error(&e).is_some() => {
                // The shopper's body broke off or was malformed: their fault, not the storefront's.
                let timeout = client_body_error(&e).is_some_and(ClientBodyError::is_timeout);
                let (status, detail) = if timeout {
                    (
                        StatusCode::REQUEST_TIMEOUT,
                        "the request body stopped arriving",
                    )
                } else {
                    (
                        StatusCode::BAD_REQUEST,
                        "the request body is malformed or cut off",
                    )
                };
                tracing::debug!(request_id = ?request_id, storefront = %sf.name, error = %error_chain(&e), "client request body failed");
                let mut resp =
                    response::local(status, detail, request_id, &snap.headers.request_id);
                resp.headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                self.decorate(snap, &mut resp, decision, conn);
                return response::with_finish(resp, finish(status, None));
            }
            Err(err) => {
                let (kind, detail) = match &err {
                    SendError::HeaderTimeout => {
                        sf.health.error(UpstreamErrorKind::Timeout);
                        snap.metrics
                            .upstream_error(decision.storefront, UpstreamErrorKind::Timeout);
                        tracing::warn!(request_id = ?request_id, storefront = %sf.name, kind = UpstreamErrorKind::Timeout.as_str(), "storefront request failed: no response headers within response_header_timeout");
                        (
                            UpstreamErrorKind::Timeout,
                            "did not send response headers in time".to_string(),
                        )
                    }
                    SendError::Client(e) => {
                        let kind = upstream::classify(e);
                        sf.health.error(kind);
                        snap.metrics.upstream_error(decision.storefront, kind);
                        let what = match kind {
                            UpstreamErrorKind::Connect => "could not be reached",
                            UpstreamErrorKind::Timeout => "did not accept the connection in time",
                            UpstreamErrorKind::Reset => "closed the connection before answering",
                            UpstreamErrorKind::Protocol => "sent an invalid response",
                            UpstreamErrorKind::Tls => {
                                "failed the TLS handshake (certificate not trusted?)"
                            }
                            // Only a body can fail mid-way, and no body was read yet.
                            UpstreamErrorKind::BodyTimeout | UpstreamErrorKind::BodyFailed => {
                                "broke off its answer"
                            }
                        };
                        tracing::warn!(request_id = ?request_id, storefront = %sf.name, kind = kind.as_str(), error = %error_chain(e), "storefront request failed");
                        (kind, what.to_string())
                    }
                };
                let status = kind.status();
                let detail = format!("storefront \"{}\" {detail}", sf.name);
                let mut resp =
                    response::local(status, &detail, request_id, &snap.headers.request_id);
                self.decorate(snap, &mut resp, decision, conn);
                return response::with_finish(resp, finish(status, None));
            }
        };
        let ttfb = upstream_started.elapsed();
        sf.health.success();
        // shadow: new's fallback status on a fallback route may be answered by old.
        let (resp, fell_back) = match self
            .fall_back(snap, conn, decision, &parts.method, replay, resp)
            .await
        {
            shadow::Answer::New(resp) => (resp, false),
            shadow::Answer::Old(resp) => (resp, true),
        };
        let (mut rparts, rbody) = resp.into_parts();
        // The shopper is answered in the shopper's protocol, whatever the storefront spoke: an
        // HTTP/1.0 storefront's close-delimited answer goes to an HTTP/1.1 client chunked, a
        // framing the client can check (hyper still answers an HTTP/1.0 client as HTTP/1.0).
        rparts.version = http::Version::HTTP_11;

        if rparts.status == StatusCode::SWITCHING_PROTOCOLS {
            if let (Some(client_up), Some(upstream_up)) =
                (client_upgrade, rparts.extensions.remove::<OnUpgrade>())
            {
                let rid = request_id.clone();
                tokio::spawn(async move {
                    if let Err(e) = tunnel(client_up, upstream_up).await {
                        tracing::debug!(request_id = ?rid, error = %e, "upgraded connection ended with an error");
                    }
                });
                headers::strip_hop_by_hop(&mut rparts.headers, true);
                let mut resp = Response::from_parts(
                    rparts,
                    ProxyBody::empty(Some(finish(StatusCode::SWITCHING_PROTOCOLS, Some(ttfb)))),
                );
                self.decorate(snap, &mut resp, decision, conn);
                return resp;
            }
            // A 101 nobody asked for cannot be relayed safely.
            let resp = response::local(
                StatusCode::BAD_GATEWAY,
                &format!("storefront \"{}\" switched protocols unasked", sf.name),
                request_id,
                &snap.headers.request_id,
            );
            return response::with_finish(resp, finish(StatusCode::BAD_GATEWAY, Some(ttfb)));
        }

        headers::strip_hop_by_hop(&mut rparts.headers, false);
        if snap.headers.via {
            headers::add_via(&mut rparts.headers, rparts.version);
        }
        let status = rparts.status;
        if status == StatusCode::NOT_FOUND && decision.storefront == snap.routing.split.to {
            // No redirect matched (or we would not be here) and the new store has no such page.
            let host = miss_host
                .as_ref()
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            let host = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
            self.missed.record(&host, miss_pq.as_str());
            snap.metrics.redirect_missed();
        }
        let mut resp = Response::from_parts(
            rparts,
            ProxyBody::stream(
                rbody,
                up.settings.read_timeout,
                Some(finish(status, Some(ttfb))),
            ),
        );
        self.decorate(snap, &mut resp, decision, conn);
        if fell_back {
            shadow::mark_fallback(snap, resp.headers_mut());
        }
        resp
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

/// The shopper's body failure inside an upstream client error, if that is what it was.
fn client_body_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a ClientBodyError> {
    std::iter::successors(Some(e), |e| e.source()).find_map(|e| e.downcast_ref::<ClientBodyError>())
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

async fn tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (client, upstream) = tokio::try_join!(client, upstream)?;
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
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
