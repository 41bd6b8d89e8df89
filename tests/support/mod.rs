//! The one helper every end-to-end test uses (`mod support;`), so each suite exercises the real
//! proxy the same way: real sockets on 127.0.0.1, real upstream servers.
//!
//! Process behaviour (signals, exits, handovers, sd_notify, memory, the CLI) is tested on the
//! built binary (`process`). Suites about what happens to a request (routing, headers, limits,
//! the pool, TLS, redirects, metrics) start the same `app::start` in-process (`proxy::InProc`):
//! the sockets and the code are the real ones, and a test can reach into the running app (its
//! readiness, a drain, a reload) without a signal.
//!
//! By concern: `dir` (temp configs), `proxy` (config builder, in-process proxy), `process` (the
//! binary: start, signals, log), `upstream` and `stores` (storefront stand-ins), `client`,
//! `conn` and `raw` (HTTP/1.1, HTTP/2 and raw-TCP clients), `admin` (admin API), `metrics`
//! (scrapes), `tls` (rcgen certificates, TLS clients and servers), `wait` (bounded polling),
//! and the configs of the `control` and `redirects` suites.
//!
//! Every wait is bounded so a broken proxy fails a test instead of hanging the suite.
// Every test binary compiles this module and uses a different part of it (items, re-exports).
#![allow(dead_code, unused_imports)]

pub mod admin;
pub mod client;
pub mod conn;
pub mod control;
pub mod dir;
// docs: the README's and docs/'s examples and snippets, run (issue 23).
pub mod docs;
pub mod metrics;
// ports: for servers started as processes, below the kernel's ephemeral range.
pub mod ports;
pub mod process;
pub mod proxy;
pub mod raw;
pub mod redirects;
// rollout: storefronts with a chosen error rate, shoppers, the [rollout] config.
pub mod rollout;
pub mod stores;
pub mod tls;
pub mod upstream;
pub mod wait;

pub use client::{get_new_conn, Client, HttpClient, Jar, Page, Resp};
pub use dir::{Dir, TempConfig};
pub use process::ProxyProcess;
pub use proxy::{ConfigSpec, InProc};
pub use upstream::Backend;
pub use wait::{bounded, wait_for, SLOW_WAIT, WAIT};

/// The cohort key every test config uses unless it sets its own.
pub const KEY: &str = "e2e-test-key";

/// A `Cookie` header value that places a shopper in `bucket` (0..9999) with no pin, so a test
/// picks the side of the split instead of depending on a random assignment.
pub fn cohort_cookie(bucket: u16) -> String {
    let value = cutover::routing::cohort::encode(
        &cutover::routing::cohort::CohortCookie { bucket, pin: None },
        &cutover::routing::cohort::CohortKeys::derive(KEY),
        |_| -> &str { unreachable!("no pin") },
    );
    format!("cutover_cohort={value}")
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The bucket a cohort cookie value carries (`v1.<bucket>.<pin>.<mac>`, see `cohort.rs`).
pub fn bucket_of_cookie(value: &str) -> u16 {
    let mut parts = value.split('.');
    assert_eq!(parts.next(), Some("v1"), "cohort cookie format: {value}");
    parts
        .next()
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("cohort cookie without bucket: {value}"))
}

/// Runs `f` up to `n` times concurrently in `workers` tasks and gathers the results in order.
pub async fn run_concurrently<T, F, Fut>(n: usize, workers: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let f = std::sync::Arc::new(f);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let f = std::sync::Arc::clone(&f);
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut i = w;
            while i < n {
                out.push((i, f(i).await));
                i += workers;
            }
            out
        }));
    }
    let mut all: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for t in tasks {
        for (i, v) in t.await.expect("worker task panicked") {
            all[i] = Some(v);
        }
    }
    all.into_iter()
        .map(|v| v.expect("every index ran"))
        .collect()
}
