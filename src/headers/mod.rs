//! Header hygiene between shopper and storefront: hop-by-hop removal (RFC 9110 section 7.6.1) and
//! the forwarding headers nginx, HAProxy and Envoy users expect.
//!
//! Layer: policy. May import its own layer and wire; never edge, control, server, request, config,
//! snapshot, observe, clients, domain.

use std::fmt::Write as _;
use std::net::IpAddr;

use bytes::Bytes;
use http::header::Entry;
use http::header::{CONNECTION, COOKIE, TE, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::http1::framing::HOP_BY_HOP_BY_NAME;

pub mod outgoing;

/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `Forwarded` (RFC 7239).
pub static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
/// `Via`.
pub static VIA: HeaderName = HeaderName::from_static("via");

/// Whether `Connection` lists `token` (case-insensitive). Works on the bytes: most messages
/// carry one short `Connection` value, often none.
pub fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// Removes hop-by-hop headers and every header named in `Connection`. With `upgrade`, the
/// `Upgrade` header survives and `Connection: upgrade` is re-added so the storefront sees the
/// handshake (the only hop-by-hop exchange a proxy must relay).
///
/// Runs twice per proxied request, so it first looks at the names once (cheap comparisons of
/// pre-parsed names) and only then removes what is there: a removal by name costs a hash and a
/// probe, and most messages carry no hop-by-hop header but `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let (mut connection, mut te, mut hop) = (false, false, false);
    for name in headers.keys() {
        // Most names have a length no hop-by-hop name has: one lookup instead of eight
        // comparisons (byte comparisons for custom names) per header, twice per request.
        if !hop_by_hop_length(name.as_str().len()) {
            continue;
        }
        if name == CONNECTION {
            connection = true;
        } else if name == TE {
            te = true;
        } else if HOP_BY_HOP_BY_NAME.contains(name) {
            hop = true;
        }
    }
    if connection {
        // The values are cheap reference-counted clones; usually there is exactly one.
        let mut values = headers.get_all(CONNECTION).iter();
        let first = values.next().cloned();
        let rest: Vec<HeaderValue> = values.cloned().collect();
        headers.remove(CONNECTION);
        for value in first.iter().chain(&rest) {
            let Ok(list) = value.to_str() else { continue };
            for token in list.split(',').map(str::trim) {
                // The usual values name no header of their own: `keep-alive` is in the list
                // below (removed only when present), `close` is an option, not a field.
                if token.eq_ignore_ascii_case("keep-alive") || token.eq_ignore_ascii_case("close") {
                    continue;
                }
                if !(upgrade && token.eq_ignore_ascii_case("upgrade")) {
                    // Removal by `&str` parses the name without allocating; a token that is not
                    // a valid header name matches nothing.
                    headers.remove(token);
                }
            }
        }
    }
    if hop {
        // `Connection` went above, `TE` is judged by its value below.
        for name in HOP_BY_HOP_BY_NAME {
            if !(upgrade && name == UPGRADE) {
                headers.remove(name);
            }
        }
    }
    // `TE: trailers` is the one value that is end-to-end meaningful (gRPC over h2 needs it).
    if te
        && !headers
            .get_all(TE)
            .iter()
            .all(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.remove(TE);
    }
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Whether a name of `len` bytes may be hop-by-hop: the lengths of `framing::HOP_BY_HOP` (2
/// `te`, 7 `trailer` `upgrade`, 10 `connection` `keep-alive`, 16 `proxy-connection`, 17
/// `transfer-encoding`, 18 `proxy-authenticate`; a unit test holds the two together).
fn hop_by_hop_length(len: usize) -> bool {
    const LENGTHS: u32 = 1 << 2 | 1 << 7 | 1 << 10 | 1 << 16 | 1 << 17 | 1 << 18;
    len < 32 && LENGTHS >> len & 1 == 1
}

/// What the proxy knows about the hop it is adding.
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    /// The shopper's (or the previous proxy's) address.
    pub client: IpAddr,
    /// `http` or `https`, as the shopper connected to us.
    pub proto: &'static str,
    /// The Host the shopper asked for (none for HTTP/1.0 without Host).
    pub host: Option<&'a HeaderValue>,
}

/// An IP address as text, formatted on the stack (the longest IPv6 text is 39 bytes).
pub(crate) struct IpText {
    buf: [u8; 48],
    len: usize,
}

impl IpText {
    pub(crate) fn new(ip: IpAddr) -> Self {
        let mut t = IpText {
            buf: [0; 48],
            len: 0,
        };
        match ip {
            // The common case, without the formatting machinery.
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        t.push(b'.');
                    }
                    if octet >= 100 {
                        t.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        t.push(b'0' + octet / 10 % 10);
                    }
                    t.push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(v6) => {
                let _ = write!(t, "{v6}");
            }
        }
        t
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Writes one line of a list header: the `lines` already there (several lines of a list header
/// are one list, RFC 9110 section 5.3; blank ones dropped), then `ours`, comma-separated. Shared
/// by the map path below and the request writer ([`crate::headers::outgoing`]), so both fold alike.
pub(crate) fn fold_list<'a>(
    out: &mut Vec<u8>,
    lines: impl Iterator<Item = &'a HeaderValue>,
    ours: &[&[u8]],
) {
    for line in lines {
        let line = line.as_bytes().trim_ascii();
        if !line.is_empty() {
            out.extend_from_slice(line);
            out.extend_from_slice(b", ");
        }
    }
    for part in ours {
        out.extend_from_slice(part);
    }
}

/// Sets `name` to the concatenation of `parts`, or appends `, <parts>` to the list already
/// there (folded into one line). One hash lookup and one exactly-sized allocation that the
/// header owns.
fn append_or_set(headers: &mut HeaderMap, name: &HeaderName, parts: &[&[u8]]) {
    let own: usize = parts.iter().map(|p| p.len()).sum();
    match headers.entry(name) {
        Entry::Vacant(slot) => {
            let mut value = Vec::with_capacity(own);
            fold_list(&mut value, std::iter::empty(), parts);
            if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
                slot.insert(v);
            }
        }
        Entry::Occupied(mut lines) => {
            let before: usize = lines.iter().map(|v| v.len() + 2).sum();
            let mut value = Vec::with_capacity(before + own);
            fold_list(&mut value, lines.iter(), parts);
            if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
                lines.insert(v);
            }
        }
    }
}

