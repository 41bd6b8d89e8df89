//! The rollout's Prometheus source against a real Prometheus server (the Debian `prometheus`
//! package): the test starts it on a free 127.0.0.1 port with a temporary config and data
//! directory, scraping every second a tiny hyper server that exposes `cutover`-named counters for
//! an old and a new storefront. Then Prometheus is stopped mid-test: the reading turns
//! inconclusive and the rollout holds.
//!
//! Without the binary the test skips with a message, except under `CI=true`, where it fails.

use std::convert::Infallible;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use cutover::rollout::engine::{Action, Engine, Phase};
use cutover::rollout::gate::GateResult;
use cutover::rollout::measure::{Reading, WindowFigures};
use cutover::rollout::plan::{QueryOverrides, RolloutConfig};
use cutover::rollout::prometheus::{PrometheusSource, Queries};

const DEADLINE: Duration = Duration::from_secs(90);
const OLD: &str = "legacy";
const NEW: &str = "next.shop";
const BOUNDS: [&str; 4] = ["0.1", "0.5", "1", "+Inf"];

fn prometheus_binary() -> Option<String> {
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join("prometheus");
        if p.is_file() {
            return Some(p.to_string_lossy().into_owned());
        }
    }
    None
}

/// Counters the fake exporter advances on every scrape (Prometheus is its only client).
#[derive(Default)]
struct Exporter {
    scrapes: AtomicU64,
    /// 5xx per scrape on new, per route (of 100 requests per scrape per route).
    new_5xx: AtomicU64,
    totals: Mutex<Totals>,
}

#[derive(Default)]
struct Totals {
    // [side][route] counters: 2xx, 4xx, 5xx, 404, buckets (cumulative, per BOUNDS).
    ok: [[u64; 2]; 2],
    c4xx: [[u64; 2]; 2],
    c5xx: [[u64; 2]; 2],
    not_found: [[u64; 2]; 2],
    buckets: [[[u64; 4]; 2]; 2],
}

const ROUTES: [&str; 2] = ["home", "checkout"];

impl Exporter {
    /// Advances every counter by one scrape's worth of traffic and renders the text format.
    fn scrape(&self) -> String {
        self.scrapes.fetch_add(1, Ordering::SeqCst);
        let new_5xx = self.new_5xx.load(Ordering::SeqCst);
        let mut t = self.totals.lock().unwrap();
        for side in 0..2 {
            for route in 0..2 {
                let e5 = if side == 1 { new_5xx } else { 1 };
                t.c5xx[side][route] += e5;
                t.c4xx[side][route] += 2;
                t.not_found[side][route] += 2;
                t.ok[side][route] += 100 - 2 - e5;
                // Old: everything under 100 ms. New: 90 under 100 ms, 10 between 0.5 s and 1 s.
                let (fast, slow) = if side == 0 { (100, 0) } else { (90, 10) };
                let b = &mut t.buckets[side][route];
                b[0] += fast;
                b[1] += fast;
                b[2] += fast + slow;
                b[3] += fast + slow;
            }
        }
        let sf = [OLD, NEW];
        let mut out = String::new();
        out.push_str("# TYPE cutover_requests_total counter\n");
        for (side, name) in sf.iter().enumerate() {
            for (r, route) in ROUTES.iter().enumerate() {
                for (class, v) in [
                    ("2xx", t.ok[side][r]),
                    ("4xx", t.c4xx[side][r]),
                    ("5xx", t.c5xx[side][r]),
                ] {
                    out.push_str(&format!(
                        "cutover_requests_total{{storefront=\"{}\",route=\"{route}\",status_class=\"{class}\",reason=\"split\"}} {v}\n",
                        name
                    ));
                }
            }
        }
        out.push_str("# TYPE cutover_not_found_total counter\n");
        for (side, name) in sf.iter().enumerate() {
            for (r, route) in ROUTES.iter().enumerate() {
                out.push_str(&format!(
                    "cutover_not_found_total{{storefront=\"{}\",route=\"{route}\"}} {}\n",
                    name, t.not_found[side][r]
                ));
            }
        }
        out.push_str("# TYPE cutover_request_duration_seconds histogram\n");
        for (side, name) in sf.iter().enumerate() {
            for (r, route) in ROUTES.iter().enumerate() {
                for (i, le) in BOUNDS.iter().enumerate() {
                    out.push_str(&format!(
                        "cutover_request_duration_seconds_bucket{{storefront=\"{}\",route=\"{route}\",le=\"{le}\"}} {}\n",
                        name, t.buckets[side][r][i]
                    ));
                }
                let count = t.buckets[side][r][3];
                out.push_str(&format!(
                    "cutover_request_duration_seconds_sum{{storefront=\"{}\",route=\"{route}\"}} {}\n",
                    name,
                    count as f64 * 0.05
                ));
                out.push_str(&format!(
                    "cutover_request_duration_seconds_count{{storefront=\"{}\",route=\"{route}\"}} {count}\n",
                    name
                ));
            }
        }
        out
    }
}

