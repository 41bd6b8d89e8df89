//! Idle keep-alive connections given up for new ones when the connection cap is reached, as
//! nginx reuses its "reusable" connections: a shopper whose browser keeps a socket open between
//! pages must not cost another shopper the whole site.
//!
//! Every connection registers here (once per connection, not per request), whether the HTTP/1
//! front or hyper serves it. When
//! `max_connections` is reached, the accept loop asks for the oldest registered connection that
//! has served a request and has none in flight; that connection is shut down gracefully (an idle
//! HTTP/1 connection closes at once, HTTP/2 gets `GOAWAY`) and the new one is let in in its place.
//! The cap can thus be exceeded by the connections being closed, for the moment they take to
//! close. A connection that never sent a request is not reusable (its head is bounded by
//! `header_read_timeout`, and a slowloris by the per-client limit), nor is one with a request in
//! flight: those are never cut for someone else.
//!
//! Closing an idle keep-alive connection races a client that sends its next request at that very
//! moment (the race every keep-alive timeout has); the oldest connection is the one least likely
//! to be in use.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::drain::Activity;

/// The connections that could be given up, by age.
#[derive(Default)]
pub(super) struct Reusable {
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, Entry>>,
}

struct Entry {
    activity: Arc<Activity>,
    served: Arc<AtomicBool>,
    close: Arc<Notify>,
    taken: bool,
}

/// A connection's place in [`Reusable`]; leaves it when dropped.
pub(super) struct Registration {
    set: Arc<Reusable>,
    id: u64,
    close: Arc<Notify>,
}

impl Registration {
    /// Resolves once the connection was chosen to make room for a new one.
    pub(super) async fn chosen(&self) {
        self.close.notified().await
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.set.lock().remove(&self.id);
    }
}

impl Reusable {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection: `activity` tells whether a request is in flight, `served`
    /// whether one was ever answered on it.
    pub(super) fn register(
        self: &Arc<Self>,
        activity: Arc<Activity>,
        served: Arc<AtomicBool>,
    ) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let close = Arc::new(Notify::new());
        self.lock().insert(
            id,
            Entry {
                activity,
                served,
                close: Arc::clone(&close),
                taken: false,
            },
        );
        Registration {
            set: Arc::clone(self),
            id,
            close,
        }
    }

    /// Asks the oldest idle keep-alive connection to close; whether there was one. Scans under
    /// the lock, only when the cap is reached.
    pub(super) fn give_up_oldest_idle(&self) -> bool {
        let mut open = self.lock();
        let Some(e) = open
            .values_mut()
            .find(|e| !e.taken && e.served.load(Ordering::Acquire) && e.activity.is_idle())
        else {
            return false;
        };
        e.taken = true;
        // A stored permit: the connection sees it even if it is not waiting yet.
        e.close.notify_one();
        true
    }

    /// Registered connections (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_idle_connection_that_served_a_request_is_chosen_once() {
        let set = Arc::new(Reusable::default());
        let conn = |served: bool| {
            let a = Activity::new();
            let r = set.register(Arc::clone(&a), Arc::new(AtomicBool::new(served)));
            (a, r)
        };
        let (_a0, never_served) = conn(false);
        let (busy, busy_reg) = conn(true);
        let (_a2, idle_old) = conn(true);
        let (_a3, idle_new) = conn(true);
        // Keep `busy` with a request in flight for the whole test.
        let in_flight = busy.track(http::Version::HTTP_11, async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        });
        let _held = in_flight.await.unwrap();

        assert!(set.give_up_oldest_idle());
        tokio::time::timeout(std::time::Duration::from_secs(5), idle_old.chosen())
            .await
            .expect("the oldest idle connection is told to close");
        assert!(set.give_up_oldest_idle(), "then the next idle one");
        tokio::time::timeout(std::time::Duration::from_secs(5), idle_new.chosen())
            .await
            .expect("the newer idle connection is told next");
        assert!(
            !set.give_up_oldest_idle(),
            "neither a connection without a request nor one with a request in flight is given up"
        );
        drop((never_served, busy_reg, idle_old, idle_new));
        assert_eq!(set.len(), 0, "registrations leave on drop");
    }
}
