//! The header names that decide how a message is delimited and what its connection does: the
//! one list every part of cutover that parses, strips or writes an HTTP head uses (the shopper
//! head parser, the header policy in both directions, the storefront client's writer, the
//! shadow copies).

use http::header::{
    CONNECTION, CONTENT_LENGTH, EXPECT, PROXY_AUTHENTICATE, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::HeaderName;

/// What delimits a message's body (RFC 9112 section 6). cutover frames each side's body
/// itself, so neither is ever copied from one side to the other.
pub static BODY_FRAMING: [HeaderName; 2] = [CONTENT_LENGTH, TRANSFER_ENCODING];

/// Hop-by-hop fields (RFC 9110 section 7.6.1): they describe one connection, never the message,
/// and are removed in both directions, with every field `Connection` names. `TE: trailers` is the
/// one value kept end to end (see `headers::strip_hop_by_hop`); `Upgrade` is relayed only for a
/// handshake the shopper asked for. `Connection` and `TE` come first: what is done with them
/// depends on their values, so [`HOP_BY_HOP_BY_NAME`] is the rest.
pub static HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    TE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
    PROXY_AUTHENTICATE,
];

/// The hop-by-hop fields removed by their name alone (all but `Connection` and `TE`).
pub static HOP_BY_HOP_BY_NAME: &[HeaderName] = {
    let (_, rest) = HOP_BY_HOP.split_at(2);
    rest
};

/// Request fields that change how a server reads the body or handles the connection
/// (`Expect: 100-continue` included): a request carrying any of them never takes the fast path,
/// which answers only bodyless requests of the plainest shape.
pub static REQUEST_CONTROL: [HeaderName; 5] =
    [CONTENT_LENGTH, TRANSFER_ENCODING, EXPECT, UPGRADE, TE];

/// Whether the raw header `name` (any case) is one of [`REQUEST_CONTROL`]. Asked of every
/// header of every request the front reads, and most names have a length none of those five
/// has: one bit test instead of five name comparisons (a unit test holds the lengths to the
/// list).
pub fn is_request_control(name: &[u8]) -> bool {
    // 2 `te`, 6 `expect`, 7 `upgrade`, 14 `content-length`, 17 `transfer-encoding`.
    const LENGTHS: u32 = 1 << 2 | 1 << 6 | 1 << 7 | 1 << 14 | 1 << 17;
    name.len() < 32 && LENGTHS >> name.len() & 1 == 1 && is_one_of(&REQUEST_CONTROL, name)
}

/// Whether the raw header `name` (any case) is one of `list`.
pub fn is_one_of(list: &[HeaderName], name: &[u8]) -> bool {
    list.iter().any(|f| {
        let f = f.as_str().as_bytes();
        f.len() == name.len() && f.eq_ignore_ascii_case(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_names_match_in_any_case() {
        assert!(is_one_of(&REQUEST_CONTROL, b"Transfer-Encoding"));
        assert!(is_one_of(&REQUEST_CONTROL, b"CONTENT-LENGTH"));
        assert!(!is_one_of(&REQUEST_CONTROL, b"content-lengthx"));
        assert!(is_one_of(&HOP_BY_HOP, b"Keep-Alive"));
        assert_eq!(HOP_BY_HOP_BY_NAME.len(), HOP_BY_HOP.len() - 2);
        assert!(!HOP_BY_HOP_BY_NAME.contains(&CONNECTION) && !HOP_BY_HOP_BY_NAME.contains(&TE));
        for name in &BODY_FRAMING {
            assert!(is_one_of(&REQUEST_CONTROL, name.as_str().as_bytes()));
        }
    }

    /// The length filter lets every request-control name through, in any case, and the answer
    /// is the list's for names of every length.
    #[test]
    fn request_control_is_the_list() {
        for name in &REQUEST_CONTROL {
            assert!(is_request_control(name.as_str().as_bytes()), "{name}");
            assert!(is_request_control(
                name.as_str().to_ascii_uppercase().as_bytes()
            ));
        }
        let others = [
            "host",
            "cookie",
            "accept",
            "tE",
            "Expect",
            "content-lengt",
            "x-te",
            "sec-fetch-dest",
        ];
        for name in others.iter().map(|n| n.as_bytes()) {
            assert_eq!(is_request_control(name), is_one_of(&REQUEST_CONTROL, name));
        }
        for len in 0..64 {
            let name = vec![b'a'; len];
            assert!(!is_request_control(&name));
        }
    }
}
