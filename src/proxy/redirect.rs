//! Answers from the redirect tables, after routing and before any storefront is asked: as a
//! hyper response, or written straight into the HTTP/1 front's output (see `front`).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HOST, LOCATION};
use http::{HeaderValue, Method, Response, StatusCode, Uri};

use super::decorate::Decoration;
use super::{valid_request_id, ConnInfo, Proxy, ShopperRequest};
use crate::http1::wire;
use crate::http1::{write, Head};
use crate::redirects::{ApplyTo, DuringShift, FULL_SHARE_BP, GONE_BODY};
use crate::response::{AccessFields, Finish, ProxyBody};
use crate::routing::request_headers::RequestHeaders;
use crate::routing::staff_override;
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

/// What the front knows about a request it answers with a redirect.
pub(super) struct FrontAsked<'a> {
    /// The client connection.
    pub conn: ConnInfo,
    /// The parsed head.
    pub head: &'a Head<'a>,
    /// Where routing sent it.
    pub decision: &'a Decision,
    /// When the front began on it.
    pub started: Instant,
}

/// A redirect table's answer: the status, the `Location` (`None`: 410), the `Cache-Control`.
pub(super) type Found<'s> = (StatusCode, Option<String>, Option<&'s HeaderValue>);

const GONE_TYPE: &str = "text/plain; charset=utf-8";

impl Proxy {
    /// Answers from the redirect tables when one has an entry. Tables that apply to the new
    /// storefront only are skipped for shoppers still on the old one, which serves its own URLs.
    pub(super) fn redirect(
        &self,
        snap: &Arc<Snapshot>,
        req: &ShopperRequest,
        decision: &Decision,
        asked: Asked<'_>,
    ) -> Option<Response<ProxyBody>> {
        let Asked {
            conn,
            started,
            request_id,
            host,
        } = asked;
        let uri = req.uri();
        let (status, location, cache) = self.find_redirect(
            snap,
            decision,
            host,
            uri.path(),
            uri.query(),
            uri.path_and_query().map_or("/", |p| p.as_str()),
        )?;
        let mut finish = redirect_finish(Arc::clone(snap), decision, status, started);
        finish.request_id = request_id.cloned();
        finish.method = req.method().clone();
        finish.access = snap.access_log.is_enabled().then(|| AccessFields {
            uri: uri.clone(),
            host: req.headers().get(HOST).cloned(),
            client_ip: conn.peer.ip(),
        });
        let mut resp = match location {
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
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(GONE_TYPE));
                r
            }
        };
        if let Some(cc) = cache {
            resp.headers_mut().insert(CACHE_CONTROL, cc.clone());
        }
        *resp.status_mut() = status;
        Decoration::new(snap, decision, conn).apply(resp.headers_mut());
        Some(resp)
    }

    /// The HTTP/1 front's redirect: the whole response (the same head and body
    /// [`Proxy::redirect`] gives hyper) is appended to `out`, and its bookkeeping is returned, to
    /// be dropped once the bytes are written.
    pub(super) fn write_front_redirect(
        &self,
        snap: arc_swap::Guard<Arc<Snapshot>>,
        front: FrontAsked<'_>,
        found: (StatusCode, Option<String>, Option<HeaderValue>),
        out: &mut Vec<u8>,
    ) -> Finish {
        let FrontAsked {
            conn,
            head,
            decision,
            started,
        } = front;
        let (status, location, cache) = found;
        let headers = RequestHeaders::Raw(head.headers);
        // Answered from here on: counted and logged as `handle` does.
        let request_id = headers
            .get(&snap.headers.request_id)
            .and_then(|v| HeaderValue::from_bytes(v).ok())
            .filter(valid_request_id);
        self.count_decision(&snap, decision, request_id.as_ref());
        write::status_line(out, status);
        let body = match &location {
            Some(location) => {
                // The check `HeaderValue` makes on hyper's path.
                if HeaderValue::from_str(location).is_ok() {
                    wire::header_line(out, LOCATION.as_str().as_bytes(), &[location.as_bytes()]);
                }
                ""
            }
            None => {
                wire::header_line(
                    out,
                    CONTENT_TYPE.as_str().as_bytes(),
                    &[GONE_TYPE.as_bytes()],
                );
                GONE_BODY
            }
        };
        if let Some(cc) = cache {
            wire::header_line(out, CACHE_CONTROL.as_str().as_bytes(), &[cc.as_bytes()]);
        }
        Decoration::new(&snap, decision, conn).write(out);
        // hyper's framing: a HEAD answer has the GET answer's length and no body, and no length
        // at all when that body is empty.
        let is_head = head.method == Method::HEAD;
        write::end_head(out, (!is_head || !body.is_empty()).then_some(body.len()));
        let sent = if is_head { "" } else { body };
        out.extend_from_slice(sent.as_bytes());
        let access = snap.access_log.is_enabled().then(|| AccessFields {
            uri: Uri::try_from(head.target).unwrap_or_default(),
            host: HeaderValue::from_bytes(head.host).ok(),
            client_ip: conn.peer.ip(),
        });
        let mut finish =
            redirect_finish(arc_swap::Guard::into_inner(snap), decision, status, started);
        finish.request_id = request_id;
        finish.method = head.method.clone();
        finish.bytes = sent.len() as u64;
        finish.access = access;
        finish
    }

    /// The tables' answer: the status to send, the `Location` (`None`: 410) and the
    /// `Cache-Control` (the one decision both servers write, see
    /// [`crate::redirects::probation`]), counted as served. `pq` is the request's path and
    /// query as received.
    pub(super) fn find_redirect<'s>(
        &self,
        snap: &'s Snapshot,
        decision: &Decision,
        host: &str,
        path: &str,
        query: Option<&str>,
        pq: &str,
    ) -> Option<Found<'s>> {
        if snap.redirects.is_empty() {
            return None;
        }
        let on_new = decision.storefront == snap.routing.split.to;
        // `shop.example.` is `shop.example`, as the table keys it.
        let host = host.trim_end_matches('.');
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(host.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(host)
        };
        // The override parameters are cutover's own, as on the way to a storefront: left in,
        // `?cutover=new` would change a query key (no match) or ride along into the Location.
        let stripped = staff_override::strip_path_and_query(path, query, &snap.routing.overrides);
        let pq = stripped.as_deref().unwrap_or(pq);
        let hit = snap
            .redirects
            .iter()
            .filter(|r| on_new || r.table.applies_to() == ApplyTo::All)
            .find_map(|r| r.table.lookup(&host, pq))?;
        let share_bp = snap.routing.split.share_bp;
        let status = hit.status_at(share_bp);
        let held_back = share_bp != FULL_SHARE_BP && hit.during_shift == DuringShift::Temporary;
        let cache = snap.redirect_probation.cache_control(status, held_back);
        snap.metrics.redirect_served(status);
        Some((status, hit.location, cache))
    }
}

/// A redirect's bookkeeping, less what depends on which server parsed the request.
fn redirect_finish(
    snap: Arc<Snapshot>,
    decision: &Decision,
    status: StatusCode,
    started: Instant,
) -> Finish {
    Finish {
        started,
        snap,
        storefront: decision.storefront,
        route: decision.route,
        reason: Reason::Redirect,
        status,
        upstream_ttfb: None,
        request_id: None,
        method: Method::GET,
        bytes: 0,
        complete: false,
        in_flight: None,
        access: None,
        // inventory: a redirect from the plan is not an old-store answer.
        inventory: None,
    }
}
