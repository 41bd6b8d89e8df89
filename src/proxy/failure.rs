//! Failure: a storefront that sent no response head, or a shopper whose body broke off, gets a
//! local answer here. Upstream failures are counted (metrics, the storefront's health) and
//! logged once with the request id; their status comes from one place,
//! [`UpstreamErrorKind::status`], the way nginx and Envoy users expect (502, 504).

use std::sync::Arc;

use http::{HeaderValue, Response, StatusCode};

use super::forward::SendError;
use super::record::Record;
use super::Proxy;
use crate::body::ClientBodyError;
use crate::response::{self, ProxyBody};
use crate::state::Snapshot;
use crate::upstream::{self, UpstreamError, UpstreamErrorKind};

impl Proxy {
    /// Answers a request whose exchange with the storefront failed before a response head.
    pub(super) fn fail(
        &self,
        snap: &Arc<Snapshot>,
        err: SendError,
        record: Record,
    ) -> Response<ProxyBody> {
        let (decision, conn) = (record.decision, record.conn);
        let sf = &snap.storefronts[decision.storefront];
        let request_id = &record.request_id;
        if let SendError::Client(e) = &err {
            if let Some(body_error) = client_body_error(e) {
                // The shopper's body broke off or was malformed: their fault, not the storefront's.
                let (status, detail) = if body_error.is_timeout() {
                    (
                        StatusCode::REQUEST_TIMEOUT,
                        "the request body stopped arriving",
                    )
                } else {
                    (
                        StatusCode::BAD_REQUEST,
                        "the request body is malformed or cut off",
                    )
                };
                tracing::debug!(request_id = ?request_id, storefront = %sf.name, error = %crate::error_text::chain(e), "client request body failed");
                let mut resp =
                    response::local(status, detail, request_id, &snap.headers.request_id);
                resp.headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                self.decorate(snap, &mut resp, &decision, conn);
                return response::with_finish(resp, record.finish(status, None));
            }
        }
        let (kind, what) = match &err {
            SendError::HeaderTimeout => {
                tracing::warn!(request_id = ?request_id, storefront = %sf.name, kind = UpstreamErrorKind::Timeout.as_str(), "storefront request failed: no response headers within response_header_timeout");
                (
                    UpstreamErrorKind::Timeout,
                    "did not send response headers in time",
                )
            }
            SendError::Client(e) => {
                let kind = upstream::classify(e);
                tracing::warn!(request_id = ?request_id, storefront = %sf.name, kind = kind.as_str(), error = %crate::error_text::chain(e), "storefront request failed");
                (kind, before_head(kind))
            }
        };
        sf.health.error(kind);
        snap.metrics.upstream_error(decision.storefront, kind);
        let status = kind.status();
        let detail = format!("storefront \"{}\" {what}", sf.name);
        let mut resp = response::local(status, &detail, request_id, &snap.headers.request_id);
        self.decorate(snap, &mut resp, &decision, conn);
        response::with_finish(resp, record.finish(status, None))
    }
}

/// What the shopper is told of a failure before the storefront's response head.
fn before_head(kind: UpstreamErrorKind) -> &'static str {
    match kind {
        UpstreamErrorKind::Connect => "could not be reached",
        UpstreamErrorKind::Timeout => "did not accept the connection in time",
        UpstreamErrorKind::Reset => "closed the connection before answering",
        UpstreamErrorKind::Protocol => "sent an invalid response",
        UpstreamErrorKind::Tls => "failed the TLS handshake (certificate not trusted?)",
        // Only a body can fail mid-way, and no body was read yet.
        UpstreamErrorKind::BodyTimeout | UpstreamErrorKind::BodyFailed => "broke off its answer",
    }
}

/// The shopper's body failure inside an upstream client error, if that is what it was.
fn client_body_error(e: &UpstreamError) -> Option<&ClientBodyError> {
    let e: &(dyn std::error::Error + 'static) = e;
    std::iter::successors(Some(e), |e| e.source()).find_map(|e| e.downcast_ref::<ClientBodyError>())
}
