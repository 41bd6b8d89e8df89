//! Request-time behaviour: every matching option, per-host entries, prefix rules, the status
//! rule during a shift, and the open-redirect probes.

use super::tests_load::{load_str, load_with};
use super::*;

fn loc(l: &Loaded, host: &str, pq: &str) -> Option<String> {
    l.table.lookup(host, pq).and_then(|h| h.location)
}

fn with(csv: &str, tweak: impl FnOnce(&mut TableConfig)) -> Loaded {
    load_with(csv, tweak, &|_, _| None).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn case_sensitivity() {
    let csv = "old_url,new_url\n/Shoes/Red,/c/red-shoes\n";
    let l = load_str(csv);
    assert_eq!(loc(&l, "", "/shoes/RED").as_deref(), Some("/c/red-shoes"));
    let l = with(csv, |c| c.case_sensitive = true);
    assert_eq!(loc(&l, "", "/Shoes/Red").as_deref(), Some("/c/red-shoes"));
    assert_eq!(loc(&l, "", "/shoes/red"), None);
}

#[test]
fn trailing_slash() {
    let csv = "old_url,new_url\n/about/,/pages/about\n/contact,/pages/contact\n";
    let l = load_str(csv);
    assert_eq!(loc(&l, "", "/about").as_deref(), Some("/pages/about"));
    assert_eq!(loc(&l, "", "/contact/").as_deref(), Some("/pages/contact"));
    let l = with(csv, |c| c.trailing_slash = TrailingSlash::Strict);
    assert_eq!(loc(&l, "", "/about"), None);
    assert_eq!(loc(&l, "", "/about/").as_deref(), Some("/pages/about"));
    assert_eq!(loc(&l, "", "/contact/"), None);
}

#[test]
fn percent_encoding_normalised_both_sides() {
    let l = load_str("old_url,new_url\n/café,/cafe\n/%7Euser,/u\n/a%2Fb,/slash\n");
    assert_eq!(loc(&l, "", "/caf%c3%a9").as_deref(), Some("/cafe"));
    assert_eq!(loc(&l, "", "/CAF%C3%A9").as_deref(), Some("/cafe"));
    assert_eq!(loc(&l, "", "/~user").as_deref(), Some("/u"));
    assert_eq!(loc(&l, "", "/a%2fb").as_deref(), Some("/slash"));
    assert_eq!(loc(&l, "", "/a/b"), None, "%2F is not a separator");
    assert_eq!(loc(&l, "", "/bad%zz"), None);
}

#[test]
fn query_key_reordered_with_tracking_carried() {
    let csv = "old_url,new_url\n\
        /index.php?route=product/product&product_id=42,/products/blue-mug\n\
        /product.php?id=123,/products/red-mug\n\
        /about,/pages/about\n";
    let l = load_str(csv);
    let pq = "/index.php?utm_source=nl&product_id=42&route=product%2Fproduct&gclid=abc";
    assert_eq!(
        loc(&l, "", pq).as_deref(),
        Some("/products/blue-mug?utm_source=nl&gclid=abc")
    );
    assert_eq!(
        loc(&l, "", "/PRODUCT.php?ID=123").as_deref(),
        Some("/products/red-mug")
    );
    assert_eq!(loc(&l, "", "/product.php?id=124"), None);
    assert_eq!(loc(&l, "", "/product.php"), None);
    // Fallback to the bare path keeps the whole query.
    assert_eq!(
        loc(&l, "", "/about?ref=footer").as_deref(),
        Some("/pages/about?ref=footer")
    );
    let l = with(csv, |c| c.query_fallback = false);
    assert_eq!(loc(&l, "", "/about?ref=footer"), None);
    assert_eq!(
        loc(&l, "", "/about?utm_campaign=x").as_deref(),
        Some("/pages/about?utm_campaign=x")
    );
}

#[test]
fn custom_ignore_params() {
    let csv = "old_url,new_url\n/p?id=1,/new\n";
    let l = with(csv, |c| c.ignore_params = vec!["sess*".into()]);
    assert_eq!(
        loc(&l, "", "/p?sessionid=9&id=1").as_deref(),
        Some("/new?sessionid=9")
    );
    assert_eq!(
        loc(&l, "", "/p?id=1&utm_source=x"),
        None,
        "utm_* no longer ignored"
    );
}

#[test]
fn query_ignored_or_dropped() {
    let csv = "old_url,new_url\n/a,/b?lang=en\n";
    let l = with(csv, |c| c.query = QueryMode::Ignore);
    assert_eq!(
        loc(&l, "", "/a?x=1&y=2").as_deref(),
        Some("/b?lang=en&x=1&y=2")
    );
    let l = with(csv, |c| c.query = QueryMode::Drop);
    assert_eq!(loc(&l, "", "/a?x=1&y=2").as_deref(), Some("/b?lang=en"));
}

#[test]
fn prefix_rules_most_specific_wins() {
    let csv = "old_url,new_url\n\
        /blog/*,/news/*\n/blog/2020/*,/archive/*\n/blog/special,/s\n/shop/*,/store\n";
    let l = load_str(csv);
    assert_eq!(loc(&l, "", "/blog/hello").as_deref(), Some("/news/hello"));
    assert_eq!(
        loc(&l, "", "/Blog/My-Post/").as_deref(),
        Some("/news/My-Post/"),
        "suffix keeps case"
    );
    assert_eq!(
        loc(&l, "", "/blog/2020/x/y?p=2").as_deref(),
        Some("/archive/x/y?p=2")
    );
    assert_eq!(loc(&l, "", "/blog/special").as_deref(), Some("/s"));
    assert_eq!(loc(&l, "", "/blog").as_deref(), Some("/news/"));
    assert_eq!(loc(&l, "", "/blogx"), None);
    assert_eq!(loc(&l, "", "/shop/any/thing").as_deref(), Some("/store"));
    assert_eq!(l.report.prefix, 3);
}

#[test]
fn per_host_entries_fall_back_to_hostless() {
    let csv =
        "old_url,new_url\nhttps://old.example/a,/x\nhttp://Other.Example:8080/b/*,/ob/*\n/a,/y\n";
    let l = load_str(csv);
    assert_eq!(loc(&l, "old.example", "/a").as_deref(), Some("/x"));
    assert_eq!(loc(&l, "www.old.example", "/a").as_deref(), Some("/y"));
    assert_eq!(loc(&l, "", "/a").as_deref(), Some("/y"));
    assert_eq!(loc(&l, "other.example", "/b/c").as_deref(), Some("/ob/c"));
    assert_eq!(loc(&l, "old.example", "/b/c"), None);
}

#[test]
fn temporary_status_until_full_shift() {
    let l = load_str("old_url,new_url,status\n/a,/b,301\n/c,/d,308\n/e,/f,302\n/g,,410\n");
    let st = |pq: &str, full: bool| l.table.lookup("", pq).unwrap().status(full);
    assert_eq!(st("/a", false), StatusCode::FOUND);
    assert_eq!(st("/a", true), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(st("/c", false), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(st("/c", true), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(st("/e", false), StatusCode::FOUND);
    assert_eq!(st("/g", false), StatusCode::GONE);
    let l = with("old_url,new_url\n/a,/b\n", |c| {
        c.during_shift = DuringShift::AsWritten
    });
    assert_eq!(
        l.table.lookup("", "/a").unwrap().status(false),
        StatusCode::MOVED_PERMANENTLY
    );
    assert_eq!(l.table.applies_to(), ApplyTo::New);
    assert_eq!(l.table.name(), "test");
}

#[test]
fn open_redirect_probes_stay_on_site() {
    let csv =
        "old_url,new_url\n/old/*,/*\nhttps://old.example/*,https://www.new.example/*\n/x,/y\n";
    let l = with(csv, |c| c.allowed_hosts = vec!["www.new.example".into()]);
    let probes = [
        "/old//evil.example/x",
        "/old/\\evil.example/x",
        "/old/%5Cevil.example",
        "/old/%2F%2Fevil.example",
        "/old/%2f%2fevil.example/%2e%2e",
        "/old/%0d%0aSet-Cookie:%20a=b",
        "/old/x?%0d%0aLocation:%20//evil.example=1",
        "/x?a=%0d%0a&utm_source=%0D%0Ax",
        "//evil.example/x",
        "/\\evil.example/x",
        "/%2F%2Fevil.example",
        "/%0d%0a",
        "/old/\r\nX: y",
    ];
    for host in ["", "evil.example", "old.example"] {
        for p in probes {
            let Some(loc) = loc(&l, host, p) else {
                continue;
            };
            let on_site =
                (loc.starts_with('/') && !loc.starts_with("//") && !loc.starts_with("/\\"))
                    || loc.starts_with("https://www.new.example/");
            assert!(on_site, "{p:?} -> {loc:?}");
            assert!(
                http::HeaderValue::from_str(&loc).is_ok(),
                "{p:?} -> {loc:?}"
            );
            assert!(!loc.contains(['\r', '\n', '\\']), "{p:?} -> {loc:?}");
        }
    }
    assert_eq!(
        loc(&l, "", "/old//evil.example/x").as_deref(),
        Some("/evil.example/x")
    );
    let loc2 = loc(&l, "old.example", "//evil.example/x");
    assert_eq!(
        loc2.as_deref(),
        Some("https://www.new.example/evil.example/x")
    );
}

#[test]
fn lookup_needs_a_path() {
    let l = load_str("old_url,new_url\n/old/*,/\n");
    assert_eq!(l.table.lookup("", "*"), None);
    assert_eq!(l.table.lookup("", "http://x/old/y"), None);
    assert_eq!(l.table.lookup("", ""), None);
    assert_eq!(loc(&l, "", "/old/a").as_deref(), Some("/"));
}