async fn serve_exporter(exporter: Arc<Exporter>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let exporter = exporter.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let body = exporter.scrape();
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "text/plain; version=0.0.4")
                                .body(Full::new(Bytes::from(body)))
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
    port
}

/// Kills the server when the test ends, however it ends.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

#[path = "support/ports.rs"]
mod ports;
use ports::free_port;

async fn start_prometheus(binary: &str, target_port: u16) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: cutover\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
    let mut p = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let ready: hyper::Uri = format!("{}/-/ready", p.url).parse().unwrap();
    let start = tokio::time::Instant::now();
    loop {
        if let Ok(resp) = client.get(ready.clone()).await {
            if resp.status().is_success() {
                let _ = resp.into_body().collect().await;
                return p;
            }
        }
        if let Ok(Some(status)) = p.child.try_wait() {
            panic!("prometheus exited before it was ready: {status}");
        }
        assert!(
            start.elapsed() < DEADLINE,
            "prometheus not ready at {}",
            p.url
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn source(url: &str, overrides: &QueryOverrides, window_ms: u64) -> PrometheusSource {
    let queries = Queries::effective(overrides, OLD, NEW, window_ms);
    PrometheusSource::new(url, Duration::from_secs(5), queries, OLD, NEW).unwrap()
}

/// Polls until the source answers figures that satisfy `ok`.
async fn wait_figures(
    src: &PrometheusSource,
    what: &str,
    ok: impl Fn(&WindowFigures) -> bool,
) -> WindowFigures {
    let start = tokio::time::Instant::now();
    loop {
        let r = src.read().await;
        if let Reading::Figures(f) = &r {
            if ok(f) {
                return f.clone();
            }
        }
        assert!(
            start.elapsed() < DEADLINE,
            "waiting for {what}; last reading {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn near(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() <= b.abs() * 0.1 + 1e-9)
}

fn ratio(part: Option<f64>, whole: Option<f64>) -> Option<f64> {
    Some(part? / whole?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_source_judges_new_against_old_and_holds_when_prometheus_stops() {
    let Some(binary) = prometheus_binary() else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("the prometheus binary is not on PATH (apt-get install -y prometheus); CI must run this test");
        }
        eprintln!("SKIPPED: no prometheus binary on PATH (apt-get install -y prometheus)");
        return;
    };
    let exporter = Arc::new(Exporter::default());
    exporter.new_5xx.store(20, Ordering::SeqCst);
    let target = serve_exporter(exporter.clone()).await;
    let mut prom = start_prometheus(&binary, target).await;

    // A 10 s window over 1 s scrapes: wait until the window is full of data on both sides.
    let src = source(&prom.url, &QueryOverrides::default(), 10_000);
    let f = wait_figures(&src, "a full window on both sides", |f| {
        f.overall.old.requests.is_some_and(|r| r >= 1500.0)
            && f.overall.new.requests.is_some_and(|r| r >= 1500.0)
            && exporter.scrapes.load(Ordering::SeqCst) >= 15
    })
    .await;
    // Per scrape and route: 100 requests; old 1 5xx, new 20; both 2 404s.
    assert!(
        near(ratio(f.overall.old.errors, f.overall.old.requests), 0.01),
        "{f:?}"
    );
    assert!(
        near(ratio(f.overall.new.errors, f.overall.new.requests), 0.20),
        "{f:?}"
    );
    assert!(
        near(ratio(f.overall.new.not_found, f.overall.new.requests), 0.02),
        "{f:?}"
    );
    for route in ROUTES {
        let r = &f.routes[route];
        assert!(
            near(ratio(r.new.errors, r.new.requests), 0.20),
            "{route}: {r:?}"
        );
    }
    let old_p99 = f
        .overall
        .old
        .latency
        .as_ref()
        .unwrap()
        .quantile(0.99)
        .unwrap();
    let new_p99 = f
        .overall
        .new
        .latency
        .as_ref()
        .unwrap()
        .quantile(0.99)
        .unwrap();
    assert!(old_p99 <= 0.1, "old p99 {old_p99}");
    assert!(new_p99 > 0.5 && new_p99 <= 1.0, "new p99 {new_p99}");

    // The engine judges the same reading: error ratio and p99 fail, 404 ratio passes.
    let cfg: RolloutConfig = toml::from_str(&format!(
        r#"
        steps = [5, 25, 100]
        min_hold = "0s"
        interval = "1s"
        window = "10s"
        min_requests = 100
        failure_limit = 1
        inconclusive_timeout = "3s"
        [gates.error_ratio]
        max_vs_old = 2.0
        max_delta = 0.01
        [gates.not_found_ratio]
        max_vs_old = 1.5
        [gates.p99]
        max_vs_old = 1.5
        max_delta = 0.05
        [gates.p99.routes.checkout]
        max_vs_old = 100.0
        max = 2.0
        [source]
        kind = "prometheus"
        url = "{}"
        "#,
        prom.url
    ))
    .unwrap();
    let plan = cfg.validate(Some(&["home", "checkout"])).unwrap();
    let plan_src = PrometheusSource::from_plan(&plan, OLD, NEW).unwrap();
    assert_eq!(plan_src.queries(), src.queries());
    let mut engine = Engine::new(plan);
    let t0 = 1_700_000_000_000u64;
    engine.start(t0).unwrap();
    let reading = plan_src.read().await;
    let acts = engine.tick(t0 + 1000, &reading);
    assert!(
        acts.contains(&Action::Rollback {
            evacuate_new: false
        }),
        "{acts:?}"
    );
    let verdicts = &engine.state().last_verdicts;
    let by_gate = |g: &str| verdicts.iter().find(|v| v.gate == g).unwrap().result;
    assert_eq!(by_gate("error_ratio"), GateResult::Fail);
    assert_eq!(by_gate("not_found_ratio"), GateResult::Pass);
    assert_eq!(by_gate("p99"), GateResult::Fail);
    assert_eq!(
        by_gate("p99/checkout"),
        GateResult::Pass,
        "a loose route limit with a 2 s ceiling"
    );

    // New recovers: within one window the error gate passes again.
    exporter.new_5xx.store(1, Ordering::SeqCst);
    wait_figures(&src, "new's error ratio back to old's", |f| {
        near(ratio(f.overall.new.errors, f.overall.new.requests), 0.01)
    })
    .await;

    // A query for a metric nobody exports is no data, not zero.
    let missing = QueryOverrides {
        not_found: Some(
            "sum by (storefront, route) (increase(cutover_nothing_here_total{storefront=~\"$storefronts\"}[$window]))".into(),
        ),
        ..Default::default()
    };
    let f = wait_figures(&source(&prom.url, &missing, 10_000), "figures", |_| true).await;
    assert!(f.overall.new.requests.is_some());
    assert_eq!(f.overall.new.not_found, None);
    assert_eq!(f.overall.old.not_found, None);

    // A query Prometheus rejects makes the reading inconclusive, naming the query.
    let broken = QueryOverrides {
        errors: Some("sum by (storefront (".into()),
        ..Default::default()
    };
    match source(&prom.url, &broken, 10_000).read().await {
        Reading::Inconclusive(why) => {
            assert!(why.contains("query errors (HTTP 400)"), "{why}");
            assert!(why.contains("bad_data"), "{why}");
            assert!(why.contains(&prom.url), "{why}");
        }
        other => panic!("{other:?}"),
    }

    // Overrides that lose the labels the figures are keyed by are inconclusive, not zero.
    let no_storefront = QueryOverrides {
        requests: Some("sum(increase(cutover_requests_total[$window]))".into()),
        ..Default::default()
    };
    let no_le = QueryOverrides {
        latency_buckets: Some(
            "sum by (storefront) (increase(cutover_request_duration_seconds_bucket[$window]))"
                .into(),
        ),
        ..Default::default()
    };
    for (overrides, expected) in [
        (no_storefront, "without a `storefront` label"),
        (no_le, "without an `le` label"),
    ] {
        match source(&prom.url, &overrides, 10_000).read().await {
            Reading::Inconclusive(why) => assert!(why.contains(expected), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    // Prometheus goes down mid-rollout: inconclusive, the step holds, then the rollout pauses.
    let mut engine = Engine::new(
        toml::from_str::<RolloutConfig>(
            r#"
            steps = [5, 25, 100]
            min_hold = "1h"
            interval = "1s"
            window = "10s"
            min_requests = 100
            failure_limit = 1
            inconclusive_timeout = "3s"
            [gates.error_ratio]
            max_vs_old = 2.0
            max_delta = 0.01
            "#,
        )
        .unwrap()
        .validate(None)
        .unwrap(),
    );
    engine.start(t0).unwrap();
    let acts = engine.tick(t0 + 1000, &src.read().await);
    assert!(acts.is_empty(), "healthy and holding: {acts:?}");
    assert_eq!(engine.state().last_verdicts[0].result, GateResult::Pass);
    prom.stop();
    let mut now = t0 + 1000;
    let mut paused_at = None;
    for _ in 0..6 {
        now += 1000;
        let reading = src.read().await;
        match &reading {
            Reading::Inconclusive(why) => {
                assert!(
                    why.contains(&prom.url) && why.contains("request failed"),
                    "{why}"
                )
            }
            other => panic!("Prometheus is down, yet: {other:?}"),
        }
        let acts = engine.tick(now, &reading);
        assert!(
            !acts
                .iter()
                .any(|a| matches!(a, Action::Rollback { .. } | Action::SetShare(_))),
            "{acts:?}"
        );
        if acts.iter().any(|a| matches!(a, Action::Pause(_))) {
            paused_at = Some(now);
            break;
        }
    }
    assert_eq!(
        paused_at,
        Some(t0 + 5000),
        "silent from t0+2s, paused 3s later"
    );
    assert_eq!(engine.state().phase, Phase::Paused);
    assert_eq!(engine.state().inconclusive_evaluations, 4);
    assert_eq!(engine.step_share_bp(), 500, "held at the step");
}

#[tokio::test]
async fn a_prometheus_that_never_answers_times_out_as_inconclusive() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let queries = Queries::effective(&QueryOverrides::default(), OLD, NEW, 60_000);
    let src = PrometheusSource::new(&url, Duration::from_millis(300), queries, OLD, NEW).unwrap();
    match src.read().await {
        Reading::Inconclusive(why) => {
            assert!(why.contains("timed out after 300ms"), "{why}");
            assert!(why.contains(&url), "{why}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_server_that_is_not_prometheus_is_inconclusive() {
    let exporter = Arc::new(Exporter::default());
    let port = serve_exporter(exporter).await;
    let url = format!("http://127.0.0.1:{port}");
    let queries = Queries::effective(&QueryOverrides::default(), OLD, NEW, 60_000);
    let src = PrometheusSource::new(&url, Duration::from_secs(5), queries, OLD, NEW).unwrap();
    match src.read().await {
        Reading::Inconclusive(why) => assert!(why.contains("not a Prometheus API answer"), "{why}"),
        other => panic!("{other:?}"),
    }
}
