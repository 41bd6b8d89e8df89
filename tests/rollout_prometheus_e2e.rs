//! The rollout judged by fleet-wide figures: two `cutover` processes (the built binary) in front
//! of the same storefronts, a real Prometheus server (the Debian `prometheus` package) scraping
//! both every second, and each process's `[rollout]` reading its figures from that Prometheus.
//! Then Prometheus is stopped mid-rollout: evaluations turn inconclusive, the step holds, and the
//! rollout pauses after `inconclusive_timeout`.
//!
//! Without the `prometheus` binary the test skips with a message, except under `CI=true`.

mod support;

use std::process::{Child, Command, Stdio};

use http::{Method, StatusCode};
use serde_json::Value;

use support::admin::{admin, share};
use support::rollout::{config, FlakyStore, Shoppers};
use support::upstream::free_port;
use support::{wait_for, ProxyProcess, TempConfig, SLOW_WAIT};

fn prometheus_binary() -> Option<std::path::PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
}

/// Prometheus on `port`, scraping `targets` every second; killed on drop.
struct Prometheus {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_prometheus(binary: &std::path::Path, port: u16, targets: &[String]) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: cutover\n    \
             scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      \
             - targets: [{}]\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
    let p = Prometheus { child, _dir: dir };
    let ready = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for("prometheus to be ready", SLOW_WAIT, || async move {
        support::admin::request_fresh(ready, Method::GET, "/-/ready", &[], None)
            .await
            .is_ok_and(|(s, _, _)| s == StatusCode::OK)
    })
    .await;
    p
}

async fn rollout(p: &ProxyProcess) -> Value {
    let (s, b) = admin(p.admin, Method::GET, "/admin/rollout", None, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    serde_json::from_str(&b).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_judge_by_prometheus_and_pause_when_it_goes_away() {
    let Some(binary) = prometheus_binary() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no prometheus binary on PATH (apt-get install prometheus)"
        );
        eprintln!("SKIPPED: no prometheus binary on PATH (apt-get install prometheus)");
        return;
    };
    let (old, new) = (
        FlakyStore::start("old").await,
        FlakyStore::start("new").await,
    );
    let prometheus_port = free_port();
    let plan = format!(
        "steps = [20, 60, 100]\nmin_hold = \"1h\"\ninterval = \"1s\"\nwindow = \"6s\"\n\
         min_requests = 10\nfailure_limit = 2\ninconclusive_timeout = \"3s\"\n\
         [rollout.source]\nkind = \"prometheus\"\nurl = \"http://127.0.0.1:{prometheus_port}\"\n\
         timeout = \"1s\"\n\
         [rollout.gates.error_ratio]\nmax_vs_old = 2.0\nmax_delta = 0.05\n"
    );
    let text = config(&old, &new, 0.0, &plan);
    let (c1, c2) = (TempConfig::new(&text), TempConfig::new(&text));
    let (a, b) = (
        ProxyProcess::spawn(c1.path()),
        ProxyProcess::spawn(c2.path()),
    );
    let prometheus = start_prometheus(
        &binary,
        prometheus_port,
        &[a.admin.to_string(), b.admin.to_string()],
    )
    .await;
    let _shoppers = Shoppers::start(&[a.addr, b.addr]);
    for p in [&a, &b] {
        let (s, body) = admin(p.admin, Method::POST, "/admin/rollout/start", None, None).await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }

    // Both judge by the fleet-wide figures: passing verdicts with old's and new's requests as
    // Prometheus summed them over both processes. (A long min_hold keeps them at step one.)
    for p in [&a, &b] {
        let v = wait_for(
            "a passing verdict on Prometheus figures",
            SLOW_WAIT,
            || async {
                let v = rollout(p).await;
                (v["state"]["last_verdicts"][0]["result"] == "pass").then_some(v)
            },
        )
        .await;
        let verdict = &v["state"]["last_verdicts"][0];
        assert!(verdict["old_requests"].as_f64().unwrap() >= 10.0, "{v:#}");
        assert!(verdict["new_requests"].as_f64().unwrap() >= 10.0, "{v:#}");
        assert_eq!(v["state"]["step"], 0, "{v:#}");
        assert_eq!(share(p.admin).await, 20.0);
    }

    // Prometheus goes away: the step holds, then the rollout pauses with the reason.
    drop(prometheus);
    for p in [&a, &b] {
        let v = wait_for("the rollout to pause", SLOW_WAIT, || async {
            let v = rollout(p).await;
            (v["state"]["phase"] == "paused").then_some(v)
        })
        .await;
        assert_eq!(v["state"]["step"], 0, "the step held: {v:#}");
        assert_eq!(share(p.admin).await, 20.0, "a pause keeps the share");
        let reason = v["state"]["reason"].as_str().unwrap();
        assert!(reason.contains("the source has not answered"), "{reason}");
        let page = support::metrics::scrape(p.admin).await;
        assert!(
            support::metrics::metric(&page, "cutover_rollout_source_inconclusive_total").unwrap()
                >= 1.0,
            "{page}"
        );
    }
}
