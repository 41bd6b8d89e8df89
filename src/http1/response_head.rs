//! A forwarded response's head, framed as hyper's HTTP/1 server frames it.
//!
//! The front (`fast_path`) answers proxied requests itself, and a shopper must not be able to
//! tell which server wrote the answer: the same status line, the same headers in the same order,
//! the same `content-length`, `transfer-encoding: chunked` or neither, and `date` when the
//! storefront sent none. These are the rules of hyper 1.x's `Server::encode`, for the requests the
//! front takes (HTTP/1.1, `GET` or `HEAD`); `tests/fast_path.rs` compares the two servers' answers
//! byte for byte, less the date.

use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRAILER, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::scan;
use super::write;

/// What the response body is known to be when the head is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyLen {
    /// Already at its end: nothing to send.
    Empty,
    /// Exactly this many bytes.
    Known(u64),
    /// Streamed to an end not known yet.
    Unknown,
}

/// How the body that follows the head is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Exactly this many bytes (0: no body is sent at all, as for `HEAD`, 204 and 304).
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
}

/// The written head's verdict: the body's framing, and whether the connection ends after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    /// How the body is delimited.
    pub framing: Framing,
    /// The response says `Connection: close`: the connection closes once it is sent.
    pub last: bool,
}

/// The headers cannot be framed (two different `Content-Length` values, or one that is not a
/// number, with a body of unknown length); hyper refuses such a response and ends the
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unframeable;

/// Appends the head of a response to a `GET` (`head_request`: `HEAD`) on HTTP/1.1: status
/// line, headers, framing, `date`, blank line.
pub(crate) fn response_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    head_request: bool,
    body: BodyLen,
) -> Result<Written, Unframeable> {
    let start = out.len();
    // HEAD, 1xx, 204 and 304 answers carry no body, so they cannot be chunked; 204 and 304 (and
    // 1xx) carry no length either.
    let can_chunk = !head_request && can_have_length(status);
    let mut wrote_len = false;
    let mut wrote_date = false;
    let mut last = false;
    let mut framing = Framing::Length(0);
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        write::status_line(out, status);
    }
    let mut length_seen: Option<u64> = None;
    // One pass in the map's order (every value of a name comes together). `open`: a line of
    // joined values is started and not yet ended.
    let mut prev: Option<&HeaderName> = None;
    let mut open: Option<Open> = None;
    let mut te_ends_chunked = false;
    for (name, value) in headers.iter() {
        let first = prev != Some(name);
        if first {
            end_line(out, open.take(), te_ends_chunked);
            prev = Some(name);
        }
        if name == CONTENT_LENGTH {
            match body {
                // hyper trusts the body's own length here, and writes the first value.
                BodyLen::Known(n) => {
                    if first {
                        header(out, name, value);
                        framing = Framing::Length(n);
                        wrote_len = true;
                    }
                }
                BodyLen::Unknown => {
                    let Some(len) = scan::parse_decimal(value.as_bytes()) else {
                        out.truncate(start);
                        return Err(Unframeable);
                    };
                    match length_seen {
                        Some(seen) if seen != len => {
                            out.truncate(start);
                            return Err(Unframeable);
                        }
                        Some(_) => {}
                        None => {
                            header(out, name, value);
                            framing = Framing::Length(len);
                            wrote_len = true;
                            length_seen = Some(len);
                        }
                    }
                }
                // No body: the length is kept for a HEAD answer (it describes the GET's body)
                // and dropped otherwise, where `content-length: 0` follows below.
                BodyLen::Empty => {
                    if head_request {
                        wrote_len = true;
                        header(out, name, value);
                    }
                }
            }
        } else if name == TRANSFER_ENCODING {
            if !can_chunk {
                continue;
            }
            wrote_len = true;
            framing = Framing::Chunked;
            te_ends_chunked = is_chunked(value.as_bytes());
            join(out, first, name, value);
            open = Some(Open::TransferEncoding);
        } else if name == CONNECTION || name == TRAILER {
            if name == TRAILER && !can_chunk {
                continue;
            }
            last |= name == CONNECTION && has_close(value.as_bytes());
            join(out, first, name, value);
            open = Some(Open::List);
        } else {
            wrote_date |= name == DATE;
            header(out, name, value);
        }
    }
    end_line(out, open, te_ends_chunked);
    if !wrote_len {
        framing = match body {
            BodyLen::Unknown if can_chunk => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                Framing::Chunked
            }
            // A HEAD answer of unknown length: no framing header at all, and no body.
            BodyLen::Unknown => Framing::Length(0),
            BodyLen::Empty | BodyLen::Known(0) => {
                if can_have_length(status) && !head_request {
                    out.extend_from_slice(b"content-length: 0\r\n");
                }
                Framing::Length(0)
            }
            BodyLen::Known(n) => {
                if can_have_length(status) {
                    super::wire::content_length(out, n);
                    Framing::Length(n)
                } else {
                    Framing::Length(0)
                }
            }
        };
    }
    if !can_chunk {
        framing = Framing::Length(0);
    }
    if wrote_date {
        out.extend_from_slice(b"\r\n");
    } else {
        write::end_head(out, None);
    }
    Ok(Written { framing, last })
}

