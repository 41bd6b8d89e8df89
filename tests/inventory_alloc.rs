//! Recording a request on a URL the inventory already counts must not allocate: proven with
//! the counting global allocator (its own test binary because the allocator is process-wide).
//! Only the measured calls are counted, on the test's own thread (`allocations_of`): nothing
//! else the process or the harness does can add to the figure.

mod counting_alloc;

use counting_alloc::allocations_of;
use cutover::inventory::{CrawlerMatcher, Inventory, KeyPolicy, Recorded};
use http::{Method, StatusCode};

const URLS: [&str; 6] = [
    "/",
    "/Shoes/Red/",
    "/index.php?route=product/product&product_id=42&utm_source=news&gclid=x",
    "/caf%C3%A9?page=2",
    "/search?q=red+shoes&sort=price",
    "/blog/2020/01/hello-world",
];
const GOOGLE: &[u8] = b"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const FIREFOX: &[u8] = b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

#[test]
fn recording_a_known_url_allocates_nothing() {
    let inv = Inventory::new(1000, KeyPolicy::default(), CrawlerMatcher::default());
    // First sight of each URL allocates its slot and grows the per-thread key buffers.
    for u in URLS {
        assert_eq!(
            inv.record(&Method::GET, "shop.example", u, StatusCode::OK, FIREFOX),
            Recorded::Added
        );
    }
    let (mut counted, mut allocations, mut first) = (0, 0, 0);
    let mut measure = |f: &dyn Fn() -> Recorded, want: Recorded| {
        let (r, n, size) = allocations_of(f);
        counted += usize::from(r == want);
        if allocations == 0 {
            first = size;
        }
        allocations += n;
    };
    for i in 0..60_000usize {
        let ua = if i % 3 == 0 { GOOGLE } else { FIREFOX };
        let status = [
            StatusCode::OK,
            StatusCode::MOVED_PERMANENTLY,
            StatusCode::GONE,
        ][i % 3];
        let m = if i % 2 == 0 {
            &Method::GET
        } else {
            &Method::HEAD
        };
        let url = URLS[i % 6];
        measure(
            &|| inv.record(m, "shop.example", url, status, ua),
            Recorded::Counted,
        );
        // Not eligible: nothing to do, nothing allocated either.
        measure(
            &|| {
                inv.record(
                    &Method::GET,
                    "shop.example",
                    "/missing",
                    StatusCode::NOT_FOUND,
                    ua,
                )
            },
            Recorded::NotEligible,
        );
        // The new store's answers on known URLs, and a fallback answer, the same.
        let new_status = [StatusCode::OK, StatusCode::NOT_FOUND][i % 2];
        measure(
            &|| inv.observe_new(m, "shop.example", url, new_status),
            Recorded::Counted,
        );
        measure(
            &|| inv.record_fallback(m, "shop.example", url, StatusCode::OK, ua),
            Recorded::Counted,
        );
        // A URL new serves that old never did is not kept: nothing to allocate for.
        measure(
            &|| inv.observe_new(m, "shop.example", "/only-on-new", StatusCode::OK),
            Recorded::NotInventoried,
        );
    }
    assert_eq!(counted, 5 * 60_000);
    assert_eq!(
        allocations, 0,
        "allocations recording known URLs (the first of {first} bytes)"
    );
    // The counter would have caught one: a new URL allocates its slot.
    let (_, n, _) =
        allocations_of(|| inv.record(&Method::GET, "", "/a-new-page", StatusCode::OK, FIREFOX));
    assert!(n > 0);
}