/// Sets or appends `X-Forwarded-For/-Proto/-Host` and `Forwarded`.
///
/// `X-Forwarded-For` and `Forwarded` always append (nginx's `$proxy_add_x_forwarded_for`); the
/// proto and host are ours unless `trust` says a load balancer in front already set them.
pub fn add_forwarded(headers: &mut HeaderMap, hop: Hop<'_>, trust: bool) {
    let ip = IpText::new(hop.client);
    append_or_set(headers, &X_FORWARDED_FOR, &[ip.as_bytes()]);
    let proto = HeaderValue::from_static(hop.proto);
    if trust {
        headers.entry(&X_FORWARDED_PROTO).or_insert(proto);
    } else {
        headers.insert(&X_FORWARDED_PROTO, proto);
    }
    // The shopper's own Host value, shared rather than copied.
    let host = hop.host.filter(|h| !h.is_empty());
    if let Some(host) = host {
        if trust {
            headers
                .entry(&X_FORWARDED_HOST)
                .or_insert_with(|| host.clone());
        } else {
            headers.insert(&X_FORWARDED_HOST, host.clone());
        }
    }
    let element = ForwardedElement::new(&ip, hop);
    append_or_set(headers, &FORWARDED, &element.parts());
}

/// This hop's `Forwarded` element (RFC 7239): `for=<ip>;proto=<scheme>;host="<host>"`, as
/// pieces borrowed from the hop, so it is written without being assembled first.
pub(crate) struct ForwardedElement<'a> {
    parts: [&'a [u8]; 8],
}

impl<'a> ForwardedElement<'a> {
    /// The element for `hop`, whose address is `ip`. A host that cannot be a quoted string is
    /// left out rather than escaped.
    pub(crate) fn new(ip: &'a IpText, hop: Hop<'a>) -> Self {
        let (for_open, for_close): (&[u8], &[u8]) = match hop.client {
            IpAddr::V4(_) => (b"for=", b""),
            IpAddr::V6(_) => (b"for=\"[", b"]\""),
        };
        let host = hop.host.map(HeaderValue::as_bytes).filter(|h| {
            !h.is_empty()
                && h.iter()
                    .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        });
        let (host_open, host, host_close): (&[u8], &[u8], &[u8]) = match host {
            Some(host) => (b";host=\"", host, b"\""),
            None => (b"", b"", b""),
        };
        ForwardedElement {
            parts: [
                for_open,
                ip.as_bytes(),
                for_close,
                b";proto=",
                hop.proto.as_bytes(),
                host_open,
                host,
                host_close,
            ],
        }
    }

    /// The pieces, in order.
    pub(crate) fn parts(&self) -> [&'a [u8]; 8] {
        self.parts
    }
}

/// Joins several `Cookie` fields into one, separated by "; ". Browsers send each cookie as its
/// own field over HTTP/2 (RFC 9113 section 8.2.3), and that section requires joining them before
/// the request goes on as HTTP/1.1: storefronts commonly read only the first `Cookie` header.
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(COOKIE).iter();
    let (Some(first), Some(_)) = (values.next(), values.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for v in headers.get_all(COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, v);
    }
}

/// This hop's `Via` element for a message received as `version`.
pub(crate) fn via_value(version: http::Version) -> &'static [u8] {
    if version == http::Version::HTTP_2 {
        b"2 cutover"
    } else {
        b"1.1 cutover"
    }
}

