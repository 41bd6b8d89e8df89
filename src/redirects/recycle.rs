//! A retired table's memory, kept for the next load for a short while.
//!
//! A 10^6-row load fills ~130 MB of table (arena, entries, hash slots) and reads a ~70 MB file.
//! In fresh memory every page of that is a page fault and a zeroed page, about a tenth of the
//! load's CPU, and on a VM the host may fault the pages in again too. While reloads come in
//! bursts (an operator fixing a plan, a pipeline pushing revisions, a reload every few seconds),
//! the table a reload retires is exactly the memory the next reload needs: keeping it turns
//! that work into plain writes to pages the process already has, and keeps down the reload's
//! memory traffic, which slows the requests sharing its core.
//!
//! Spare memory is released once no load took or kept any for [`KEEP`]: a quiet deployment goes
//! back to one table's worth of memory. Nothing here runs on the request path: the loader and
//! the retire job take and keep, and a low-priority thread (`cutover-spare`, running only while
//! something is kept) releases.

use super::table::{Buffers, RedirectTable};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long spare memory outlives the last load that took or kept some.
pub(crate) const KEEP: Duration = Duration::from_secs(10);

/// At most this many retired tables are kept (several `[[redirects]]` tables may retire at
/// once; beyond that they are freed as before).
const MAX_TABLES: usize = 4;

/// What is kept, and a stamp bumped by every change so a release decided on an older view
/// leaves newer spares alone.
struct Spare {
    tables: Vec<Buffers>,
    read: Vec<u8>,
    stamp: u64,
}

impl Spare {
    const fn new() -> Self {
        Spare {
            tables: Vec::new(),
            read: Vec::new(),
            stamp: 0,
        }
    }

    /// The kept table whose arena best fits `url_bytes`: the smallest that holds it, else the
    /// largest (a plan that grew past its arena's headroom may still fit its hash slots).
    /// Each of its buffers is reused only if it [`fits`]; the rest is freed by the loader.
    fn take_table(&mut self, url_bytes: usize) -> Option<Buffers> {
        let cap = |i: &usize| self.tables[*i].arena_capacity();
        let pick = (0..self.tables.len())
            .filter(|i| cap(i) >= url_bytes)
            .min_by_key(cap)
            .or_else(|| (0..self.tables.len()).max_by_key(cap))?;
        self.stamp += 1;
        Some(self.tables.swap_remove(pick))
    }

    /// Keeps `b`, or hands it back when [`MAX_TABLES`] are kept already.
    fn keep_table(&mut self, b: Buffers) -> Option<Buffers> {
        self.stamp += 1;
        if self.tables.len() < MAX_TABLES {
            self.tables.push(b);
            None
        } else {
            Some(b)
        }
    }

    fn take_read(&mut self) -> Vec<u8> {
        self.stamp += 1;
        std::mem::take(&mut self.read)
    }

    /// Keeps the larger of `buf` and the buffer kept; returns the other.
    fn keep_read(&mut self, mut buf: Vec<u8>) -> Vec<u8> {
        self.stamp += 1;
        buf.clear();
        if buf.capacity() > self.read.capacity() {
            std::mem::swap(&mut self.read, &mut buf);
        }
        buf
    }

    /// Everything kept, if nothing changed since `stamp`.
    fn release_if_unchanged(&mut self, stamp: u64) -> (Vec<Buffers>, Vec<u8>) {
        if self.stamp != stamp {
            return Default::default();
        }
        self.stamp += 1;
        (
            std::mem::take(&mut self.tables),
            std::mem::take(&mut self.read),
        )
    }

    fn held_bytes(&self) -> usize {
        self.read.capacity() + self.tables.iter().map(Buffers::bytes).sum::<usize>()
    }
}

/// Whether a retired buffer with room for `cap` items suits a table needing `n`: enough room,
/// and not so much that a small table would keep a big one's memory alive.
pub(crate) fn fits(cap: usize, n: usize) -> bool {
    cap >= n && cap <= n.saturating_mul(2).max(4096)
}

/// `v` emptied if its capacity [`fits`] `n` items (adding its bytes to `reused`); else a fresh
/// vector with room for `n` and `headroom` more, so that a plan growing a little between
/// reloads still fits next time.
pub(crate) fn reuse<T>(mut v: Vec<T>, n: usize, headroom: usize, reused: &mut usize) -> Vec<T> {
    v.clear();
    if fits(v.capacity(), n) {
        *reused += v.capacity() * std::mem::size_of::<T>();
        return v;
    }
    drop(v);
    Vec::with_capacity(n.saturating_add(headroom))
}

static SPARE: Mutex<Spare> = Mutex::new(Spare::new());

/// Whether a release thread is running.
static RELEASER: AtomicBool = AtomicBool::new(false);

fn with<T>(f: impl FnOnce(&mut Spare) -> T) -> T {
    // A panic while holding the lock leaves plain buffers behind: still usable.
    let mut s = SPARE.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut s)
}

