//! Forward: the request goes to the storefront the decision chose, and its answer (or its
//! failure) comes back as the shopper's response. Each phase is its own file: [`Outbound`]
//! prepares the storefront's request, [`send`] bounds the exchange, `failure` answers what went
//! wrong, `respond` relays what the storefront said, and [`Record`] carries what the one
//! counting place needs to whichever of them answers.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Request, Response};

use super::prepare::Outbound;
use super::record::Record;
use super::shadow::Fallback;
use super::{ConnInfo, Proxy, ShopperRequest};
use crate::body::UpstreamBody;
use crate::headers::outgoing::Outgoing;
use crate::response::{AccessFields, ProxyBody};
use crate::routing::Decision;
use crate::state::Snapshot;
use crate::upstream::{ResponseBody, Retry, Upstream, UpstreamError};

/// Why no response head came back from the storefront.
pub(super) enum SendError {
    /// None within `response_header_timeout`.
    HeaderTimeout,
    /// The client failed (connect, TLS, reset, protocol, or the shopper's body).
    Client(UpstreamError),
}

/// Connect and send (again only as `retry` allows), bounded by the response-header timeout.
pub(super) async fn send(
    up: &Upstream,
    req: Request<UpstreamBody>,
    outgoing: &Outgoing<'_>,
    retry: Retry,
) -> Result<http::Response<ResponseBody>, SendError> {
    // Pinned where it is built: `timeout` then holds a pointer, not the kilobyte-sized future,
    // which would otherwise be copied at every hand-over.
    let exchange = std::pin::pin!(up.send(req, outgoing, retry));
    match crate::timer::timeout(up.settings.response_header_timeout, exchange).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err(SendError::Client(e)),
        Err(_) => Err(SendError::HeaderTimeout),
    }
}

impl Proxy {
    /// Forwards a request the redirect tables did not answer. Owns what it uses, so that the
    /// boxed future is all a request holds while it is forwarded (see [`Proxy::handle`]).
    pub(super) async fn forward(
        self: Arc<Self>,
        snap: Arc<Snapshot>,
        conn: ConnInfo,
        req: ShopperRequest,
        decision: Decision,
        request_id: HeaderValue,
        started: Instant,
    ) -> Response<ProxyBody> {
        let (snap, decision, request_id) = (&snap, &decision, &request_id);
        let in_flight = snap.metrics.start(decision.storefront);
        let access = snap.access_log.is_enabled().then(|| AccessFields {
            uri: req.uri().clone(),
            host: req.headers().get(http::header::HOST).cloned(),
            client_ip: conn.peer.ip(),
        });
        let (request, mut outbound) = Outbound::prepare(snap, req, decision);
        let record = Record {
            started,
            snap: Arc::clone(snap),
            decision: *decision,
            conn,
            request_id: request_id.clone(),
            method: outbound.method.clone(),
            in_flight,
            access,
            inventory: outbound.inventory.take(),
        };
        let reason = HeaderValue::from_static(decision.reason.as_str());
        let upstream = &snap.storefronts[decision.storefront].upstream;
        let upstream_started = Instant::now();
        let result = {
            let outgoing = outbound.outgoing(snap, decision, conn, request_id, &reason);
            send(upstream, request, &outgoing, outbound.retry).await
        };
        match result {
            Ok(resp) => {
                let ttfb = upstream_started.elapsed();
                snap.storefronts[decision.storefront].health.success();
                // The 404 fallback: new's answer on a fallback route may be old's to give.
                let replay = outbound.replay.take();
                let answer = match Proxy::fall_back(snap, decision, &outbound.method, replay, resp)
                {
                    Fallback::Done(answer) => answer,
                    // Boxed: see `fall_back`.
                    Fallback::AskOld(ask) => Box::pin(self.ask_old(snap, conn, ask)).await,
                };
                // Old's answer: the head the shopper gets came after both exchanges.
                let ttfb = match answer {
                    super::shadow::Answer::Old(_) => upstream_started.elapsed(),
                    super::shadow::Answer::New(_) => ttfb,
                };
                self.respond(snap, outbound, answer, ttfb, record)
            }
            Err(err) => self.fail(snap, err, record),
        }
    }
}
