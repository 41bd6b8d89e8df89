//! Body types that stream without buffering, with an idle timeout so a stalled peer cannot hold a
//! request (and its connection slot) forever.
//!
//! Layer: wire. May import only its own layer; never edge, control, server, request, config,
//! snapshot, observe, clients, domain, policy.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

/// Boxed error used by every body in the proxy.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body that sent nothing for too long.
#[derive(Debug, thiserror::Error)]
#[error("body idle for more than {0:?}")]
pub struct IdleTimeoutError(pub Duration);

pin_project_lite::pin_project! {
    /// Fails the body when no frame arrives within `idle`. The timer is allocated on the first
    /// wait only, so bodies that are already complete (most GETs) cost nothing.
    pub struct IdleTimeout<B> {
        #[pin]
        inner: B,
        idle: Duration,
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<B> IdleTimeout<B> {
    /// Wraps a body.
    pub fn new(inner: B, idle: Duration) -> Self {
        IdleTimeout {
            inner,
            idle,
            timer: None,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(t) = this.timer.as_mut() {
                    t.as_mut().reset(Instant::now() + *this.idle);
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let idle = *this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(IdleTimeoutError(idle))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The shopper's request body failed (bad framing, idle timeout) while it was being forwarded.
/// Wrapping it lets the proxy tell a shopper's fault from a storefront's: both surface as the
/// upstream client's error.
#[derive(Debug, thiserror::Error)]
#[error("request body from the client failed: {0}")]
pub struct ClientBodyError(#[source] pub BoxError);

impl ClientBodyError {
    /// Whether the client went silent (body idle timeout) rather than sending bad framing.
    pub fn is_timeout(&self) -> bool {
        self.0.is::<IdleTimeoutError>()
    }
}

/// The request body sent to a storefront.
pub enum UpstreamBody {
    /// The shopper's body, streamed.
    Client(IdleTimeout<Incoming>),
    /// No body (also used when replaying a bodyless request after a connect failure).
    Empty,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpstreamBody::Client(b) => match Pin::new(b).poll_frame(cx) {
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(ClientBodyError(e))))),
                other => other,
            },
            UpstreamBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Client(b) => b.is_end_stream(),
            UpstreamBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Client(b) => b.size_hint(),
            UpstreamBody::Empty => SizeHint::with_exact(0),
        }
    }
}
