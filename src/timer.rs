//! hyper's timer, re-armed lazily.
//!
//! hyper restarts the header read timeout at every request on a keep-alive connection: it
//! resets its sleep to `now + header_read_timeout` and polls it while waiting for the next
//! request head. With hyper-util's `TokioTimer` each reset moves the entry in tokio's timer
//! wheel (two trips through the driver's lock), ~700 instructions per request, 3-4% of a
//! redirect's CPU (callgrind). Deadlines on a connection only ever move later, so, like nginx's
//! lazy timers, [`LazyTimer`] just records the new deadline; the registered entry fires at the
//! old, earlier time, notices the deadline moved, and re-arms once. A reset to an *earlier*
//! deadline re-arms at once, so no deadline ever fires late.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

/// A [`hyper::rt::Timer`] on tokio's clock whose resets to later deadlines cost no timer
/// wheel operation.
#[derive(Debug, Clone, Copy, Default)]
pub struct LazyTimer;

/// The sleep of [`LazyTimer`]: a tokio sleep registered for `armed`, and the real deadline,
/// never earlier than `armed`.
#[derive(Debug)]
struct LazySleep {
    armed: Pin<Box<tokio::time::Sleep>>,
    deadline: tokio::time::Instant,
}

impl Future for LazySleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            ready!(this.armed.as_mut().poll(cx));
            if this.armed.deadline() >= this.deadline {
                return Poll::Ready(());
            }
            // Fired at an old deadline that has since moved: wait for the real one.
            this.armed.as_mut().reset(this.deadline);
        }
    }
}

impl Sleep for LazySleep {}

impl LazySleep {
    fn until(deadline: tokio::time::Instant) -> Self {
        LazySleep {
            armed: Box::pin(tokio::time::sleep_until(deadline)),
            deadline,
        }
    }

    fn reset(&mut self, deadline: tokio::time::Instant) {
        self.deadline = deadline;
        if deadline < self.armed.deadline() {
            self.armed.as_mut().reset(deadline);
        }
    }
}

impl Timer for LazyTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(LazySleep::until(tokio::time::Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(LazySleep::until(deadline.into()))
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
        let mut s = LazyTimer.sleep(Duration::from_millis(100));
        assert!(!done_at(&mut s, start, 99).await);
        assert!(done_at(&mut s, start, 100).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_is_honoured_after_the_first_one_passes() {
        let start = tokio::time::Instant::now();
        let timer = LazyTimer;
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
        let timer = LazyTimer;
        let mut s = timer.sleep(Duration::from_millis(500));
        assert!(!done_at(&mut s, start, 10).await);
        timer.reset(&mut s, (start + Duration::from_millis(50)).into());
        assert!(!done_at(&mut s, start, 49).await);
        assert!(done_at(&mut s, start, 50).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fired_sleep_can_be_reset_and_fire_again() {
        let start = tokio::time::Instant::now();
        let timer = LazyTimer;
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
        LazyTimer.reset(&mut s, (start + Duration::from_millis(30)).into());
        assert!(done_at(&mut s, start, 30).await);
    }
}
