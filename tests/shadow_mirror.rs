//! End-to-end tests of the shadow mirror against two real hyper storefronts on 127.0.0.1.

mod shadow_support;

use std::collections::HashMap;
use std::sync::Arc;

use cutover::shadow::config::ShadowConfig;
use cutover::shadow::{
    MapUrl, MismatchKind, OfferRequest, Offered, Shadow, ShadowResult, Storefront, Targets,
};
use http::{HeaderMap, Method, Uri};
use shadow_support::{html, start, status, wait_completions, Page, Store, DEADLINE};

const HOST: &str = "shop.example";

fn page(title: &str, canonical: &str, robots: &str, hreflang: &str, h1: bool) -> Page {
    let h1 = if h1 {
        "<h1>Heading</h1>"
    } else {
        "<h2>No h1</h2>"
    };
    html(&format!(
        "<!doctype html><html><head><title>{title}</title>\
         <link rel=canonical href=\"{canonical}\"><meta name=robots content=\"{robots}\">\
         <link rel=alternate hreflang=de href=\"{hreflang}\"></head><body>{h1}</body></html>"
    ))
}

fn standard(path: &str) -> Page {
    page("Shop", path, "index, follow", "/de/x", true)
}

/// The plan of these tests: `/old-product` became `/new-product`.
fn plan() -> MapUrl {
    Arc::new(|url: &str| {
        (url == "http://shop.example/old-product").then(|| "/new-product".to_string())
    })
}

fn settings(edit: impl FnOnce(&mut ShadowConfig)) -> cutover::shadow::ShadowSettings {
    let mut c = ShadowConfig {
        sample: 1.0,
        timeout: cutover::values::HumanDuration(std::time::Duration::from_secs(1)),
        ..ShadowConfig::default()
    };
    edit(&mut c);
    c.build().unwrap()
}

fn shadow(old: &Store, new: &Store, edit: impl FnOnce(&mut ShadowConfig)) -> Arc<Shadow> {
    let targets = Targets {
        old: old.base.clone(),
        new: new.base.clone(),
    };
    Shadow::start(settings(edit), &targets, plan()).unwrap()
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HOST.parse().unwrap());
    for (name, value) in pairs {
        h.append(*name, value.parse().unwrap());
    }
    h
}

fn offer(shadow: &Shadow, method: Method, path: &str, h: &HeaderMap, route: &str) -> Offered {
    let uri: Uri = path.parse().unwrap();
    let request = OfferRequest {
        method: &method,
        uri: &uri,
        headers: h,
        served_by: Storefront::Old,
        route,
        scheme: "http",
    };
    shadow.offer(&request, |pq| {
        (pq == "/old-product").then(|| "/new-product".to_string())
    })
}