/// Hands a retired table to the next load when nothing else holds it (a table carried over
/// unchanged into the new snapshot is still in use), else just lets go of it.
pub(crate) fn recycle(table: Arc<RedirectTable>) {
    if let Ok(t) = Arc::try_unwrap(table) {
        t.recycle();
    }
}

/// A kept table's memory for a table of `url_bytes` of URL text, if any is kept.
pub(crate) fn take_table(url_bytes: usize) -> Option<Buffers> {
    with(|s| s.take_table(url_bytes))
}

/// Keeps a retired table's memory for the next load (freed here if too many are kept).
/// Logs the hand-over: the event a reload burst (and a test) can see the next load reuse.
pub(crate) fn keep_table(b: Buffers) {
    let mb = b.bytes() >> 20;
    let refused = with(|s| s.keep_table(b));
    if refused.is_none() {
        tracing::info!(
            kept_memory_mb = mb,
            "retired redirect table kept for the next load"
        );
    }
    drop(refused);
    arm_release();
}

/// An empty read buffer for a file of `len` bytes: the one kept if it [`fits`].
pub(crate) fn take_read(len: usize) -> Vec<u8> {
    reuse(with(Spare::take_read), len, 0, &mut 0)
}

/// Keeps a read buffer for the next load (its contents are discarded).
pub(crate) fn keep_read(buf: Vec<u8>) {
    drop(with(|s| s.keep_read(buf)));
    arm_release();
}

/// Bytes kept right now.
fn held_bytes() -> usize {
    with(|s| s.held_bytes())
}

/// Starts the release thread unless one runs. Every [`KEEP`] it frees what nobody took or kept
/// meanwhile, and it stops once nothing is kept.
fn arm_release() {
    if RELEASER.swap(true, Ordering::AcqRel) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("cutover-spare".into())
        .spawn(|| {
            crate::background::lower_priority("spare");
            loop {
                let seen = with(|s| s.stamp);
                std::thread::sleep(KEEP);
                // Freed outside the lock.
                let (tables, read) = with(|s| s.release_if_unchanged(seen));
                if !tables.is_empty() || read.capacity() > 0 {
                    tracing::debug!("released the spare redirect-table memory");
                }
                drop((tables, read));
                if held_bytes() == 0 {
                    RELEASER.store(false, Ordering::Release);
                    // Whatever is kept after this re-arms, unless this thread goes on.
                    if held_bytes() == 0 || RELEASER.swap(true, Ordering::AcqRel) {
                        return;
                    }
                }
            }
        });
    if spawned.is_err() {
        // Nobody to release it later: free now rather than hold the memory for good.
        RELEASER.store(false, Ordering::Release);
        drop(with(|s| {
            let stamp = s.stamp;
            s.release_if_unchanged(stamp)
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(arena: usize) -> Buffers {
        Buffers::with_arena(arena)
    }

    #[test]
    fn the_best_fitting_table_is_taken() {
        let mut s = Spare::new();
        for cap in [100, 1_000, 10_000] {
            assert!(s.keep_table(table(cap)).is_none());
        }
        let got = |s: &mut Spare, want| s.take_table(want).unwrap().arena_capacity();
        assert!(
            (1_000..10_000).contains(&got(&mut s, 900)),
            "smallest that fits"
        );
        assert!(got(&mut s, 50_000) >= 10_000, "else the largest");
        assert!(got(&mut s, 10) >= 100);
        assert!(s.take_table(10).is_none());
    }

    #[test]
    fn at_most_a_few_tables_are_kept() {
        let mut s = Spare::new();
        for _ in 0..MAX_TABLES {
            assert!(s.keep_table(table(64)).is_none());
        }
        assert!(s.keep_table(table(64)).is_some(), "handed back to be freed");
        assert_eq!(s.tables.len(), MAX_TABLES);
    }

    #[test]
    fn the_larger_read_buffer_is_kept_empty() {
        let mut s = Spare::new();
        let small = s.keep_read(vec![1; 10]);
        assert_eq!(small.capacity(), 0, "nothing was kept before");
        let back = s.keep_read(Vec::with_capacity(5));
        assert_eq!(back.capacity(), 5, "the smaller one goes back");
        let read = s.take_read();
        assert!(read.is_empty() && read.capacity() >= 10);
        assert_eq!(s.take_read().capacity(), 0);
    }

    #[test]
    fn release_frees_only_what_nobody_touched_since() {
        let mut s = Spare::new();
        s.keep_table(table(64));
        let seen = s.stamp;
        s.keep_read(Vec::with_capacity(100));
        let (t, r) = s.release_if_unchanged(seen);
        assert!(
            t.is_empty() && r.capacity() == 0,
            "a newer keep keeps it all"
        );
        let seen = s.stamp;
        assert!(s.held_bytes() >= 164);
        let (t, r) = s.release_if_unchanged(seen);
        assert_eq!((t.len(), r.capacity() >= 100), (1, true));
        assert_eq!(s.held_bytes(), 0);
    }
}
