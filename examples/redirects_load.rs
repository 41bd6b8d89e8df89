//! Load-time, memory and lookup benchmark of the redirect table.
//!
//! `cargo run --release --example redirects_load -- 10000 100000 1000000`
//!
//! For each size it writes a plan with typical e-commerce URLs to a temp file, loads it,
//! and prints load time, resident memory added per entry beyond the URL bytes, and the cost of
//! a lookup (hits and misses mixed), which should not grow with the table.

use cutover::redirects::{load, LoadContext, TableConfig};
use std::io::Write;
use std::time::Instant;

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<usize>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

/// User + system CPU seconds of this process: wall time is noisy on a shared machine.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

const WORDS: [&str; 8] = [
    "linen", "ceramic", "oak", "wool", "copper", "cotton", "vintage", "organic",
];

fn row(i: usize) -> (String, String) {
    let w = WORDS[i % WORDS.len()];
    match i % 10 {
        0..=5 => (
            format!("/index.php?route=product/product&product_id={i}"),
            format!("/products/{w}-table-lamp-{i}"),
        ),
        6..=8 => (
            format!("/category/{w}/item-{i}.html"),
            format!("/collections/{w}/item-{i}"),
        ),
        _ => (format!("/product.php?id={i}"), format!("/products/{w}-{i}")),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000, 1_000_000]
    } else {
        sizes
    };
    let dir = tempfile::tempdir()?;
    println!("rows      load_s  cpu_s  url_bytes/row  rss_delta/row  rss_beyond_urls/row  self_overhead/row  lookup_ns");
    for n in sizes {
        let path = dir.path().join(format!("plan-{n}.csv"));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(f, "old_url,new_url,status")?;
        for i in 0..n {
            let (old, new) = row(i);
            writeln!(f, "{old},{new},301")?;
        }
        f.flush()?;
        drop(f);
        let cfg = TableConfig::with_defaults("bench", &path);
        let before = rss_bytes();
        let cpu = cpu_secs();
        let t = Instant::now();
        let loaded = load(&cfg, &LoadContext::standalone(dir.path())).map_err(|e| e.to_string())?;
        let secs = t.elapsed().as_secs_f64();
        let cpu = cpu_secs() - cpu;
        let delta = rss_bytes().saturating_sub(before);
        let r = &loaded.report;
        let mut rng = fastrand::Rng::with_seed(1);
        let probes: Vec<String> = (0..200_000)
            .map(|_| {
                let i = rng.usize(0..n * 2);
                let (old, _) = row(i);
                // Query-keyed rows are asked for with parameters reordered plus a tracking one.
                match old.strip_prefix("/index.php?route=product/product&product_id=") {
                    Some(id) => {
                        format!("/index.php?product_id={id}&utm_source=mail&route=product/product")
                    }
                    None => old,
                }
            })
            .collect();
        let t = Instant::now();
        let mut hits = 0usize;
        for p in &probes {
            hits += usize::from(loaded.table.lookup("shop.example", p).is_some());
        }
        let ns = t.elapsed().as_nanos() as f64 / probes.len() as f64;
        assert!(hits > probes.len() / 3, "hits {hits}");
        println!(
            "{n:<9} {secs:<7.3} {cpu:<6.2} {:<14.1} {:<14.1} {:<20.1} {:<18.1} {ns:.0}",
            r.url_bytes as f64 / n as f64,
            delta as f64 / n as f64,
            delta.saturating_sub(r.url_bytes) as f64 / n as f64,
            r.overhead_bytes as f64 / n as f64,
        );
        let t = Instant::now();
        drop(loaded);
        eprintln!("{n} rows: dropping the table took {:?}", t.elapsed());
    }
    Ok(())
}
