//! Admit: what a request must pass before it is routed, and the host it is routed by.
//!
//! The HTTP/1 layer (`http1`) has already refused malformed heads and ambiguous framing; these
//! are the checks that need the config (the URL length limit) or apply to both protocols.

use http::header::HOST;
use http::{Method, StatusCode};

use super::{strip_port, ShopperRequest};
use crate::state::Snapshot;

/// A request refused before routing: its status and the one-line reason the shopper sees.
pub(super) type Refusal = (StatusCode, &'static str);

/// The host to route `req` by (port stripped), or why it is refused.
///
/// The host is the URI's authority when the request has one (an absolute-form HTTP/1 target,
/// whose Host header a server must ignore per RFC 9112 section 3.2.2; an h2 `:authority`), else
/// the Host header; `""` for HTTP/1.0 without Host. Routing and per-host redirect rows see the
/// same host either way.
pub(super) fn admit<'r>(snap: &Snapshot, req: &'r ShopperRequest) -> Result<&'r str, Refusal> {
    let path_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if path_len > snap.limits.max_uri_length {
        return Err((StatusCode::URI_TOO_LONG, "the URL is too long"));
    }
    // RFC 9112 section 3.2: more than one Host is a 400; routing and the storefront must never
    // disagree about which one counts.
    let mut hosts = req.headers().get_all(HOST).iter();
    let host_header = hosts.next();
    if hosts.next().is_some() {
        return Err((StatusCode::BAD_REQUEST, "more than one Host header"));
    }
    if req.method() == Method::CONNECT {
        return Err((StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported"));
    }
    Ok(strip_port(
        req.uri()
            .authority()
            .map(|a| a.as_str())
            .or_else(|| host_header.and_then(|h| h.to_str().ok()))
            .unwrap_or(""),
    ))
}
