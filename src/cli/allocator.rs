//! The binary's memory allocator: jemalloc, with its background thread on.
//!
//! Why jemalloc: after a burst (5,000 shoppers' connections, a slowloris, a reload of a 10^6-row
//! plan) the freed memory must go back to the OS even when the proxy then goes quiet, which is
//! when the next burst comes. jemalloc's background thread purges freed pages on a timer
//! (`dirty_decay_ms`, 10 s by default) whatever the process is doing. mimalloc, used until
//! session 10, returns memory only from inside later allocations: an idle process kept the
//! 110 MB of a 5,000-connection burst (BENCHMARKS.md, "Memory after a connection burst"), and its
//! only remedy, `mi_collect` on every worker, is an `unsafe` call this project does not make.
//! Per request, a proxied request allocates and frees a few dozen small blocks (headers, body
//! chunks, futures) across two connections; jemalloc's thread caches serve them as mimalloc's
//! heaps did (the cost, measured side by side: BENCHMARKS.md). glibc's malloc is not an option:
//! its free lists took ~10% of an h2 request's CPU.
//!
//! Only the binary chooses; the library leaves the allocator to whoever embeds it.

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Starts jemalloc's background purging. Called once at start, after the environment is read
/// (the background thread is a thread like any other). A platform without background threads
/// keeps working: memory is then purged during later allocations, as with mimalloc, and a
/// warning says so.
pub fn return_freed_memory_while_idle() {
    // One purging thread for every arena: jemalloc would start one per CPU (4 on 2 cores),
    // each a thread stack and a wake-up of its own for the same idle work.
    let started = tikv_jemalloc_ctl::max_background_threads::write(1)
        .and_then(|()| tikv_jemalloc_ctl::background_thread::write(true));
    if let Err(e) = started {
        tracing::warn!(
            error = %e,
            "the allocator's background thread could not start: memory freed after a burst is \
             returned to the OS only when later allocations happen"
        );
    }
}
