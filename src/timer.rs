//! hyper's timer, re-armed lazily.
//!
//! hyper's HTTP/1 server starts a fresh header-read sleep for every request on a keep-alive
//! connection (it drops the previous one once a head is parsed). With hyper-util's
//! `TokioTimer` each of those sleeps is inserted into tokio's timer wheel on its first poll and
//! removed again when dropped, two trips through the driver's lock per request (~700
//! instructions, 3-4% of a redirect's CPU in callgrind).
//!
//! [`LazyTimer`] is made per connection and keeps one armed tokio sleep there. A new sleep takes
//! it over and only records its own deadline; deadlines on a connection only move later, so the
//! armed entry, registered for an earlier time, fires early at most once per timeout period,
//! notices the deadline moved, and re-arms (nginx's lazy timers do the same). A dropped sleep
//! hands the armed entry back, still registered. A deadline *earlier* than the armed one
//! re-arms at once, so no deadline ever fires late. Two sleeps alive at once (h2 keep-alive)
//! simply get one armed entry each; a connection keeps one spare.
//!
//! Layer: wire. May import only its own layer; never edge, control, server, request, config,
//! snapshot, observe, clients, domain, policy.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

type Armed = Pin<Box<tokio::time::Sleep>>;

/// A [`hyper::rt::Timer`] on tokio's clock that reuses registered timer entries across
/// sleeps. Make one per connection (one sleep at a time there); [`timeout`] keeps one per
/// thread with room for as many entries as requests in flight.
#[derive(Debug, Clone)]
pub struct LazyTimer {
    spares: Arc<Spares>,
}

#[derive(Debug)]
struct Spares {
    armed: Mutex<Vec<Armed>>,
    /// Entries kept beyond this are dropped (deregistered) instead.
    keep: usize,
}

impl Default for LazyTimer {
    fn default() -> Self {
        LazyTimer::keeping(1)
    }
}

impl LazyTimer {
    /// A timer for one connection.
    pub fn new() -> Self {
        LazyTimer::default()
    }

    /// A timer that keeps up to `keep` armed entries for reuse.
    fn keeping(keep: usize) -> Self {
        LazyTimer {
            spares: Arc::new(Spares {
                armed: Mutex::new(Vec::new()),
                keep,
            }),
        }
    }

    fn take(&self) -> Option<Armed> {
        self.spares.lock().pop()
    }
}

impl Spares {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Armed>> {
        // Nothing panics while holding it; a poisoned list of sleeps is still a valid list.
        self.armed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sleep of [`LazyTimer`]: a tokio sleep armed for a time no later than `deadline`.
#[derive(Debug)]
struct LazySleep {
    armed: Option<Armed>,
    deadline: tokio::time::Instant,
    home: Arc<Spares>,
}

impl LazySleep {
    fn new(timer: &LazyTimer, deadline: tokio::time::Instant) -> Self {
        let armed = match timer.take() {
            Some(mut armed) => {
                if deadline < armed.deadline() {
                    armed.as_mut().reset(deadline);
                }
                armed
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        LazySleep {
            armed: Some(armed),
            deadline,
            home: Arc::clone(&timer.spares),
        }
    }

    fn reset(&mut self, deadline: tokio::time::Instant) {
        self.deadline = deadline;
        if let Some(armed) = &mut self.armed {
            if deadline < armed.deadline() {
                armed.as_mut().reset(deadline);
            }
        }
    }
}

impl Future for LazySleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let deadline = this.deadline;
        let armed = this
            .armed
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        loop {
            ready!(armed.as_mut().poll(cx));
            if armed.deadline() >= deadline {
                return Poll::Ready(());
            }
            // Fired at an old deadline that has since moved: wait for the real one.
            armed.as_mut().reset(deadline);
        }
    }
}

impl Drop for LazySleep {
    fn drop(&mut self) {
        if let Some(armed) = self.armed.take() {
            let mut spares = self.home.lock();
            if spares.len() < self.home.keep {
                spares.push(armed);
            }
        }
    }
}

impl Sleep for LazySleep {}

impl Timer for LazyTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(LazySleep::new(self, tokio::time::Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(LazySleep::new(self, deadline.into()))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<LazySleep>() {
            Some(lazy) => lazy.get_mut().reset(new_deadline.into()),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }

    /// tokio's clock, so tests with paused time see hyper's deadlines move with it.
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into()
    }
}

thread_local! {
    /// Spare armed entries per thread for per-request deadlines, see [`timeout`]: one per
    /// request in flight on the thread, up to a bound. Each fires at most once per timeout
    /// period, and holds the waker (so the allocation) of the last task that polled it until
    /// the next request takes it over: the bound also bounds that.
    static THREAD_TIMER: LazyTimer = LazyTimer::keeping(256);
}

/// The deadline of [`timeout`] passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

/// `tokio::time::timeout`, on the thread's lazily re-armed timer entry: a proxied request's
/// response-header bound would otherwise insert and remove a timer wheel entry per request.
/// The future is polled before the deadline is checked, as tokio does.
pub fn timeout<F: Future>(after: Duration, fut: F) -> Timeout<F> {
    let deadline = tokio::time::Instant::now() + after;
    Timeout {
        fut,
        sleep: THREAD_TIMER.with(|t| LazySleep::new(t, deadline)),
    }
}

pin_project_lite::pin_project! {
    /// The future of [`timeout`]. A plain struct rather than an `async fn`, whose state would
    /// hold the wrapped future twice (argument and pinned local): on the proxy path that future
    /// is kilobytes and is moved with every request.
    #[derive(Debug)]
    pub struct Timeout<F> {
        #[pin]
        fut: F,
        sleep: LazySleep,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, TimedOut>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        Pin::new(this.sleep).poll(cx).map(|()| Err(TimedOut))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the sleep is done after the clock moved to `at` (paused time).
    async fn done_at(
        sleep: &mut Pin<Box<dyn Sleep>>,
        start: tokio::time::Instant,
        at: u64,
    ) -> bool {
        tokio::time::sleep_until(start + Duration::from_millis(at)).await;
        std::future::poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx).is_ready())).await
    }

