//! A future that is polled only after it asked to be woken.
//!
//! A connection's task waits on hyper's connection and, beside it, on what may end the
//! connection from outside (the drain, the connection cap choosing it, the first request's
//! deadline). `select!` polls every branch at every wake-up of the task, and the task wakes
//! twice per proxied request for the connection's own I/O: polling a `watch` receiver, a
//! `Notify` and a timer each time cost ~660 instructions per request (callgrind,
//! `benches/callgrind.sh proxy`), for signals that come once in a connection's life. Wrapped
//! in [`OnWake`], those futures get a waker of their own; a wake-up that was not theirs costs
//! one atomic swap.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Whether the inner future was woken, and the task to wake then.
struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

pin_project_lite::pin_project! {
    /// `fut`, polled on its first poll and then only after its own waker fired.
    pub(super) struct OnWake<F> {
        #[pin]
        fut: F,
        flag: Arc<Flag>,
        waker: Waker,
    }
}

impl<F: Future> OnWake<F> {
    pub(super) fn new(fut: F) -> Self {
        let flag = Arc::new(Flag {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        OnWake {
            fut,
            waker: Waker::from(Arc::clone(&flag)),
            flag,
        }
    }
}

impl<F: Future> Future for OnWake<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // Registered before the flag is read: a wake between the two still wakes this task.
        this.flag.task.register(cx.waker());
        if !this.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        this.fut.poll(&mut Context::from_waker(this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn polls_the_inner_future_only_when_it_was_woken() {
        let polls = Arc::new(AtomicUsize::new(0));
        let notify = Arc::new(tokio::sync::Notify::new());
        let (p, n) = (Arc::clone(&polls), Arc::clone(&notify));
        let mut side = Box::pin(OnWake::new(async move {
            p.fetch_add(1, Ordering::Relaxed);
            n.notified().await;
            p.fetch_add(1, Ordering::Relaxed);
            7
        }));
        let poll = |side: &mut Pin<Box<OnWake<_>>>| {
            std::future::poll_fn(|cx| Poll::Ready(side.as_mut().poll(cx))).now_or_never()
        };
        use futures_util::FutureExt as _;
        assert!(
            poll(&mut side).unwrap().is_pending(),
            "first poll: inner polled"
        );
        assert!(
            poll(&mut side).unwrap().is_pending(),
            "not woken: inner skipped"
        );
        assert_eq!(polls.load(Ordering::Relaxed), 1);
        notify.notify_one();
        assert_eq!(poll(&mut side).unwrap(), Poll::Ready(7));
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn its_wake_reaches_the_task() {
        let notify = Arc::new(tokio::sync::Notify::new());
        let n = Arc::clone(&notify);
        let task = tokio::spawn(OnWake::new(async move { n.notified().await }));
        tokio::task::yield_now().await;
        notify.notify_one();
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("woken")
            .unwrap();
    }
}
