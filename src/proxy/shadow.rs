//! The request path's two steps of issue 18: offering a request to the shadow mirror, and the
//! 404 fallback (new answers a fallback status to a GET/HEAD without a body on a fallback route:
//! ask old the same request, and serve old's answer when it has the page).
//!
//! Both stay off the cost of an ordinary request: without `[shadow]` the offer is one `None`
//! check, and with it [`Shadow::offer`](crate::shadow::Shadow::offer) decides without
//! allocating unless the request is sampled. The fallback clones the request head only on a
//! fallback route, for a replayable request to new; new's fallback answer is held unread (its
//! body never reaches the shopper) while old is asked.

use http::header::HOST;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};

use super::{send, ConnInfo, Proxy, SendError, ShopperRequest, REASON_HEADER, STOREFRONT_HEADER};
use crate::headers::outgoing::Outgoing;
use crate::headers::Hop;
use crate::routing::staff_override;
use crate::routing::{Decision, Reason};
use crate::shadow::fallback::{outcome, should_ask_old, FallbackDecision, FallbackResult};
use crate::shadow::{OfferRequest, Storefront};
use crate::state::shadow::FallbackPlane;
use crate::state::Snapshot;
use crate::upstream::{HostHeader, ResponseBody, Retry};

/// `x-cutover-reason` of an answer old served in new's place.
pub static FALLBACK_REASON: HeaderValue = HeaderValue::from_static("fallback");

/// What a fallback needs of the shopper's request once its head has gone to new.
pub(super) struct Replay {
    method: Method,
    pq: PathAndQuery,
    headers: HeaderMap,
    host: Option<HeaderValue>,
    version: Version,
}

/// What the fallback step did with new's answer.
pub(super) enum Answer {
    /// New's own answer (no fallback, or old did not have the page).
    New(Response<ResponseBody>),
    /// Old's answer, to be marked with [`mark_fallback`].
    Old(Response<ResponseBody>),
}

/// What [`Proxy::fall_back`] made of new's answer.
pub(super) enum Fallback<'s> {
    /// Decided without asking old.
    Done(Answer),
    /// Old is to be asked ([`Proxy::ask_old`]); boxed, as the exchange with old will be.
    AskOld(Box<AskOld<'s>>),
}

/// A fallback waiting to ask old: the plane, the request to replay, new's answer (held unread).
pub(super) struct AskOld<'s> {
    plane: &'s FallbackPlane,
    replay: Replay,
    resp: Response<ResponseBody>,
}

/// The storefront side of the split a decision landed on, for the mirror.
fn side(snap: &Snapshot, decision: &Decision) -> Option<Storefront> {
    let split = &snap.routing.split;
    if decision.storefront == split.from {
        Some(Storefront::Old)
    } else if decision.storefront == split.to {
        Some(Storefront::New)
    } else {
        None
    }
}

/// Whether a fallback may answer for new on this decision: a fallback route, the split's new
/// side, and not a staff override (staff forcing new must see new's own 404s).
fn falls_back(snap: &Snapshot, plane: &FallbackPlane, decision: &Decision) -> bool {
    plane.on(decision.route)
        && decision.storefront == snap.routing.split.to
        && decision.reason != Reason::Override
}

/// The redirect plan's target for `pq` on `host`, as the shopper's own redirect would be.
fn plan_target(snap: &Snapshot, host: &str, pq: &str) -> Option<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    snap.redirects
        .iter()
        .find_map(|r| r.table.lookup(&host, pq))
        .and_then(|hit| hit.location)
}

impl Proxy {
    /// Offers the request to the shadow mirror (never waits; see the module documentation).
    /// The staff override's parameters are taken out first: its token must not reach a copy or
    /// the report.
    pub(super) fn offer_shadow(
        &self,
        snap: &Snapshot,
        conn: ConnInfo,
        req: &ShopperRequest,
        decision: &Decision,
        host: &str,
    ) {
        let Some(plane) = &snap.shadow else {
            return;
        };
        let Some(served_by) = side(snap, decision) else {
            return;
        };
        let uri = req.uri();
        let stripped =
            staff_override::strip_path_and_query(uri.path(), uri.query(), &snap.routing.overrides)
                .and_then(|pq| Uri::try_from(pq).ok());
        let offer = OfferRequest {
            method: req.method(),
            uri: stripped.as_ref().unwrap_or(uri),
            headers: req.headers(),
            served_by,
            route: &snap.routing.routes[decision.route].name,
            scheme: if conn.tls { "https" } else { "http" },
        };
        plane.shadow.offer(&offer, |pq| plan_target(snap, host, pq));
    }

