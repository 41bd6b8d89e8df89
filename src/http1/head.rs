//! Parsing a request head, and deciding whether the front may answer it at all.
//!
//! The front takes only the plainest requests: `GET` or `HEAD`, HTTP/1.1, an origin-form target
//! of unremarkable characters, one `Host`, no body, nothing that asks for connection-level
//! behaviour. Everything else (bodies, `Expect`, upgrades, `Connection: close`, HTTP/1.0,
//! HTTP/2's preface, anything malformed or over a limit) is hyper's, with the bytes read so far:
//! its answers, errors and limits stay exactly what they were.

use std::mem::MaybeUninit;

use http::Method;

/// What a request head may be: beyond these it is handed to hyper, which answers 431.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Request head size.
    pub max_header_bytes: usize,
    /// Header count.
    pub max_headers: usize,
}

impl Default for HeadLimits {
    /// hyper's own limits, as `[limits]` defaults them.
    fn default() -> Self {
        HeadLimits {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
        }
    }
}

/// Header slots on the stack. A head with more is hyper's (which applies `max_headers`).
pub(crate) const SLOTS: usize = 128;

/// A request head the front may answer.
#[derive(Debug)]
pub(crate) struct Head<'b> {
    /// `GET` or `HEAD`.
    pub method: Method,
    /// The request target: an origin-form path with its query.
    pub target: &'b str,
    /// The target up to `?`.
    pub path: &'b str,
    /// After `?`, if there is one.
    pub query: Option<&'b str>,
    /// The one `Host` header's value.
    pub host: &'b [u8],
    /// Every header, in arrival order.
    pub headers: &'b [httparse::Header<'b>],
}

/// What the buffer holds.
#[derive(Debug)]
pub(crate) enum Parsed<'b> {
    /// A head the front may answer, and its length in the buffer.
    Head(Head<'b>, usize),
    /// The start of a head: read more.
    Partial,
    /// Something for hyper.
    HandOff,
}

/// Parses the head at the start of `buf`.
pub(crate) fn parse<'b>(
    buf: &'b [u8],
    slots: &'b mut [MaybeUninit<httparse::Header<'b>>],
    limits: &HeadLimits,
) -> Parsed<'b> {
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < limits.max_header_bytes => {
            return Parsed::Partial
        }
        // Over the size limit, too many headers, or not HTTP/1: hyper answers (431, 400) or
        // speaks HTTP/2.
        Ok(httparse::Status::Partial) | Err(_) => return Parsed::HandOff,
    };
    if len > limits.max_header_bytes || req.headers.len() > limits.max_headers {
        return Parsed::HandOff;
    }
    let method = match req.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Parsed::HandOff,
    };
    let Some(target) = req.path.filter(|t| plain_target(t.as_bytes())) else {
        return Parsed::HandOff;
    };
    if req.version != Some(1) {
        return Parsed::HandOff;
    }
    let headers: &'b [httparse::Header<'b>] = req.headers;
    let mut host = None;
    for h in headers {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            if host.replace(h.value).is_some() {
                return Parsed::HandOff;
            }
        } else if !ordinary_header(name, h.value) {
            return Parsed::HandOff;
        }
    }
    let Some(host) = host else {
        return Parsed::HandOff;
    };
    let (path, query) = match crate::http1::scan::split_once(target, b'?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    Parsed::Head(
        Head {
            method,
            target,
            path,
            query,
            host,
            headers,
        },
        len,
    )
}

/// An origin-form target of RFC 3986 path and query characters only. hyper's URI parser reads
/// such a target the same way; anything else (`#`, brackets, quotes, absolute-form, `*`) is left
/// to it.
fn plain_target(t: &[u8]) -> bool {
    t.first() == Some(&b'/') && t.iter().all(|&b| TARGET_BYTES[usize::from(b)])
}

/// Unreserved, sub-delims, `:`, `@`, `/`, `?` and `%`: a table, since every byte of every
/// target is checked.
static TARGET_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
                    | b'?'
                    | b'%'
            );
        b += 1;
    }
    t
};

