//! An HTTP/1.1 client connection driven from the request's own task.
//!
//! Why not hyper's connection-level client: it runs every connection as a task of its own and
//! passes each request, response and body chunk across channels between that task and the
//! request's task. On a proxied GET that hop, the extra task wake-ups and hyper's general-purpose
//! dispatcher were ~14,000 instructions, a third of cutover's user-space cost per request (callgrind,
//! `benches/callgrind.sh proxy`). Here the request's task writes the head, reads and parses the
//! response head with httparse (the parser hyper uses) and streams the body from the same
//! socket, and the connection goes back to the pool when the body ends.
//!
//! Scope: what a reverse proxy needs from an HTTP/1.1 origin. Requests go out with
//! `Content-Length` or `Transfer-Encoding: chunked`; responses are framed by `Content-Length`,
//! chunked coding (trailers are read and dropped, as hyper's server does for HTTP/1.1 clients
//! that did not ask for them) or the end of the connection. Interim 1xx responses are skipped.
//! Upgrades (WebSocket) are not handled here; the pool sends them through hyper, which owns the
//! hand-over of the socket.

use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use http_body::Body as _;
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use crate::body::{BoxError, UpstreamBody};
use crate::headers::outgoing::Outgoing;
use crate::http1::names::header_name;

/// The socket, plain or TLS, as the connector hands it over.
pub type Io = TokioIo<MaybeHttpsStream<TokioIo<TcpStream>>>;

/// Largest response head accepted. nginx refuses upstream heads beyond `proxy_buffer_size`
/// (4 or 8 KiB) with a 502; storefronts with many cookies need more, but not unbounded.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header lines in one response head (hyper's default is 100).
const MAX_HEADERS: usize = 128;

/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;

