//! The one rule for sending a storefront request a second time, decided once per request
//! ([`Retry::for_request`]) and obeyed by every client path: the pool's HTTP/1.1 connections,
//! its upgrades, and hyper-util's client (h2, TLS with ALPN).
//!
//! A request is sent again only when it cannot have reached the storefront and repeating it
//! cannot do harm: an idempotent method (RFC 9110 9.2.2), no body to replay, no upgrade. Then a
//! failed connect is tried once more, and so is a pooled keep-alive connection the storefront
//! had closed (found closed before any byte of an answer). Anything else is answered 502/504 at
//! once: a POST is never sent twice. Background calls (etcd, webhooks) back off instead
//! (`crate::retry`).

use http::Method;

/// Whether a storefront request may be sent again; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Sent once, whatever happens.
    Never,
    /// Sent once more on a new connection when the first could not have reached the storefront.
    OnceIfUnsent,
}

impl Retry {
    /// The rule for one request: `body_empty` (nothing to replay) and `upgrade` (a tunnel is
    /// never repeated) as the proxy saw them.
    pub fn for_request(method: &Method, body_empty: bool, upgrade: bool) -> Self {
        if idempotent(method) && body_empty && !upgrade {
            Retry::OnceIfUnsent
        } else {
            Retry::Never
        }
    }

    /// A failed connect (or a pooled connection found closed) is tried once more.
    pub fn again(self) -> bool {
        self == Retry::OnceIfUnsent
    }
}

/// RFC 9110 9.2.2: repeating the request has the effect of sending it once.
fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bodyless_idempotent_requests_are_sent_again() {
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
        ] {
            assert_eq!(
                Retry::for_request(&m, true, false),
                Retry::OnceIfUnsent,
                "{m}"
            );
            assert_eq!(
                Retry::for_request(&m, false, false),
                Retry::Never,
                "{m} with a body"
            );
            assert_eq!(
                Retry::for_request(&m, true, true),
                Retry::Never,
                "{m} upgrade"
            );
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert_eq!(Retry::for_request(&m, true, false), Retry::Never, "{m}");
        }
        assert!(Retry::OnceIfUnsent.again());
        assert!(!Retry::Never.again());
    }
}