    #[tokio::test(start_paused = true)]
    async fn fires_at_its_deadline() {
        let start = tokio::time::Instant::now();
        let mut s = LazyTimer::new().sleep(Duration::from_millis(100));
        assert!(!done_at(&mut s, start, 99).await);
        assert!(done_at(&mut s, start, 100).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_is_honoured_after_the_first_one_passes() {
        let start = tokio::time::Instant::now();
        let timer = LazyTimer::new();
        let mut s = timer.sleep(Duration::from_millis(100));
        assert!(!done_at(&mut s, start, 10).await, "registers at 100 ms");
        timer.reset(&mut s, (start + Duration::from_millis(250)).into());
        assert!(
            !done_at(&mut s, start, 150).await,
            "old deadline passed, new not"
        );
        assert!(!done_at(&mut s, start, 249).await);
        assert!(done_at(&mut s, start, 250).await);
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_fires_early() {
        let start = tokio::time::Instant::now();
        let timer = LazyTimer::new();
        let mut s = timer.sleep(Duration::from_millis(500));
        assert!(!done_at(&mut s, start, 10).await);
        timer.reset(&mut s, (start + Duration::from_millis(50)).into());
        assert!(!done_at(&mut s, start, 49).await);
        assert!(done_at(&mut s, start, 50).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fired_sleep_can_be_reset_and_fire_again() {
        let start = tokio::time::Instant::now();
        let timer = LazyTimer::new();
        let mut s = timer.sleep(Duration::from_millis(20));
        assert!(done_at(&mut s, start, 20).await);
        timer.reset(&mut s, (start + Duration::from_millis(70)).into());
        assert!(!done_at(&mut s, start, 69).await);
        assert!(done_at(&mut s, start, 70).await);
    }

    #[tokio::test(start_paused = true)]
    async fn foreign_sleeps_are_replaced() {
        let start = tokio::time::Instant::now();
        let mut s: Pin<Box<dyn Sleep>> =
            hyper_util::rt::TokioTimer::new().sleep(Duration::from_secs(9));
        LazyTimer::new().reset(&mut s, (start + Duration::from_millis(30)).into());
        assert!(done_at(&mut s, start, 30).await);
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_sleep_reuses_the_armed_entry_and_keeps_its_own_deadline() {
        let start = tokio::time::Instant::now();
        let timer = LazyTimer::new();
        let mut first = timer.sleep(Duration::from_millis(100));
        assert!(!done_at(&mut first, start, 10).await, "armed for 100 ms");
        drop(first);
        assert_eq!(timer.spares.lock().len(), 1, "handed back");
        let mut second = timer.sleep_until((start + Duration::from_millis(300)).into());
        assert!(timer.spares.lock().is_empty(), "taken over");
        assert!(
            !done_at(&mut second, start, 150).await,
            "the old deadline is not the sleep's"
        );
        assert!(!done_at(&mut second, start, 299).await);
        assert!(done_at(&mut second, start, 300).await);
        // Two at once: the second gets an entry of its own.
        let mut a = timer.sleep_until((start + Duration::from_millis(400)).into());
        let mut b = timer.sleep_until((start + Duration::from_millis(350)).into());
        assert!(done_at(&mut b, start, 350).await);
        assert!(!done_at(&mut a, start, 399).await);
        assert!(done_at(&mut a, start, 400).await);
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_bounds_a_future_and_lets_a_fast_one_through() {
        let slow = timeout(
            Duration::from_millis(50),
            tokio::time::sleep(Duration::from_secs(5)),
        );
        let start = tokio::time::Instant::now();
        assert_eq!(slow.await, Err(TimedOut));
        assert_eq!(start.elapsed(), Duration::from_millis(50));
        // The thread's armed entry (still registered for 50 ms from the first call) is reused
        // with a later deadline and must not cut this one short.
        let fast = timeout(Duration::from_millis(80), async {
            tokio::time::sleep(Duration::from_millis(60)).await;
            7
        });
        assert_eq!(fast.await, Ok(7));
        assert_eq!(
            timeout(Duration::from_millis(10), std::future::pending::<()>()).await,
            Err(TimedOut)
        );
    }
}