/// Appends `Via: 1.1 cutover`.
pub fn add_via(headers: &mut HeaderMap, version: http::Version) {
    append_or_set(headers, &VIA, &[via_value(version)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn every_hop_by_hop_name_has_a_hop_by_hop_length() {
        for name in &crate::http1::framing::HOP_BY_HOP {
            assert!(hop_by_hop_length(name.as_str().len()), "{name}");
        }
        assert!(!hop_by_hop_length("content-length".len()));
        assert!(!hop_by_hop_length(4096));
    }

    #[test]
    fn removes_hop_by_hop_and_connection_named() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "gzip"),
            ("trailer", "x"),
            ("proxy-connection", "keep-alive"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["accept"]);
    }

    #[test]
    fn keeps_te_trailers_and_upgrade_handshake() {
        let mut h = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
        ]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["te"], "trailers");
    }

    static SHOP: HeaderValue = HeaderValue::from_static("shop.example");

    #[test]
    fn forwarded_headers_set_and_appended() {
        let hop = Hop {
            client: "10.0.0.9".parse().unwrap(),
            proto: "https",
            host: Some(&SHOP),
        };
        let mut fresh = HeaderMap::new();
        add_forwarded(&mut fresh, hop, false);
        assert_eq!(fresh["x-forwarded-for"], "10.0.0.9");
        assert_eq!(fresh["x-forwarded-proto"], "https");
        assert_eq!(fresh["x-forwarded-host"], "shop.example");
        assert_eq!(
            fresh["forwarded"],
            "for=10.0.0.9;proto=https;host=\"shop.example\""
        );

        let mut seen = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
            ("x-forwarded-proto", "http"),
            ("forwarded", "for=1.1.1.1"),
        ]);
        add_forwarded(&mut seen, hop, false);
        assert_eq!(seen["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.0.0.9");
        assert_eq!(
            seen["x-forwarded-proto"], "https",
            "untrusted proto is overwritten"
        );
        assert_eq!(
            seen["forwarded"],
            "for=1.1.1.1, for=10.0.0.9;proto=https;host=\"shop.example\""
        );

        let mut trusted = map(&[("x-forwarded-proto", "http")]);
        add_forwarded(&mut trusted, hop, true);
        assert_eq!(trusted["x-forwarded-proto"], "http");
        assert_eq!(trusted["x-forwarded-host"], "shop.example", "absent: ours");

        // Every line of a list header survives, in order, as one line.
        let mut lines = map(&[
            ("forwarded", "for=1.1.1.1"),
            ("forwarded", " "),
            ("forwarded", "for=2.2.2.2;proto=http"),
            ("via", "1.1 edge"),
            ("via", "1.1 lb"),
        ]);
        add_forwarded(&mut lines, hop, false);
        add_via(&mut lines, http::Version::HTTP_11);
        let all: Vec<_> = lines.get_all("forwarded").iter().collect();
        assert_eq!(
            all,
            ["for=1.1.1.1, for=2.2.2.2;proto=http, for=10.0.0.9;proto=https;host=\"shop.example\""]
        );
        assert_eq!(
            lines.get_all("via").iter().collect::<Vec<_>>(),
            ["1.1 edge, 1.1 lb, 1.1 cutover"]
        );
    }

    #[test]
    fn connection_named_headers_go_across_several_lines() {
        let mut h = map(&[
            ("connection", "a"),
            ("connection", "B, keep-alive,, not a name"),
            ("a", "1"),
            ("b", "2"),
            ("not", "3"),
            ("c", "4"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["c", "not"]);

        let mut clean = map(&[("accept", "*/*"), ("te", "trailers, gzip")]);
        strip_hop_by_hop(&mut clean, false);
        let names: Vec<&str> = clean.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["accept"]);
    }

    #[test]
    fn ip_text_is_the_display_form() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.0.100.9",
            "99.100.199.255",
            "255.255.255.255",
            "::1",
            "::ffff:1.2.3.4",
            "2001:db8::8a2e:370:7334",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(IpText::new(ip).as_bytes(), ip.to_string().as_bytes());
        }
    }

    #[test]
    fn via_appends() {
        let mut h = map(&[("via", "1.0 edge")]);
        add_via(&mut h, http::Version::HTTP_11);
        assert_eq!(h["via"], "1.0 edge, 1.1 cutover");
        let mut h = HeaderMap::new();
        add_via(&mut h, http::Version::HTTP_2);
        assert_eq!(h["via"], "2 cutover");
    }

    #[test]
    fn ipv6_is_quoted_in_forwarded() {
        let mut h = HeaderMap::new();
        let hop = Hop {
            client: "::1".parse().unwrap(),
            proto: "http",
            host: None,
        };
        add_forwarded(&mut h, hop, false);
        assert_eq!(h["forwarded"], "for=\"[::1]\";proto=http");
    }

    #[test]
    fn h2_cookie_fields_are_joined() {
        let mut h = HeaderMap::new();
        join_cookies(&mut h);
        assert!(h.get(COOKIE).is_none());
        h.append(COOKIE, HeaderValue::from_static("a=1"));
        join_cookies(&mut h);
        assert_eq!(h.get_all(COOKIE).iter().collect::<Vec<_>>(), ["a=1"]);
        h.append(COOKIE, HeaderValue::from_static("b=2"));
        h.append(COOKIE, HeaderValue::from_static("c=3; d=4"));
        join_cookies(&mut h);
        assert_eq!(
            h.get_all(COOKIE).iter().collect::<Vec<_>>(),
            ["a=1; b=2; c=3; d=4"]
        );
    }
}
