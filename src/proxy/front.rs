//! The HTTP/1 front's questions, from a raw request head: routed once, then answered from the
//! redirect plan (written straight into the front's output), or forwarded to a storefront as
//! hyper's requests are, or left to hyper with nothing counted.
//!
//! A forwarded head becomes the same `Request` hyper would have made of it: the head is copied
//! once into shared bytes, and the URI and every header value are slices of that copy (hyper
//! slices its read buffer the same way), so the later phases cannot tell the servers apart.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Uri};

use super::redirect::FrontAsked;
use super::{strip_port, valid_request_id, ConnInfo, Forwarding, Proxy, ShopperRequest};
use crate::http1::names::header_name;
use crate::http1::Head;
use crate::response::Finish;
use crate::routing::request_headers::RequestHeaders;
use crate::routing::RequestView;

/// What the front does with a head.
// The redirect's bookkeeping is moved once, straight into the front's pending list; boxing it
// would add an allocation to every redirect for a value that lives a few instructions here.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Front {
    /// A redirect, already in the output: its bookkeeping, to be dropped once the bytes are out.
    Answered(Finish),
    /// Forwarded: the response comes from this future.
    Forward(Forwarding),
    /// hyper's (its checks answer it, or nothing here can): nothing was counted, and hyper
    /// decides it afresh.
    Hyper,
}

impl Proxy {
    /// Routes the head at the start of `raw` (`raw` is the head's bytes, all of them) and says
    /// what the front does with it; a redirect is appended to `out`.
    pub(crate) fn answer_front(
        self: &Arc<Self>,
        conn: ConnInfo,
        head: &Head<'_>,
        raw: &[u8],
        out: &mut Vec<u8>,
    ) -> Front {
        let started = Instant::now();
        let snap = self.state.load();
        // `handle`'s checks that answer locally (414, two Hosts) are hyper's to make.
        if head.target.len() > snap.limits.max_uri_length {
            return Front::Hyper;
        }
        let Ok(host) = std::str::from_utf8(head.host) else {
            return Front::Hyper;
        };
        let host = strip_port(host);
        let view = RequestView {
            method: &head.method,
            host,
            path: head.path,
            query: head.query,
            headers: RequestHeaders::Raw(head.headers),
        };
        let decision = self.route(&snap, &view);
        if let Some((status, location, cache)) =
            self.find_redirect(&snap, &decision, host, head.path, head.query, head.target)
        {
            // Owned, so that the snapshot's guard can move into the bookkeeping.
            let found = (status, location, cache.cloned());
            let asked = FrontAsked {
                conn,
                head,
                decision: &decision,
                started,
            };
            return Front::Answered(self.write_front_redirect(snap, asked, found, out));
        }
        let Some(req) = request_from_head(head, raw) else {
            return Front::Hyper;
        };
        let snap = arc_swap::Guard::into_inner(snap);
        let given = req
            .headers()
            .get(&snap.headers.request_id)
            .filter(|v| valid_request_id(v))
            .cloned();
        self.count_decision(&snap, &decision, given.as_ref());
        self.offer_shadow(&snap, conn, &req, &decision, host);
        Front::Forward(Arc::clone(self).start_forward(snap, conn, req, decision, given, started))
    }
}

/// The request hyper would have made of `head`, whose bytes are `raw`. `None` when a value
/// does not make a header (httparse and the head check let through nothing that should not, so
/// hyper is then left to answer it).
fn request_from_head(head: &Head<'_>, raw: &[u8]) -> Option<ShopperRequest> {
    let bytes = Bytes::copy_from_slice(raw);
    let base = raw.as_ptr() as usize;
    // A slice of the head, as the same bytes of the copy.
    let piece = |s: &[u8]| {
        let at = (s.as_ptr() as usize).checked_sub(base)?;
        (at + s.len() <= bytes.len()).then(|| bytes.slice(at..at + s.len()))
    };
    let uri = Uri::from_maybe_shared(piece(head.target.as_bytes())?).ok()?;
    let mut headers = HeaderMap::with_capacity(head.headers.len());
    for h in head.headers {
        let name = header_name(h.name.as_bytes()).ok()?;
        let value = match piece(h.value) {
            Some(v) => HeaderValue::from_maybe_shared(v).ok()?,
            None => HeaderValue::from_bytes(h.value).ok()?,
        };
        headers.append(name, value);
    }
    let mut req = Request::new(None);
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Some(req)
}

#[cfg(test)]
mod tests {
    use std::mem::MaybeUninit;

    use super::*;
    use crate::http1::head::{parse, Parsed, SLOTS};

    #[test]
    fn a_head_becomes_the_request_hyper_would_make() {
        let raw = b"GET /p/q?a=1 HTTP/1.1\r\nHost: shop.example\r\nX-Many: 1\r\nCookie: c=2\r\nx-many: 2\r\nEmpty:\r\n\r\nGET /next";
        let mut slots = [const { MaybeUninit::uninit() }; SLOTS];
        let Parsed::Head(head, len) = parse(raw, &mut slots, &Default::default()) else {
            panic!("a plain head parses");
        };
        let req = request_from_head(&head, &raw[..len]).expect("a request");
        assert_eq!(req.method(), http::Method::GET);
        assert_eq!(req.uri().path(), "/p/q");
        assert_eq!(req.uri().query(), Some("a=1"));
        assert_eq!(req.version(), http::Version::HTTP_11);
        let h = req.headers();
        assert_eq!(h.len(), 5);
        assert_eq!(h["host"], "shop.example");
        assert_eq!(h["cookie"], "c=2");
        let many: Vec<_> = h.get_all("x-many").iter().collect();
        assert_eq!(many, ["1", "2"], "repeated names keep their order");
        assert_eq!(h["empty"], "");
        assert!(req.body().is_none(), "the front takes no bodies");
    }
}
