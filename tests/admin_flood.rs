//! Issue 15: the admin port cannot be starved. A client that opens every admin connection slot
//! and sends nothing must not make the proxy unready, hide its metrics or refuse `cutover shift 0`.

mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::control::*;
use support::process::*;
use support::stores::Stores;

/// One GET on a fresh connection; the status code, or None when the connection was refused or
/// closed without an answer.
async fn get(addr: std::net::SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_starve_probes_metrics_or_an_emergency_shift() {
    let stores = Stores::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cutover.toml");
    std::fs::write(&config, config_text(&stores, &Params::default())).unwrap();
    let proxy = ProxyProcess::spawn(&config);
    let admin = proxy.admin;

    // Twice the admin listener's 64 slots, each connected and silent.
    let mut idle = Vec::new();
    for _ in 0..128 {
        idle.push(TcpStream::connect(admin).await.expect("connect"));
    }
    for path in ["/readyz", "/metrics", "/healthz", "/admin/status"] {
        assert_eq!(
            get(admin, path).await,
            Some(200),
            "{path} under a flood of idle connections"
        );
    }
    let out = tokio::process::Command::new(binary())
        .args(["shift", "0", "--admin", &admin.to_string()])
        .env_remove("CUTOVER_CONFIG")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "cutover shift 0 under the flood: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(support::admin::share(admin).await, 0.0);
    // The flood's connections were closed to make room, oldest first: the first one is gone.
    let mut first = idle.remove(0);
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(10), first.read(&mut byte)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the oldest idle connection was closed: {closed:?}"
    );
    // Each connection closed to make room is counted: at least the 64 the flood had to lose
    // (128 into 64 slots; the probes above may have taken a few more), none on the shopper side.
    let page = support::metrics::scrape(admin).await;
    let evicted = |listener| {
        support::metrics::metric_sum(
            &page,
            "cutover_connections_evicted_total",
            &[("listener", listener)],
        )
    };
    assert!(
        evicted("admin") >= 64.0,
        "admin evictions: {}",
        evicted("admin")
    );
    assert!(
        evicted("admin") <= 128.0,
        "admin evictions: {}",
        evicted("admin")
    );
    assert_eq!(evicted("shopper"), 0.0);
}
