//! The HTTP/1 front: redirects answered straight from the parsed request head.
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
//! The first request the front does not answer (a page for a storefront, a body, an upgrade,
//! HTTP/1.0 or HTTP/2, anything malformed or over a limit) hands the connection to hyper with
//! every byte read so far, unparsed, and the connection stays with hyper from then on; hyper
//! decides that request from scratch, so nothing was counted twice. A drain also hands the
//! connection over, so connections close at request boundaries exactly as `drain` describes.
//! The front keeps hyper's header-read deadline: a head must arrive within
//! `header_read_timeout` of the previous answer (or of the accept), or the connection closes,
//! as hyper closes it.
//!
//! Layer: request. May import its own layer and config, snapshot, observe, clients, domain, policy,
//! wire; never edge, control, server.

use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;

use bytes::{Buf, BytesMut};
use hyper::rt::Timer as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::proxy::{ConnInfo, Proxy};
use crate::response::Finish;
use crate::state::Limits;
use crate::timer::LazyTimer;

mod prefixed;

pub use prefixed::Prefixed;

/// Bytes asked of the socket per read, as hyper's first read.
const READ_SIZE: usize = 8 * 1024;

/// How the front let go of a connection.
pub enum Outcome<I> {
    /// Closed: the client hung up, a write failed, or no head came in time.
    Closed,
    /// hyper serves the rest, starting with the bytes in the prefix.
    HandOff {
        /// The connection and what was read from it but not answered.
        io: Prefixed<I>,
        /// Whether the front answered at least one request (hyper's first-request deadline
        /// no longer applies).
        served: bool,
    },
}

/// What the buffer's first head came to.
enum Step {
    /// Answered (its bookkeeping pushed), this many bytes long.
    Answered(usize),
    Partial,
    HandOff,
}

/// Serves `io` until a request is hyper's, the server drains (`drain` resolves), or the
/// connection ends.
pub async fn serve<I, D>(
    proxy: &Proxy,
    mut io: I,
    conn: ConnInfo,
    limits: &Limits,
    mut drain: Pin<&mut D>,
) -> Outcome<I>
where
    I: AsyncRead + AsyncWrite + Unpin,
    D: Future<Output = ()>,
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
        let hand_off = parse
            && loop {
                match step(proxy, conn, &buf, limits, &mut out, &mut pending) {
                    Step::Answered(len) => buf.advance(len),
                    Step::Partial => break false,
                    Step::HandOff => break true,
                }
            };
        if !out.is_empty() {
            let written = async {
                io.write_all(&out).await?;
                io.flush().await
            }
            .await;
            out.clear();
            for mut finish in pending.drain(..) {
                finish.complete = written.is_ok();
                drop(finish); // counted and logged now
            }
            if let Err(e) = written {
                tracing::debug!(peer = %conn.peer, error = %e, "writing a redirect failed");
                return Outcome::Closed;
            }
            served = true;
            // The next head has its own `header_read_timeout`, from now.
            timer.reset(&mut deadline, timer.now() + limits.header_read_timeout);
        }
        if hand_off {
            return Outcome::HandOff {
                io: Prefixed::new(buf, io),
                served,
            };
        }
        if buf.capacity() - buf.len() < READ_SIZE / 2 {
            // Answered heads are gone from the front of the buffer; this moves what is left
            // of a partial head back to the start instead of allocating.
            buf.reserve(READ_SIZE);
        }
        let before = buf.len();
        tokio::select! {
            biased;
            // The drain first: a request that arrives with (or after) the drain's signal is
            // hyper's to answer with `Connection: close`, as `/readyz` already says draining.
            () = drain.as_mut() => {
                return Outcome::HandOff { io: Prefixed::new(buf, io), served };
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
    proxy: &Proxy,
    conn: ConnInfo,
    buf: &[u8],
    limits: &Limits,
    out: &mut Vec<u8>,
    pending: &mut Vec<Finish>,
) -> Step {
    let mut slots = [const { MaybeUninit::uninit() }; crate::http1::head::SLOTS];
    match crate::http1::head::parse(buf, &mut slots, &limits.head()) {
        crate::http1::head::Parsed::Head(head, len) => match proxy.answer_front(conn, &head, out) {
            Some(finish) => {
                pending.push(finish);
                Step::Answered(len)
            }
            None => Step::HandOff,
        },
        crate::http1::head::Parsed::Partial => Step::Partial,
        crate::http1::head::Parsed::HandOff => Step::HandOff,
    }
}
