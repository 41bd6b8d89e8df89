//! The redirect probation (issue 16) on the built binary: after the share reaches 100%,
//! 301/308/410 carry `Cache-Control: max-age` until the probation ends, then are served as
//! written; below 100% temporary answers are `no-store`. The fast path (the first requests of a
//! connection) and hyper (after a proxied request moved the connection there) answer the same.
//! The mark "100% since" survives a restart, is cleared below 100%, is shared by a fleet
//! through a real etcd, and a bad `[redirect_probation]` value is reported with file:line.

#[allow(dead_code)]
#[path = "fleet_etcd/server.rs"]
mod server;
mod support;
use support::ports;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::Value;
use server::EtcdServer;
use support::admin::{admin, status, try_status};
use support::metrics::{metric, scrape};
use support::process::check;
use support::raw::{self, RawResp};
use support::redirects::{config, PLAN_TABLE};
use support::stores::{path_store, PathStore};
use support::{wait_for, Dir, ProxyProcess, TempConfig, SLOW_WAIT};

const PLAN: &str = "old_url,new_url,status
/old-lamp,/products/lamp,301
/old-sale,/collections/sale,308
/removed,,410
";

/// A generous bound for waits that span a probation of seconds on a loaded machine.
const PROBATION_WAIT: Duration = Duration::from_secs(90);

struct Shop {
    dir: Dir,
    config: std::path::PathBuf,
    _old: PathStore,
    _new: PathStore,
}

impl Shop {
    async fn new(share: f64, probation: &str) -> Shop {
        let old = path_store("old", &[]).await;
        let new = path_store("new", &[]).await;
        let dir = Dir::new();
        dir.write("plan.csv", PLAN);
        let text = config(
            old.addr,
            new.addr,
            share,
            &format!("{PLAN_TABLE}\n[redirect_probation]\n{probation}\n"),
        );
        let config = dir.write("cutover.toml", &text);
        Shop {
            dir,
            config,
            _old: old,
            _new: new,
        }
    }

