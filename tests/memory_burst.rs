//! Issue 15, "memory kept after bursts": the built binary takes a burst of 2,000 concurrent
//! keep-alive connections (each served a request, then held), the burst ends, and the resident
//! memory it took is given back. RSS is read from `/proc/<pid>/status` before, at the peak and
//! once the proxy has seen every connection close; the check is a ratio of the burst's growth,
//! never a time (the wait only bounds a hang). Figures: BENCHMARKS.md, "Memory after a burst".

mod support;

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;

use support::control::*;
use support::metrics::scrape;
use support::process::*;
use support::raw;
use support::stores::Stores;
use support::wait::{wait_for, SLOW_WAIT};

/// Connections in the burst: 2,000 in the suite; `CUTOVER_BURST=5000` for the figure in
/// BENCHMARKS.md (the test process and the proxy each hold one descriptor per connection).
fn burst() -> usize {
    std::env::var("CUTOVER_BURST")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

/// Opens a keep-alive connection, gets one answer on it and keeps it open.
async fn served_connection(addr: SocketAddr, i: usize) -> tokio::net::TcpStream {
    let mut s = raw::connect(addr).await;
    s.write_all(format!("GET /burst/{i} HTTP/1.1\r\nHost: shop.test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let r = raw::read_response(&mut s)
        .await
        .expect("an answer in the burst");
    assert_eq!(r.status, 200);
    s
}

async fn open_connections(admin: SocketAddr) -> f64 {
    support::metrics::metric(&scrape(admin).await, "cutover_client_connections_open")
        .unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_taken_by_a_connection_burst_is_returned_once_traffic_resumes() {
    let stores = Stores::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cutover.toml");
    let p = Params {
        // Every connection of the burst comes from 127.0.0.1.
        limits: format!("max_connections_per_client = {}", burst() * 2),
        ..Params::default()
    };
    std::fs::write(&config, config_text(&stores, &p)).unwrap();
    let proxy = ProxyProcess::spawn(&config);
    let addr = proxy.addr;

    // Warm: the pools, the metrics page and the allocator's first arenas exist before "before".
    for i in 0..50 {
        drop(served_connection(addr, i).await);
    }
    wait_for("the warm-up connections to close", SLOW_WAIT, || async {
        open_connections(proxy.admin).await == 0.0
    })
    .await;
    let (_, before) = proxy.memory_kib();

    let mut held = Vec::with_capacity(burst());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..burst() {
        tasks.spawn(served_connection(addr, i));
    }
    while let Some(s) = tasks.join_next().await {
        held.push(s.expect("burst connection"));
    }
    assert_eq!(open_connections(proxy.admin).await as usize, burst());
    let (_, peak) = proxy.memory_kib();

    drop(held);
    wait_for(
        "the proxy to see the burst's connections close",
        SLOW_WAIT,
        || async { open_connections(proxy.admin).await == 0.0 },
    )
    .await;
    let (_, closed) = proxy.memory_kib();
    // Returned: at most half of what the burst added is still resident, while ordinary
    // traffic resumes (one shopper's keep-alive connection, a batch of requests per check). The
    // allocator gives pages back as part of its own work on later allocations, not on a timer of
    // its own, so an idle process keeps them (see BENCHMARKS.md): the traffic is the realistic
    // case after a burst, and what lets the allocator act. The wait bounds a hang; the check is a
    // ratio of the burst's growth.
    let grown = peak.saturating_sub(before);
    assert!(
        grown > 10 * 1024,
        "the burst must take memory for this test to mean anything: {before} -> {peak} KiB"
    );
    // Half, not less: how much comes back and when is the allocator's choice (mimalloc without
    // transparent huge pages kept 31% of a 46 MB burst after 80,000 requests, 2026-12-04).
    let limit = before + grown / 2;
    let mut shopper = raw::connect(addr).await;
    let mut sent = 0usize;
    let deadline = tokio::time::Instant::now() + SLOW_WAIT;
    let after = loop {
        for _ in 0..200 {
            shopper
                .write_all(
                    format!("GET /after/{sent} HTTP/1.1\r\nHost: shop.test\r\n\r\n").as_bytes(),
                )
                .await
                .unwrap();
            sent += 1;
            let r = raw::read_response(&mut shopper)
                .await
                .expect("ordinary traffic is served");
            assert_eq!(r.status, 200);
        }
        let (_, now) = proxy.memory_kib();
        if now <= limit {
            break now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "VmRSS still {now} KiB after {sent} ordinary requests: before the burst {before} KiB, \
             {} connections held {peak} KiB, all closed {closed} KiB (bound {limit} KiB)",
            burst()
        );
    };
    eprintln!(
        "VmRSS: before {before} KiB, {} connections held {peak} KiB, all closed {closed} KiB, \
         {after} KiB after {sent} ordinary requests (bound {limit} KiB)",
        burst()
    );
}