#[tokio::test]
async fn each_mismatch_kind_is_detected_and_matches_are_counted() {
    let mut old = HashMap::new();
    let mut new = HashMap::new();
    old.insert(
        "/old-product",
        page("Red", "/old-product", "index", "/de/rot", true),
    );
    new.insert(
        "/new-product",
        page(
            "Red",
            "http://shop.example/new-product",
            "index",
            "/de/rot",
            true,
        ),
    );
    for path in [
        "/status",
        "/missing",
        "/canonical",
        "/title",
        "/robots",
        "/hreflang",
        "/h1",
        "/content-type",
        "/hang",
    ] {
        old.insert(path, standard(path));
    }
    new.insert("/status", status(503, None));
    new.insert("/missing", status(404, None));
    old.insert("/redirect", status(301, Some("/a")));
    new.insert("/redirect", status(301, Some("/b")));
    new.insert("/canonical", standard("/somewhere-else"));
    new.insert(
        "/title",
        page("Shop | New", "/title", "index, follow", "/de/x", true),
    );
    new.insert("/robots", page("Shop", "/robots", "noindex", "/de/x", true));
    new.insert(
        "/hreflang",
        page("Shop", "/hreflang", "index, follow", "/de/y", true),
    );
    new.insert("/h1", page("Shop", "/h1", "index, follow", "/de/x", false));
    new.insert(
        "/content-type",
        Page::Answer(
            200,
            vec![("content-type", "application/json".into())],
            "{}".into(),
        ),
    );
    new.insert("/hang", Page::Hang);
    let (old, new) = (start(old, false).await, start(new, false).await);
    let shadow = shadow(&old, &new, |_| {});

    let expected = [
        ("/status", MismatchKind::Status),
        ("/missing", MismatchKind::MissingOnNew),
        ("/redirect", MismatchKind::Redirect),
        ("/canonical", MismatchKind::Canonical),
        ("/title", MismatchKind::Title),
        ("/robots", MismatchKind::Robots),
        ("/hreflang", MismatchKind::Hreflang),
        ("/h1", MismatchKind::H1),
        ("/content-type", MismatchKind::ContentType),
        ("/hang", MismatchKind::Timeout),
    ];
    let h = headers(&[]);
    for (path, _) in &expected {
        assert_eq!(
            offer(&shadow, Method::GET, path, &h, "pages"),
            Offered::Queued
        );
    }
    assert_eq!(
        offer(&shadow, Method::GET, "/same", &h, "default"),
        Offered::Queued
    );
    assert_eq!(
        offer(&shadow, Method::GET, "/old-product", &h, "products"),
        Offered::Queued
    );
    wait_completions(&shadow, expected.len() as u64 + 2).await;

    let counters = shadow.counters();
    assert_eq!(counters.result(ShadowResult::Match), 2, "{counters:?}");
    assert_eq!(counters.result(ShadowResult::Mismatch), 9);
    assert_eq!(counters.result(ShadowResult::Error), 1);
    let report = shadow.report();
    for (path, kind) in &expected {
        assert_eq!(counters.kind(*kind), 1, "{kind:?}");
        let group = report
            .kinds
            .iter()
            .find(|k| k.kind == *kind)
            .unwrap_or_else(|| panic!("{kind:?} missing"));
        assert_eq!(
            group.mismatches, 1,
            "{kind:?}: only {path} differs that way"
        );
        assert_eq!(group.top_urls[0].url, *path);
        assert_eq!(group.example.as_ref().unwrap().url, *path);
    }
    let canonical = report
        .kinds
        .iter()
        .find(|k| k.kind == MismatchKind::Canonical)
        .unwrap();
    let ex = canonical.example.as_ref().unwrap();
    assert_eq!(
        (ex.old.as_str(), ex.new.as_str()),
        (
            "http://shop.example/canonical",
            "http://shop.example/somewhere-else"
        )
    );

    // The copy of the old URL went to the page the plan says it becomes, and matched there.
    assert_eq!(new.seen("/new-product").len(), 1);
    assert!(new.seen("/old-product").is_empty());
    assert_eq!(old.seen("/old-product").len(), 1);
    let products = report
        .routes
        .iter()
        .find(|r| r.route == "products")
        .unwrap();
    assert_eq!((products.matches, products.mismatches), (1, 0));
    let pages = report.routes.iter().find(|r| r.route == "pages").unwrap();
    assert_eq!((pages.mismatches, pages.errors), (9, 1));

    // JSON and CSV carry the same report; clearing empties it but keeps the counters.
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["requests"]["mismatch"], 9);
    assert!(report.to_csv().contains("kind,missing_on_new,1,/missing,1"));
    shadow.clear();
    assert_eq!(shadow.report().requests.mismatch, 0);
    assert_eq!(shadow.counters().result(ShadowResult::Mismatch), 9);
}

#[tokio::test]
async fn a_storefront_that_is_down_is_an_error() {
    let old = start(HashMap::new(), false).await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let down = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let targets = Targets {
        old: old.base.clone(),
        new: down,
    };
    let shadow = Shadow::start(settings(|_| {}), &targets, plan()).unwrap();
    assert_eq!(
        offer(&shadow, Method::GET, "/p", &headers(&[]), "r"),
        Offered::Queued
    );
    wait_completions(&shadow, 1).await;
    assert_eq!(shadow.counters().kind(MismatchKind::Error), 1);
    assert_eq!(shadow.counters().result(ShadowResult::Error), 1);
    let report = shadow.report();
    let ex = report.kinds[0].example.as_ref().unwrap();
    assert_eq!(ex.old, "200");
    assert!(ex.new.starts_with("error: "), "{}", ex.new);
}

#[tokio::test]
async fn excluded_paths_and_unsafe_methods_are_never_mirrored() {
    let (old, new) = (
        start(HashMap::new(), false).await,
        start(HashMap::new(), false).await,
    );
    let shadow = shadow(&old, &new, |_| {});
    let h = headers(&[]);
    for path in [
        "/checkout/pay",
        "/cart",
        "/CART/items",
        "/checkouts/1",
        "/account/orders",
        "/logout",
    ] {
        assert_eq!(
            offer(&shadow, Method::GET, path, &h, "r"),
            Offered::Excluded,
            "{path}"
        );
    }
    assert_eq!(
        offer(&shadow, Method::POST, "/ok", &h, "r"),
        Offered::NotEligible
    );
    let uri: Uri = "/ok".parse().unwrap();
    let served_by_new = OfferRequest {
        method: &Method::GET,
        uri: &uri,
        headers: &h,
        served_by: Storefront::New,
        route: "r",
        scheme: "http",
    };
    assert_eq!(shadow.offer(&served_by_new, |_| None), Offered::NotEligible);
    // A control request goes through, so the stores were reachable all along.
    assert_eq!(offer(&shadow, Method::GET, "/ok", &h, "r"), Offered::Queued);
    wait_completions(&shadow, 1).await;
    assert_eq!(old.paths(), ["/ok"]);
    assert_eq!(new.paths(), ["/ok"]);

    let unsampled = self::shadow(&old, &new, |c| c.sample = 0.0);
    assert_eq!(
        offer(&unsampled, Method::GET, "/ok", &h, "r"),
        Offered::NotSampled
    );
}

