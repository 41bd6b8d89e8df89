//! The headers cutover sets on a request on its way to a storefront, kept beside the shopper's
//! headers until the request is written.
//!
//! Why not insert them into the request's `HeaderMap` straight away: every insert of a
//! non-standard name hashes it, probes, and often grows the map, and each list it appends to
//! (`X-Forwarded-For`, `Forwarded`) costs a lookup, an allocation and a copy. That was ~5,000
//! instructions of a proxied request (callgrind, `benches/callgrind.sh proxy`). The pool's
//! HTTP/1.1 writer ([`crate::upstream::h1`]) instead writes the shopper's headers, skipping
//! those these replace, then these, straight into the request head: what nginx's
//! `proxy_set_header` does. hyper-util's client (h2, or TLS where ALPN decides) and upgrades get
//! the same headers applied to the map by [`Outgoing::apply`]; a unit test holds the two
//! equal.

use http::header::{FORWARDED, HOST, VIA};
use http::{HeaderMap, HeaderName, HeaderValue, Version};

use crate::headers::{self, Hop};
use crate::http1::wire;

/// What the proxy sets on one request; borrowed from the request's own state and snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The hop being added (client address, scheme, the shopper's Host).
    pub hop: Hop<'a>,
    /// Keep `X-Forwarded-Proto/-Host` a load balancer in front already set.
    pub trust_forwarded: bool,
    /// Append `Via` (the shopper's protocol version), when configured.
    pub via: Option<Version>,
    /// The Host the storefront sees, replacing the shopper's; `None` leaves it.
    pub host: Option<&'a HeaderValue>,
    /// Shopper headers that never reach the storefront (the staff override and its token).
    pub remove: [&'a HeaderName; 2],
    /// Headers set to these values, replacing any the shopper sent (request id, decision).
    pub set: [Option<(&'a HeaderName, &'a HeaderValue)>; 4],
}

/// Which of the shopper's forwarding headers were seen while writing the rest.
#[derive(Default)]
struct Seen {
    xff: bool,
    xfp: bool,
    xfh: bool,
    forwarded: bool,
    via: bool,
}

impl Outgoing<'_> {
    /// Applies the headers to a map (for clients that take the request as a `HeaderMap`).
    pub fn apply(&self, h: &mut HeaderMap) {
        for name in self.remove {
            h.remove(name);
        }
        headers::add_forwarded(h, self.hop, self.trust_forwarded);
        if let Some(version) = self.via {
            headers::add_via(h, version);
        }
        if let Some(host) = self.host {
            h.insert(HOST, host.clone());
        }
        for (name, value) in self.set.iter().flatten() {
            h.insert(*name, (*value).clone());
        }
    }

    /// Whether the shopper's `name` is dropped because it is removed or replaced here.
    fn replaces(&self, name: &HeaderName) -> bool {
        self.remove.contains(&name) || self.set.iter().flatten().any(|(n, _)| *n == name)
    }

    /// Writes the header lines of `h` and these into a request head (not the final CRLF).
    /// `Transfer-Encoding` is never written, `Content-Length` only with `keep_length`: the
    /// writer frames the body itself.
    pub fn write(&self, out: &mut Vec<u8>, h: &HeaderMap, keep_length: bool) {
        if let Some(host) = self.host {
            wire::header_line(out, b"host", &[host.as_bytes()]);
        }
        let host = self.hop.host.filter(|v| !v.is_empty());
        let mut seen = Seen::default();
        for (name, value) in h {
            let skip = match name.as_str() {
                "host" => self.host.is_some(),
                // Body framing (`http1::framing::BODY_FRAMING`) is the writer's own.
                "transfer-encoding" => true,
                "content-length" => !keep_length,
                "x-forwarded-for" => {
                    seen.xff = true;
                    true
                }
                "forwarded" => {
                    seen.forwarded = true;
                    true
                }
                "via" => {
                    seen.via = true;
                    self.via.is_some()
                }
                "x-forwarded-proto" => {
                    seen.xfp = true;
                    !self.trust_forwarded
                }
                "x-forwarded-host" => {
                    seen.xfh = true;
                    host.is_some() && !self.trust_forwarded
                }
                _ => self.replaces(name),
            };
            if !skip {
                wire::header_line(out, name.as_str().as_bytes(), &[value.as_bytes()]);
            }
        }
        let ip = headers::IpText::new(self.hop.client);
        list(
            out,
            h,
            seen.xff,
            &headers::X_FORWARDED_FOR,
            &[ip.as_bytes()],
        );
        if !(self.trust_forwarded && seen.xfp) {
            wire::header_line(out, b"x-forwarded-proto", &[self.hop.proto.as_bytes()]);
        }
        if let Some(host) = host {
            if !(self.trust_forwarded && seen.xfh) {
                wire::header_line(out, b"x-forwarded-host", &[host.as_bytes()]);
            }
        }
        let element = headers::ForwardedElement::new(&ip, self.hop);
        list(out, h, seen.forwarded, &FORWARDED, &element.parts());
        if let Some(version) = self.via {
            list(out, h, seen.via, &VIA, &[headers::via_value(version)]);
        }
        for (name, value) in self.set.iter().flatten() {
            wire::header_line(out, name.as_str().as_bytes(), &[value.as_bytes()]);
        }
    }
}

/// A list header: the shopper's lines (when `present`) folded into one, then ours appended.
fn list(out: &mut Vec<u8>, h: &HeaderMap, present: bool, name: &HeaderName, ours: &[&[u8]]) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    let lines = present
        .then(|| h.get_all(name).iter())
        .into_iter()
        .flatten();
    headers::fold_list(out, lines, ours);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