/// 1xx, 204 and 304 answers have neither a body nor a length.
fn can_have_length(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

fn header(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    super::wire::header_line(out, name.as_str().as_bytes(), &[value.as_bytes()]);
}

/// A line of joined values still open.
#[derive(Clone, Copy)]
enum Open {
    /// `transfer-encoding`: `, chunked` is added when the last coding is not `chunked`.
    TransferEncoding,
    /// `connection`, `trailer`.
    List,
}

/// Starts a line of joined values (`first`), or adds `, value` to it: hyper writes every value
/// of these names on one line.
fn join(out: &mut Vec<u8>, first: bool, name: &HeaderName, value: &HeaderValue) {
    if first {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
    } else {
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(value.as_bytes());
}

/// Ends the open line of joined values, if one is open.
fn end_line(out: &mut Vec<u8>, open: Option<Open>, te_ends_chunked: bool) {
    match open {
        None => return,
        Some(Open::TransferEncoding) if !te_ends_chunked => out.extend_from_slice(b", chunked"),
        Some(_) => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// The last coding of a `Transfer-Encoding` value is `chunked`.
fn is_chunked(v: &[u8]) -> bool {
    scan::split_bytes(v, b',')
        .last()
        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// A `Connection` value names `close`.
fn has_close(v: &[u8]) -> bool {
    scan::split_bytes(v, b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
}

/// The chunk-size line of a chunked body's next `len` bytes.
pub(crate) fn chunk_start(out: &mut Vec<u8>, len: usize) {
    scan::push_hex(out, len as u64);
    out.extend_from_slice(b"\r\n");
}

/// The end of a chunked body: the last chunk, no trailers.
pub(crate) const CHUNKED_END: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16, headers: &[(&str, &str)], is_head: bool, body: BodyLen) -> String {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let mut out = Vec::new();
        let status = StatusCode::from_u16(status).unwrap();
        let w = response_head(&mut out, status, &map, is_head, body).unwrap();
        let text = String::from_utf8(out).unwrap();
        let (before, date) = text.split_once("date: ").unwrap_or((&text, ""));
        assert!(date.is_empty() || date.ends_with(" GMT\r\n\r\n"), "{text}");
        format!("{before}| {:?} last={}", w.framing, w.last)
    }

    #[test]
    fn lengths_come_from_the_body_or_the_header() {
        assert_eq!(
            head(200, &[("x-a", "1")], false, BodyLen::Known(5)),
            "HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 5\r\n| Length(5) last=false"
        );
        assert_eq!(
            head(200, &[("content-length", "5")], false, BodyLen::Unknown),
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n| Length(5) last=false"
        );
        assert_eq!(
            head(404, &[], false, BodyLen::Unknown),
            "HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n| Chunked last=false"
        );
        assert_eq!(
            head(200, &[("content-length", "0")], false, BodyLen::Empty),
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n| Length(0) last=false"
        );
        assert_eq!(
            head(
                200,
                &[("content-length", "7"), ("content-length", "7")],
                false,
                BodyLen::Unknown
            ),
            "HTTP/1.1 200 OK\r\ncontent-length: 7\r\n| Length(7) last=false"
        );
    }

    #[test]
    fn head_204_and_304_answers_have_no_body() {
        assert_eq!(
            head(200, &[("content-length", "42")], true, BodyLen::Empty),
            "HTTP/1.1 200 OK\r\ncontent-length: 42\r\n| Length(0) last=false"
        );
        assert_eq!(
            head(200, &[], true, BodyLen::Unknown),
            "HTTP/1.1 200 OK\r\n| Length(0) last=false"
        );
        assert_eq!(
            head(204, &[], false, BodyLen::Empty),
            "HTTP/1.1 204 No Content\r\n| Length(0) last=false"
        );
        assert_eq!(
            head(304, &[("etag", "\"x\"")], false, BodyLen::Unknown),
            "HTTP/1.1 304 Not Modified\r\netag: \"x\"\r\n| Length(0) last=false"
        );
        assert_eq!(
            head(
                304,
                &[("transfer-encoding", "chunked")],
                false,
                BodyLen::Unknown
            ),
            "HTTP/1.1 304 Not Modified\r\n| Length(0) last=false"
        );
    }

    #[test]
    fn framing_headers_are_joined_and_close_is_honoured() {
        assert_eq!(
            head(
                200,
                &[("transfer-encoding", "gzip")],
                false,
                BodyLen::Unknown
            ),
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n| Chunked last=false"
        );
        assert_eq!(
            head(
                200,
                &[
                    ("connection", "keep-alive"),
                    ("x-z", "1"),
                    ("connection", "close"),
                    ("trailer", "x-t")
                ],
                false,
                BodyLen::Unknown
            ),
            "HTTP/1.1 200 OK\r\nconnection: keep-alive, close\r\nx-z: 1\r\ntrailer: x-t\r\ntransfer-encoding: chunked\r\n| Chunked last=true"
        );
        assert_eq!(
            head(
                200,
                &[
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "gzip")
                ],
                false,
                BodyLen::Unknown
            ),
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip, chunked\r\n| Chunked last=false"
        );
        assert_eq!(
            head(
                200,
                &[("connection", "close"), ("content-length", "2")],
                false,
                BodyLen::Known(2)
            ),
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n| Length(2) last=true"
        );
    }

    #[test]
    fn a_storefront_s_date_is_kept_and_no_second_one_written() {
        let mut map = HeaderMap::new();
        map.insert(
            DATE,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        let mut out = Vec::new();
        response_head(&mut out, StatusCode::OK, &map, false, BodyLen::Empty).unwrap();
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\ncontent-length: 0\r\n\r\n"
        );
    }

    #[test]
    fn lengths_that_disagree_are_refused() {
        let mut map = HeaderMap::new();
        map.append(CONTENT_LENGTH, HeaderValue::from_static("1"));
        map.append(CONTENT_LENGTH, HeaderValue::from_static("2"));
        let mut out = b"kept".to_vec();
        let got = response_head(&mut out, StatusCode::OK, &map, false, BodyLen::Unknown);
        assert_eq!(got, Err(Unframeable));
        assert_eq!(out, b"kept", "nothing half-written");
        let mut map = HeaderMap::new();
        map.append(CONTENT_LENGTH, HeaderValue::from_static("x"));
        assert_eq!(
            response_head(&mut out, StatusCode::OK, &map, false, BodyLen::Unknown),
            Err(Unframeable)
        );
    }

    #[test]
    fn chunk_sizes_are_hex() {
        let mut out = Vec::new();
        chunk_start(&mut out, 0);
        chunk_start(&mut out, 255);
        chunk_start(&mut out, 0x10000);
        assert_eq!(out, b"0\r\nFF\r\n10000\r\n");
    }
}
