//! A global allocator that counts allocations made on threads that opted in: shared by
//! tests/metrics_alloc.rs (the request path allocates nothing) and examples/record_bench.rs.
//!
//! Including this module installs it as the process's allocator, so only test binaries and
//! examples that exist to count allocations include it. Counting is per thread (`COUNTING`), so
//! a harness or runtime thread cannot disturb the figure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Allocations (and reallocations) counted so far on opted-in threads.
pub static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Bytes allocated and not yet freed, by every thread: what a structure holds is the difference
/// across building it (examples/memory_at_capacity.rs).
pub static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

thread_local! {
    /// Set to count this thread's allocations.
    pub static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// This thread's counted allocations, and the size of the first (what a failure names).
    static THREAD: Cell<(u64, usize)> = const { Cell::new((0, 0)) };
}

struct Counting;

fn count(size: usize) {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        let _ = THREAD.try_with(|t| {
            let (n, first) = t.get();
            t.set((n + 1, if n == 0 { size } else { first }));
        });
    }
}

/// Allocations made by `f` on this thread, counted only while it runs: nothing another thread
/// does, and nothing this thread does before or after, can add to the figure. Returns `f`'s
/// result, the count, and the size in bytes of the first allocation counted (0: none).
// Not every binary that includes this module uses it.
#[allow(dead_code)]
pub fn allocations_of<R>(f: impl FnOnce() -> R) -> (R, u64, usize) {
    THREAD.with(|t| t.set((0, 0)));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    let (n, first) = THREAD.with(Cell::get);
    (r, n, first)
}

/// Fails unless an allocation made while counting is counted: what makes a test's "0
/// allocations" mean something.
#[allow(dead_code)]
pub fn assert_it_counts() {
    let (_, n, _) = allocations_of(|| drop(Vec::<u8>::with_capacity(std::hint::black_box(16))));
    assert_eq!(n, 1, "the counting allocator missed an allocation");
}

// SAFETY: forwards every call unchanged to the system allocator; only adds a counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;
