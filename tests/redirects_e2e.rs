//! The redirect table through the real proxy (in-process `app::start`) with real upstreams:
//! matching options and query modes, per-host entries, statuses during a partial shift and at
//! 100%, 410, `apply_to`, open-redirect probes, missed redirects, and validation through the
//! `cutover` binary.

mod support;

use std::net::SocketAddr;
use std::process::Command;

use cutover::app::App;
use http::StatusCode;
use support::process::binary;
use support::raw::{response_head, send_until_close};
use support::redirects::config;
use support::stores::{path_store, PathStore};
use support::wait::wait_for_every;
use support::{Dir, HttpClient, Page};

const NEW: (&str, &str) = ("x-side", "new");
const OLD: (&str, &str) = ("x-side", "old");

/// The default table: every option at its default (case-insensitive, trailing slash
/// equivalent, query part of the key with fallback to the bare path, apply to new, temporary
/// statuses during the shift).
const PLAN: &str = "\u{feff}old_url,new_url,status,note
/index.php?route=product/product&product_id=42,/products/linen-lamp,301,query-string product
/product.php?id=123,/products/oak-table,308,
/Shoes/Red/,/collections/red-shoes,301,case and trailing slash
/caf%c3%a9,/pages/cafe,301,escaped non-ASCII
/~user/%41bout,/pages/user-about,301,unreserved escapes
/über-uns,/pages/about-us,301,\"raw UTF-8 from the sheet\"
/sale,/collections/sale,302,
/specials,/sale,301,chain: collapsed to /collections/sale
/blog/*,/news/*,301,splat
/blog/2016/*,/news/archive/*,301,more specific splat
/blog/special-post,/pages/special,301,exact beats prefix
/gift-vouchers,,410,removed on purpose
https://shop-a.example/about,/pages/about-a,301,per host
/about,/pages/about,301,any host
/brand,https://new.shop.example/brands,301,absolute target on an allowed host
/go,/landing?src=old,301,target with its own query
";

const STRICT: &str = "old_url,new_url
/Strict/Page,/s/page
/strict/dir/,/s/dir
";

const IGNORE: &str = "old_url,new_url
/qi/list,/collections/all
/qi/dir/*,/c/*
";

const DROP: &str = "old_url,new_url
/qd/list,/collections/all
";

const NO_FALLBACK: &str = "old_url,new_url
/qk/page,/p
/qk/item?id=1,/i1
";

const EVERYONE: &str = "old_url,new_url,status
/everyone,/for-everyone,301
";

const WRITTEN: &str = "old_url,new_url,status
/written,/w,301
/written-308,/w8,308
";

const TABLES: &str = r#"
[[redirects]]
name = "plan"
file = "plan.csv"
allowed_hosts = ["new.shop.example"]

[[redirects]]
name = "strict"
file = "strict.csv"
case_sensitive = true
trailing_slash = "strict"

[[redirects]]
name = "ignore"
file = "ignore.csv"
query = "ignore"

[[redirects]]
name = "drop"
file = "drop.csv"
query = "drop"

[[redirects]]
name = "no-fallback"
file = "no-fallback.csv"
query_fallback = false

[[redirects]]
name = "everyone"
file = "everyone.csv"
apply_to = "all"

[[redirects]]
name = "written"
file = "written.csv"
during_shift = "as_written"
"#;

struct Fixture {
    dir: Dir,
    app: App,
    addr: SocketAddr,
    client: HttpClient,
    old: PathStore,
    new: PathStore,
}

impl Fixture {
    async fn start(share: f64) -> Fixture {
        let old = path_store("old", &["/missing-page"]).await;
        let new = path_store("new", &["/missing-page", "/old-cms/page.html"]).await;
        let dir = Dir::new();
        for (name, text) in [
            ("plan.csv", PLAN),
            ("strict.csv", STRICT),
            ("ignore.csv", IGNORE),
            ("drop.csv", DROP),
            ("no-fallback.csv", NO_FALLBACK),
            ("everyone.csv", EVERYONE),
            ("written.csv", WRITTEN),
        ] {
            dir.write(name, text);
        }
        let path = dir.write("cutover.toml", &config(old.addr, new.addr, share, TABLES));
        let app = cutover::app::start(&path).await.expect("proxy starts");
        let addr = app.addresses[0];
        Fixture {
            dir,
            app,
            addr,
            client: HttpClient::new(),
            old,
            new,
        }
    }

    async fn get(&self, pq: &str, headers: &[(&str, &str)]) -> Page {
        self.client.get(self.addr, pq, headers).await
    }

    /// Asserts a redirect answer.
    async fn redirects(&self, pq: &str, headers: &[(&str, &str)], status: u16, location: &str) {
        let r = self.get(pq, headers).await;
        assert_eq!(
            (r.status.as_u16(), r.location()),
            (status, Some(location)),
            "{pq} {headers:?}: {r:?}"
        );
        assert_eq!(r.upstream(), None, "a redirect is answered by cutover");
        // A temporary redirect must not be cached, or a rollback could not reach the browser;
        // a permanent one at 100% on new is revocable for a day during the redirect probation
        // (default 14 days from reaching 100%, tests/redirect_probation.rs), and one served
        // as written below 100% (`during_shift = "as_written"`) carries nothing of cutover's.
        let full = self.app.reloader.state().load().routing.split.share_bp == 10_000;
        let want = match status {
            302 | 303 | 307 => Some("no-store"),
            _ if full => Some("max-age=86400"),
            _ => None,
        };
        let got = r.header("cache-control");
        assert_eq!(
            (!got.is_empty()).then_some(got),
            want,
            "{pq}: cache-control"
        );
    }

    /// Asserts the request was proxied to `storefront`, unredirected.
    async fn proxied(&self, pq: &str, headers: &[(&str, &str)], storefront: &str) {
        let r = self.get(pq, headers).await;
        assert_eq!(r.location(), None, "{pq} {headers:?}: {r:?}");
        assert_eq!(r.upstream(), Some(storefront), "{pq} {headers:?}: {r:?}");
        assert!(
            r.body.ends_with(&format!(" {pq}")),
            "{pq} reached the storefront unchanged: {:?}",
            r.body
        );
    }

    /// Rewrites the config with another share and applies it now.
    async fn set_share(&self, share: f64) {
        self.dir.write(
            "cutover.toml",
            &config(self.old.addr, self.new.addr, share, TABLES),
        );
        self.app.reloader.reload("test").await.expect("reload");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_options_and_query_modes() {
    let f = Fixture::start(100.0).await;
    let n = &[NEW];

    // Case-insensitive, trailing slash equivalent (defaults).
    for pq in ["/Shoes/Red/", "/shoes/red", "/SHOES/RED//"] {
        f.redirects(pq, n, 301, "/collections/red-shoes").await;
    }
    // Case-sensitive, strict trailing slash.
    f.redirects("/Strict/Page", n, 301, "/s/page").await;
    f.redirects("/strict/dir/", n, 301, "/s/dir").await;
    f.proxied("/strict/page", n, "new").await;
    f.proxied("/Strict/Page/", n, "new").await;
    f.proxied("/strict/dir", n, "new").await;

    // Percent-encoding normalisation: escaped or raw, upper or lower hex, unreserved decoded.
    for pq in ["/caf%C3%A9", "/caf%c3%a9", "/CAF%C3%A9"] {
        f.redirects(pq, n, 301, "/pages/cafe").await;
    }
    f.redirects("/%7Euser/About", n, 301, "/pages/user-about")
        .await;
    f.redirects("/%7euser/%61bout", n, 301, "/pages/user-about")
        .await;
    f.redirects("/%C3%BCber-uns", n, 301, "/pages/about-us")
        .await;
    f.proxied("/caf%C3%A8", n, "new").await;
    // `%2F` is not a separator: no match for /shoes%2Fred.
    f.proxied("/shoes%2Fred", n, "new").await;

    // Query as key: order does not matter, escapes are form-decoded, tracking parameters are
    // ignored for matching and carried to the target.
    f.redirects(
        "/index.php?route=product/product&product_id=42",
        n,
        301,
        "/products/linen-lamp",
    )
    .await;
    f.redirects(
        "/index.php?utm_source=news&product_id=42&route=product%2Fproduct&gclid=abc",
        n,
        301,
        "/products/linen-lamp?utm_source=news&gclid=abc",
    )
    .await;
    f.redirects(
        "/index.php?Product_ID=42&ROUTE=product/product&fbclid=X1&utm_campaign=Spring+Sale",
        n,
        301,
        "/products/linen-lamp?fbclid=X1&utm_campaign=Spring%20Sale",
    )
    .await;
    f.redirects("/product.php?id=123", n, 308, "/products/oak-table")
        .await;
    // Another product has no row; the bare path /index.php has none either.
    f.proxied("/index.php?route=product/product&product_id=43", n, "new")
        .await;
    // Fallback to the bare path (default), keeping the whole query.
    f.redirects(
        "/about?ref=mail&utm_source=x",
        n,
        301,
        "/pages/about?ref=mail&utm_source=x",
    )
    .await;
    // Without fallback an unknown query does not match; tracking parameters alone still do.
    f.proxied("/qk/page?ref=mail", n, "new").await;
    f.redirects("/qk/page", n, 301, "/p").await;
    f.redirects("/qk/page?utm_source=x", n, 301, "/p?utm_source=x")
        .await;
    f.redirects("/qk/item?utm_medium=m&id=1", n, 301, "/i1?utm_medium=m")
        .await;
    f.proxied("/qk/item?id=2", n, "new").await;
    // Query ignored for matching and preserved.
    f.redirects(
        "/qi/list?page=2&sort=price",
        n,
        301,
        "/collections/all?page=2&sort=price",
    )
    .await;
    f.redirects("/qi/dir/lamps/?page=3", n, 301, "/c/lamps/?page=3")
        .await;
    // Query dropped.
    f.redirects("/qd/list?page=2&utm_source=x", n, 301, "/collections/all")
        .await;
    f.redirects("/qd/list", n, 301, "/collections/all").await;

    // Splats: most specific wins, exact beats prefix, the suffix is carried.
    f.redirects("/blog/2017/hello", n, 301, "/news/2017/hello")
        .await;
    f.redirects("/blog/2016/hello?x=1", n, 301, "/news/archive/hello?x=1")
        .await;
    f.redirects("/BLOG/2016/Hello", n, 301, "/news/archive/Hello")
        .await;
    f.redirects("/blog/special-post", n, 301, "/pages/special")
        .await;
    f.redirects("/blog", n, 301, "/news/").await;
    f.proxied("/blogger", n, "new").await;

    // Chains are collapsed: one hop to the final target, with the source's status.
    f.redirects("/specials", n, 301, "/collections/sale").await;
    f.redirects("/sale", n, 302, "/collections/sale").await;
    // Targets with their own query, absolute targets on an allowed host.
    f.redirects("/go?utm_source=a", n, 301, "/landing?src=old&utm_source=a")
        .await;
    f.redirects("/brand", n, 301, "https://new.shop.example/brands")
        .await;
    // Methods other than GET get the same answer.
    let head = send_until_close(
        f.addr,
        b"HEAD /SALE/ HTTP/1.1\r\nHost: x\r\nX-Side: new\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (status, headers) = response_head(&head);
    assert_eq!(status, 302);
    assert!(headers.contains(&("location".into(), "/collections/sale".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_host_entries() {
    let f = Fixture::start(100.0).await;
    for host in [
        "shop-a.example",
        "SHOP-A.Example",
        "shop-a.example:8080",
        "shop-a.example.",
        "shop-a.example.:8080",
    ] {
        f.redirects("/about", &[NEW, ("host", host)], 301, "/pages/about-a")
            .await;
    }
    f.redirects(
        "/about/",
        &[NEW, ("host", "shop-a.example")],
        301,
        "/pages/about-a",
    )
    .await;
    // An absolute-form target names the host itself; its Host header is ignored (RFC 9112 3.2.2).
    let head = send_until_close(
        f.addr,
        b"GET http://shop-a.example/about HTTP/1.1\r\nHost: shop-b.example\r\nX-Side: new\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (status, headers) = response_head(&head);
    assert_eq!(status, 301, "{}", String::from_utf8_lossy(&head));
    assert!(
        headers.contains(&("location".into(), "/pages/about-a".into())),
        "{headers:?}"
    );
    for host in ["shop-b.example", "shop-a.example.evil", "127.0.0.1"] {
        f.redirects("/about", &[NEW, ("host", host)], 301, "/pages/about")
            .await;
    }
    // Host-less entries apply on every host.
    f.redirects(
        "/sale",
        &[NEW, ("host", "shop-a.example")],
        302,
        "/collections/sale",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_during_the_shift_and_at_full_share_and_410() {
    let f = Fixture::start(50.0).await;
    let n = &[NEW];
    // Below 100%: permanent statuses are served as their temporary twins.
    f.redirects("/about", n, 302, "/pages/about").await;
    f.redirects("/product.php?id=123", n, 307, "/products/oak-table")
        .await;
    f.redirects("/sale", n, 302, "/collections/sale").await;
    // ... unless the table says as_written.
    f.redirects("/written", n, 301, "/w").await;
    f.redirects("/written-308", n, 308, "/w8").await;
    let gone = f.get("/gift-vouchers?utm_source=x", n).await;
    assert_gone(&gone);
    // A page removed on new may be live on old again after a rollback: not kept below 100%.
    assert_eq!(gone.header("cache-control"), "no-store");

    // 100%: as written.
    f.set_share(100.0).await;
    f.redirects("/about", n, 301, "/pages/about").await;
    f.redirects("/product.php?id=123", n, 308, "/products/oak-table")
        .await;
    f.redirects("/sale", n, 302, "/collections/sale").await;
    f.redirects("/written", n, 301, "/w").await;
    let gone = f.get("/gift-vouchers", n).await;
    assert_gone(&gone);
    assert_eq!(
        gone.header("cache-control"),
        "max-age=86400",
        "during probation"
    );

    // And back below 100% (a rollback): temporary again.
    f.set_share(99.99).await;
    f.redirects("/about", n, 302, "/pages/about").await;
    f.redirects("/product.php?id=123", n, 307, "/products/oak-table")
        .await;
}

fn assert_gone(r: &Page) {
    assert_eq!(r.status, StatusCode::GONE, "{r:?}");
    assert_eq!(r.location(), None);
    assert_eq!(r.upstream(), None);
    assert!(
        !r.body.is_empty() && r.body.len() <= 64,
        "small body: {r:?}"
    );
    let ct = r.headers.get("content-type").unwrap().to_str().unwrap();
    assert!(ct.starts_with("text/plain"), "{ct}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_to_new_and_all() {
    let f = Fixture::start(50.0).await;
    // Shoppers still on old get the old store's own URLs.
    f.proxied("/product.php?id=123", &[OLD], "old").await;
    f.proxied(
        "/index.php?route=product/product&product_id=42",
        &[OLD],
        "old",
    )
    .await;
    f.proxied("/gift-vouchers", &[OLD], "old").await;
    // Shoppers on new are redirected.
    f.redirects("/product.php?id=123", &[NEW], 307, "/products/oak-table")
        .await;
    // apply_to = "all": everyone.
    f.redirects("/everyone", &[OLD], 302, "/for-everyone").await;
    f.redirects("/everyone", &[NEW], 302, "/for-everyone").await;
    // At 100% the split sends nobody to old, but a route still can: apply_to=new keeps
    // following the storefront, not the share.
    f.set_share(100.0).await;
    f.proxied("/product.php?id=123", &[OLD], "old").await;
    f.redirects("/product.php?id=123", &[], 308, "/products/oak-table")
        .await;
    f.redirects("/everyone", &[OLD], 301, "/for-everyone").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_override_parameters_do_not_break_a_query_key_match() {
    let f = Fixture::start(50.0).await;
    // A staff member checks an old product URL on the new store with ?cutover=new: the
    // override parameters are cutover's own and must not take part in the redirect key or leak
    // into the Location.
    let r = f
        .get(
            "/index.php?route=product/product&product_id=42&cutover=new&cutover_token=staff-token",
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FOUND, "{r:?}");
    assert_eq!(r.location(), Some("/products/linen-lamp"));
    assert!(
        r.headers.get("set-cookie").is_some(),
        "the override pin is still set"
    );
    let r = f
        .get("/about?cutover=new&cutover_token=staff-token&ref=x", &[])
        .await;
    assert_eq!(r.location(), Some("/pages/about?ref=x"), "{r:?}");
    // A miss is listed without them: the token must not end up in the list.
    let r = f
        .get("/missing-page?cutover=new&cutover_token=staff-token", &[])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let admin = f.app.admin_address.expect("admin listener");
    let missed = f.client.get(admin, "/redirects/missed.csv", &[]).await;
    assert_eq!(
        missed.body,
        "old_url,new_url,status,count\n/missing-page,,,1\n"
    );
}

/// Every probe must come back without a Location that leaves the site and without an injected
/// header, whatever the Host and X-Forwarded-Host say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_redirect_probes() {
    let old = path_store("old", &[]).await;
    let new = path_store("new", &[]).await;
    let dir = Dir::new();
    dir.write(
        "probe.csv",
        "old_url,new_url
/old/*,/*
/p/*,/shop/*
/go/*,https://new.shop.example/*
/exact,/target
",
    );
    let tables = r#"
[[redirects]]
name = "probe"
file = "probe.csv"
allowed_hosts = ["new.shop.example"]
apply_to = "all"
"#;
    let path = dir.write("cutover.toml", &config(old.addr, new.addr, 50.0, tables));
    let app = cutover::app::start(&path).await.expect("proxy starts");
    let addr = app.addresses[0];

    let probes = [
        "//evil.example/x",
        "/\\evil.example/x",
        "/%2F%2Fevil.example",
        "/%2f%2fevil.example/x",
        "/%5Cevil.example",
        "/%0d%0aSet-Cookie:%20injected=1",
        "/x%0d%0aLocation:%20https://evil.example/",
        "/old//evil.example/x",
        "/old///evil.example/x",
        "/old/\\evil.example/x",
        "/old/\\\\evil.example/x",
        "/old/%2F%2Fevil.example",
        "/old/%5C%5Cevil.example",
        "/old/%0d%0aX-Injected:%201",
        "/old/x%0D%0ALocation:%20https://evil.example/",
        "/old/x?next=//evil.example&r=%0d%0aX-Injected:%201",
        "/old/?%0d%0aX-Injected:1=1",
        "/old/https://evil.example/",
        "/old/http:%2F%2Fevil.example",
        "/p//evil.example/x",
        "/p/%2F%2Fevil.example?utm_source=%0d%0aX-Injected:1",
        "/go//evil.example/x",
        "/go/%2F%2Fevil.example/x",
        "/go/@evil.example",
        "/exact?%0d%0aX-Injected:%201&utm_source=%0aX-Injected:%201",
        "/exact/..//evil.example",
        "http://evil.example//evil.example/x",
        "http://evil.example/old//evil.example/x",
    ];
    let mut redirected = 0;
    for target in probes {
        for side in ["new", "old"] {
            let req = format!(
                "GET {target} HTTP/1.1\r\nHost: evil.example\r\nX-Forwarded-Host: evil.example\r\n\
                 X-Side: {side}\r\nConnection: close\r\n\r\n"
            );
            let resp = send_until_close(addr, req.as_bytes()).await;
            let (status, headers) = response_head(&resp);
            assert!(status >= 200, "{target}: no status line in {resp:?}");
            for (name, value) in &headers {
                assert_ne!(name, "x-injected", "{target}: header injected");
                if name == "set-cookie" {
                    assert!(!value.contains("injected"), "{target}: cookie injected");
                }
            }
            let locations: Vec<&String> = headers
                .iter()
                .filter(|(n, _)| n == "location")
                .map(|(_, v)| v)
                .collect();
            assert!(locations.len() <= 1, "{target}: {locations:?}");
            if let Some(loc) = locations.first() {
                redirected += 1;
                assert_on_site(target, loc);
            }
        }
    }
    eprintln!("{redirected} probe answers carried a Location");
    assert!(redirected >= 30, "the probes exercised the splat rules");

    // Specific answers: suffixes and queries are carried re-encoded, never as a host.
    let client = HttpClient::new();
    let h = &[
        ("host", "evil.example"),
        ("x-forwarded-host", "evil.example"),
    ];
    for (pq, want) in [
        ("/old//evil.example/x", "/evil.example/x"),
        ("/old/%2F%2Fevil.example", "/%2F%2Fevil.example"),
        ("/old/%0d%0aX-Injected:%201", "/%0D%0AX-Injected:%201"),
        (
            "/old/x?next=//evil.example&r=%0d%0a",
            "/x?next=//evil.example&r=%0D%0A",
        ),
        (
            "/go//evil.example/x",
            "https://new.shop.example/evil.example/x",
        ),
        ("/exact", "/target"),
    ] {
        let r = client.get(addr, pq, h).await;
        assert_eq!(r.location(), Some(want), "{pq}: {r:?}");
    }
    let r = send_until_close(
        addr,
        b"GET /old/\\evil.example/x HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (status, headers) = response_head(&r);
    assert_eq!(status, 302, "hyper accepts a backslash in the target");
    let loc = headers.iter().find(|(n, _)| n == "location").unwrap();
    assert_eq!(
        loc.1, "/%5Cevil.example/x",
        "re-encoded, never read as a host"
    );
}

fn assert_on_site(probe: &str, loc: &str) {
    assert!(
        loc.bytes().all(|b| (0x21..0x7f).contains(&b)),
        "{probe}: Location {loc:?} has non-visible bytes"
    );
    assert!(
        !loc.contains('\\'),
        "{probe}: Location {loc:?} has a backslash"
    );
    if let Some(rest) = loc.strip_prefix("https://") {
        let host = rest.split(['/', '?', '#']).next().unwrap();
        assert_eq!(host, "new.shop.example", "{probe}: Location {loc:?}");
    } else {
        assert!(
            loc.starts_with('/') && !loc.starts_with("//"),
            "{probe}: Location {loc:?} must be a same-site path"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_redirects_are_listed_after_404s_on_new() {
    let f = Fixture::start(50.0).await;
    let admin = f.app.admin_address.expect("admin listener");
    for _ in 0..4 {
        let r = f.get("/missing-page", &[NEW]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    for q in ["utm_source=mail", "gclid=1", ""] {
        let pq = format!("/old-cms/page.html?id=7&{q}");
        assert_eq!(f.get(&pq, &[NEW]).await.status, StatusCode::NOT_FOUND);
    }
    // Not misses: a 404 on old, a page new has, a redirect.
    assert_eq!(
        f.get("/old-cms/only-old", &[OLD]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        f.get("/missing-page?from=old", &[OLD]).await.status,
        StatusCode::NOT_FOUND
    );
    f.proxied("/exists-on-new", &[NEW], "new").await;
    f.redirects("/sale", &[NEW], 302, "/collections/sale").await;

    let json = wait_for_every(
        "the missed list",
        std::time::Duration::from_secs(10),
        std::time::Duration::from_millis(50),
        || async {
            let r = f.client.get(admin, "/redirects/missed", &[]).await;
            let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
            (v["entries"].as_array().map_or(0, Vec::len) >= 2).then_some(v)
        },
    )
    .await;
    let entries = json["entries"].as_array().unwrap();
    let count = |path: &str| {
        entries
            .iter()
            .find(|e| e["path"] == path)
            .and_then(|e| e["count"].as_u64())
    };
    assert_eq!(count("/missing-page"), Some(4), "{json}");
    assert_eq!(count("/old-cms/page.html?id=7"), Some(3), "{json}");
    assert_eq!(entries.len(), 2, "nothing else is a miss: {json}");
    assert_eq!(entries[0]["path"], "/missing-page", "most frequent first");
    assert_eq!(entries[0]["count_at_least"], 4, "{json}");
    assert!(json["tracked_urls_at_most"].as_u64().unwrap() > 0, "{json}");

    // The CLI prints a table for people (and the JSON, newline-terminated, with --json).
    let cli = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(["redirects", "missed", "--admin", &admin.to_string()])
            .args(extra)
            .output()
            .expect("cutover redirects missed");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let table = cli(&[]);
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[1].trim_start().starts_with("HITS"), "{table}");
    assert_eq!(
        rows[2].split_whitespace().collect::<Vec<_>>(),
        ["4", "/missing-page"],
        "{table}"
    );
    assert_eq!(
        rows[3].split_whitespace().collect::<Vec<_>>(),
        ["3", "/old-cms/page.html?id=7"],
        "{table}"
    );
    let as_json = cli(&["--json"]);
    assert!(as_json.ends_with('\n'), "{as_json:?}");
    serde_json::from_str::<serde_json::Value>(&as_json).expect("--json is JSON");

    let csv = f.client.get(admin, "/redirects/missed.csv", &[]).await;
    assert!(
        csv.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"),
        "{csv:?}"
    );
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines[0], "old_url,new_url,status,count");
    assert!(lines.contains(&"/missing-page,,,4"), "{lines:?}");
    assert!(lines.contains(&"/old-cms/page.html?id=7,,,3"), "{lines:?}");

    // The CLI reads the same list from the admin listener.
    let out = tokio::task::spawn_blocking(move || {
        Command::new(binary())
            .args(["redirects", "missed", "--csv", "--admin"])
            .arg(admin.to_string())
            .output()
            .expect("run cutover redirects missed")
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), csv.body);
}

// ---------------------------------------------------------------------------------------------
// Validation through the binary.

const BROKEN: &str = "old_url,new_url,status
/ok,/fine,301
/bad%zz,/x,301
/status,/x,303
/dup,/a,301
/dup,/b,301
/self,/self,301
/loop-a,/loop-b,301
/loop-b,/loop-a,301
/evil,https://evil.example/x,301
/ok,/fine,301
relative/path,/x,301
/splat,/target/*,301
/q?x=1,/q2,301
/ctl%0A,/x,301
/open,//evil.example/x,301
";

#[test]
fn validation_errors_are_reported_with_lines_by_check() {
    let dir = Dir::new();
    dir.write("plan.csv", BROKEN);
    let cfg = format!(
        "{}{}",
        config(
            "127.0.0.1:9".parse().unwrap(),
            "127.0.0.1:9".parse().unwrap(),
            10.0,
            ""
        ),
        r#"
[[redirects]]
name = "plan"
file = "plan.csv"
"#
    );
    let path = dir.write("cutover.toml", &cfg);
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run cutover check");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let csv = dir.path("plan.csv").display().to_string();
    for (line, needle) in [
        (3, "malformed %-escape"),
        (4, "303"),
        (6, "also on line 5"),
        (7, "redirects to itself"),
        (8, "redirect loop"),
        (10, "not in allowed_hosts"),
        (12, "must be a path"),
        (13, "not a prefix rule"),
        (15, "control character"),
        (16, "another host"),
    ] {
        let located = format!("{csv}:{line}: ");
        assert!(
            err.lines()
                .any(|l| l.contains(&located) && l.contains(needle)),
            "no `{needle}` at {located} in:\n{err}"
        );
    }
    assert!(
        err.contains("\"/loop-a\" (line 8) -> \"/loop-b\" (line 9) -> \"/loop-a\""),
        "the cycle is printed: {err}"
    );
    // Line 11 repeats line 2 identically: a warning, not an error.
    assert!(!err.contains(&format!("{csv}:11:")), "{err}");
    // Line 14 has a query, which a `key` table accepts.
    assert!(!err.contains(&format!("{csv}:14:")), "{err}");

    // The same plan with `redirects check`, and a table that ignores queries: line 14 too.
    dir.write(
        "cutover.toml",
        &cfg.replace(
            "file = \"plan.csv\"",
            "file = \"plan.csv\"\nquery = \"ignore\"",
        ),
    );
    let out = redirects_check(&dir.path("plan.csv"), &path);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [3, 4, 6, 7, 8, 10, 12, 13, 14, 15, 16] {
        assert!(
            text.contains(&format!("{csv}:{line}: ")),
            "line {line} missing:\n{text}"
        );
    }

    // A good plan: exit 0 and the chain report.
    dir.write("plan.csv", PLAN);
    dir.write(
        "cutover.toml",
        &cfg.replace(
            "file = \"plan.csv\"",
            "file = \"plan.csv\"\nallowed_hosts = [\"new.shop.example\"]",
        ),
    );
    let out = redirects_check(&dir.path("plan.csv"), &path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("1 chains collapsed (longest 2 hops)"),
        "{stdout}"
    );
}

/// Runs `cutover redirects check PLAN --config CONFIG` (the binary, as an operator would).
fn redirects_check(plan: &std::path::Path, config: &std::path::Path) -> std::process::Output {
    Command::new(binary())
        .args(["redirects", "check"])
        .arg(plan)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run cutover redirects check")
}
