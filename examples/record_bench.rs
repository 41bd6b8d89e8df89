//! Cost of the request-path metrics and of handing an entry to the access log.
//!
//! `cargo run --release --example record_bench [calls]` prints ns per call and the allocations
//! counted on the measuring thread (a counting global allocator), for:
//! - `RequestMetrics::record` alone, one thread and two threads hitting the same series;
//! - a whole request's worth: start (in-flight guard) + record + drop;
//! - `AccessLog::log` into a writer that discards, and the writer's lines/s.

#[path = "../tests/counting_alloc/mod.rs"]
mod counting_alloc;

use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use counting_alloc::{ALLOCATIONS, COUNTING};
use cutover::access_log::{AccessEntry, AccessLog};
use cutover::metrics::{Metrics, Reason, RequestMetrics};
use http::{HeaderValue, Method, StatusCode};

/// Runs `f` `n` times on this thread; returns (ns per call, allocations).
fn measure(n: u64, mut f: impl FnMut(u64)) -> (f64, u64) {
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    let took = start.elapsed();
    COUNTING.with(|c| c.set(false));
    (
        took.as_nanos() as f64 / n as f64,
        ALLOCATIONS.load(Ordering::Relaxed),
    )
}

fn record(h: &RequestMetrics, i: u64) {
    let sf = (i & 1) as usize;
    h.record(
        sf,
        (i % 20) as usize,
        Reason::Split,
        StatusCode::OK,
        Some(Duration::from_micros(black_box(i % 400_000))),
        Duration::from_micros(black_box(i % 900_000)),
    );
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(10_000_000, |s| s.parse().expect("calls"));
    let metrics = Metrics::new();
    let routes: Vec<String> = (0..20).map(|i| format!("route{i}")).collect();
    let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
    let h = metrics.handles(&["old", "new"], &routes);

    let (ns, allocs) = measure(n, |i| record(&h, i));
    println!(
        "record, 1 thread:                {ns:6.1} ns/call  {allocs} allocations in {n} calls"
    );

    let (ns, allocs) = measure(n, |i| {
        let g = h.start((i & 1) as usize);
        record(&h, i);
        drop(g);
    });
    println!(
        "start + record + guard drop:     {ns:6.1} ns/call  {allocs} allocations in {n} calls"
    );

    let other = h.clone();
    let per = n / 2;
    let t = std::thread::spawn(move || measure(per, |i| record(&other, i)));
    let (ns_a, alloc_a) = measure(per, |i| record(&h, i));
    let (ns_b, alloc_b) = t.join().unwrap();
    println!(
        "record, 2 threads same series:   {:6.1} ns/call  {} allocations in {n} calls",
        (ns_a + ns_b) / 2.0,
        alloc_a + alloc_b
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sink = tokio::fs::File::from_std(std::fs::OpenOptions::new().write(true).open("/dev/null").unwrap());
        let lines = n.min(2_000_000);
        let (log, task) = AccessLog::with_writer(sink, 8192, &metrics);
        let storefront: Arc<str> = Arc::from("new");
        let route: Arc<str> = Arc::from("route7");
        let uri: http::Uri = "/products/blue-shoe-42".parse().unwrap();
        let start = Instant::now();
        let (ns, allocs) = measure(lines, |i| {
            log.log(AccessEntry {
                time: SystemTime::now(),
                request_id: Some(HeaderValue::from_static("0b7e1c52")),
                method: Method::GET,
                host: Some(HeaderValue::from_static("shop.example")),
                uri: uri.clone(),
                status: StatusCode::OK,
                storefront: Some(storefront.clone()),
                route: Some(route.clone()),
                reason: Some(Reason::Split),
                upstream: Some(Duration::from_micros(i % 5000)),
                total: Duration::from_micros(i % 9000),
                bytes_sent: 5120,
                client_ip: Some("203.0.113.9".parse().unwrap()),
            })
        });
        drop(log);
        task.await.unwrap();
        let secs = start.elapsed().as_secs_f64();
        let dropped = metrics.access_log_dropped().get();
        println!("access log log():                {ns:6.1} ns/call  {allocs} allocations in {lines} calls");
        println!(
            "access log writer: {} lines written, {dropped} dropped (offered as fast as possible), {:.0} lines/s",
            lines - dropped,
            (lines - dropped) as f64 / secs
        );
    });
}
