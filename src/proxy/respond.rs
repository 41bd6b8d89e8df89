//! Respond: the storefront's answer relayed to the shopper (after the 404 fallback, which may have
//! replaced new's answer by old's); a `101` opens a tunnel; hop-by-hop headers go; a 404
//! from the new storefront is remembered as a missed redirect; the body streams with its idle
//! bound and is counted when it ends ([`Record`]).

use std::sync::Arc;
use std::time::Duration;

use http::{Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::prepare::Outbound;
use super::record::Record;
use super::shadow::{self, Answer};
use super::{strip_port, Proxy};
use crate::headers;
use crate::response::{self, ProxyBody};
use crate::routing::Reason;
use crate::state::Snapshot;

impl Proxy {
    /// Relays the storefront's answer (`ttfb` after the request went out), as the 404
    /// fallback left it. Not `async`: the fallback's wait is the caller's, so this phase adds no
    /// future of its own to the request's (each would be copied into it).
    pub(super) fn respond(
        &self,
        snap: &Arc<Snapshot>,
        outbound: Outbound,
        answer: Answer,
        ttfb: Duration,
        mut record: Record,
    ) -> Response<ProxyBody> {
        let (decision, conn) = (record.decision, record.conn);
        let Outbound {
            host,
            path_and_query,
            client_upgrade,
            ..
        } = outbound;
        let (resp, fell_back) = match answer {
            Answer::New(resp) => (resp, false),
            Answer::Old(resp) => (resp, true),
        };
        if fell_back {
            // Counted and logged as the headers say: old served it, because of the fallback.
            // The cookie and the other decision headers still follow the shopper's decision.
            record.decision.storefront = snap.routing.split.from;
            record.decision.reason = Reason::Fallback;
        }
        let (mut parts, body) = resp.into_parts();
        // The shopper is answered in the shopper's protocol, whatever the storefront spoke: an
        // HTTP/1.0 storefront's close-delimited answer goes to an HTTP/1.1 client chunked, a
        // framing the client can check (hyper still answers an HTTP/1.0 client as HTTP/1.0).
        parts.version = http::Version::HTTP_11;

        if parts.status == StatusCode::SWITCHING_PROTOCOLS {
            return self.upgrade(snap, client_upgrade, parts, ttfb, record);
        }
        headers::strip_hop_by_hop(&mut parts.headers, false);
        if snap.headers.via {
            headers::add_via(&mut parts.headers, parts.version);
        }
        let status = parts.status;
        if status == StatusCode::NOT_FOUND && decision.storefront == snap.routing.split.to {
            // No redirect matched (or we would not be here) and the new store has no such page.
            let host = host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("");
            let host = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
            self.missed.record(&host, path_and_query.as_str());
            snap.metrics.redirect_missed();
        }
        let served_by = record.decision.storefront;
        let finish = record.finish(status, Some(ttfb));
        let idle = snap.storefronts[served_by].upstream.settings.read_timeout;
        let mut resp = Response::from_parts(parts, ProxyBody::stream(body, idle, Some(finish)));
        self.decorate(snap, &mut resp, &decision, conn);
        if fell_back {
            shadow::mark_fallback(snap, resp.headers_mut());
        }
        resp
    }

    /// A `101 Switching Protocols`: both sides' connections are joined in a tunnel the shopper
    /// asked for; a `101` nobody asked for cannot be relayed safely and becomes a 502.
    fn upgrade(
        &self,
        snap: &Arc<Snapshot>,
        client_upgrade: Option<OnUpgrade>,
        mut parts: http::response::Parts,
        ttfb: Duration,
        record: Record,
    ) -> Response<ProxyBody> {
        let (decision, conn) = (record.decision, record.conn);
        let upstream_upgrade = parts.extensions.remove::<OnUpgrade>();
        let (Some(client_up), Some(upstream_up)) = (client_upgrade, upstream_upgrade) else {
            let name = &snap.storefronts[decision.storefront].name;
            let resp = response::local(
                StatusCode::BAD_GATEWAY,
                &format!("storefront \"{name}\" switched protocols unasked"),
                &record.request_id,
                &snap.headers.request_id,
            );
            return response::with_finish(resp, record.finish(StatusCode::BAD_GATEWAY, Some(ttfb)));
        };
        let rid = record.request_id.clone();
        tokio::spawn(async move {
            if let Err(e) = tunnel(client_up, upstream_up).await {
                tracing::debug!(request_id = ?rid, error = %e, "upgraded connection ended with an error");
            }
        });
        headers::strip_hop_by_hop(&mut parts.headers, true);
        let finish = record.finish(StatusCode::SWITCHING_PROTOCOLS, Some(ttfb));
        let mut resp = Response::from_parts(parts, ProxyBody::empty(Some(finish)));
        self.decorate(snap, &mut resp, &decision, conn);
        resp
    }
}

/// Copies bytes both ways between the shopper's and the storefront's upgraded connections.
async fn tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (client, upstream) = tokio::try_join!(client, upstream)?;
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}
