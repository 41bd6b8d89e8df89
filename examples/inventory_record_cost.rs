//! Wall-clock cost of `Inventory::record` on URLs it already counts, from 1, 2 and 4 threads
//! hitting the same inventory (shard contention shows as `skipped busy`). A benchmark, so an
//! example and not a test: `cargo run --release --example inventory_record_cost`.
//! The request path's cost as instructions is `benches/callgrind.sh proxy` with
//! `CONFIG=benches/proxy/cutover-inventory.toml` (BENCHMARKS.md).

use std::time::Instant;

use cutover::inventory::{CrawlerMatcher, Inventory, KeyPolicy};
use http::{Method, StatusCode};

const URLS: [&str; 6] = [
    "/",
    "/Shoes/Red/",
    "/index.php?route=product/product&product_id=42&utm_source=news&gclid=x",
    "/caf%C3%A9?page=2",
    "/search?q=red+shoes&sort=price",
    "/blog/2020/01/hello-world",
];

const FIREFOX: &[u8] = b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

fn main() {
    let inv = std::sync::Arc::new(Inventory::new(
        100_000,
        KeyPolicy::default(),
        CrawlerMatcher::default(),
    ));
    let n = 1_000_000usize;
    for threads in [1usize, 2, 4] {
        let start = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let inv = inv.clone();
                std::thread::spawn(move || {
                    for i in 0..n / threads {
                        inv.record(&Method::GET, "", URLS[(i + t) % 6], StatusCode::OK, FIREFOX);
                    }
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
        let per = start.elapsed().as_nanos() as f64 / n as f64;
        println!(
            "{threads} thread(s): {per:.0} ns per record (wall / records), skipped busy so far {}",
            inv.stats().skipped_busy
        );
    }
}
