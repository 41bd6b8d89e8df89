//! The admin listener's connection slots: a flood of idle connections must not lock out the
//! probes and the operator.
//!
//! The admin port answers `/readyz` for the load balancer and takes `cutover shift 0` at the
//! worst moment of a migration, so "64 connections, then refuse" is not enough: whoever opens 64
//! connections and sends nothing would make every pod unready and refuse the emergency change
//! until the header timeout frees them, and reconnect. Instead, when every slot is taken, the
//! oldest connection with no request in progress is closed to make room (an idle keep-alive
//! connection loses nothing: its client reconnects). Only when every connection is busy
//! answering is a new one refused.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::AbortHandle;

/// One admin connection's entry: how many requests it has in progress, and how to close it.
struct Entry {
    id: u64,
    busy: Arc<AtomicUsize>,
    abort: Option<AbortHandle>,
}

/// The open admin connections, oldest first.
pub(crate) struct Slots {
    capacity: usize,
    open: Mutex<(u64, VecDeque<Entry>)>,
}

/// A connection's claim on a slot: marks requests in progress, frees the slot when dropped.
pub(crate) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    busy: Arc<AtomicUsize>,
}

/// Counts one request in progress on a connection while it lives.
pub(crate) struct Busy(Arc<AtomicUsize>);

impl Busy {
    /// A guard for a request already counted on `counter`.
    pub(crate) fn from_counted(counter: Arc<AtomicUsize>) -> Self {
        Busy(counter)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Slot {
    /// Marks a request in progress until the returned guard is dropped.
    #[cfg(test)]
    pub(crate) fn busy(&self) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(&self.busy))
    }

    /// The handle [`Slots`] uses to close this connection when it is the oldest idle one.
    pub(crate) fn set_abort(&self, abort: AbortHandle) {
        let mut open = self.slots.lock();
        if let Some(e) = open.1.iter_mut().find(|e| e.id == self.id) {
            e.abort = Some(abort);
        }
    }

    /// The counter of requests in progress (for the service closure).
    pub(crate) fn counter(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.busy)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        open.1.retain(|e| e.id != self.id);
    }
}

/// Why a connection was not given a slot.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Every connection has a request in progress.
    AllBusy,
}

impl Slots {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Slots {
            capacity,
            open: Mutex::new((0, VecDeque::new())),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, VecDeque<Entry>)> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection, closing the oldest idle connection when all are taken.
    /// Returns whether one was evicted.
    pub(crate) fn acquire(self: &Arc<Self>) -> Result<(Slot, bool), Refused> {
        let mut open = self.lock();
        let mut evicted = false;
        if open.1.len() >= self.capacity {
            let idle = open
                .1
                .iter()
                .position(|e| e.busy.load(Ordering::Acquire) == 0)
                .ok_or(Refused::AllBusy)?;
            let entry = open.1.remove(idle).expect("found above");
            if let Some(abort) = entry.abort {
                abort.abort();
            }
            evicted = true;
        }
        open.0 += 1;
        let id = open.0;
        let busy = Arc::new(AtomicUsize::new(0));
        open.1.push_back(Entry {
            id,
            busy: Arc::clone(&busy),
            abort: None,
        });
        Ok((
            Slot {
                slots: Arc::clone(self),
                id,
                busy,
            },
            evicted,
        ))
    }

    /// Connections open now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().1.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_idle_connection_makes_room_and_busy_ones_are_kept() {
        let slots = Slots::new(3);
        let tasks: Vec<_> = (0..3)
            .map(|_| tokio::spawn(std::future::pending::<()>()))
            .collect();
        let mut held = Vec::new();
        for t in &tasks {
            let (slot, evicted) = slots.acquire().unwrap();
            assert!(!evicted);
            slot.set_abort(t.abort_handle());
            held.push(slot);
        }
        // The oldest is answering a request: the second-oldest, idle, is closed instead.
        let _busy = held[0].busy();
        let (fourth, evicted) = slots.acquire().unwrap();
        assert!(evicted);
        let second = tasks.into_iter().nth(1).unwrap();
        assert!(second.await.unwrap_err().is_cancelled());
        drop(held.remove(1));
        assert_eq!(slots.len(), 3);
        // Everyone busy: refused.
        let _b2 = held[1].busy();
        let _b3 = fourth.busy();
        assert_eq!(slots.acquire().err(), Some(Refused::AllBusy));
        drop(_busy);
        assert!(slots.acquire().is_ok());
    }
}
