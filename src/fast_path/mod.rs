//! The HTTP/1 front: redirects answered straight from the parsed request head, and plain
//! requests forwarded without hyper's server.
//!
//! In the first week of a migration most requests from search engines and old bookmarks are
//! redirects, and a redirect is a table lookup: the answer is a few hundred bytes known the
//! moment the head is parsed. Through hyper's server, the request head becomes a `HeaderMap` and
//! a `Uri`, the read buffer is reallocated per request, the response is built as a map and
//! encoded again, and the dispatcher runs its state machine around all that: callgrind put it at
//! ~9,000 instructions per redirect, more than the whole of nginx's answer (`map` + `return
//! 301`, ~12,000 instructions all told).
//!
//! So an HTTP/1 connection starts here. The front reads into one buffer, parses each head with
//! httparse into stack slots, and asks `Proxy::answer_front`: routing runs on the raw headers
//! (through [`crate::routing::request_headers`]), and a table hit is written straight into the output.
//! Pipelined heads are answered in order and written with one system call.
//!
//! A plain request that no table answers (a bodyless `GET` or `HEAD` on HTTP/1.1, the shape
//! [`crate::http1::head`] admits: most of a shop's traffic) is forwarded from here too: the head
//! becomes the request hyper would have made of it, the proxy's phases run as for hyper's
//! requests, and the response is written by `respond` with hyper's framing. Per request this
//! skips hyper's dispatcher, its header timer, its read-buffer reallocation and its response
//! encoding (see BENCHMARKS.md, "The front forwards").
//!
//! The first request the front does not take (a body, an upgrade, `Connection: close`,
//! HTTP/1.0 or HTTP/2, anything malformed or over a limit) hands the connection to hyper with
//! every byte read so far, unparsed, and the connection stays with hyper from then on; hyper
//! decides that request from scratch, so nothing was counted twice. A drain seen between requests
//! also hands the connection over, so connections close at request boundaries exactly as `drain`
//! describes; a drain that begins while a request is forwarded makes its answer say
//! `Connection: close`, as hyper's answers do once the drain began. The connection cap's choice
//! of this idle connection for a new one closes it.
//! The front keeps hyper's header-read deadline: a head must arrive within
//! `header_read_timeout` of the previous answer (or of the accept), or the connection closes,
//! as hyper closes it.
//!
//! Layer: request. May import its own layer and config, snapshot, observe, clients, domain, policy,
//! wire; never edge, control, server.

use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use futures_util::FutureExt as _;
use hyper::rt::Timer as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::proxy::{ConnInfo, Forwarding, Front, Proxy};
use crate::response::Finish;
use crate::state::Limits;
use crate::timer::LazyTimer;

mod prefixed;
mod respond;

pub use prefixed::Prefixed;
use respond::Written;

/// Bytes asked of the socket per read, as hyper's first read.
const READ_SIZE: usize = 8 * 1024;

/// Output buffer capacity a connection keeps between requests.
const KEPT_OUTPUT: usize = 8 * 1024;

/// How the front let go of a connection.
pub enum Outcome<I> {
    /// Closed: the client hung up, a write failed, no head came in time, or an answer said
    /// `Connection: close`.
    Closed,
    /// A response body failed after its head was sent: the server must end the connection with a
    /// reset, so that the shopper's client sees an error and not a short page.
    BodyFailed,
    /// The connection cap gave this connection up for a new one.
    Evicted,
    /// hyper serves the rest, starting with the bytes in the prefix.
    HandOff {
        /// The connection and what was read from it but not answered.
        io: Prefixed<I>,
        /// Whether the front answered at least one request (hyper's first-request deadline
        /// no longer applies).
        served: bool,
    },
}

/// What ends a connection from outside the front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// The server drains.
    Drain,
    /// The connection cap chose this idle connection to make room for a new one.
    Evict,
}

/// What the buffer's first head came to.
enum Step {
    /// Answered (its bookkeeping pushed), this many bytes long.
    Answered(usize),
    /// Forwarded, this many bytes long; whether it is a `HEAD`.
    Forward(usize, Forwarding, bool),
    Partial,
    HandOff,
}

/// What to do once the buffered heads are answered.
enum Next {
    Read,
    Forward(Forwarding, bool),
    HandOff,
}

