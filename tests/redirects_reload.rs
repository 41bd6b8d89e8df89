//! Hot reload of a redirect table in the `cutover` binary: by atomic rename, by in-place
//! rewrite and by SIGHUP; a broken table is rejected and the previous one keeps serving until a
//! fixed one is applied.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::metrics::admin_metric;
use support::process::ProxyProcess;
use support::redirects::{config, PLAN_TABLE};
use support::stores::path_store;
use support::wait::wait_for_every;
use support::{Dir, HttpClient};

const REJECTED: &str = "cutover_config_reloads_total{result=\"rejected\"}";
const GENERATION: &str = "cutover_config_generation";
const LIMIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// Version `v` of the plan: every target names it.
fn plan(v: u32) -> String {
    format!(
        "old_url,new_url,status\n/page,/v{v}/page,301\n/product.php?id=1,/v{v}/product,301\n\
         /blog/*,/v{v}/news/*,301\n"
    )
}

/// A plan that fails validation (line 3: bad status, line 4: self-redirect).
const BROKEN: &str =
    "old_url,new_url,status\n/page,/broken/page,301\n/x,/y,999\n/a,/a,301\n/blog/*,/news/*,301\n";

struct Running {
    proxy: ProxyProcess,
    client: HttpClient,
}

impl Running {
    async fn start(dir: &Dir) -> Running {
        let old = path_store("old", &[]).await;
        let new = path_store("new", &[]).await;
        let cfg = dir.write(
            "cutover.toml",
            &config(old.addr, new.addr, 100.0, PLAN_TABLE),
        );
        let proxy = ProxyProcess::spawn_with(&cfg, &[], LIMIT);
        Running {
            proxy,
            client: HttpClient::new(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.proxy.addr
    }

    async fn location(&self, pq: &str) -> Option<String> {
        let r = self.client.get(self.addr(), pq, &[]).await;
        r.location().map(str::to_string)
    }

    /// Waits until every URL of the table answers from version `v`.
    async fn serves(&self, v: u32) {
        let want = [
            ("/page", format!("/v{v}/page")),
            (
                "/product.php?id=1&utm_source=x",
                format!("/v{v}/product?utm_source=x"),
            ),
            ("/blog/a/b", format!("/v{v}/news/a/b")),
        ];
        wait_for_every(&format!("version {v} to serve"), LIMIT, POLL, || {
            let want = &want;
            async move {
                for (pq, loc) in want {
                    if self.location(pq).await.as_deref() != Some(loc.as_str()) {
                        return None;
                    }
                }
                Some(())
            }
        })
        .await;
    }

    async fn metric(&self, series: &str) -> f64 {
        admin_metric(&self.client, self.proxy.admin, series)
            .await
            .unwrap_or(0.0)
    }

    /// Waits for the rejected-reload counter to reach `n`, then checks that version `v` still
    /// answers every URL.
    async fn rejected(&self, n: f64, v: u32) {
        wait_for_every(&format!("{n} rejected reloads"), LIMIT, POLL, || async {
            (self.metric(REJECTED).await >= n).then_some(())
        })
        .await;
        self.serves(v).await;
        assert_eq!(
            self.location("/x").await,
            None,
            "nothing of the broken file"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_by_atomic_rename_and_in_place_rewrite() {
    let dir = Dir::new();
    dir.write("plan.csv", &plan(1));
    let p = Running::start(&dir).await;
    p.serves(1).await;

    dir.write_atomic("plan.csv", &plan(2));
    p.serves(2).await;

    // Same size as version 2, same inode: only the content and mtime change.
    dir.write("plan.csv", &plan(3));
    p.serves(3).await;

    // Broken, in place: rejected, version 3 keeps serving.
    dir.write("plan.csv", BROKEN);
    p.rejected(1.0, 3).await;
    let log = p.proxy.log_text();
    assert!(
        log.contains("plan.csv:3") && log.contains("plan.csv:4"),
        "the rejection is logged with lines:\n{log}"
    );

    // Fixed by rename: applied.
    dir.write_atomic("plan.csv", &plan(4));
    p.serves(4).await;

    // Broken by rename: rejected, version 4 keeps serving; fixed in place: applied.
    dir.write_atomic("plan.csv", BROKEN);
    p.rejected(2.0, 4).await;
    dir.write("plan.csv", &plan(5));
    p.serves(5).await;

    // The table file removed: rejected too, the loaded table keeps serving.
    std::fs::remove_file(dir.path("plan.csv")).unwrap();
    p.rejected(3.0, 5).await;
    dir.write("plan.csv", &plan(6));
    p.serves(6).await;
    p.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_by_sighup() {
    // The config names a symlink into another directory: the watcher (on the config's
    // directory) does not see the target change, so only SIGHUP applies it, as on file systems
    // without change notification.
    let dir = Dir::new();
    let elsewhere = Dir::new();
    let real = elsewhere.write("plan.csv", &plan(1));
    std::os::unix::fs::symlink(&real, dir.path("plan.csv")).unwrap();
    let p = Running::start(&dir).await;
    p.serves(1).await;
    let generation = p.metric(GENERATION).await;

    elsewhere.write("plan.csv", &plan(2));
    // An observation window, not synchronisation: longer than the watcher's debounce (200 ms),
    // nothing may happen without the signal. Absence has no event to wait on; a busy machine can
    // only make this pass when it should not, never fail when it should pass.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(p.metric(GENERATION).await, generation);
    assert_eq!(p.location("/page").await.as_deref(), Some("/v1/page"));
    p.proxy.signal("HUP");
    p.serves(2).await;
    assert!(p.metric(GENERATION).await > generation);

    // Broken: SIGHUP rejects it and version 2 keeps serving.
    elsewhere.write("plan.csv", BROKEN);
    p.proxy.signal("HUP");
    p.rejected(1.0, 2).await;
    // A second SIGHUP with the file still broken: still rejected, still version 2.
    p.proxy.signal("HUP");
    p.rejected(2.0, 2).await;

    // Fixed: applied on the next SIGHUP.
    elsewhere.write_atomic("plan.csv", &plan(3));
    p.proxy.signal("HUP");
    p.serves(3).await;
    p.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_while_another_file_in_the_directory_keeps_changing() {
    // The access log sits beside the config and the plan, and steady traffic appends to it
    // more often than the watcher's quiet period: a change of the plan must still be applied.
    let dir = Dir::new();
    dir.write("plan.csv", &plan(1));
    let old = path_store("old", &[]).await;
    let new = path_store("new", &[]).await;
    let log = dir.path("access.log");
    let extra = format!(
        "{PLAN_TABLE}\n[access_log]\nenabled = true\npath = {:?}\n",
        log
    );
    let cfg = dir.write("cutover.toml", &config(old.addr, new.addr, 100.0, &extra));
    let p = Running {
        proxy: ProxyProcess::spawn_with(&cfg, &[], LIMIT),
        client: HttpClient::new(),
    };
    p.serves(1).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (stop, addr, client) = (stop.clone(), p.addr(), p.client.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = client.try_get(addr, "/not-redirected", &[]).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    wait_for_every("the access log to grow", LIMIT, POLL, || async {
        (std::fs::metadata(&log).map_or(0, |m| m.len()) > 0).then_some(())
    })
    .await;
    dir.write_atomic("plan.csv", &plan(2));
    p.serves(2).await;
    dir.write("plan.csv", &plan(3));
    p.serves(3).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    traffic.await.unwrap();
    p.proxy.stop().await;
}

/// Thread id, name and nice value of every thread of `pid` (from /proc/PID/task/*/stat).
fn threads(pid: u32) -> Vec<(u32, String, i64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|stat| {
            let (head, rest) = stat.rsplit_once(") ")?;
            let (tid, name) = head.split_once(" (")?;
            // Fields after the name start at field 3 (state); nice is field 19.
            let nice = rest.split(' ').nth(16)?.parse().ok()?;
            Some((tid.parse().ok()?, name.to_string(), nice))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_table_is_compiled_on_a_low_priority_thread() {
    // A 200,000-row plan takes a second or more to load in a debug build: long enough to see
    // the loader thread in /proc while it works, and to check that it runs at nice 19 while the
    // rest of the process keeps the default priority.
    let dir = Dir::new();
    dir.write("plan.csv", &plan(1));
    let p = Running::start(&dir).await;
    p.serves(1).await;
    let mut big = plan(2);
    for i in 0..200_000 {
        big.push_str(&format!("/old/item-{i},/new/item-{i},301\n"));
    }
    let generation = p.metric(GENERATION).await;
    dir.write_atomic("plan.csv", &big);
    let pid = p.proxy.pid;
    let mut loader = None;
    let mut main = None;
    let deadline = std::time::Instant::now() + LIMIT;
    while p.metric(GENERATION).await <= generation {
        assert!(
            std::time::Instant::now() < deadline,
            "the big plan was never applied"
        );
        for (tid, name, nice) in threads(pid) {
            if name == "cutover-reload" {
                loader = Some(nice);
            } else if tid == pid {
                main = Some(nice);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    p.serves(2).await;
    assert_eq!(
        p.location("/old/item-199999").await.as_deref(),
        Some("/new/item-199999")
    );
    assert_eq!(
        loader,
        Some(19),
        "the reload ran on a nice-19 thread named cutover-reload"
    );
    // The priority it was started with: the test itself may run under `nice`.
    let own = std::process::id();
    let started_with = threads(own)
        .into_iter()
        .find(|(tid, _, _)| *tid == own)
        .map(|(_, _, nice)| nice);
    assert_eq!(
        main, started_with,
        "the main thread keeps the priority it was started with"
    );
    p.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_build_in_the_retired_tables_memory_and_give_it_back_when_quiet() {
    // Three versions of a 200,000-row plan (~25 MB of table). The first reload builds in fresh
    // memory (the startup table is still serving); the second builds in the memory of the
    // table the first one retired, which its log line says. Once reloads stop, that spare
    // memory is released (redirects::spare::KEEP, 10 s) and the process shrinks back.
    let big = |v: u32| {
        let mut s = plan(v);
        for i in 0..200_000 {
            s.push_str(&format!("/old/item-{i},/v{v}/item-{i},301\n"));
        }
        s
    };
    // The load line of version v (the v-th: every version has the same entry count).
    let reused_mb = |p: &Running, v: usize| {
        let loads: Vec<_> = p
            .proxy
            .log_lines()
            .into_iter()
            .filter_map(|l| l["reused_memory_mb"].as_u64())
            .collect();
        loads.get(v - 1).copied()
    };
    let dir = Dir::new();
    dir.write("plan.csv", &big(1));
    let p = Running::start(&dir).await;
    p.serves(1).await;
    let mut rss = 0;
    for v in [2, 3] {
        dir.write_atomic("plan.csv", &big(v));
        p.serves(v).await;
        // The retire job hands the replaced table over once no request holds it (it polls
        // every 100 ms) and logs it: one hand-over per reload.
        support::wait_for(
            "the replaced table kept for the next load",
            support::WAIT,
            || {
                let kept = p
                    .proxy
                    .log_lines()
                    .into_iter()
                    .filter(|l| l["kept_memory_mb"].as_u64().is_some())
                    .count();
                async move { kept >= (v - 1) as usize }
            },
        )
        .await;
        rss = p.proxy.memory_kib().1;
    }
    let log = p.proxy.log_text();
    assert_eq!(
        reused_mb(&p, 1),
        Some(0),
        "startup builds in fresh memory\n{log}"
    );
    assert_eq!(
        reused_mb(&p, 2),
        Some(0),
        "nothing retired yet at the first reload\n{log}"
    );
    assert!(
        reused_mb(&p, 3).is_some_and(|mb| mb >= 10),
        "the second reload built in the first one's retired table\n{log}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let quiet = loop {
        let now = p.proxy.memory_kib().1;
        if now + 12_000 < rss || std::time::Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        quiet + 12_000 < rss,
        "the spare memory was released once reloads stopped: {} MB after the reloads, {} MB later",
        rss >> 10,
        quiet >> 10
    );
    assert_eq!(
        p.location("/old/item-199999").await.as_deref(),
        Some("/v3/item-199999")
    );
    p.proxy.stop().await;
}
