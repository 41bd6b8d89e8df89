//! `cutover demo --traffic` and `cutover demo --rollout` on the built binary: the shipped demo
//! config (copied with ephemeral 127.0.0.1 ports), its demo stores, the simulated shoppers, and
//! the shipped rollout plan ramping on their traffic until the overloaded new store makes it roll
//! back. Read through the admin API and the demo's own output; every wait is bounded.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use serde_json::Value;
use support::admin::admin;
use support::process::{binary, signal};
use support::{wait_for, SLOW_WAIT};
use tokio::io::AsyncBufReadExt;
use tokio::process::Child;

use support::ports::free_port;

/// config/demo.toml and its CSV in `dir`, on free ports; the admin address.
fn demo_copy(dir: &Path) -> (std::path::PathBuf, SocketAddr) {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut text = std::fs::read_to_string(format!("{root}/config/demo.toml")).unwrap();
    let admin_port = free_port();
    for (fixed, port) in [
        ("127.0.0.1:8080", free_port()),
        ("127.0.0.1:9901", admin_port),
        ("127.0.0.1:8081", free_port()),
        ("127.0.0.1:8082", free_port()),
    ] {
        assert!(text.contains(fixed), "{fixed} in the shipped demo config");
        text = text.replace(fixed, &format!("127.0.0.1:{port}"));
    }
    std::fs::copy(
        format!("{root}/config/redirects.csv"),
        dir.join("redirects.csv"),
    )
    .unwrap();
    let path = dir.join("demo.toml");
    std::fs::write(&path, text).unwrap();
    (path, format!("127.0.0.1:{admin_port}").parse().unwrap())
}

/// Starts `cutover demo ARGS --config path`; returns it once it prints that it runs, with the
/// rest of its stdout collected by a task.
async fn demo(args: &[&str], config: &Path) -> (Child, Output) {
    let mut child = tokio::process::Command::new(binary())
        .arg("demo")
        .args(args)
        .arg("--config")
        .arg(config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let out = Output::default();
    let collected = Arc::clone(&out);
    tokio::time::timeout(SLOW_WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("cutover demo is running") {
                return;
            }
        }
        panic!("the demo ended before serving");
    })
    .await
    .expect("the demo serves");
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let mut text = collected.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    (child, out)
}

/// The demo's stdout after the "running" line, as it arrives.
type Output = Arc<Mutex<String>>;

async fn printed(out: &Output, what: &str) {
    wait_for(&format!("the demo prints `{what}`"), SLOW_WAIT, || async {
        out.lock().unwrap().contains(what)
    })
    .await;
}

/// The sum of `name`'s samples whose labels contain every one of `labels`.
fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn stop(mut child: Child, out: Output) -> String {
    assert!(signal(child.id().unwrap(), "INT"));
    let status = tokio::time::timeout(SLOW_WAIT, child.wait())
        .await
        .expect("the demo exits after SIGINT")
        .unwrap();
    assert!(status.success(), "{status:?}");
    // The summary is printed just before the exit: the pipe's last lines may still be read.
    printed(&out, "answers").await;
    let text = out.lock().unwrap().clone();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_traffic_brings_returning_shoppers_to_both_stores_and_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let (config, admin_at) = demo_copy(dir.path());
    let (child, out) = demo(&["--traffic"], &config).await;
    let metrics = wait_for(
        "shoppers on both stores, redirects served",
        SLOW_WAIT,
        || async {
            let (_, m) = admin(admin_at, Method::GET, "/metrics", None, None).await;
            let requests = metric_sum(&m, "cutover_requests_total", &[]);
            let done = requests >= 200.0
                && metric_sum(&m, "cutover_requests_total", &["storefront=\"new\""]) > 0.0
                && metric_sum(&m, "cutover_requests_total", &["storefront=\"old\""]) > 0.0
                && metric_sum(&m, "cutover_redirects_served_total", &[]) > 0.0;
            done.then_some(m)
        },
    )
    .await;
    let requests = metric_sum(&metrics, "cutover_requests_total", &[]);
    let assigned = metric_sum(&metrics, "cutover_shoppers_assigned_total", &[]);
    assert!(
        assigned > 0.0 && assigned * 2.0 < requests,
        "shoppers come back with their cookie: {assigned} assigned for {requests} requests"
    );
    // The inventory saw old-store URLs the plan does not map (the demo's browse mix has them).
    let (_, coverage) = admin(admin_at, Method::GET, "/inventory/coverage", None, None).await;
    assert!(coverage.contains("gift-cards"), "{coverage}");
    let text = stop(child, out).await;
    assert!(text.contains("simulated shoppers"), "{text}");
    let summary = text
        .lines()
        .find(|l| l.starts_with("shoppers:") && l.contains("answers"))
        .unwrap_or_else(|| panic!("a summary at exit:\n{text}"));
    assert!(summary.contains("2xx"), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_rollout_ramps_on_its_own_traffic_and_rolls_back_when_new_is_overloaded() {
    let dir = tempfile::tempdir().unwrap();
    let (config, admin_at) = demo_copy(dir.path());
    let (child, out) = demo(&["--rollout"], &config).await;
    let copy = std::env::temp_dir().join(format!("cutover-demo-rollout-{}", child.id().unwrap()));
    assert!(copy.join("demo.toml").exists(), "runs from a copy");
    let rollout = || async {
        let (_, b) = admin(admin_at, Method::GET, "/admin/rollout", None, None).await;
        serde_json::from_str::<Value>(&b).unwrap()
    };
    // Ramps on evidence: step two is reached after passing verdicts on the demo's traffic.
    let v = wait_for("the demo's rollout passes step one", SLOW_WAIT, || async {
        let v = rollout().await;
        (v["state"]["step"].as_u64() >= Some(1)).then_some(v)
    })
    .await;
    let verdict = &v["state"]["last_verdicts"][0];
    assert_eq!(verdict["gate"], "error_ratio", "{v:#}");
    assert!(verdict["old_requests"].as_f64() >= Some(4.0), "{v:#}");
    // The overloaded new store fails its gate and the rollout rolls back on its own.
    let v = wait_for(
        "the demo's rollout rolls back",
        Duration::from_secs(60),
        || async {
            let v = rollout().await;
            (v["state"]["phase"] == "rolled_back").then_some(v)
        },
    )
    .await;
    let reason = v["state"]["reason"].as_str().unwrap();
    assert!(reason.contains("error_ratio"), "{reason}");
    assert!(
        v["state"]["step"].as_u64() >= Some(1),
        "after ramping: {v:#}"
    );
    assert_eq!(support::admin::share(admin_at).await, 0.0);
    printed(&out, "rollout: running at step 2/4").await;
    printed(&out, "rollout: rolled_back").await;
    let text = stop(child, out).await;
    for line in text.lines().filter(|l| l.starts_with("rollout:")) {
        eprintln!("demo: {line}");
    }
    assert!(!copy.exists(), "the config copy is removed on exit");
}
