//! Issue 3's reload-under-load test: a 200,000-row table reloaded 20 times in the `cutover`
//! binary (alternating two versions of the file whose targets differ) while 4 keep-alive
//! clients send requests; zero failed requests, and every answer matches either version.
//!
//! `CUTOVER_RELOAD_TEST_ROWS` and `CUTOVER_RELOAD_TEST_RELOADS` lower the defaults (200,000 and
//! 20, what the issue asks for) for a quick local run. Measured in a debug build on 2 shared
//! vCPUs: ~100 s with the defaults (the proxy spends ~75 s of CPU, ~2.5 s per 200,000-row
//! load, and loads run one after another), ~15 s with `CUTOVER_RELOAD_TEST_ROWS=20000`.

mod support;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::metrics::admin_metric;
use support::process::ProxyProcess;
use support::redirects::config;
use support::stores::path_store;
use support::wait::wait_for_every;
use support::{Dir, HttpClient};

const CLIENTS: usize = 4;
/// Each client sends at most one request per tick: a steady load that leaves the (debug-build)
/// reload its share of the two cores instead of starving it.
const TICK: Duration = Duration::from_millis(5);
/// Per client: bounds the load even if reloads were fast.
const MAX_REQUESTS_PER_CLIENT: u64 = 200_000;
const LIMIT: Duration = Duration::from_secs(180);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Row `i` as the plan writes it, for version `v` ("a" or "b").
fn row(i: usize, v: &str) -> (String, String) {
    match i % 10 {
        0..=5 => (
            format!("/index.php?route=product/product&product_id={i}"),
            format!("/{v}/products/linen-lamp-{i}"),
        ),
        6..=8 => (
            format!("/category/oak/item-{i}.html"),
            format!("/{v}/collections/oak/item-{i}"),
        ),
        _ => (
            format!("/product.php?id={i}"),
            format!("/{v}/products/p-{i}"),
        ),
    }
}

/// What a shopper requests for row `i`: query parameters reordered and a tracking parameter
/// added, which must be carried to the target.
fn request(i: usize) -> (String, String) {
    match i % 10 {
        0..=5 => (
            format!("/index.php?product_id={i}&utm_source=load&route=product%2Fproduct"),
            "?utm_source=load".into(),
        ),
        6..=8 => (format!("/Category/Oak/item-{i}.html/"), String::new()),
        _ => (
            format!("/product.php?gclid=g{i}&id={i}"),
            format!("?gclid=g{i}"),
        ),
    }
}

