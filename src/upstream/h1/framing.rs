//! Message framing: the request head as it goes out, and how a response body is delimited.

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, Version};

use super::{Framing, H1Error};
use crate::headers::outgoing::Outgoing;
use crate::http1::wire;

/// Writes the request head into `out`, with the headers the proxy sets (`outgoing`);
/// returns (chunked, Content-Length owed).
///
/// Framing follows hyper's client: a request without a body keeps whatever `Content-Length`
/// it came with; a body of known length goes out with `Content-Length`, any other body chunked.
pub(super) fn encode_head(
    out: &mut Vec<u8>,
    parts: &Parts,
    outgoing: Option<&Outgoing<'_>>,
    empty: bool,
    exact: Option<u64>,
) -> (bool, u64) {
    out.clear();
    let declared = parts.headers.get(CONTENT_LENGTH).and_then(content_length);
    let (chunked, length, add_length) = match exact {
        _ if empty => (false, 0, false),
        Some(n) => (false, n, declared != Some(n)),
        None => (true, 0, false),
    };
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    match outgoing {
        Some(o) => o.write(out, &parts.headers, !(chunked || add_length)),
        None => {
            for (name, value) in &parts.headers {
                if name == TRANSFER_ENCODING || (name == CONTENT_LENGTH && (chunked || add_length))
                {
                    continue;
                }
                wire::header_line(out, name.as_str().as_bytes(), &[value.as_bytes()]);
            }
        }
    }
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    } else if add_length {
        wire::content_length(out, length);
    }
    out.extend_from_slice(b"\r\n");
    (chunked, length)
}

/// A `Content-Length` value: digits only (a list of equal values is accepted, as RFC 9110
/// section 8.6 allows).
pub(super) fn content_length(value: &HeaderValue) -> Option<u64> {
    let mut found = None;
    for part in crate::http1::scan::split_bytes(value.as_bytes(), b',') {
        let n = crate::http1::scan::parse_decimal(part.trim_ascii())?;
        match found {
            Some(prev) if prev != n => return None,
            _ => found = Some(n),
        }
    }
    found
}

/// What one `Connection` line of a response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ConnectionOptions {
    /// It lists `close`.
    pub close: bool,
    /// It lists nothing but the options `keep-alive` and `close`.
    pub only: bool,
}

/// Reads a response's `Connection` value (tokens compared as `headers::connection_has` does).
///
/// A line that lists only the options names no field to remove, and the proxy strips the line
/// itself (hop-by-hop) before the shopper's response goes out. So the head parser keeps it out
/// of the map: it would otherwise be hashed in, looked up for `close`, looked up again,
/// cloned, parsed and removed by `headers::strip_hop_by_hop`, ~1,000 instructions on every
/// proxied request (nginx and most storefronts send `Connection: keep-alive` on each answer).
pub(super) fn connection_options(value: &[u8]) -> ConnectionOptions {
    let mut options = ConnectionOptions {
        close: false,
        only: true,
    };
    for token in crate::http1::scan::split_bytes(value, b',') {
        let token = token.trim_ascii();
        if token.eq_ignore_ascii_case(b"close") {
            options.close = true;
        } else if !token.eq_ignore_ascii_case(b"keep-alive") && !token.is_empty() {
            options.only = false;
        }
    }
    options
}

/// How the response body is delimited (RFC 9112 section 6.3), and whether the connection
/// survives it. `close`: a `Connection` line listed `close` (kept in `headers` or not).
pub(super) fn response_framing(
    head_request: bool,
    status: StatusCode,
    version: Version,
    close: bool,
    headers: &mut HeaderMap,
) -> Result<(Framing, bool), H1Error> {
    let mut reusable =
        version == Version::HTTP_11 && !close && status != StatusCode::SWITCHING_PROTOCOLS;
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::Empty, reusable));
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        if headers.contains_key(CONTENT_LENGTH) {
            // Both: Transfer-Encoding wins, and the connection is not trusted afterwards.
            headers.remove(CONTENT_LENGTH);
            reusable = false;
        }
        let last = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .next_back()
            .and_then(|v| v.as_bytes().rsplit(|&b| b == b',').next())
            .map(<[u8]>::trim_ascii);
        return Ok(match last {
            Some(coding) if coding.eq_ignore_ascii_case(b"chunked") => (Framing::Chunked, reusable),
            _ => (Framing::Close, false),
        });
    }
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    let Some(first) = lengths.next() else {
        return Ok((Framing::Close, false));
    };
    let n = content_length(first).ok_or(H1Error::Invalid("Content-Length"))?;
    if lengths.any(|v| content_length(v) != Some(n)) {
        return Err(H1Error::Invalid("conflicting Content-Length values"));
    }
    Ok((Framing::Length(n), reusable))
}
