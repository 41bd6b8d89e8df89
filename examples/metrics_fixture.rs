//! Serves the admin listener with synthetic old/new traffic, shaped as the proxy core wires it.
//!
//! Stands in for a running proxy when checking the dashboard and alert rules before (or without)
//! the data plane: `cargo run --example metrics_fixture -- 127.0.0.1:9901 120` then
//! `CUTOVER_ADMIN=127.0.0.1:9901 tests/promtool/check.sh`. Exits by itself after the given seconds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cutover::admin::{self, AdminState};
use cutover::metrics::{Metrics, Reason, UpstreamErrorKind};
use http::StatusCode;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| admin::DEFAULT_LISTEN.to_string())
        .parse()
        .expect("admin address");
    let secs: u64 = args.next().map_or(300, |s| s.parse().expect("seconds"));

    // Startup, as the core does it: one Metrics, config compiled into handles, split published.
    let metrics = Metrics::new();
    let storefronts = ["old", "new"];
    let routes = ["checkout", "default"];
    let handles = metrics.handles(&storefronts, &routes);
    metrics.retain(&handles);
    metrics.reload(true, 1);
    metrics.set_split_sides("old", "new");
    metrics.set_share_bp(2500);
    metrics.set_redirect_table("legacy-urls", 1234, 1);
    let ready = Arc::new(AtomicBool::new(false));
    let listener = admin::bind(addr).await.expect("bind admin");
    let server = tokio::spawn(admin::serve(
        listener,
        AdminState::new(metrics.clone(), ready.clone()),
        tokio::time::sleep(Duration::from_secs(secs)),
    ));
    ready.store(true, Ordering::Release);

    let traffic = async {
        let _conn = metrics.client_connection();
        for tick in 0u64.. {
            let sf = (tick % 2) as usize;
            let _in_flight = handles.start(sf);
            let ms = 20 + fastrand::u64(0..if sf == 1 { 300 } else { 150 });
            let status = if fastrand::u8(0..100) < 2 {
                StatusCode::BAD_GATEWAY
            } else {
                StatusCode::OK
            };
            if status == StatusCode::BAD_GATEWAY {
                handles.upstream_error(sf, UpstreamErrorKind::Connect);
            }
            if tick % 10 == 0 {
                handles.assigned(sf);
            }
            if tick % 15 == 0 {
                handles.redirect_served(StatusCode::MOVED_PERMANENTLY);
                handles.record(
                    sf,
                    1,
                    Reason::Redirect,
                    StatusCode::MOVED_PERMANENTLY,
                    None,
                    Duration::from_micros(300),
                );
            }
            let ttfb = (status == StatusCode::OK).then(|| Duration::from_millis(ms * 8 / 10));
            handles.record(
                sf,
                (tick % 3 == 0) as usize,
                Reason::Split,
                status,
                ttfb,
                Duration::from_millis(ms),
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        _ = traffic => {}
        _ = server => {}
    }
}