/// Serves `io` until a request is hyper's, something outside ends it (`outside` resolves; it is
/// never polled again after that), or the connection ends. `busy` is told when a request starts
/// (`true`) and when its answer is out (`false`), for the connection cap, which gives up only
/// connections with nothing in flight.
pub async fn serve<I, D, B>(
    proxy: &Arc<Proxy>,
    mut io: I,
    conn: ConnInfo,
    limits: &Limits,
    mut outside: Pin<&mut D>,
    busy: B,
) -> Outcome<I>
where
    I: AsyncRead + AsyncWrite + Unpin,
    D: Future<Output = Leave>,
    B: Fn(bool),
{
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    let mut out = Vec::new();
    // Answered but not yet written: their bookkeeping runs once the bytes are out.
    let mut pending: Vec<Finish> = Vec::new();
    let timer = LazyTimer::new();
    let mut deadline = timer.sleep(limits.header_read_timeout);
    let mut served = false;
    // Whether the buffer may hold more than the last parse saw: see the read below.
    let mut parse = true;
    loop {
        let next = if parse {
            loop {
                match step(proxy, conn, &buf, limits, &mut out, &mut pending) {
                    Step::Answered(len) => buf.advance(len),
                    Step::Forward(len, forwarding, head) => {
                        buf.advance(len);
                        break Next::Forward(forwarding, head);
                    }
                    Step::Partial => break Next::Read,
                    Step::HandOff => break Next::HandOff,
                }
            }
        } else {
            Next::Read
        };
        if !out.is_empty() {
            busy(true);
            let written = respond::send(&mut io, &mut out).await;
            proxy.metrics().front_answered(pending.len());
            for mut finish in pending.drain(..) {
                finish.complete = written.is_ok();
                drop(finish); // counted and logged now
            }
            if let Err(e) = written {
                tracing::debug!(peer = %conn.peer, error = %e, "writing a redirect failed");
                return Outcome::Closed;
            }
            busy(false);
            served = true;
            // The next head has its own `header_read_timeout`, from now.
            timer.reset(&mut deadline, timer.now() + limits.header_read_timeout);
        }
        match next {
            Next::HandOff => {
                return Outcome::HandOff {
                    io: Prefixed::new(buf, io),
                    served,
                }
            }
            Next::Forward(forwarding, head_request) => {
                busy(true);
                let resp = forwarding.await;
                proxy.metrics().front_answered(1);
                // A drain or the cap's choice that came while the storefront answered: this
                // answer says `Connection: close` and is the connection's last.
                let leave = outside.as_mut().now_or_never();
                let written =
                    respond::write_response(&mut io, &mut out, resp, head_request, leave.is_some())
                        .await;
                busy(false);
                served = true;
                match written {
                    Written::BodyFailed => return Outcome::BodyFailed,
                    Written::WriteFailed => return Outcome::Closed,
                    Written::Close => {
                        let _ = io.shutdown().await;
                        return match leave {
                            Some(Leave::Evict) => Outcome::Evicted,
                            _ => Outcome::Closed,
                        };
                    }
                    Written::KeepAlive => {}
                }
                if leave.is_some() {
                    // Unreachable (the answer said close), and `outside` must not be polled
                    // again: close rather than wait on it.
                    return Outcome::Closed;
                }
                if out.capacity() > KEPT_OUTPUT {
                    // A large answer's buffer is not kept by an idle keep-alive connection
                    // (thousands of them would each hold one).
                    out = Vec::new();
                }
                timer.reset(&mut deadline, timer.now() + limits.header_read_timeout);
                // Heads pipelined behind it may be in the buffer already.
                parse = true;
                continue;
            }
            Next::Read => {}
        }
        if buf.capacity() - buf.len() < READ_SIZE / 2 {
            // Answered heads are gone from the front of the buffer; this moves what is left
            // of a partial head back to the start instead of allocating.
            buf.reserve(READ_SIZE);
        }
        let before = buf.len();
        tokio::select! {
            biased;
            // The outside first: a request that arrives with (or after) the drain's signal is
            // hyper's to answer with `Connection: close`, as `/readyz` already says draining.
            leave = outside.as_mut() => {
                return match leave {
                    Leave::Drain => Outcome::HandOff { io: Prefixed::new(buf, io), served },
                    // An idle HTTP/1 connection closes at once, as hyper closes it.
                    Leave::Evict => Outcome::Evicted,
                };
            }
            read = io.read_buf(&mut buf) => match read {
                Ok(0) => return Outcome::Closed,
                // A partial head is parsed again only once a line of it has ended (or it
                // reached the size limit, where parsing hands it to hyper's 431): a head sent a
                // byte at a time would otherwise be parsed from its start after every byte,
                // quadratic in its length. The first bytes of a head are always parsed, so what
                // is not HTTP/1 at all goes to hyper (and its 400) at once.
                Ok(_) => {
                    parse = before == 0
                        || buf.len() >= limits.max_header_bytes
                        || memchr::memchr(b'\n', &buf[before..]).is_some();
                }
                Err(e) => {
                    tracing::debug!(peer = %conn.peer, error = %e, "client connection ended with an error");
                    return Outcome::Closed;
                }
            },
            () = deadline.as_mut() => {
                tracing::debug!(peer = %conn.peer, "no request head within header_read_timeout; closing");
                return Outcome::Closed;
            }
        }
    }
}

/// Parses the head at the start of `buf` and asks the proxy about it.
fn step(
    proxy: &Arc<Proxy>,
    conn: ConnInfo,
    buf: &[u8],
    limits: &Limits,
    out: &mut Vec<u8>,
    pending: &mut Vec<Finish>,
) -> Step {
    let mut slots = [const { MaybeUninit::uninit() }; crate::http1::head::SLOTS];
    match crate::http1::head::parse(buf, &mut slots, &limits.head()) {
        crate::http1::head::Parsed::Head(head, len) => {
            match proxy.answer_front(conn, &head, &buf[..len], out) {
                Front::Answered(finish) => {
                    pending.push(finish);
                    Step::Answered(len)
                }
                Front::Forward(forwarding) => {
                    Step::Forward(len, forwarding, head.method == http::Method::HEAD)
                }
                Front::Hyper => Step::HandOff,
            }
        }
        crate::http1::head::Parsed::Partial => Step::Partial,
        crate::http1::head::Parsed::HandOff => Step::HandOff,
    }
}
