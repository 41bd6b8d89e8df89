//! Recording a request's metrics must not allocate: proven with a counting global allocator.
//!
//! Its own test binary because the allocator is process-wide; only allocations made on the test's
//! own thread while `COUNTING` is set are counted, so the harness cannot disturb the figure.

mod counting_alloc;

use std::sync::atomic::Ordering;
use std::time::Duration;

use counting_alloc::{ALLOCATIONS, COUNTING};
use cutover::metrics::{Metrics, Reason, UpstreamErrorKind};
use http::StatusCode;

#[test]
fn request_path_recording_allocates_nothing() {
    let metrics = Metrics::new();
    let sfs: Vec<String> = (0..10).map(|i| format!("sf{i}")).collect();
    let routes: Vec<String> = (0..20).map(|i| format!("route{i}")).collect();
    let sfs: Vec<&str> = sfs.iter().map(String::as_str).collect();
    let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
    let handles = metrics.handles(&sfs, &routes);

    COUNTING.with(|c| c.set(true));
    for i in 0..100_000usize {
        let sf = i % 10;
        let h = handles.clone();
        let guard = h.start(sf);
        h.record(
            sf,
            i % 20,
            Reason::ALL[i % 5],
            StatusCode::from_u16(100 + (i % 500) as u16).unwrap(),
            Some(Duration::from_micros(i as u64)),
            Duration::from_micros(2 * i as u64),
        );
        h.upstream_error(sf, UpstreamErrorKind::ALL[i % 5]);
        h.assigned(sf);
        h.redirect_served(StatusCode::MOVED_PERMANENTLY);
        h.redirect_missed();
        // shoppers: counting where a returning shopper is, every storefront's ring included.
        h.shopper_seen(
            sf,
            &cutover::routing::shopper::Shopper {
                id: cutover::routing::shopper::mix(i as u64),
                pinned: i % 2 == 0,
                pinned_against_share: i % 4 == 0,
            },
        );
        drop(guard);
    }
    COUNTING.with(|c| c.set(false));
    assert_eq!(
        ALLOCATIONS.load(Ordering::Relaxed),
        0,
        "allocations on the request path"
    );
    // The counter would have caught an allocation.
    counting_alloc::assert_it_counts();
}
