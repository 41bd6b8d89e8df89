//! Memory at capacity (issues 17 and 18): what the URL inventory holds at its default capacity
//! (100,000 URLs), under a flood of a million more, and with the longest keys it accepts; what
//! a coverage report over it costs while it is built; and what the shadow report and the
//! fallback URL list hold at their bounds.
//!
//! `cargo run --release --example memory_at_capacity`
//!
//! "held" is measured, not estimated: the bytes the allocator handed out and did not get back
//! across building the structure (a counting global allocator, `tests/counting_alloc`), so it
//! includes every string, vector and hash table, and the allocator's rounding is not in it.
//! RSS (VmRSS of /proc/self/status) is printed beside it as the kernel's view.

#[path = "../tests/counting_alloc/mod.rs"]
mod counting_alloc;

use std::sync::atomic::Ordering;

use counting_alloc::LIVE_BYTES;
use cutover::inventory::{
    CoverageOracle, CoverageReport, CrawlerMatcher, Inventory, KeyPolicy, DEFAULT_CAPACITY,
    MAX_KEY_BYTES,
};
use cutover::shadow::compare::{Comparison, Mismatch};
use cutover::shadow::fallback::FallbackUrls;
use cutover::shadow::report::{Report, ReportLimits};
use cutover::shadow::topk::MAX_URL_BYTES;
use cutover::shadow::{MismatchKind, ShadowResult};

fn live() -> i64 {
    LIVE_BYTES.load(Ordering::Relaxed)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn mib(bytes: i64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A store's URL: mostly catalogue pages, some query-keyed product pages (average ~55 bytes).
fn store_url(i: usize) -> String {
    match i % 4 {
        0 => format!("/index.php?route=product/product&product_id={i}"),
        1 => format!("/catalog/lamps/ceramic-table-lamp-{i}"),
        2 => format!("/collections/linen/organic-cotton-throw-{i}"),
        _ => format!("/blog/2024/05/how-to-choose-a-rug-{i}"),
    }
}

struct NoPlan;

impl CoverageOracle for NoPlan {
    fn redirect_target(&self, _: &str, _: &str) -> Option<(String, u16)> {
        None
    }
    fn is_gone(&self, _: &str, _: &str) -> bool {
        false
    }
    fn kept_on_old_by_rule(&self, _: &str, _: &str) -> bool {
        false
    }
    fn same_path_on_new_known(&self, _: &str, _: &str) -> bool {
        false
    }
}

fn inventory() {
    let ua = b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    let (before, rss_before) = (live(), rss_kib());
    let inv = Inventory::new(
        DEFAULT_CAPACITY,
        KeyPolicy::default(),
        CrawlerMatcher::default(),
    );
    for i in 0..DEFAULT_CAPACITY {
        inv.record_at("", &store_url(i), 200, ua, 1_767_225_600);
    }
    let full = live() - before;
    println!(
        "inventory, {} URLs (store-like, avg {} bytes): held {} ({} bytes per URL), RSS +{} MiB",
        inv.len(),
        (0..1000).map(|i| store_url(i).len()).sum::<usize>() / 1000,
        mib(full),
        full / inv.len() as i64,
        (rss_kib() - rss_before) / 1024
    );
    for i in 0..1_000_000usize {
        let url = format!(
            "/scan/{:016x}",
            (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        );
        inv.record_at("", &url, 200, ua, 1_767_225_601);
    }
    let flooded = live() - before;
    println!(
        "  after 1,000,000 more distinct URLs: {} URLs, held {} ({:+} bytes), RSS +{} MiB",
        inv.len(),
        mib(flooded),
        flooded - full,
        (rss_kib() - rss_before) / 1024
    );
    let t = live();
    let entries = inv.entries();
    let copied = live() - t;
    let report = CoverageReport::build(&entries, &NoPlan);
    let with_report = live() - t;
    println!(
        "  a coverage pass (admin API, gauges): entries copy {}, plus report {} (freed after)",
        mib(copied),
        mib(with_report - copied)
    );
    drop((report, entries, inv));

    let before = live();
    let inv = Inventory::new(
        DEFAULT_CAPACITY,
        KeyPolicy::default(),
        CrawlerMatcher::default(),
    );
    for i in 0..DEFAULT_CAPACITY {
        let mut url = format!("/{i}-");
        url.extend(std::iter::repeat_n('a', MAX_KEY_BYTES - url.len()));
        inv.record_at("", &url, 200, ua, 1_767_225_600);
    }
    let worst = live() - before;
    println!(
        "inventory, {} URLs of {MAX_KEY_BYTES} bytes (the longest key kept): held {}",
        inv.len(),
        mib(worst)
    );
}

fn shadow_report(limits: ReportLimits) {
    let before = live();
    let mut report = Report::new(limits);
    let value = "v".repeat(limits.max_value_bytes * 2);
    let comparison = Comparison {
        result: ShadowResult::Mismatch,
        mismatches: MismatchKind::ALL
            .iter()
            .map(|&kind| Mismatch {
                kind,
                old: value.clone(),
                new: value.clone(),
            })
            .collect(),
    };
    let made = live() - before;
    // Every route group (and `(other)`) and every kind group full of the longest URLs kept.
    let mut n = 0usize;
    for route in 0..=limits.max_routes {
        for _ in 0..limits.top_urls + 1 {
            let mut url = format!("/r{route}/u{n}/");
            url.extend(std::iter::repeat_n('x', MAX_URL_BYTES - url.len()));
            report.record(&format!("route-{route}"), &url, &comparison);
            n += 1;
        }
    }
    let held = live() - before - made;
    println!(
        "shadow report, top_urls {} max_routes {}: held {} after {n} mismatches with \
         {MAX_URL_BYTES}-byte URLs (its own estimate: {})",
        limits.top_urls,
        limits.max_routes,
        mib(held),
        mib(report.heap_bytes() as i64)
    );
}

fn fallback_urls(capacity: usize) {
    let before = live();
    let urls = FallbackUrls::new(capacity);
    for i in 0..capacity * 10 {
        let mut url = format!("/f{i}/");
        url.extend(std::iter::repeat_n('x', MAX_URL_BYTES - url.len()));
        urls.record(&url);
    }
    println!(
        "fallback URL list, {capacity} URLs of {MAX_URL_BYTES} bytes: held {}",
        mib(live() - before)
    );
}

fn main() {
    inventory();
    shadow_report(ReportLimits::default());
    shadow_report(ReportLimits {
        top_urls: 100,
        ..ReportLimits::default()
    });
    fallback_urls(10);
    fallback_urls(1000);
}
