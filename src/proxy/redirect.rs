//! Answers from the redirect tables, after routing and before any storefront is asked.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, LOCATION};
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;

use super::{ConnInfo, Proxy};
use crate::force;
use crate::redirects::{ApplyTo, GONE_BODY};
use crate::response::{AccessFields, Finish, ProxyBody};
use crate::routing::{Decision, Reason};
use crate::state::Snapshot;

/// What the request path knows about a request when it asks the redirect tables.
pub(super) struct Asked<'a> {
    /// The client connection.
    pub conn: ConnInfo,
    /// When the request arrived.
    pub started: Instant,
    /// The shopper's own request id, if it sent a valid one.
    pub request_id: Option<&'a HeaderValue>,
    /// The requested host, without its port.
    pub host: &'a str,
}

impl Proxy {
    /// Answers from the redirect tables when one has an entry. Tables that apply to the new
    /// storefront only are skipped for shoppers still on the old one, which serves its own URLs.
    pub(super) fn redirect(
        &self,
        snap: &Arc<Snapshot>,
        req: &Request<Incoming>,
        decision: &Decision,
        asked: Asked<'_>,
    ) -> Option<Response<ProxyBody>> {
        let Asked {
            conn,
            started,
            request_id,
            host,
        } = asked;
        if snap.redirects.is_empty() {
            return None;
        }
        let on_new = decision.storefront == snap.split.to;
        // `shop.example.` is `shop.example`, as the table keys it.
        let host = host.trim_end_matches('.');
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(host.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(host)
        };
        // The override parameters are cutover's own, as on the way to a storefront: left in,
        // `?cutover=new` would change a query key (no match) or ride along into the Location.
        let stripped =
            force::strip_path_and_query(req.uri().path(), req.uri().query(), &snap.overrides);
        let pq = match &stripped {
            Some(pq) => pq.as_str(),
            None => req.uri().path_and_query().map_or("/", |p| p.as_str()),
        };
        let hit = snap
            .redirects
            .iter()
            .filter(|r| on_new || r.table.applies_to() == ApplyTo::All)
            .find_map(|r| r.table.lookup(&host, pq))?;
        let status = hit.status(snap.split.share_bp == 10_000);
        snap.metrics.redirect_served(status);
        let finish = Finish {
            started,
            snap: Arc::clone(snap),
            storefront: decision.storefront,
            route: decision.route,
            reason: Reason::Redirect,
            status,
            upstream_ttfb: None,
            request_id: request_id.cloned(),
            method: req.method().clone(),
            bytes: 0,
            complete: false,
            in_flight: None,
            access: snap.access_log.is_enabled().then(|| AccessFields {
                uri: req.uri().clone(),
                host: req.headers().get(HOST).cloned(),
                client_ip: conn.peer.ip(),
            }),
        };
        let mut resp = match hit.location {
            Some(location) => {
                let mut r = Response::new(ProxyBody::empty(Some(finish)));
                // The table built it from visible ASCII only; taking the String's buffer saves
                // a copy.
                if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(location)) {
                    r.headers_mut().insert(LOCATION, v);
                }
                // `Content-Length: 0` comes from hyper, which frames the empty body itself.
                r
            }
            None => {
                let mut r = Response::new(ProxyBody::full(GONE_BODY, Some(finish)));
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                r
            }
        };
        *resp.status_mut() = status;
        self.decorate(snap, &mut resp, decision, conn);
        Some(resp)
    }
}