    fn state_file(&self) -> Value {
        let text = std::fs::read_to_string(self.dir.path("cutover.toml.state.json"))
            .expect("the state file");
        serde_json::from_str(&text).unwrap()
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\nx-side: new\r\n\r\n")
}

/// `path` asked twice on one connection: first answered by the fast path, then (after a
/// proxied page moved the connection to hyper) by hyper. Returns both answers.
async fn both_paths(addr: SocketAddr, path: &str) -> (RawResp, RawResp) {
    let bytes = format!(
        "{}{}{}",
        get(path),
        get("/a-page"),
        get(path).replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")
    );
    let (mut got, _) = raw::exchange(addr, bytes.as_bytes()).await;
    assert_eq!(got.len(), 3, "{got:#?}");
    assert_eq!(got[1].status, 200, "the page in between: {:?}", got[1]);
    let hyper = got.pop().unwrap();
    (got.swap_remove(0), hyper)
}

/// Asserts `path` answers `status` with `cache_control` on both paths.
async fn answers(addr: SocketAddr, path: &str, status: u16, cache_control: Option<&str>) {
    let (front, hyper) = both_paths(addr, path).await;
    for (which, r) in [("fast path", &front), ("hyper", &hyper)] {
        assert_eq!(
            (r.status, r.header("cache-control")),
            (status, cache_control),
            "{path} on the {which}: {r:?}"
        );
    }
}

fn probation(st: &Value) -> &Value {
    &st["redirect_probation"]
}

async fn shift(admin_addr: SocketAddr, share: u32) {
    let (s, b) = admin(
        admin_addr,
        Method::PUT,
        "/admin/split",
        None,
        Some(&format!(r#"{{"new_share": {share}}}"#)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

async fn ends_gauge(admin_addr: SocketAddr) -> Option<f64> {
    metric(
        &scrape(admin_addr).await,
        "cutover_redirect_probation_ends_timestamp_seconds",
    )
}

/// Waits until the unix clock has moved past second `at`, so a mark taken now would differ.
async fn clock_past(at: u64) {
    wait_for("the clock past the mark", SLOW_WAIT, || async {
        support::unix_now() > at
    })
    .await;
}

async fn restart(p: &mut ProxyProcess, config: &Path) -> ProxyProcess {
    p.signal("TERM");
    assert!(
        p.wait_exit(SLOW_WAIT).await.is_some(),
        "the first process exits"
    );
    ProxyProcess::spawn(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_redirects_carry_max_age_during_probation_across_a_restart_until_below_100() {
    let shop = Shop::new(100.0, "period = \"1h\"\nmax_age = \"10m\"").await;
    let mut p = ProxyProcess::spawn(&shop.config);

    // The file says 100% at first start: the probation starts with the process.
    let st = status(p.admin).await;
    let started = probation(&st)["started_at"].as_u64().expect("started");
    assert_eq!(probation(&st)["ends_at"].as_u64(), Some(started + 3600));
    assert_eq!(probation(&st)["in_force"], true);
    assert!(probation(&st)["ends_at_rfc3339"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert_eq!(ends_gauge(p.admin).await, Some((started + 3600) as f64));
    assert_eq!(shop.state_file()["full_share_since"], started);
    for (path, code) in [("/old-lamp", 301), ("/old-sale", 308), ("/removed", 410)] {
        answers(p.addr, path, code, Some("max-age=600")).await;
    }

    // A restart a second or more later continues the same probation (a new one would start at
    // the restart's second).
    clock_past(started).await;
    let mut second = restart(&mut p, &shop.config).await;
    let st = status(second.admin).await;
    assert_eq!(probation(&st)["started_at"], started, "{st:#}");
    answers(second.addr, "/old-lamp", 301, Some("max-age=600")).await;

    // Below 100%: temporary and no-store on both paths, the mark cleared everywhere.
    shift(second.admin, 50).await;
    answers(second.addr, "/old-lamp", 302, Some("no-store")).await;
    answers(second.addr, "/old-sale", 307, Some("no-store")).await;
    answers(second.addr, "/removed", 410, Some("no-store")).await;
    let st = status(second.admin).await;
    assert!(probation(&st)["started_at"].is_null(), "{st:#}");
    assert_eq!(probation(&st)["in_force"], false);
    assert_eq!(ends_gauge(second.admin).await, Some(0.0));
    assert!(shop.state_file().get("full_share_since").is_none());

    // 100% again: a new probation (the old mark was cleared above).
    shift(second.admin, 100).await;
    let st = status(second.admin).await;
    let again = probation(&st)["started_at"].as_u64().expect("a new start");
    assert!(again >= started);
    answers(second.addr, "/old-lamp", 301, Some("max-age=600")).await;

    // And the text status says so.
    let out = std::process::Command::new(support::process::binary())
        .args(["status", "--admin", &second.admin.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("probation   until") && text.contains("max-age=600"),
        "{text}"
    );

    // A file change drops the overrides (the file wins) but not the mark: the file says 100%
    // too, so 100% was not reached again. Across a restart as well.
    clock_past(again).await;
    let edited = std::fs::read_to_string(&shop.config).unwrap() + "\n# edited\n";
    support::dir::replace_atomically(&shop.config, &edited);
    wait_for("the edited file in force", SLOW_WAIT, || async {
        status(second.admin).await["overrides"].is_null()
    })
    .await;
    assert_eq!(probation(&status(second.admin).await)["started_at"], again);
    let third = restart(&mut second, &shop.config).await;
    let st = status(third.admin).await;
    assert_eq!(probation(&st)["started_at"], again, "{st:#}");
    assert_eq!(st["split"]["new_share"], 100.0);
    assert!(st["state_file_error"].is_null(), "{st:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_probation_permanent_redirects_are_served_as_written() {
    let shop = Shop::new(100.0, "period = \"2s\"\nmax_age = \"1s\"").await;
    let p = ProxyProcess::spawn(&shop.config);
    let st = status(p.admin).await;
    let started = probation(&st)["started_at"].as_u64().expect("started");

    wait_for(
        "301 without Cache-Control on both paths",
        PROBATION_WAIT,
        || async {
            let (front, hyper) = both_paths(p.addr, "/old-lamp").await;
            !front.has("cache-control") && !hyper.has("cache-control")
        },
    )
    .await;
    answers(p.addr, "/old-lamp", 301, None).await;
    answers(p.addr, "/removed", 410, None).await;
    let st = status(p.admin).await;
    assert_eq!(probation(&st)["in_force"], false, "{st:#}");
    assert_eq!(
        probation(&st)["started_at"],
        started,
        "the mark stays at 100%"
    );
    assert_eq!(probation(&st)["ends_at"], started + 2);
    assert_eq!(ends_gauge(p.admin).await, Some((started + 2) as f64));
}

/// A state file that cannot be written: the probation runs all the same, and the status says
/// it will not survive a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_state_file_is_reported_and_the_probation_still_runs() {
    let shop = Shop::new(100.0, "max_age = \"10m\"").await;
    let text = std::fs::read_to_string(&shop.config).unwrap().replace(
        "[admin]\n",
        "[admin]\nstate_file = \"not-a-directory/state.json\"\n",
    );
    std::fs::write(&shop.config, text).unwrap();
    let p = ProxyProcess::spawn(&shop.config);
    let st = status(p.admin).await;
    assert!(
        st["state_file_error"]
            .as_str()
            .is_some_and(|e| e.contains("redirect probation mark will not survive a restart")),
        "{st:#}"
    );
    assert!(probation(&st)["started_at"].is_u64(), "{st:#}");
    answers(p.addr, "/old-lamp", 301, Some("max-age=600")).await;
}

#[test]
fn bad_probation_values_are_reported_with_file_and_line() {
    let head = "[[listener]]\naddress = \"127.0.0.1:0\"\n[storefront.old]\nupstream = \"http://127.0.0.1:1\"\n[storefront.new]\nupstream = \"http://127.0.0.1:2\"\n[redirect_probation]\n";
    for (body, line, words) in [
        ("period = \"14 days\"\n", 8, "unknown unit `days`"),
        ("max_age = \"1500ms\"\n", 8, "whole seconds"),
        (
            "period = \"1h\"\nmax_age = \"2h\"\n",
            9,
            "longer than the probation",
        ),
        ("maxage = \"1d\"\n", 8, "maxage"),
    ] {
        let cfg = TempConfig::new(&format!("{head}{body}"));
        let (code, _, stderr) = check(cfg.path());
        assert_ne!(code, 0, "{body}");
        let at = format!("{}:{line}:", cfg.path().display());
        assert!(
            stderr
                .lines()
                .any(|l| l.trim_start().starts_with(&at) && l.contains(words)),
            "{body}: no `{words}` at {at}:\n{stderr}"
        );
    }
}

/// Two replicas sharing operator state through a real etcd agree on the probation's start,
/// also after one restarts, and both clear it when the share goes below 100%.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_shares_one_probation() {
    let Some(etcd) = EtcdServer::start() else {
        eprintln!("etcd not installed: skipped");
        return;
    };
    let shop = Shop::new(20.0, "period = \"1h\"\nmax_age = \"10m\"").await;
    let fleet = |id: &str| {
        format!(
            "\n[fleet]\netcd = [\"{}\"]\nprefix = \"/cutover/probation\"\nid = \"{id}\"\n\
             lease_ttl = \"3s\"\nstart_timeout = \"3s\"\nrequest_timeout = \"1s\"\n",
            etcd.endpoint()
        )
    };
    let base = std::fs::read_to_string(&shop.config).unwrap();
    let a_cfg = shop.dir.write("a.toml", &(base.clone() + &fleet("a")));
    let b_cfg = shop.dir.write("b.toml", &(base + &fleet("b")));
    let a = ProxyProcess::spawn(&a_cfg);
    let mut b = ProxyProcess::spawn(&b_cfg);

    let start_of = |addr: SocketAddr| async move {
        try_status(addr)
            .await
            .and_then(|st| probation(&st)["started_at"].as_u64())
    };
    shift(a.admin, 100).await;
    let agreed = wait_for(
        "both replicas on one probation start",
        SLOW_WAIT,
        || async {
            match (start_of(a.admin).await, start_of(b.admin).await) {
                (Some(x), Some(y)) if x == y => Some(x),
                _ => None,
            }
        },
    )
    .await;
    answers(b.addr, "/old-lamp", 301, Some("max-age=600")).await;

    // B restarts a second or more later without its state file: the fleet's mark is its only
    // source, computing its own would give a later start.
    clock_past(agreed).await;
    b.signal("TERM");
    assert!(b.wait_exit(SLOW_WAIT).await.is_some());
    std::fs::remove_file(shop.dir.path("b.toml.state.json")).expect("b's state file");
    let b2 = ProxyProcess::spawn(&b_cfg);
    wait_for(
        "the restarted replica on the fleet's start",
        SLOW_WAIT,
        || async { start_of(b2.admin).await == Some(agreed) },
    )
    .await;
    assert_eq!(start_of(a.admin).await, Some(agreed));

    // Below 100% from the other replica: both clear it.
    shift(b2.admin, 90).await;
    wait_for("both replicas without a probation", SLOW_WAIT, || async {
        let (x, y) = (try_status(a.admin).await, try_status(b2.admin).await);
        [x, y].iter().all(|st| {
            st.as_ref()
                .is_some_and(|st| probation(st)["started_at"].is_null())
        })
    })
    .await;
    answers(a.addr, "/old-lamp", 302, Some("no-store")).await;
}
