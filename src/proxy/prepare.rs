//! Prepare: the shopper's request turned into the storefront's, and what the later phases keep
//! of it (the missed-redirect key, the inventory's fields, the fallback's replay, the upgrade).
//!
//! Everything kept is a clone of reference-counted bytes (`HeaderValue`, `PathAndQuery`), never
//! a copy of the URL.

use http::header::{HOST, UPGRADE, USER_AGENT};
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Version};
use hyper::upgrade::OnUpgrade;

use super::shadow::Replay;
use super::{ConnInfo, Proxy, ShopperRequest, GENERATION_HEADER, REASON_HEADER, STOREFRONT_HEADER};
use crate::body::{IdleTimeout, UpstreamBody};
use crate::headers::outgoing::Outgoing;
use crate::headers::{self, Hop};
use crate::response::InventoryFields;
use crate::routing::staff_override;
use crate::routing::Decision;
use crate::state::Snapshot;
use crate::upstream::{HostHeader, Retry};

/// What the later phases keep of the shopper's request once the storefront's is built.
pub(super) struct Outbound {
    /// The shopper's method, for the record and the fallback.
    pub method: Method,
    /// The shopper's protocol version (the `Via` header names it).
    pub client_version: Version,
    /// The Host header (or the absolute-form/h2 authority), for forwarded headers and misses.
    pub host: Option<HeaderValue>,
    /// Path and query without the staff override's parameters: the token never reaches the
    /// missed-redirect list.
    pub path_and_query: PathAndQuery,
    /// The shopper's side of an `Upgrade` (WebSocket), when it asked for one.
    pub client_upgrade: Option<OnUpgrade>,
    /// Whether the request may be sent again when it cannot have reached the storefront.
    pub retry: Retry,
    /// What the 404 fallback would replay to old (fallback routes only).
    pub replay: Option<Replay>,
    /// The URL inventory's fields (either side of the split, GET/HEAD, inventory on).
    pub inventory: Option<InventoryFields>,
}

impl Outbound {
    /// Builds the storefront's request from the shopper's (hop-by-hop headers stripped, the
    /// override's parameters removed), and what the later phases keep.
    pub(super) fn prepare(
        snap: &Snapshot,
        req: ShopperRequest,
        decision: &Decision,
    ) -> (Request<UpstreamBody>, Self) {
        let up = &snap.storefronts[decision.storefront].upstream;
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
        let path_and_query = without_override(snap, &parts.uri);
        // Old's answers are the inventory's hits; new's are evidence on them (coverage).
        let split = &snap.routing.split;
        let inventory = (snap.inventory_config.is_some()
            && (decision.storefront == split.from || decision.storefront == split.to)
            && matches!(parts.method, Method::GET | Method::HEAD))
        .then(|| InventoryFields {
            path_and_query: path_and_query.clone(),
            host: host.clone(),
            user_agent: parts.headers.get(USER_AGENT).cloned(),
        });

        let h = &mut parts.headers;
        headers::strip_hop_by_hop(h, upgrade);
        if client_version == Version::HTTP_2 {
            headers::join_cookies(h);
        }
        let body = body.filter(|b| !hyper::body::Body::is_end_stream(b));
        let body_empty = body.is_none();
        let replay = Proxy::keep_for_fallback(snap, decision, &parts, &path_and_query, !body_empty);
        let retry = Retry::for_request(&parts.method, body_empty, upgrade);
        let mut request = Request::new(match body {
            None => UpstreamBody::Empty,
            Some(body) => {
                UpstreamBody::Client(IdleTimeout::new(body, snap.limits.body_idle_timeout))
            }
        });
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = up.request_uri(path_and_query.clone());
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = parts.headers;
        let kept = Outbound {
            method: parts.method,
            client_version,
            host,
            path_and_query,
            client_upgrade,
            retry,
            replay,
            inventory,
        };
        (request, kept)
    }

    /// What cutover writes beside the shopper's headers: forwarded headers, `Via`, `Host`, the
    /// request id and the decision headers, and the override's headers removed.
    pub(super) fn outgoing<'a>(
        &'a self,
        snap: &'a Snapshot,
        decision: &Decision,
        conn: ConnInfo,
        request_id: &'a HeaderValue,
        reason: &'a HeaderValue,
    ) -> Outgoing<'a> {
        let sf = &snap.storefronts[decision.storefront];
        let decision_headers = snap.headers.decision_upstream;
        Outgoing {
            hop: Hop {
                client: conn.peer.ip(),
                proto: if conn.tls { "https" } else { "http" },
                host: self.host.as_ref(),
            },
            trust_forwarded: snap.headers.trust_forwarded,
            via: snap.headers.via.then_some(self.client_version),
            host: match sf.upstream.settings.host_header {
                HostHeader::Upstream => Some(&sf.upstream.authority_header),
                HostHeader::Client => self.host.as_ref(),
            },
            remove: [
                &snap.routing.overrides.header,
                &staff_override::TOKEN_HEADER_NAME,
            ],
            set: [
                Some((&snap.headers.request_id, request_id)),
                decision_headers.then_some((&STOREFRONT_HEADER, &sf.name_header)),
                decision_headers.then_some((&REASON_HEADER, reason)),
                decision_headers.then_some((&GENERATION_HEADER, &snap.generation_header)),
            ],
        }
    }
}

/// The request's path and query without the staff override's parameters.
fn without_override(snap: &Snapshot, uri: &http::Uri) -> PathAndQuery {
    let pq = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    match staff_override::strip_path_and_query(pq.path(), pq.query(), &snap.routing.overrides) {
        None => pq,
        Some(stripped) => PathAndQuery::try_from(stripped).unwrap_or(pq),
    }
}
