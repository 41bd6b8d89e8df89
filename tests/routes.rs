//! Route matching through the real proxy: the first matching route wins, path prefixes match on
//! segment boundaries, and the other conditions (exact path, method, host, header, cookie).

mod support;

use http::Method;
use support::client::request;
use support::{Backend, Client, ConfigSpec, InProc};

const ROUTES: &str = r#"
[[route]]
name = "blog"
path_prefix = "/blog"
to = "old"

[[route]]
name = "sale-on-new"
path_prefix = "/shop/sale/"
to = "new"

[[route]]
name = "shop"
path_prefix = "/shop"
to = "old"

[[route]]
name = "api-old"
path_prefix = "/api"
to = "old"

[[route]]
name = "api-v2-shadowed"
path_prefix = "/api/v2"
to = "new"

[[route]]
name = "checkout-post"
path = "/checkout"
method = ["POST", "put"]
to = "old"

[[route]]
name = "legacy-hosts"
host = "*.legacy.example"
to = "old"

[[route]]
name = "legacy-header"
header = { name = "x-legacy", value = "1" }
to = "old"

[[route]]
name = "legacy-cookie"
cookie = { name = "platform" }
to = "old"

[[route]]
name = "everything-else"
path_prefix = "/"
to = "split"
"#;

/// `(method, path, extra headers, storefront, reason the storefront is told)`.
type Case = (
    Method,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_match_wins_and_prefixes_match_on_segment_boundaries() {
    let old = Backend::echo("old").await;
    let new = Backend::echo("new").await;
    // Everything not routed goes to `new` (100%), so each rule to `old` is visible.
    let spec = ConfigSpec::new(&old.url(), &new.url(), 100.0).tail(ROUTES);
    let proxy = InProc::start(&spec).await;
    let client = Client::new(proxy.addr);

    #[rustfmt::skip]
    let cases: &[Case] = &[
        (Method::GET, "/blog", &[], "old", "rule"),
        (Method::GET, "/blog/", &[], "old", "rule"),
        (Method::GET, "/blog/spring-sale", &[], "old", "rule"),
        (Method::GET, "/blog?page=2", &[], "old", "rule"),
        (Method::GET, "/blogger", &[], "new", "split"),
        (Method::GET, "/blog-post", &[], "new", "split"),
        (Method::GET, "/bloG", &[], "new", "split"),
        // An earlier, more specific route wins over a later, broader one...
        (Method::GET, "/shop/sale", &[], "new", "rule"),
        (Method::GET, "/shop/sale/shoes", &[], "new", "rule"),
        (Method::GET, "/shop/sales", &[], "old", "rule"),
        (Method::GET, "/shop", &[], "old", "rule"),
        (Method::GET, "/shop/cart", &[], "old", "rule"),
        (Method::GET, "/shopping", &[], "new", "split"),
        // ...and an earlier, broader route shadows a later, more specific one.
        (Method::GET, "/api/v2/items", &[], "old", "rule"),
        (Method::GET, "/api", &[], "old", "rule"),
        (Method::GET, "/apiary", &[], "new", "split"),
        // Exact path plus method.
        (Method::POST, "/checkout", &[], "old", "rule"),
        (Method::PUT, "/checkout", &[], "old", "rule"),
        (Method::GET, "/checkout", &[], "new", "split"),
        (Method::POST, "/checkout/confirm", &[], "new", "split"),
        // Host wildcard (one or more labels in front), header value, cookie presence.
        (Method::GET, "/x", &[("host", "www.legacy.example")], "old", "rule"),
        (Method::GET, "/x", &[("host", "a.b.LEGACY.example:8080")], "old", "rule"),
        (Method::GET, "/x", &[("host", "legacy.example")], "new", "split"),
        (Method::GET, "/x", &[("x-legacy", "1")], "old", "rule"),
        (Method::GET, "/x", &[("x-legacy", "2")], "new", "split"),
        (Method::GET, "/x", &[("cookie", "a=1; platform=legacy")], "old", "rule"),
        (Method::GET, "/x", &[("cookie", "platforms=1")], "new", "split"),
    ];
    for (method, path, headers, want, reason) in cases {
        let r = client
            .send(request(proxy.addr, method.clone(), path, headers, ""))
            .await;
        let got = r.backend();
        assert_eq!(&got, want, "{method} {path} {headers:?}");
        let backend = if got == "old" { &old } else { &new };
        let seen = backend.seen().last().cloned().expect("recorded");
        assert_eq!(seen.uri, *path, "path forwarded unchanged");
        assert_eq!(
            seen.header("x-cutover-reason").as_deref(),
            Some(*reason),
            "{method} {path}: reason told to the storefront"
        );
        assert_eq!(r.header("x-cutover-storefront").as_deref(), Some(*want));
    }
}
