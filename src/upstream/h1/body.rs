//! Response bodies read straight from the connection, and the connection handed back at
//! their end.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Frame, SizeHint};

use super::{Conn, Framing, MAX_HEAD};
use crate::body::BoxError;

/// Longest chunk-size line, extensions included.
pub(super) const MAX_CHUNK_LINE: usize = 4096;

/// Where a chunked body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
}

/// Where a response body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    Chunked(Chunk),
    Close,
    Done,
}

/// A response body read from its connection; hands the connection back (see [`Body::take_idle`])
/// once the body has been read to its end.
pub struct Body {
    conn: Option<Box<Conn>>,
    state: State,
    reusable: bool,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body").field("state", &self.state).finish()
    }
}

fn body_error(what: String) -> BoxError {
    io::Error::new(io::ErrorKind::UnexpectedEof, what).into()
}

fn invalid_chunk(what: &'static str) -> BoxError {
    io::Error::new(io::ErrorKind::InvalidData, what).into()
}

impl Body {
    /// The body of a response whose head `conn` just read.
    pub fn new(conn: Box<Conn>, framing: Framing, reusable: bool) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunk::Size),
            Framing::Close => State::Close,
        };
        Body {
            conn: Some(conn),
            state,
            reusable,
        }
    }

    /// The connection, once the body has been read to its end and the connection can carry
    /// another request.
    pub fn take_idle(&mut self) -> Option<Box<Conn>> {
        if self.state == State::Done && self.reusable {
            self.conn.take().filter(|c| c.buf.is_empty())
        } else {
            None
        }
    }

    /// The next frame, or the end.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BoxError>>> {
        let Some(conn) = self.conn.as_deref_mut() else {
            return Poll::Ready(None);
        };
        loop {
            match self.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) | State::Chunked(Chunk::Data(left)) if !conn.buf.is_empty() => {
                    let n = conn
                        .buf
                        .len()
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    let data = conn.buf.split_to(n).freeze();
                    let left = left - n as u64;
                    self.state = match self.state {
                        State::Length(_) if left == 0 => State::Done,
                        State::Length(_) => State::Length(left),
                        _ if left == 0 => State::Chunked(Chunk::DataEnd),
                        _ => State::Chunked(Chunk::Data(left)),
                    };
                    return Poll::Ready(Some(Ok(data)));
                }
                State::Close if !conn.buf.is_empty() => {
                    return Poll::Ready(Some(Ok(conn.buf.split().freeze())));
                }
                State::Chunked(Chunk::Size) if !conn.buf.is_empty() => {
                    match chunk_size(&conn.buf) {
                        Err(e) => return Poll::Ready(Some(Err(e))),
                        Ok(Some((size, line))) => {
                            conn.buf.advance(line);
                            self.state = State::Chunked(if size == 0 {
                                Chunk::Trailers
                            } else {
                                Chunk::Data(size)
                            });
                            continue;
                        }
                        Ok(None) => {} // read more
                    }
                }
                // A lone CR may still be followed by its LF.
                State::Chunked(Chunk::DataEnd)
                    if conn.buf.len() >= 2 || conn.buf.first().is_some_and(|&b| b != b'\r') =>
                {
                    if !conn.buf.starts_with(b"\r\n") {
                        return Poll::Ready(Some(Err(invalid_chunk(
                            "chunk data not followed by CRLF",
                        ))));
                    }
                    conn.buf.advance(2);
                    self.state = State::Chunked(Chunk::Size);
                    continue;
                }
                State::Chunked(Chunk::Trailers) if !conn.buf.is_empty() => {
                    if let Some(end) = memchr::memchr(b'\n', &conn.buf) {
                        let empty = end == 0 || (end == 1 && conn.buf[0] == b'\r');
                        conn.buf.advance(end + 1);
                        if empty {
                            self.state = State::Done;
                            return Poll::Ready(None);
                        }
                        continue;
                    }
                    if conn.buf.len() > MAX_HEAD {
                        return Poll::Ready(Some(Err(invalid_chunk("trailers too large"))));
                    }
                }
                _ => {}
            }
            let n = match ready!(conn.poll_fill(cx)) {
                Ok(n) => n,
                Err(e) => return Poll::Ready(Some(Err(e.into()))),
            };
            if n == 0 {
                return Poll::Ready(match self.state {
                    State::Close => {
                        self.state = State::Done;
                        None
                    }
                    State::Length(left) => Some(Err(body_error(format!(
                        "the storefront closed the connection {left} bytes before the end of the body"
                    )))),
                    _ => Some(Err(body_error(
                        "the storefront closed the connection inside a chunked body".into(),
                    ))),
                });
            }
        }
    }
}

/// A chunk-size line at the start of `buf`: `Some((size, line length))`, `None` if incomplete.
pub(super) fn chunk_size(buf: &[u8]) -> Result<Option<(u64, usize)>, BoxError> {
    let Some(end) = memchr::memchr(b'\n', buf) else {
        if buf.len() > MAX_CHUNK_LINE {
            return Err(invalid_chunk("chunk-size line too long"));
        }
        return Ok(None);
    };
    let line = &buf[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if digits == 0 || digits > 16 {
        return Err(invalid_chunk("invalid chunk size"));
    }
    let rest = line[digits..].trim_ascii_start();
    if !(rest.is_empty() || rest[0] == b';') {
        return Err(invalid_chunk("invalid chunk size"));
    }
    let size = line[..digits].iter().fold(0u64, |n, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => d - b'A' + 10,
        };
        (n << 4) | u64::from(v)
    });
    Ok(Some((size, end + 1)))
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match ready!(this.poll_next(cx)) {
            Some(Ok(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Some(Err(e)) => {
                // Whatever is left of this connection is not a message boundary.
                this.conn = None;
                Poll::Ready(Some(Err(e)))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == State::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Done => SizeHint::with_exact(0),
            State::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}
