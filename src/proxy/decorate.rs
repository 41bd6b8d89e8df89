//! Headers cutover adds to every response it sends, whichever server writes it.

use http::header::{SET_COOKIE, STRICT_TRANSPORT_SECURITY};
use http::{HeaderMap, HeaderValue};

use super::{ConnInfo, STOREFRONT_HEADER};
use crate::http1::wire;
use crate::routing::cohort;
use crate::routing::Decision;
use crate::state::Snapshot;

/// The storefront header, HSTS on TLS listeners, and the cohort cookie when it changed.
///
/// Worked out once, then either inserted into hyper's response map ([`Decoration::apply`]) or
/// written into a response head by the HTTP/1 front ([`Decoration::write`]), so both paths
/// send the same headers.
pub(crate) struct Decoration<'s> {
    hsts: Option<&'s HeaderValue>,
    storefront: Option<&'s HeaderValue>,
    set_cookie: Option<String>,
}

impl<'s> Decoration<'s> {
    /// What a response to this request carries.
    pub(crate) fn new(snap: &'s Snapshot, decision: &Decision, conn: ConnInfo) -> Self {
        let hsts = conn
            .tls
            .then(|| snap.listeners.get(conn.listener))
            .flatten()
            .and_then(|l| l.hsts.as_ref());
        let storefront = snap
            .headers
            .storefront_response
            .then(|| &snap.storefronts[decision.storefront].name_header);
        let set_cookie = decision.set_cookie.as_ref().map(|cookie| {
            cohort::set_cookie(
                &snap.routing.cohort,
                cookie,
                |id| snap.storefronts[id].name.as_str(),
                conn.tls,
            )
        });
        Decoration {
            hsts,
            storefront,
            set_cookie,
        }
    }

    /// Into hyper's response headers.
    pub(crate) fn apply(self, h: &mut HeaderMap) {
        if let Some(hsts) = self.hsts {
            h.insert(STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        if let Some(name) = self.storefront {
            h.insert(STOREFRONT_HEADER.clone(), name.clone());
        }
        if let Some(v) = self.set_cookie.and_then(|c| HeaderValue::try_from(c).ok()) {
            h.append(SET_COOKIE, v);
        }
    }

    /// Into an HTTP/1.1 response head, one `name: value\r\n` line each.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        if let Some(hsts) = self.hsts {
            wire::header_line(
                out,
                STRICT_TRANSPORT_SECURITY.as_str().as_bytes(),
                &[hsts.as_bytes()],
            );
        }
        if let Some(name) = self.storefront {
            wire::header_line(
                out,
                STOREFRONT_HEADER.as_str().as_bytes(),
                &[name.as_bytes()],
            );
        }
        // The same check `apply` makes: a value that is not a valid header is left out.
        if let Some(c) = self
            .set_cookie
            .as_ref()
            .filter(|c| HeaderValue::from_str(c).is_ok())
        {
            wire::header_line(out, SET_COOKIE.as_str().as_bytes(), &[c.as_bytes()]);
        }
    }
}