/// A header that changes nothing about framing or the connection. `Connection` is fine when it
/// only says `keep-alive` (browsers send it); `close` and `upgrade` are hyper's to honour.
fn ordinary_header(name: &[u8], value: &[u8]) -> bool {
    if name.eq_ignore_ascii_case(b"connection") {
        return crate::http1::scan::split_bytes(value, b',')
            .all(|t| t.trim_ascii().eq_ignore_ascii_case(b"keep-alive"));
    }
    !super::framing::is_request_control(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(head: &str) -> String {
        let mut slots = [const { MaybeUninit::uninit() }; SLOTS];
        let limits = HeadLimits::default();
        match parse(head.as_bytes(), &mut slots, &limits) {
            Parsed::Head(h, len) => format!(
                "{} {} {:?} host={} n={} len={len}",
                h.method,
                h.path,
                h.query,
                String::from_utf8_lossy(h.host),
                h.headers.len()
            ),
            Parsed::Partial => "partial".into(),
            Parsed::HandOff => "hyper".into(),
        }
    }

    #[test]
    fn plain_gets_and_heads_are_the_fronts() {
        let h = "GET /p?a=1&b=%2F HTTP/1.1\r\nHost: shop.example\r\nCookie: x=1\r\n\r\n";
        assert_eq!(
            parse_str(h),
            format!(
                "GET /p Some(\"a=1&b=%2F\") host=shop.example n=2 len={}",
                h.len()
            )
        );
        let h = "HEAD / HTTP/1.1\r\nhost: a\r\nConnection: Keep-Alive\r\n\r\nGET /next";
        assert_eq!(parse_str(h), "HEAD / None host=a n=2 len=52");
    }

    #[test]
    fn an_unfinished_head_asks_for_more() {
        assert_eq!(parse_str(""), "partial");
        assert_eq!(parse_str("GET /p HTTP/1.1\r\nHost: a\r\n"), "partial");
    }

    #[test]
    fn everything_else_is_hyper_s() {
        for head in [
            // methods, versions, bodies
            "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx",
            "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /p HTTP/1.0\r\nHost: a\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            "GET /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET /p HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
            // the connection
            "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET /p HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            "GET /p HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, x\r\n\r\n",
            // Host
            "GET /p HTTP/1.1\r\n\r\n",
            "GET /p HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            // targets
            "GET http://a/p HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET * HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /p#f HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /p\"q HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /[x] HTTP/1.1\r\nHost: a\r\n\r\n",
            // malformed
            "GET /p HTTP/1.1\r\nHo st: a\r\n\r\n",
            "GET /p HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            "\u{1}GET / HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse_str(head), "hyper", "{head:?}");
        }
    }

    #[test]
    fn limits_send_the_head_to_hyper_which_answers_431() {
        let limits = HeadLimits {
            max_header_bytes: 64,
            max_headers: 2,
        };
        let mut slots = [const { MaybeUninit::uninit() }; SLOTS];
        let long = format!("GET /p HTTP/1.1\r\nHost: a\r\nX: {}", "y".repeat(64));
        assert!(matches!(
            parse(long.as_bytes(), &mut slots, &limits),
            Parsed::HandOff
        ));
        let mut slots = [const { MaybeUninit::uninit() }; SLOTS];
        let many = "GET /p HTTP/1.1\r\nHost: a\r\nX: 1\r\nY: 2\r\n\r\n";
        assert!(matches!(
            parse(many.as_bytes(), &mut slots, &limits),
            Parsed::HandOff
        ));
        let mut slots = [const { MaybeUninit::uninit() }; SLOTS];
        let over_slots = format!(
            "GET /p HTTP/1.1\r\nHost: a\r\n{}\r\n",
            "X: 1\r\n".repeat(SLOTS + 1)
        );
        assert!(matches!(
            parse(over_slots.as_bytes(), &mut slots, &HeadLimits::default()),
            Parsed::HandOff
        ));
    }
}