    /// Keeps what a fallback would replay, only when one may happen: a fallback route, a
    /// request to new, a method that may be replayed and no body. A fallback status on new for
    /// any other request on a fallback route counts as `not_eligible` in [`Proxy::fall_back`].
    pub(super) fn keep_for_fallback(
        snap: &Snapshot,
        decision: &Decision,
        parts: &http::request::Parts,
        pq: &PathAndQuery,
        has_body: bool,
    ) -> Option<Replay> {
        let plane = snap.fallback.as_ref()?;
        if !falls_back(snap, plane, decision) {
            return None;
        }
        if has_body || !(parts.method == Method::GET || parts.method == Method::HEAD) {
            return None;
        }
        Some(Replay {
            method: parts.method.clone(),
            pq: pq.clone(),
            headers: parts.headers.clone(),
            host: parts.headers.get(HOST).cloned().or_else(|| {
                parts
                    .uri
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            }),
            version: parts.version,
        })
    }

    /// New answered: on a fallback route with a fallback status, old is to be asked (see the
    /// module documentation); otherwise new's answer stands.
    ///
    /// Decided here without waiting, and the exchange with old ([`Proxy::ask_old`]) is the
    /// caller's to box: it holds a whole storefront exchange, and awaited inline it made the
    /// forward phase's future 5,816 bytes instead of ~3,000, copied into its box on every
    /// proxied request (`examples/future_sizes.rs`).
    pub(super) fn fall_back<'s>(
        snap: &'s Snapshot,
        decision: &Decision,
        method: &Method,
        replay: Option<Replay>,
        resp: Response<ResponseBody>,
    ) -> Fallback<'s> {
        let Some(plane) = snap.fallback.as_ref() else {
            return Fallback::Done(Answer::New(resp));
        };
        if !falls_back(snap, plane, decision) {
            return Fallback::Done(Answer::New(resp));
        }
        let status = resp.status().as_u16();
        let has_body = replay.is_none();
        match should_ask_old(method, has_body, status, &plane.statuses) {
            FallbackDecision::Serve => return Fallback::Done(Answer::New(resp)),
            FallbackDecision::NotEligible => {
                plane.counters.record(FallbackResult::NotEligible);
                return Fallback::Done(Answer::New(resp));
            }
            FallbackDecision::AskOld => {}
        }
        let Some(replay) = replay else {
            return Fallback::Done(Answer::New(resp));
        };
        Fallback::AskOld(Box::new(AskOld {
            plane,
            replay,
            resp,
        }))
    }

    /// Asks old for the page new did not have. Old down, failing or without the page: new's
    /// original answer.
    pub(super) async fn ask_old(
        &self,
        snap: &Snapshot,
        conn: ConnInfo,
        ask: Box<AskOld<'_>>,
    ) -> Answer {
        let AskOld {
            plane,
            replay,
            resp,
        } = *ask;
        let old_id = snap.routing.split.from;
        let old = &snap.storefronts[old_id];
        let up = &old.upstream;
        let url = replay.pq.as_str().to_owned();
        let mut req = Request::new(crate::body::UpstreamBody::Empty);
        *req.method_mut() = replay.method;
        *req.uri_mut() = up.request_uri(replay.pq);
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = replay.headers;
        let outgoing = Outgoing {
            hop: Hop {
                client: conn.peer.ip(),
                proto: if conn.tls { "https" } else { "http" },
                host: replay.host.as_ref(),
            },
            trust_forwarded: snap.headers.trust_forwarded,
            via: snap.headers.via.then_some(replay.version),
            host: match up.settings.host_header {
                HostHeader::Upstream => Some(&up.authority_header),
                HostHeader::Client => replay.host.as_ref(),
            },
            remove: [
                &snap.routing.overrides.header,
                &staff_override::TOKEN_HEADER_NAME,
            ],
            set: [
                snap.headers
                    .decision_upstream
                    .then_some((&STOREFRONT_HEADER, &old.name_header)),
                snap.headers
                    .decision_upstream
                    .then_some((&REASON_HEADER, &FALLBACK_REASON)),
                None,
                None,
            ],
        };
        let answered = match send(up, req, &outgoing, Retry::OnceIfUnsent).await {
            Ok(old_resp) => {
                old.health.success();
                Some(old_resp)
            }
            Err(SendError::HeaderTimeout) => None,
            Err(SendError::Client(e)) => {
                tracing::debug!(storefront = %old.name, error = %e, "fallback to old failed");
                None
            }
        };
        let result = outcome(
            answered.as_ref().map(|r| r.status().as_u16()),
            &plane.statuses,
        );
        plane.counters.record(result);
        match (result, answered) {
            (FallbackResult::Served, Some(old_resp)) => {
                plane.urls.record(&url);
                Answer::Old(old_resp)
            }
            _ => Answer::New(resp),
        }
    }
}

/// Marks an answer old served in new's place: `x-cutover-storefront: old` (whatever the header
/// policy) and `x-cutover-reason: fallback`.
pub(super) fn mark_fallback(snap: &Snapshot, headers: &mut HeaderMap) {
    let old = &snap.storefronts[snap.routing.split.from];
    headers.insert(STOREFRONT_HEADER.clone(), old.name_header.clone());
    headers.insert(REASON_HEADER.clone(), FALLBACK_REASON.clone());
}