fn write_plan(path: &std::path::Path, rows: usize, v: &str) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "old_url,new_url,status").unwrap();
    for i in 0..rows {
        let (old, new) = row(i, v);
        writeln!(f, "{old},{new},301").unwrap();
    }
    f.flush().unwrap();
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    during_reload: AtomicU64,
    version_a: AtomicU64,
    version_b: AtomicU64,
    failed: AtomicU64,
    first_failures: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut f = self.first_failures.lock().unwrap();
        if f.len() < 10 {
            f.push(what);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_reloaded_20_times_under_load_fails_no_request() {
    let rows = env_or("CUTOVER_RELOAD_TEST_ROWS", 200_000).max(10);
    let reloads = env_or("CUTOVER_RELOAD_TEST_RELOADS", 20).max(1);
    let began = Instant::now();

    let dir = Dir::new();
    // Both versions are written once; a reload renames a fresh copy over the plan.
    let versions = ["a", "b"].map(|v| {
        let p = dir.path(&format!("version-{v}.csv"));
        write_plan(&p, rows, v);
        p
    });
    std::fs::copy(&versions[0], dir.path("plan.csv")).unwrap();
    let old = path_store("old", &[]).await;
    let new = path_store("new", &[]).await;
    let table = "\n[[redirects]]\nname = \"plan\"\nfile = \"plan.csv\"\n";
    let cfg = dir.write("cutover.toml", &config(old.addr, new.addr, 100.0, table));
    let proxy = ProxyProcess::spawn_with(&cfg, &[], LIMIT);
    let addr = proxy.addr;
    let started = began.elapsed();

    let tally = Arc::new(Tally::default());
    let reloading = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (tally, reloading, stop) = (tally.clone(), reloading.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let client = HttpClient::new();
            let mut rng = fastrand::Rng::with_seed(c as u64);
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for _ in 0..MAX_REQUESTS_PER_CLIENT {
                tick.tick().await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let i = rng.usize(..rows);
                let (pq, carried) = request(i);
                let during = reloading.load(Ordering::Relaxed);
                let r = match client.try_get(addr, &pq, &[]).await {
                    Ok(r) => r,
                    Err(e) => {
                        tally.fail(format!("{pq}: {e}"));
                        continue;
                    }
                };
                let loc = r.location().unwrap_or("");
                let matches =
                    |v: &str| r.status == 301 && loc == format!("{}{carried}", row(i, v).1);
                if matches("a") {
                    tally.version_a.fetch_add(1, Ordering::Relaxed);
                } else if matches("b") {
                    tally.version_b.fetch_add(1, Ordering::Relaxed);
                } else {
                    tally.fail(format!("{pq}: {} {loc:?} {:?}", r.status, r.body));
                    continue;
                }
                tally.ok.fetch_add(1, Ordering::Relaxed);
                if during {
                    tally.during_reload.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    // Reload `reloads` times, alternating b, a, b, ...; each time wait (bounded) until the new
    // version answers, probed on a row the clients do not pick specially.
    let probe = HttpClient::new();
    let mut reload_times = Vec::new();
    for k in 1..=reloads {
        let v = ["a", "b"][k % 2];
        let t = Instant::now();
        reloading.store(true, Ordering::Relaxed);
        let tmp = dir.path(".plan.csv.tmp");
        std::fs::copy(&versions[k % 2], &tmp).unwrap();
        std::fs::rename(&tmp, dir.path("plan.csv")).unwrap();
        let i = k * 7919 % rows;
        let (pq, carried) = request(i);
        let want = format!("{}{carried}", row(i, v).1);
        wait_for_every(
            &format!("reload {k} (version {v})"),
            LIMIT,
            Duration::from_millis(100),
            || {
                let (probe, pq, want) = (&probe, &pq, &want);
                async move {
                    let r = probe.try_get(addr, pq, &[]).await.ok()?;
                    (r.location() == Some(want.as_str())).then_some(())
                }
            },
        )
        .await;
        reloading.store(false, Ordering::Relaxed);
        reload_times.push(t.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        tokio::time::timeout(LIMIT, c)
            .await
            .expect("clients stop")
            .expect("client task");
    }
    let applied = admin_metric(
        &probe,
        proxy.admin,
        "cutover_config_reloads_total{result=\"applied\"}",
    )
    .await
    .unwrap_or(0.0);
    let rejected = admin_metric(
        &probe,
        proxy.admin,
        "cutover_config_reloads_total{result=\"rejected\"}",
    )
    .await
    .unwrap_or(0.0);
    let proxy_cpu = proxy.cpu_seconds();
    proxy.stop().await;

    let ok = tally.ok.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    reload_times.sort();
    eprintln!(
        "{rows} rows, {reloads} reloads: startup {started:?}, reload-to-served median {:?} max {:?}; \
         {ok} answers ({} during reloads; version a {}, b {}), {failed} failed; applied {applied}, \
         rejected {rejected}; proxy CPU {proxy_cpu:.1} s; total {:?}",
        reload_times[reload_times.len() / 2],
        reload_times[reload_times.len() - 1],
        tally.during_reload.load(Ordering::Relaxed),
        tally.version_a.load(Ordering::Relaxed),
        tally.version_b.load(Ordering::Relaxed),
        began.elapsed(),
    );
    assert_eq!(
        failed,
        0,
        "failed requests: {:?}",
        tally.first_failures.lock().unwrap()
    );
    assert!(
        tally.during_reload.load(Ordering::Relaxed) > 0,
        "the load ran during reloads"
    );
    assert!(
        tally.version_a.load(Ordering::Relaxed) > 0 && tally.version_b.load(Ordering::Relaxed) > 0
    );
    assert_eq!(rejected, 0.0);
    assert!(
        applied >= (reloads + 1) as f64,
        "startup + {reloads} applied, got {applied}"
    );
}
