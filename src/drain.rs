//! Per-connection graceful drain that does not race keep-alive clients.
//!
//! hyper's `graceful_shutdown` closes an idle HTTP/1 connection at once. A keep-alive client may
//! have sent its next request at that very moment; it then sees the connection close without an
//! answer, a failed request that a load test (and a shopper's non-retrying client) notices. So a
//! draining HTTP/1 connection instead finishes at a request boundary the client knows about:
//! - every response that leaves after the drain began carries `Connection: close`, and hyper
//!   closes the connection after it;
//! - a connection with no request in flight is closed only once it has been quiet for
//!   [`LINGER`] (a busy client sends its next request sooner and gets the `close` answer; an
//!   idle one will not be sending at the moment it closes, as far as anything can know);
//! - HTTP/2 connections get `GOAWAY` at once: that protocol tells the client which requests
//!   were processed, so nothing races.
//!
//! A request is in flight from its head until its response body is finished (the body is
//! wrapped), so a long download is never cut by the linger, only by the grace period.
//!
//! Layer: server. May import its own layer and request, config, snapshot, observe, clients, domain,
//! policy, wire; never edge, control.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use http::header::CONNECTION;
use http::{HeaderValue, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};

/// How long a draining connection with nothing in flight waits for a last request.
pub const LINGER: Duration = Duration::from_millis(500);

/// What a connection is doing, shared by its service and its drain.
#[derive(Debug)]
pub struct Activity {
    born: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `born` of the last request start or end since the drain started, or of
    /// the drain start. Only `quiet` (after the drain started) reads it, and the drain start
    /// sets it past every earlier request, so requests skip the clock read until then.
    last_ms: AtomicU64,
    h2: AtomicBool,
    draining: AtomicBool,
}

impl Activity {
    /// A fresh connection.
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        })
    }

    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.last_ms.fetch_max(self.now_ms(), Ordering::AcqRel);
    }

    /// `touch` for request starts and ends: a clock read and an atomic max per request buy
    /// nothing before the drain starts.
    fn touch_if_draining(&self) {
        if self.draining.load(Ordering::Acquire) {
            self.touch();
        }
    }

    /// From now on responses close the connection.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        self.touch();
    }

    /// No request in flight (its head read, its response body not finished) on this connection.
    pub fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Resolves when the connection may be shut down without racing its client: at once for
    /// HTTP/2, else when nothing is in flight and nothing happened for [`LINGER`].
    pub async fn quiet(&self) {
        loop {
            if self.h2.load(Ordering::Acquire) {
                return;
            }
            let wait = if self.in_flight.load(Ordering::Acquire) == 0 {
                let idle =
                    Duration::from_millis(self.now_ms() - self.last_ms.load(Ordering::Acquire));
                if idle >= LINGER {
                    return;
                }
                LINGER - idle
            } else {
                Duration::from_millis(50)
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// A request the HTTP/1 front answers itself began: in flight until
    /// [`Activity::request_ended`] (the front writes its answer, so it knows when that is).
    pub fn request_began(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch_if_draining();
    }

    /// The front's request that [`Activity::request_began`] counted has its answer out.
    pub fn request_ended(&self) {
        self.touch_if_draining();
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Wraps one request's handling: counts it in flight until its response body ends, and
    /// adds `Connection: close` to HTTP/1 responses produced while draining.
    pub fn track<F, B>(self: &Arc<Self>, version: Version, handling: F) -> Track<F>
    where
        F: Future<Output = Result<Response<B>, Infallible>>,
    {
        if version == Version::HTTP_2 {
            self.h2.store(true, Ordering::Release);
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch_if_draining();
        Track {
            handling,
            guard: Some(InFlight(Arc::clone(self))),
            version,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future [`Activity::track`] returns.
    ///
    /// Written out rather than an `async` block: hyper moves each request's future by value, and
    /// an `async` block would hold the wrapped future twice over (captured, then awaited),
    /// doubling the bytes every request copies.
    pub struct Track<F> {
        #[pin]
        handling: F,
        guard: Option<InFlight>,
        version: Version,
    }
}

impl<F, B> Future for Track<F>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
{
    type Output = Result<Response<Tracked<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let me = self.project();
        let Ok(mut resp) = std::task::ready!(me.handling.poll(cx));
        let guard = me.guard.take().expect("Track polled after completion");
        if guard.0.draining.load(Ordering::Acquire)
            && *me.version < Version::HTTP_2
            && resp.status() != StatusCode::SWITCHING_PROTOCOLS
        {
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(resp.map(|inner| Tracked {
            inner,
            _guard: guard,
        })))
    }
}

/// Counts one request in flight while it lives.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted in flight until it is dropped.
    pub struct Tracked<B> {
        #[pin]
        inner: B,
        _guard: InFlight,
    }
}

impl<B: Body> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn quiet_waits_for_the_linger_and_for_bodies() {
        let a = Activity::new();
        let resp = a
            .track(Version::HTTP_11, async { Ok(Response::new(())) })
            .await
            .unwrap();
        a.start_draining();
        let quiet = tokio::spawn({
            let a = Arc::clone(&a);
            async move { a.quiet().await }
        });
        tokio::time::sleep(LINGER * 3).await;
        assert!(
            !quiet.is_finished(),
            "a body in flight holds the connection"
        );
        drop(resp);
        tokio::time::sleep(LINGER / 2).await;
        assert!(
            !quiet.is_finished(),
            "a request that ends during the drain restarts the linger"
        );
        tokio::time::sleep(LINGER / 2 + Duration::from_millis(100)).await;
        assert!(quiet.is_finished());
    }

    #[tokio::test]
    async fn draining_http1_responses_close_the_connection() {
        let a = Activity::new();
        let r = a
            .track(Version::HTTP_11, async { Ok(Response::new(())) })
            .await
            .unwrap();
        assert!(r.headers().get(CONNECTION).is_none());
        a.start_draining();
        let r = a
            .track(Version::HTTP_11, async { Ok(Response::new(())) })
            .await
            .unwrap();
        assert_eq!(r.headers()[CONNECTION], "close");
        let r = a
            .track(Version::HTTP_2, async { Ok(Response::new(())) })
            .await
            .unwrap();
        assert!(r.headers().get(CONNECTION).is_none());
        a.quiet().await; // h2: at once
    }
}
