//! Unit tests of the inventory's counters and coverage (files and sockets: tests/inventory_*.rs).

use super::*;
use http::{Method, StatusCode};
use std::collections::HashMap;

fn inv(cap: usize) -> Inventory {
    Inventory::new(cap, KeyPolicy::default(), CrawlerMatcher::default())
}

fn get(inv: &Inventory, url: &str) -> Option<Entry> {
    inv.entries().into_iter().find(|e| e.url == url)
}

const GOOGLE: &[u8] = b"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

#[test]
fn counts_hits_crawlers_times_and_status() {
    let i = inv(100);
    assert_eq!(
        i.record_at("", "/Shoes/Red/", 200, b"Firefox", 10),
        Recorded::Added
    );
    assert_eq!(
        i.record_at("", "/shoes/red?utm_source=x", 304, GOOGLE, 20),
        Recorded::Counted
    );
    assert_eq!(i.len(), 1);
    let e = get(&i, "/shoes/red").unwrap();
    assert_eq!((e.hits, e.hits_error, e.crawler_hits), (2, 0, 1));
    assert_eq!((e.first_seen, e.last_seen, e.last_status), (10, 20, 304));
    assert_eq!(
        e.sources,
        Sources {
            traffic: true,
            sitemap: false
        }
    );
    assert_eq!(e.old_url(), "/shoes/red");
}

#[test]
fn only_get_head_with_2xx_3xx_410_are_inventoried() {
    let i = inv(100);
    let ok = [
        (Method::GET, 200),
        (Method::HEAD, 204),
        (Method::GET, 301),
        (Method::GET, 410),
    ];
    for (m, s) in ok {
        assert_ne!(
            i.record(
                &m,
                "",
                &format!("/p{s}"),
                StatusCode::from_u16(s).unwrap(),
                b""
            ),
            Recorded::NotEligible
        );
    }
    let not = [
        (Method::GET, 404),
        (Method::GET, 500),
        (Method::GET, 403),
        (Method::POST, 200),
        (Method::PUT, 301),
    ];
    for (m, s) in not {
        assert_eq!(
            i.record(&m, "", "/x", StatusCode::from_u16(s).unwrap(), b""),
            Recorded::NotEligible
        );
    }
    assert_eq!(i.len(), 4);
    assert!(get(&i, "/x").is_none());
}

#[test]
fn urls_without_key_are_counted_apart() {
    let i = inv(10);
    assert_eq!(i.record_at("", "/bad%zz", 200, b"", 1), Recorded::NoKey);
    assert_eq!(
        i.record_at("", &format!("/{}", "a".repeat(600)), 200, b"", 1),
        Recorded::NoKey
    );
    assert_eq!(i.stats().no_key, 2);
    assert!(i.is_empty());
}

#[test]
fn hosts_kept_apart_only_when_asked() {
    let cfg = InventoryConfig {
        per_host: true,
        ..InventoryConfig::default()
    };
    let i = Inventory::from_config(&cfg, None);
    i.record_at("Shop.Example:443", "/a", 200, b"", 1);
    i.record_at("www.shop.example", "/a", 200, b"", 1);
    i.record_at("bad host\"", "/a", 200, b"", 1);
    let mut hosts: Vec<String> = i.entries().into_iter().map(|e| e.host).collect();
    hosts.sort();
    assert_eq!(hosts, ["", "shop.example", "www.shop.example"]);
    for e in i.entries() {
        let want = if e.host.is_empty() {
            "/a".to_string()
        } else {
            format!("https://{}/a", e.host)
        };
        assert_eq!(e.old_url(), want);
    }
    let shared = inv(10);
    shared.record_at("a.example", "/a", 200, b"", 1);
    shared.record_at("b.example", "/a", 200, b"", 1);
    assert_eq!(shared.len(), 1);
}

#[test]
fn capacity_holds_and_heavy_hitters_survive_a_flood() {
    let i = inv(1000);
    let mut rng = fastrand::Rng::with_seed(17);
    let heavy: Vec<String> = (0..50).map(|n| format!("/products/{n}")).collect();
    for round in 0..400 {
        for h in &heavy {
            i.record_at("", h, 200, b"", round);
        }
        for _ in 0..500 {
            let junk = format!("/scan/{:016x}", rng.u64(..));
            i.record_at("", &junk, 200, b"", round);
        }
    }
    assert_eq!(i.len(), i.capacity(), "full, and never more");
    assert!(i.capacity() >= 1000 && i.capacity() < 1000 + 16);
    let entries = i.entries();
    for h in &heavy {
        let e = entries
            .iter()
            .find(|e| &e.url == h)
            .unwrap_or_else(|| panic!("{h} evicted"));
        assert!(e.hits >= 400 && e.min_hits() <= 400, "{e:?}");
    }
    // The flood URLs kept carry at most a one-off hit of their own.
    assert!(entries
        .iter()
        .filter(|e| e.url.starts_with("/scan/"))
        .all(|e| e.min_hits() <= 2));
    assert_eq!(&entries[0].url[..10], "/products/");
}

