//! A forwarded request's response, written by the front: the head as hyper's server frames it
//! ([`crate::http1::response_head`]), then the body, streamed.
//!
//! The head and the first part of the body go out in one write when the body is already there
//! (the common case: a page that arrived with its head). A part of the body that is not ready
//! yet is waited for only after what is already buffered has been sent, so a slow storefront
//! never holds back bytes the shopper could have had.

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::header::CONNECTION;
use http::{HeaderValue, Response};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::http1::response_head::{self, BodyLen, Framing};
use crate::response::ProxyBody;

/// Buffered output is sent once it reaches this size, and a body part this large is written
/// from its own buffer rather than copied.
const WRITE_AT: usize = 16 * 1024;

/// How writing a response ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Written {
    /// Sent whole; the connection may carry the next request.
    KeepAlive,
    /// Sent whole, and it said `Connection: close`.
    Close,
    /// The body failed (or did not match its length) after the head went out: the shopper must
    /// see an error, not a short page, so the connection is reset.
    BodyFailed,
    /// The shopper's side failed (hung up): nothing more can be sent.
    WriteFailed,
}

/// Writes `resp` (to a `GET`, or `head_request`: a `HEAD`) to `io`, using `out` as the buffer.
/// `closing`: the server is draining or gave this connection up, so the answer says
/// `Connection: close`, as hyper's does once the drain began.
pub(super) async fn write_response<I>(
    io: &mut I,
    out: &mut Vec<u8>,
    resp: Response<ProxyBody>,
    head_request: bool,
    closing: bool,
) -> Written
where
    I: AsyncWrite + Unpin,
{
    let (mut parts, mut body) = resp.into_parts();
    if closing {
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    let len = if body.is_end_stream() {
        BodyLen::Empty
    } else {
        body.size_hint()
            .exact()
            .map_or(BodyLen::Unknown, BodyLen::Known)
    };
    let Ok(head) =
        response_head::response_head(out, parts.status, &parts.headers, head_request, len)
    else {
        tracing::warn!(
            status = parts.status.as_u16(),
            "a response's Content-Length values disagree or are not numbers; ending the connection"
        );
        return Written::BodyFailed;
    };
    let sent = match head.framing {
        // Nothing to send (HEAD, 204, 304, an empty body): the body is dropped unread, as
        // hyper drops it, and its bookkeeping runs now.
        Framing::Length(0) => {
            drop(body);
            send(io, out).await.map_err(|_| Written::WriteFailed)
        }
        framing => stream_body(io, out, &mut body, framing).await,
    };
    match sent {
        Err(failed) => failed,
        Ok(()) if head.last => Written::Close,
        Ok(()) => Written::KeepAlive,
    }
}

/// Sends the body after its head (already in `out`), framed as the head said.
async fn stream_body<I>(
    io: &mut I,
    out: &mut Vec<u8>,
    body: &mut ProxyBody,
    framing: Framing,
) -> Result<(), Written>
where
    I: AsyncWrite + Unpin,
{
    let mut left = match framing {
        Framing::Length(n) => Some(n),
        Framing::Chunked => None,
    };
    loop {
        let frame = match body.frame().now_or_never() {
            Some(frame) => frame,
            None => {
                send(io, out).await.map_err(|_| Written::WriteFailed)?;
                body.frame().await
            }
        };
        let data = match frame {
            None => break,
            Some(Err(_)) => {
                // What came before the failure goes out first, as hyper sends it; the reset
                // that follows tells the shopper's client it is not the whole page.
                let _ = send(io, out).await;
                return Err(Written::BodyFailed);
            }
            // Trailers are not sent: the front takes no request with `TE`, and hyper sends
            // trailers only to a shopper who asked for them that way.
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
        };
        match &mut left {
            Some(n) => {
                // More than the length the head announced: the shopper would read the rest as
                // the next response.
                let Some(rest) = n.checked_sub(data.len() as u64) else {
                    return Err(Written::BodyFailed);
                };
                *n = rest;
                put(io, out, data).await?;
            }
            None => {
                response_head::chunk_start(out, data.len());
                put(io, out, data).await?;
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    match left {
        Some(0) => {}
        // Shorter than announced: ended as hyper ends it, by the reset.
        Some(_) => return Err(Written::BodyFailed),
        None => out.extend_from_slice(response_head::CHUNKED_END),
    }
    send(io, out).await.map_err(|_| Written::WriteFailed)
}

/// Appends a part of the body, or writes it from its own buffer when it is large.
async fn put<I>(io: &mut I, out: &mut Vec<u8>, data: Bytes) -> Result<(), Written>
where
    I: AsyncWrite + Unpin,
{
    if data.len() < WRITE_AT {
        out.extend_from_slice(&data);
        if out.len() >= WRITE_AT {
            send(io, out).await.map_err(|_| Written::WriteFailed)?;
        }
        return Ok(());
    }
    send(io, out).await.map_err(|_| Written::WriteFailed)?;
    io.write_all(&data).await.map_err(|_| Written::WriteFailed)
}

/// Writes and flushes what is buffered.
/// Writes and flushes what is buffered; the buffer is empty afterwards, written or not. The
/// front's redirect answers go out through it too.
pub(super) async fn send<I>(io: &mut I, out: &mut Vec<u8>) -> std::io::Result<()>
where
    I: AsyncWrite + Unpin,
{
    if !out.is_empty() {
        let written = io.write_all(out).await;
        out.clear();
        written?;
    }
    io.flush().await
}