/// A failed exchange on one connection.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    /// The socket refused the request (reset, broken pipe).
    #[error("writing the request to the storefront failed")]
    Write(#[source] io::Error),
    /// The socket failed while waiting for the response head.
    #[error("reading the response head from the storefront failed")]
    Read(#[source] io::Error),
    /// End of stream before a complete response head.
    #[error("the storefront closed the connection before a complete response head")]
    Closed,
    /// Not an HTTP/1.x response head.
    #[error("the storefront sent an invalid response head")]
    Parse(#[from] httparse::Error),
    /// A response head httparse accepted but HTTP does not (a status, a header, framing).
    #[error("the storefront sent an invalid response head: {0}")]
    Invalid(&'static str),
    /// A response head beyond [`MAX_HEAD`].
    #[error("the storefront's response head is larger than {MAX_HEAD} bytes")]
    TooLarge,
    /// The shopper's body failed while it was being sent.
    #[error("the request body could not be sent")]
    Body(#[source] BoxError),
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the storefront closes the connection.
    Close,
}

/// A response head, with what the pool needs to know about the connection after it.
#[derive(Debug)]
pub struct Head {
    /// Status.
    pub status: StatusCode,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// Headers as sent (framing headers included; the proxy strips hop-by-hop ones), but for a
    /// `Connection` that names nothing but `keep-alive` or `close` (see `connection_options`).
    pub headers: HeaderMap,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection can carry another request once the body has been read.
    pub reusable: bool,
}

/// One HTTP/1.1 connection to a storefront.
pub struct Conn {
    io: Io,
    /// Bytes read and not yet consumed.
    buf: BytesMut,
    /// The request head being written; kept for its capacity.
    out: Vec<u8>,
    /// Whether any byte of the current response arrived (a failure before that, on a reused
    /// connection, is the storefront having closed it: the request can go out again).
    received: bool,
    /// Parsed header names and where their values are, between parsing a head and freezing
    /// its bytes; kept for its capacity.
    names: Vec<(HeaderName, u32, u32)>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("buffered", &self.buf.len())
            .finish()
    }
}

/// What is left to send of a request body.
struct Upload {
    body: UpstreamBody,
    chunked: bool,
    /// Bytes still owed under `Content-Length`.
    left: u64,
    /// `self.out[pos..]` is still to be written, then `data`.
    pos: usize,
    data: Bytes,
    /// The chunk before `data` still needs its CRLF.
    crlf: bool,
    /// The body ended and its terminator is in `out`.
    ended: bool,
}

impl Conn {
    /// A fresh connection.
    pub fn new(io: Io) -> Self {
        Conn {
            io,
            buf: BytesMut::new(),
            out: Vec::with_capacity(1024),
            received: false,
            names: Vec::new(),
        }
    }

    /// Whether any byte of the last response arrived.
    pub fn received(&self) -> bool {
        self.received
    }

    /// Whether an idle connection can take a request: the storefront has neither closed it nor
    /// sent anything unasked. Costs no system call unless the reactor saw the socket become
    /// readable (tokio clears readiness after a short read, which ends every response).
    pub fn idle_is_usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        self.poll_fill(&mut cx).is_pending()
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.buf
        ))?;
        self.received |= n > 0;
        Poll::Ready(Ok(n))
    }

    fn poll_write_all(&mut self, cx: &mut Context<'_>, up: &mut Upload) -> Poll<io::Result<()>> {
        while up.pos < self.out.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out[up.pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            up.pos += n;
        }
        while !up.data.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &up.data))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            up.data.advance(n);
        }
        // TCP writes are not buffered; TLS ones are, until flushed.
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Sends a request and waits for its response head. The body streams as the shopper sends
    /// it; a storefront that answers before taking all of it (a 413, a redirect) is not kept
    /// waiting, and its connection is not reused.
    pub async fn send(
        &mut self,
        parts: &Parts,
        outgoing: Option<&Outgoing<'_>>,
        body: UpstreamBody,
    ) -> Result<Head, H1Error> {
        self.received = false;
        let head_request = parts.method == Method::HEAD;
        let (chunked, left) = encode_head(
            &mut self.out,
            parts,
            outgoing,
            body.is_end_stream(),
            body.size_hint().exact(),
        );
        let mut up = Upload {
            ended: body.is_end_stream(),
            body,
            chunked,
            left,
            pos: 0,
            data: Bytes::new(),
            crlf: false,
        };
        let early = poll_fn(|cx| self.poll_upload(cx, &mut up, head_request)).await?;
        let mut head = match early {
            Some(head) => head,
            None => poll_fn(|cx| self.poll_head(cx, head_request)).await?,
        };
        head.reusable &= up.ended && up.pos == self.out.len() && up.data.is_empty();
        Ok(head)
    }

    /// Writes the head and body; `Some(head)` when the storefront answered before the end.
    fn poll_upload(
        &mut self,
        cx: &mut Context<'_>,
        up: &mut Upload,
        head_request: bool,
    ) -> Poll<Result<Option<Head>, H1Error>> {
        loop {
            match self.poll_write_all(cx, up) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(H1Error::Write(e))),
                Poll::Pending => return self.poll_early(cx, head_request),
            }
            if up.ended {
                return Poll::Ready(Ok(None));
            }
            self.out.clear();
            up.pos = 0;
            if up.crlf {
                self.out.extend_from_slice(b"\r\n");
                up.crlf = false;
            }
            match Pin::new(&mut up.body).poll_frame(cx) {
                Poll::Pending if self.out.is_empty() => return self.poll_early(cx, head_request),
                // The CRLF of the previous chunk goes out now rather than with the next one.
                Poll::Pending => continue,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(H1Error::Body(e))),
                Poll::Ready(None) => {
                    if up.chunked {
                        self.out.extend_from_slice(b"0\r\n\r\n");
                    } else if up.left > 0 {
                        return Poll::Ready(Err(H1Error::Body(
                            format!(
                                "the request body ended {} bytes short of its Content-Length",
                                up.left
                            )
                            .into(),
                        )));
                    }
                    up.ended = true;
                }
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are dropped: an HTTP/1.1 storefront rarely asks for them.
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    if up.chunked {
                        push_hex(&mut self.out, data.len() as u64);
                        self.out.extend_from_slice(b"\r\n");
                        up.crlf = true;
                    } else {
                        match up.left.checked_sub(data.len() as u64) {
                            Some(left) => up.left = left,
                            None => {
                                return Poll::Ready(Err(H1Error::Body(
                                    "the request body is longer than its Content-Length".into(),
                                )))
                            }
                        }
                    }
                    up.data = data;
                }
            }
        }
    }

    /// While the upload waits: a response head that is already there.
    fn poll_early(
        &mut self,
        cx: &mut Context<'_>,
        head_request: bool,
    ) -> Poll<Result<Option<Head>, H1Error>> {
        match self.poll_head(cx, head_request) {
            Poll::Ready(Ok(head)) => Poll::Ready(Ok(Some(head))),
            // The storefront went away mid-upload; the write side will say so with its own error,
            // but it may never be polled again if the shopper's body stalls.
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        head_request: bool,
    ) -> Poll<Result<Head, H1Error>> {
        loop {
            if !self.buf.is_empty() {
                if let Some(head) = self.parse_head(head_request)? {
                    return Poll::Ready(Ok(head));
                }
                if self.buf.len() >= MAX_HEAD {
                    return Poll::Ready(Err(H1Error::TooLarge));
                }
            }
            let n = ready!(self.poll_fill(cx)).map_err(H1Error::Read)?;
            if n == 0 {
                return Poll::Ready(Err(H1Error::Closed));
            }
        }
    }

    /// A complete final response head from the buffer, 1xx heads skipped; `None` if incomplete.
    fn parse_head(&mut self, head_request: bool) -> Result<Option<Head>, H1Error> {
        loop {
            // Uninitialised slots: initialising 128 of them cost more than parsing a head.
            let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut res = httparse::Response::new(&mut []);
            let len = match httparse::ParserConfig::default()
                .parse_response_with_uninit_headers(&mut res, &self.buf, &mut slots)?
            {
                httparse::Status::Partial => return Ok(None),
                httparse::Status::Complete(len) => len,
            };
            let code = res.code.unwrap_or(0);
            let status = StatusCode::from_u16(code).map_err(|_| H1Error::Invalid("status code"))?;
            if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
                // 100 Continue, 103 Early Hints: the final response follows.
                self.buf.advance(len);
                continue;
            }
            let version = if res.version == Some(0) {
                Version::HTTP_10
            } else {
                Version::HTTP_11
            };
            // Names now; values as offsets, so they can share the buffer once it is frozen.
            let base = self.buf.as_ptr() as usize;
            self.names.clear();
            let mut close = false;
            for h in res.headers.iter() {
                if h.name.eq_ignore_ascii_case("connection") {
                    let options = connection_options(h.value);
                    close |= options.close;
                    if options.only {
                        continue;
                    }
                }
                let name =
                    header_name(h.name.as_bytes()).map_err(|_| H1Error::Invalid("header name"))?;
                let start = h.value.as_ptr() as usize - base;
                self.names
                    .push((name, start as u32, (start + h.value.len()) as u32));
            }
            let raw = self.buf.split_to(len).freeze();
            let mut headers = HeaderMap::with_capacity(self.names.len());
            for (name, start, end) in self.names.drain(..) {
                let value = HeaderValue::from_maybe_shared(raw.slice(start as usize..end as usize))
                    .map_err(|_| H1Error::Invalid("header value"))?;
                headers.append(name, value);
            }
            let (framing, reusable) =
                response_framing(head_request, status, version, close, &mut headers)?;
            return Ok(Some(Head {
                status,
                version,
                headers,
                framing,
                reusable,
            }));
        }
    }
}

mod body;
mod framing;

use crate::http1::scan::push_hex;
pub use body::Body;
use framing::{connection_options, encode_head, response_framing};

#[cfg(test)]
mod tests;