#[tokio::test]
async fn cookies_and_credentials_stay_behind_by_default() {
    let (old, new) = (
        start(HashMap::new(), false).await,
        start(HashMap::new(), false).await,
    );
    let shopper = headers(&[
        ("cookie", "session=secret"),
        ("authorization", "Bearer secret"),
        ("x-cutover-token", "staff-secret"),
        ("accept-encoding", "gzip, br"),
        ("user-agent", "ua-test"),
        ("connection", "keep-alive, x-hop"),
        ("x-hop", "hop-secret"),
    ]);
    let shadow = shadow(&old, &new, |_| {});
    assert_eq!(
        offer(&shadow, Method::GET, "/private", &shopper, "r"),
        Offered::Queued
    );
    wait_completions(&shadow, 1).await;
    for store in [&old, &new] {
        let seen = store.seen("/private");
        assert_eq!(seen.len(), 1);
        let h = &seen[0].headers;
        for absent in ["cookie", "authorization", "x-cutover-token", "x-hop"] {
            assert!(h.get(absent).is_none(), "{absent} was forwarded: {h:?}");
        }
        assert_eq!(h["x-cutover-shadow"], "1");
        assert_eq!(h["accept-encoding"], "identity");
        assert_eq!(h["user-agent"], "ua-test");
        assert_eq!(h["host"], HOST);
    }

    let forwarding = self::shadow(&old, &new, |c| {
        c.forward_cookies = true;
        c.forward_authorization = true;
    });
    assert_eq!(
        offer(&forwarding, Method::GET, "/opted-in", &shopper, "r"),
        Offered::Queued
    );
    wait_completions(&forwarding, 1).await;
    let h = &new.seen("/opted-in")[0].headers;
    assert_eq!(h["cookie"], "session=secret");
    assert_eq!(h["authorization"], "Bearer secret");
    assert!(h.get("x-cutover-token").is_none());
}

#[tokio::test]
async fn a_hanging_target_never_holds_the_shopper_and_the_copy_times_out() {
    let old = start(HashMap::new(), false).await;
    let new = start(HashMap::new(), true).await; // hangs on every request
    let shadow = shadow(&old, &new, |_| {});
    let copy_arrived = new.arrived.notified();
    // `offer` is synchronous: it returns without waiting for either storefront.
    assert_eq!(
        offer(&shadow, Method::GET, "/page", &headers(&[]), "r"),
        Offered::Queued
    );
    tokio::time::timeout(DEADLINE, copy_arrived)
        .await
        .expect("the copy reached new");

    // While the copy hangs, a shopper's request to the serving storefront is answered.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let answer = tokio::time::timeout(
        DEADLINE,
        client.get(format!("{}/page", old.base).parse().unwrap()),
    )
    .await
    .expect("shopper answered")
    .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        *shadow.completions().borrow(),
        0,
        "the copy is still hanging"
    );

    wait_completions(&shadow, 1).await;
    let counters = shadow.counters();
    assert_eq!(counters.kind(MismatchKind::Timeout), 1);
    assert_eq!(counters.result(ShadowResult::Error), 1);
    let ex = shadow.report().kinds[0].example.clone().unwrap();
    assert_eq!(
        (ex.kind, ex.new.as_str()),
        (MismatchKind::Timeout, "timeout")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_dropped_and_counted_in_bounded_memory() {
    let (old, new) = (
        start(HashMap::new(), true).await,
        start(HashMap::new(), true).await,
    );
    let shadow = shadow(&old, &new, |c| {
        c.concurrency = 2;
        c.queue = 8;
        c.timeout = cutover::values::HumanDuration(std::time::Duration::from_secs(30));
    });
    let h = headers(&[("user-agent", "flood")]);
    let (mut queued, mut dropped) = (0u64, 0u64);
    for i in 0..10_000 {
        match offer(&shadow, Method::GET, &format!("/p/{i}"), &h, "r") {
            Offered::Queued => queued += 1,
            Offered::Dropped => dropped += 1,
            other => panic!("{other:?}"),
        }
    }
    let bound = 8 + 2 + 1;
    assert_eq!(queued + dropped, 10_000);
    assert!(queued <= bound as u64, "{queued} accepted");
    assert!(shadow.peak_pending() <= bound, "{}", shadow.peak_pending());
    assert_eq!(shadow.counters().result(ShadowResult::Dropped), dropped);
    assert_eq!(shadow.report().requests.dropped, dropped);
    shadow.clear();
    assert_eq!(
        shadow.report().requests.dropped,
        0,
        "cleared with the report"
    );
    assert_eq!(
        shadow.counters().result(ShadowResult::Dropped),
        dropped,
        "counters are monotonic"
    );
}
