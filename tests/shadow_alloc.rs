//! `Shadow::offer` allocates nothing for a request it does not copy (not eligible, not sampled,
//! excluded): proven with the counting global allocator shared with tests/metrics_alloc.rs.

mod counting_alloc;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use counting_alloc::{ALLOCATIONS, COUNTING};
use cutover::shadow::config::ShadowConfig;
use cutover::shadow::{OfferRequest, Offered, Shadow, Storefront, Targets};
use http::{HeaderMap, Method, Uri};

#[test]
fn offers_that_are_not_copied_allocate_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = rt.enter();
    let targets = Targets {
        old: "http://127.0.0.1:9".into(),
        new: "http://127.0.0.1:9".into(),
    };
    let half = ShadowConfig {
        sample: 0.5,
        ..ShadowConfig::default()
    }
    .build()
    .unwrap();
    let shadow = Shadow::start(half, &targets, Arc::new(|_: &str| None)).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("host", "shop.example".parse().unwrap());
    headers.insert("cookie", "session=1".parse().unwrap());
    let (page, cart): (Uri, Uri) = ("/p/1?x=2".parse().unwrap(), "/cart/add".parse().unwrap());
    let request = |method, uri, served_by| OfferRequest {
        method,
        uri,
        headers: &headers,
        served_by,
        route: "default",
        scheme: "https",
    };
    let (get, post) = (Method::GET, Method::POST);
    let cases = [
        request(&get, &page, Storefront::New),
        request(&post, &page, Storefront::Old),
        request(&get, &cart, Storefront::Old),
    ];
    let mut not_sampled = 0;
    COUNTING.with(|c| c.set(true));
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for case in &cases {
        for _ in 0..10_000 {
            match shadow.offer(case, |_| unreachable!("only called for a sampled copy")) {
                Offered::NotEligible | Offered::Excluded => {}
                Offered::NotSampled => not_sampled += 1,
                other => panic!("{other:?}"),
            }
        }
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    COUNTING.with(|c| c.set(false));
    assert_eq!(allocations, 0);
    assert!(not_sampled > 0, "the sampling branch was exercised");
}