#[test]
fn sitemap_urls_are_pinned_and_keep_traffic_counts() {
    let i = inv(64);
    i.record_at("", "/a", 200, b"", 1);
    i.record_at("", "/a", 200, b"", 2);
    let urls: Vec<(String, String)> = ["/a", "/b", "/b", "/c"]
        .iter()
        .map(|u| (String::new(), u.to_string()))
        .collect();
    assert_eq!(i.import_sitemap_urls(&urls, 5), Ok(2));
    let a = get(&i, "/a").unwrap();
    assert_eq!(a.hits, 2);
    assert_eq!(
        a.sources,
        Sources {
            traffic: true,
            sitemap: true
        }
    );
    let b = get(&i, "/b").unwrap();
    assert_eq!((b.hits, b.first_seen, b.last_seen), (0, 5, 0));
    // A flood never evicts them.
    for n in 0..10_000 {
        i.record_at("", &format!("/junk/{n}"), 200, b"", 9);
    }
    for u in ["/a", "/b", "/c"] {
        assert!(get(&i, u).is_some_and(|e| e.sources.sitemap), "{u}");
    }
    assert_eq!(i.len(), i.capacity());
}

#[test]
fn sitemap_import_that_does_not_fit_changes_nothing() {
    let i = inv(16);
    i.record_at("", "/traffic", 200, b"", 1);
    let urls: Vec<(String, String)> = (0..40)
        .map(|n| (String::new(), format!("/s/{n}")))
        .collect();
    let e = i.import_sitemap_urls(&urls, 1).unwrap_err();
    assert!(e.contains("raise inventory.capacity"), "{e}");
    assert_eq!(i.len(), 1);
    assert!(get(&i, "/traffic").is_some_and(|e| !e.sources.sitemap));
}

#[test]
fn a_shard_full_of_sitemap_urls_refuses_new_traffic() {
    let i = inv(1);
    i.import_sitemap_urls(&[(String::new(), "/only".into())], 1)
        .unwrap();
    assert_eq!(i.record_at("", "/other", 200, b"", 2), Recorded::Full);
    assert_eq!(i.stats().full, 1);
    assert_eq!(i.record_at("", "/only", 200, b"", 2), Recorded::Counted);
}

#[test]
fn restore_keeps_the_most_valuable_when_capacity_shrank() {
    // Room for every URL, so the counts are exact (a space-saving eviction would let a newcomer
    // inherit a count, and which URL overtakes which would depend on the hash seed).
    let big = inv(1000);
    for n in 0..200u64 {
        for _ in 0..=n {
            big.record_at("", &format!("/p/{n}"), 200, b"", n);
        }
    }
    big.import_sitemap_urls(&[(String::new(), "/p/0".into())], 1)
        .unwrap();
    let kept = big.len();
    let small = inv(32);
    let dropped = small.restore(big.entries());
    assert_eq!(small.len() + dropped, kept);
    assert!(small.len() <= small.capacity());
    assert!(get(&small, "/p/0").is_some(), "sitemap URLs go first");
    let top = get(&big, "/p/199").unwrap();
    assert_eq!(
        get(&small, "/p/199"),
        Some(top.clone()),
        "then the most hits"
    );
    // Restoring the same entries again replaces, never duplicates.
    let again = inv(10_000);
    again.restore(big.entries());
    again.restore(big.entries());
    assert_eq!(again.len(), kept);
    assert_eq!(again.entries(), big.entries());
}

#[test]
fn concurrent_records_never_wait_and_account_for_every_hit() {
    let i = std::sync::Arc::new(inv(1000));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let i = i.clone();
            std::thread::spawn(move || {
                let mut counted = HashMap::new();
                for n in 0..20_000 {
                    let r = i.record_at("", &format!("/p/{}", (n * 7 + t) % 100), 200, b"", 1);
                    *counted.entry(r).or_insert(0u64) += 1;
                }
                counted
            })
        })
        .collect();
    let mut kept = 0;
    for t in threads {
        let c = t.join().unwrap();
        kept += c.get(&Recorded::Counted).unwrap_or(&0) + c.get(&Recorded::Added).unwrap_or(&0);
    }
    let hits: u64 = i.entries().iter().map(|e| e.hits).sum();
    assert_eq!(hits, kept);
    assert_eq!(hits + i.stats().skipped_busy, 80_000);
}

