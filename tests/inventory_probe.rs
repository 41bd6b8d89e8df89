//! `--probe` against a real hyper storefront on 127.0.0.1: non-2xx answers, redirects and
//! timeouts are reported, concurrency stays within its bound, progress is reported per URL.

use bytes::Bytes;
use cutover::inventory::probe::{probe, ProbeFailure, ProbeOptions, ProbeOutcome};
use cutover::inventory::{CoverageOracle, CoverageReport, Entry, Sources};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// What the storefront saw.
#[derive(Default)]
struct Seen {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    served: AtomicUsize,
}

/// A new storefront: `/ok*` 200, `/moved` 301, `/hang` never answers, anything else 404. Each
/// request waits for a permit of `gate` before answering, so the test controls overlap.
async fn storefront(gate: Arc<Semaphore>, seen: Arc<Seen>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (gate, seen) = (gate.clone(), seen.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (gate, seen) = (gate.clone(), seen.clone());
                    async move {
                        let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        seen.max_in_flight.fetch_max(now, Ordering::SeqCst);
                        let path = req.uri().path().to_string();
                        if path == "/hang" {
                            seen.in_flight.fetch_sub(1, Ordering::SeqCst);
                            std::future::pending::<()>().await;
                        }
                        gate.acquire().await.unwrap().forget();
                        let mut resp = http::Response::builder();
                        let status = if path.starts_with("/ok") {
                            200
                        } else if path == "/moved" {
                            resp = resp.header("location", "/elsewhere");
                            301
                        } else {
                            404
                        };
                        seen.in_flight.fetch_sub(1, Ordering::SeqCst);
                        seen.served.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, Infallible>(
                            resp.status(status)
                                .body(http_body_util::Full::new(Bytes::from_static(b"page")))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn reports_what_does_not_answer_2xx_with_bounded_concurrency() {
    let gate = Arc::new(Semaphore::new(0));
    let seen = Arc::new(Seen::default());
    let base = storefront(gate.clone(), seen.clone()).await;
    let mut urls: Vec<String> = (0..12).map(|i| format!("/ok/{i}")).collect();
    urls.insert(3, "/missing".into());
    urls.insert(7, "/moved".into());
    let progress = Arc::new(Mutex::new(Vec::new()));
    let p = progress.clone();
    let opts = ProbeOptions {
        concurrency: 3,
        timeout: Duration::from_secs(20),
    };
    let task = tokio::spawn({
        let (base, urls) = (base.clone(), urls.clone());
        async move {
            let report = move |done: usize, total: usize| p.lock().unwrap().push((done, total));
            probe(&base, &urls, opts, &report).await
        }
    });
    // Release one answer at a time, each time once the probe has refilled its 3 slots: without
    // the bound, all 14 requests would be in flight while the gate is shut.
    for released in 0..urls.len() {
        let expect = 3.min(urls.len() - released);
        wait_for("the probe to fill its slots", || {
            seen.in_flight.load(Ordering::SeqCst) == expect
        })
        .await;
        gate.add_permits(1);
        wait_for("the answer", || {
            seen.served.load(Ordering::SeqCst) == released + 1
        })
        .await;
    }
    let report = task.await.unwrap().unwrap();
    assert_eq!(seen.max_in_flight.load(Ordering::SeqCst), 3);
    assert_eq!(report.checked, 14);
    assert_eq!(
        report.failures,
        [
            ProbeFailure {
                url: "/missing".into(),
                outcome: ProbeOutcome::Status {
                    status: 404,
                    location: None
                }
            },
            ProbeFailure {
                url: "/moved".into(),
                outcome: ProbeOutcome::Status {
                    status: 301,
                    location: Some("/elsewhere".into())
                }
            },
        ]
    );
    let progress = progress.lock().unwrap().clone();
    assert_eq!(progress, (1..=14).map(|d| (d, 14)).collect::<Vec<_>>());
}

#[tokio::test]
async fn timeouts_and_unreachable_hosts_are_failures_not_errors() {
    let gate = Arc::new(Semaphore::new(1000));
    let base = storefront(gate, Arc::new(Seen::default())).await;
    let urls = vec![
        "/hang".to_string(),
        "/ok".into(),
        "http://127.0.0.1:1/x".into(),
    ];
    let opts = ProbeOptions {
        concurrency: 4,
        timeout: Duration::from_millis(300),
    };
    let report = probe(&base, &urls, opts, &|_, _| {}).await.unwrap();
    assert_eq!(report.checked, 3);
    assert_eq!(report.failures.len(), 2);
    assert_eq!(report.failures[0].outcome, ProbeOutcome::Timeout);
    assert_eq!(report.failures[1].url, "http://127.0.0.1:1/x");
    assert!(
        matches!(&report.failures[1].outcome, ProbeOutcome::Error(e) if e.starts_with("request failed"))
    );
    let e = probe("127.0.0.1:1", &urls, opts, &|_, _| {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("expected http://host"), "{e}");
}

struct Plan;

impl CoverageOracle for Plan {
    fn redirect_target(&self, _: &str, url: &str) -> Option<(String, u16)> {
        match url {
            "/old-a" => Some(("/ok/a".into(), 301)),
            "/old-b" => Some(("/missing-target".into(), 301)),
            _ => None,
        }
    }
    fn is_gone(&self, _: &str, _: &str) -> bool {
        false
    }
    fn kept_on_old_by_rule(&self, _: &str, _: &str) -> bool {
        false
    }
    fn same_path_on_new_known(&self, _: &str, url: &str) -> bool {
        url == "/ok-same"
    }
}

/// The coverage report's probe list, probed: a plan target that 404s is caught.
#[tokio::test]
async fn probing_a_coverage_report_catches_a_target_that_404s() {
    let base = storefront(Arc::new(Semaphore::new(1000)), Arc::new(Seen::default())).await;
    let entry = |url: &str| Entry {
        host: String::new(),
        url: url.into(),
        hits: 5,
        hits_error: 0,
        crawler_hits: 1,
        first_seen: 1,
        last_seen: 2,
        last_status: 200,
        sources: Sources {
            traffic: true,
            sitemap: false,
        },
        on_new: Default::default(),
    };
    let entries = vec![
        entry("/old-a"),
        entry("/old-b"),
        entry("/ok-same"),
        entry("/lost"),
    ];
    let report = CoverageReport::build(&entries, &Plan);
    assert_eq!(report.covered_urls, 3);
    let urls = report.probe_urls();
    let probed = probe(&base, &urls, ProbeOptions::default(), &|_, _| {})
        .await
        .unwrap();
    assert_eq!(probed.checked, 3);
    assert_eq!(probed.failures.len(), 1);
    assert_eq!(probed.failures[0].url, "/missing-target");
}
