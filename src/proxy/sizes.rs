//! The sizes of the futures a proxied request runs in (testkit only: printed by
//! `examples/future_sizes.rs`).
//!
//! Why they matter: hyper moves each request's future into its dispatcher by value, a boxed
//! future is built on the stack and then copied to the heap (except the forward phase's, which
//! `Proxy::start_forward` writes straight into its allocation), and a future's state is copied
//! into its caller's at every `.await` hand-over. Every byte of these is `memcpy` on the request
//! path (callgrind counts it; `perf` put `memmove` at 6% of the proxy's samples, issue 22).

use std::mem::size_of;
use std::sync::Arc;
use std::time::Instant;

use http::request::Parts;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;

use super::{ConnInfo, Proxy};
use crate::body::UpstreamBody;
use crate::headers::outgoing::Outgoing;
use crate::response::ProxyBody;
use crate::routing::Decision;
use crate::state::Snapshot;
use crate::upstream::{h1::Conn, Pool, Retry, Upstream};

/// The size of what `f` returns, without calling it.
pub(crate) fn returned<A, R, F: FnOnce(A) -> R>(_: F) -> usize {
    size_of::<R>()
}

type ForwardArgs = (
    Arc<Proxy>,
    Arc<Snapshot>,
    ConnInfo,
    crate::proxy::ShopperRequest,
    Decision,
    HeaderValue,
    Instant,
);

/// `(what, bytes)` for the request path's futures and the values they pass along.
pub fn future_sizes() -> Vec<(&'static str, usize)> {
    vec![
        (
            "Proxy::handle future",
            returned(|(p, c, r): (Arc<Proxy>, ConnInfo, Request<Incoming>)| p.handle(c, r)),
        ),
        (
            "Proxy::forward future",
            returned::<ForwardArgs, _, _>(|(p, s, c, r, d, id, t)| p.forward(s, c, r, d, id, t)),
        ),
        (
            "forward::send future",
            returned::<
                (
                    &'static Upstream,
                    Request<UpstreamBody>,
                    &'static Outgoing<'static>,
                    Retry,
                ),
                _,
                _,
            >(|(u, r, o, retry)| super::send(u, r, o, retry)),
        ),
        (
            "Upstream::send future",
            returned::<
                (
                    &'static Upstream,
                    Request<UpstreamBody>,
                    &'static Outgoing<'static>,
                    Retry,
                ),
                _,
                _,
            >(|(u, r, o, retry)| u.send(r, o, retry)),
        ),
        (
            "Pool::send future",
            returned::<
                (
                    &'static Arc<Pool>,
                    Request<UpstreamBody>,
                    &'static Outgoing<'static>,
                    Retry,
                ),
                _,
                _,
            >(|(p, r, o, retry)| p.send(r, o, retry)),
        ),
        (
            "h1::Conn::send future",
            returned::<
                (
                    &'static mut Conn,
                    &'static Parts,
                    &'static Outgoing<'static>,
                    UpstreamBody,
                ),
                _,
                _,
            >(|(c, p, o, b)| c.send(p, Some(o), b)),
        ),
        ("Request<Incoming>", size_of::<Request<Incoming>>()),
        ("Response<ProxyBody>", size_of::<Response<ProxyBody>>()),
    ]
}
