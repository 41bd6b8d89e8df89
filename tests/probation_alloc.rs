//! The redirect probation's `Cache-Control` on the request path allocates nothing: the header is
//! built once per snapshot and each answer takes a reference (the fast path writes its bytes) or
//! a reference-counted clone (hyper's header map). Proven with a counting global allocator.
//!
//! Its own test binary because the allocator is process-wide; only allocations made on the
//! test's own thread while `COUNTING` is set are counted.

mod counting_alloc;

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use counting_alloc::{ALLOCATIONS, COUNTING};
use cutover::redirects::probation::RedirectProbation;
use http::StatusCode;

#[test]
fn deciding_and_cloning_the_cache_control_allocates_nothing() {
    let mut p = RedirectProbation::new(Duration::from_secs(3600), Duration::from_secs(86_400));
    p.started_at = Some(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    );
    let during = p.cache_control(StatusCode::MOVED_PERMANENTLY, false);
    assert_eq!(during.unwrap(), "max-age=86400");

    let statuses = [301, 302, 307, 308, 410].map(|s| StatusCode::from_u16(s).unwrap());
    let mut kept = 0usize;
    COUNTING.with(|c| c.set(true));
    for i in 0..100_000usize {
        let status = statuses[i % statuses.len()];
        let header = p.cache_control(status, i % 7 == 0).cloned();
        kept += header.map_or(0, |h| h.len());
    }
    COUNTING.with(|c| c.set(false));
    assert!(kept > 0);
    assert_eq!(
        ALLOCATIONS.load(Ordering::Relaxed),
        0,
        "allocations on the request path"
    );
    // The counter would have caught an allocation.
    counting_alloc::assert_it_counts();
}