/// An oracle over fixed lists: the lead's implementation reads the live tables and routes.
struct Fixed {
    redirects: HashMap<&'static str, (&'static str, u16)>,
    gone: Vec<&'static str>,
    kept: Vec<&'static str>,
    same: Vec<&'static str>,
}

impl CoverageOracle for Fixed {
    fn redirect_target(&self, _: &str, url: &str) -> Option<(String, u16)> {
        self.redirects.get(url).map(|(t, s)| (t.to_string(), *s))
    }
    fn is_gone(&self, _: &str, url: &str) -> bool {
        self.gone.contains(&url)
    }
    fn kept_on_old_by_rule(&self, _: &str, url: &str) -> bool {
        self.kept.iter().any(|k| url.starts_with(k))
    }
    fn same_path_on_new_known(&self, _: &str, url: &str) -> bool {
        self.same.contains(&url)
    }
}

fn oracle() -> Fixed {
    Fixed {
        redirects: HashMap::from([("/old", ("/new", 301)), ("/both", ("/b", 302))]),
        gone: vec!["/removed", "/both"],
        kept: vec!["/help"],
        same: vec!["/", "/help/x", "/old"],
    }
}

fn entry(url: &str, hits: u64, crawler: u64) -> Entry {
    Entry {
        host: String::new(),
        url: url.into(),
        hits,
        hits_error: 0,
        crawler_hits: crawler,
        first_seen: 1,
        last_seen: 1,
        last_status: 200,
        sources: Sources {
            traffic: true,
            sitemap: false,
        },
        on_new: Default::default(),
    }
}

#[test]
fn one_verdict_per_url_in_precedence_order() {
    let entries = vec![
        entry("/old", 50, 5),
        entry("/", 30, 0),
        entry("/help/x", 10, 0),
        entry("/removed", 5, 5),
        entry("/both", 1, 0),
        entry("/lost", 20, 15),
        entry("/lost,\"quoted\"", 4, 4),
    ];
    let r = CoverageReport::build(&entries, &oracle());
    let v: Vec<(&str, Verdict, Option<&str>)> = r
        .rows
        .iter()
        .map(|r| (r.old_url.as_str(), r.verdict, r.new_url.as_deref()))
        .collect();
    assert_eq!(
        v,
        [
            ("/old", Verdict::Redirected, Some("/new")),
            ("/", Verdict::SamePath, Some("/")),
            ("/lost", Verdict::Uncovered, None),
            ("/help/x", Verdict::KeptOnOld, None),
            ("/removed", Verdict::Gone, None),
            ("/lost,\"quoted\"", Verdict::Uncovered, None),
            ("/both", Verdict::Gone, None),
        ]
    );
    assert_eq!(
        (r.urls, r.covered_urls, r.hits, r.covered_hits),
        (7, 5, 120, 96)
    );
    assert_eq!(r.hits_ratio, Some(0.8));
    assert_eq!(r.uncovered_crawler_hits, 19);
    assert_eq!(r.uncovered().count(), 2);
    assert_eq!(r.uncovered_by_crawler_hits()[0].old_url, "/lost");
    assert_eq!(r.probe_urls(), ["/new", "/"]);
    assert_eq!(coverage_of_hits(&entries, &oracle()), Some(0.8));
    assert_eq!(coverage_of_hits(&[], &oracle()), None);
    let by: HashMap<Verdict, usize> = r.by_verdict.iter().copied().collect();
    assert_eq!(by[&Verdict::Gone], 2);
}

#[test]
fn coverage_weighs_certain_hits_only() {
    let mut flood = entry("/scan/x", 100, 0);
    flood.hits_error = 99;
    let r = CoverageReport::build(&[flood, entry("/old", 1, 0)], &oracle());
    assert_eq!((r.hits, r.covered_hits), (2, 1));
    assert_eq!(r.rows[0].hits, 1);
}

#[test]
fn csv_and_json_escape_what_came_from_requests() {
    let entries = vec![entry("/old", 3, 1), entry("/lost,\"quoted\"", 2, 0)];
    let r = CoverageReport::build(&entries, &oracle());
    let mut out = Vec::new();
    r.write_csv(&mut out, false).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "old_url,hits,crawler_hits,verdict,new_url\n/old,3,1,redirected,/new\n\"/lost,\"\"quoted\"\"\",2,0,uncovered,\n"
    );
    let mut only = Vec::new();
    r.write_csv(&mut only, true).unwrap();
    assert_eq!(String::from_utf8(only).unwrap().lines().count(), 2);
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(json["rows"][1]["old_url"], "/lost,\"quoted\"");
    assert_eq!(json["rows"][0]["verdict"], "redirected");
    assert_eq!(json["hits_ratio"], 0.6);
    let empty = CoverageReport::build(&[], &oracle());
    assert!(empty.to_json().contains("\"hits_ratio\":null"));
}
