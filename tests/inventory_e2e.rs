//! The URL inventory end to end, on the built binary: real storefronts on 127.0.0.1, the admin
//! API, the CLI, signals and real files.

mod support;

use std::net::SocketAddr;

use http::{Method, StatusCode};
use serde_json::Value;

use support::admin::admin;
use support::metrics::{metric, scrape};
use support::process::{check, cli};
use support::redirects::{config, PLAN_TABLE};
use support::stores::path_store;
use support::{get_new_conn, wait_for, ProxyProcess, TempConfig, SLOW_WAIT, WAIT};

/// The plan: a redirect, a chain (collapsed to its end), a 410.
const PLAN: &str =
    "old_url,new_url,status\n/old-shoes,/shoes,301\n/a,/b,301\n/b,/c,301\n/discontinued,,410\n";

/// `[inventory]` persisted beside the config, and a rule keeping /help on old.
const EXTRA: &str = r#"
[[route]]
name = "help"
path_prefix = "/help"
to = "old"

[inventory]
enabled = true
file = "inventory.txt"
persist_interval = "1h"
"#;

/// Writes the config (all shoppers on old) and its plan, and starts the binary.
fn start(old: SocketAddr, new: SocketAddr, plan: &str) -> (TempConfig, ProxyProcess) {
    let text = config(old, new, 0.0, &format!("{PLAN_TABLE}{EXTRA}"));
    let cfg = TempConfig::new(&text);
    std::fs::write(cfg.file("plan.csv"), plan).unwrap();
    let p = ProxyProcess::spawn(cfg.path());
    (cfg, p)
}

async fn get(addr: SocketAddr, path: &str, times: usize, headers: &[(&str, &str)]) {
    for _ in 0..times {
        get_new_conn(addr, path, headers).await;
    }
}

async fn inventory(admin_addr: SocketAddr) -> Value {
    let (s, b) = admin(admin_addr, Method::GET, "/inventory", None, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    serde_json::from_str(&b).unwrap()
}

async fn coverage(admin_addr: SocketAddr) -> Value {
    let (s, b) = admin(admin_addr, Method::GET, "/inventory/coverage", None, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    serde_json::from_str(&b).unwrap()
}

/// Waits until the inventory holds `n` URLs (a request is counted when its response ends).
async fn wait_urls(admin_addr: SocketAddr, n: u64) -> Value {
    wait_for("the inventory to count the traffic", WAIT, || async move {
        let v = inventory(admin_addr).await;
        (v["stats"]["urls"].as_u64() == Some(n)).then_some(v)
    })
    .await
}

fn row<'a>(report: &'a Value, url: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["old_url"] == url)
        .unwrap_or_else(|| panic!("no row for {url}: {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_store_traffic_builds_the_inventory_with_one_verdict_per_kind() {
    let old = path_store("old", &["/missing"]).await;
    let new = path_store("new", &["/c"]).await;
    let (cfg, p) = start(old.addr, new.addr, PLAN);
    let a = p.addr;
    get(a, "/old-shoes", 2, &[]).await;
    get(
        a,
        "/old-shoes",
        1,
        &[("user-agent", "Mozilla/5.0 (compatible; Googlebot/2.1)")],
    )
    .await;
    get(a, "/a", 2, &[]).await;
    get(a, "/discontinued", 1, &[]).await;
    get(a, "/help/faq", 1, &[]).await;
    get(a, "/unmapped", 4, &[]).await;
    // Not inventoried: a 404 on old, a request routed to new, a POST.
    get(a, "/missing", 5, &[]).await;
    get(a, "/on-new", 3, &[("x-side", "new")]).await;
    support::admin::request_fresh(a, Method::POST, "/posted", &[], None)
        .await
        .unwrap();

    let inv = wait_urls(p.admin, 5).await;
    let urls: Vec<&str> = inv["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["url"].as_str().unwrap())
        .collect();
    assert_eq!(urls[0], "/unmapped", "most hits first: {inv}");
    for absent in ["/missing", "/on-new", "/posted"] {
        assert!(
            !urls.contains(&absent),
            "{absent} must not be inventoried: {inv}"
        );
    }

    let report = coverage(p.admin).await;
    let shoes = row(&report, "/old-shoes");
    assert_eq!(shoes["verdict"], "redirected");
    assert_eq!(shoes["new_url"], "/shoes");
    assert_eq!(shoes["status"], 301);
    assert_eq!(shoes["hits"], 3);
    assert_eq!(shoes["crawler_hits"], 1);
    assert_eq!(
        row(&report, "/a")["new_url"],
        "/c",
        "chain collapsed: {report}"
    );
    assert_eq!(row(&report, "/discontinued")["verdict"], "gone");
    assert_eq!(row(&report, "/help/faq")["verdict"], "kept_on_old");
    assert_eq!(row(&report, "/unmapped")["verdict"], "uncovered");
    assert_eq!(report["hits"], 11);
    assert_eq!(report["covered_hits"], 7);
    assert_eq!(report["new_storefront"], format!("http://{}", new.addr));

    let (s, csv) = admin(
        p.admin,
        Method::GET,
        "/inventory/coverage?format=csv",
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("old_url,hits,crawler_hits,verdict,new_url")
    );
    assert!(csv.contains("/unmapped,4,0,uncovered,\n"), "{csv}");
    assert!(csv.contains("/old-shoes,3,1,redirected,/shoes\n"), "{csv}");

    // The CLI: the human table, and a CSV file.
    let admin_arg = p.admin.to_string();
    let csv_file = cfg.file("coverage.csv");
    let (code, out, err) = cli(
        cfg.dir(),
        &[
            "inventory",
            "coverage",
            "--admin",
            &admin_arg,
            "--csv",
            csv_file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("old-store hits covered: 63.6% (7 of 11)"),
        "{out}"
    );
    assert!(
        out.contains("URLs covered:           80.0% (4 of 5)"),
        "{out}"
    );
    assert!(out.contains("uncovered 1"), "{out}");
    assert!(out.contains("/unmapped"), "{out}");
    let written = std::fs::read_to_string(&csv_file).unwrap();
    assert!(written.contains("/unmapped,4,0,uncovered,"), "{written}");

    // --probe: new answers 404 for /c (so /a is not covered) and 200 for /unmapped (same path).
    let (code, out, err) = cli(
        cfg.dir(),
        &["inventory", "coverage", "--probe", "--admin", &admin_arg],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("probing the new storefront: "), "{err}");
    assert!(out.contains("/c: 404"), "{out}");
    assert!(out.contains("same_path 1"), "{out}");
    assert!(
        out.contains("old-store hits covered: 81.8% (9 of 11)"),
        "{out}"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_reload_changes_coverage_without_a_restart() {
    let old = path_store("old", &[]).await;
    let new = path_store("new", &[]).await;
    let (cfg, p) = start(old.addr, new.addr, PLAN);
    get(p.addr, "/unmapped", 3, &[]).await;
    get(p.addr, "/old-shoes", 1, &[]).await;
    wait_urls(p.admin, 2).await;
    assert_eq!(
        row(&coverage(p.admin).await, "/unmapped")["verdict"],
        "uncovered"
    );

    std::fs::write(
        cfg.file("plan.csv"),
        format!("{PLAN}/unmapped,/a-new-home,301\n"),
    )
    .unwrap();
    let (s, b) = admin(p.admin, Method::POST, "/admin/reload", None, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let report = coverage(p.admin).await;
    let r = row(&report, "/unmapped");
    assert_eq!(r["verdict"], "redirected", "{report}");
    assert_eq!(r["new_url"], "/a-new-home");
    assert_eq!(r["hits"], 3, "counts survive the reload");

    // The gauges follow the reload, off the request path.
    let admin_addr = p.admin;
    wait_for("coverage gauges after the reload", WAIT, || async move {
        let page = scrape(admin_addr).await;
        (metric(&page, r#"cutover_inventory_coverage_ratio{table="(all)"}"#) == Some(1.0)
            && metric(&page, r#"cutover_inventory_coverage_ratio{table="plan"}"#) == Some(1.0)
            && metric(&page, "cutover_inventory_urls") == Some(2.0))
        .then_some(())
    })
    .await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inventory_file_survives_a_restart() {
    let old = path_store("old", &[]).await;
    let new = path_store("new", &[]).await;
    let (cfg, mut p) = start(old.addr, new.addr, PLAN);
    get(p.addr, "/kept-across", 3, &[]).await;
    wait_urls(p.admin, 1).await;
    p.signal("TERM");
    assert!(p.wait_exit(SLOW_WAIT).await.is_some(), "{}", p.log_text());
    let file = std::fs::read_to_string(cfg.file("inventory.txt")).expect("saved on drain");
    assert!(file.contains("/kept-across"), "{file}");

    let p = ProxyProcess::spawn(cfg.path());
    let inv = inventory(p.admin).await;
    assert_eq!(inv["persistence"]["load"], "restored", "{inv}");
    let (_, b) = admin(p.admin, Method::GET, "/admin/status", None, None).await;
    let status: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(status["inventory"]["load"], "restored", "{status}");
    assert_eq!(status["inventory"]["urls"], 1, "{status}");
    assert!(status["inventory"]["load_warning"].is_null(), "{status}");
    assert_eq!(inv["entries"][0]["url"], "/kept-across");
    assert_eq!(inv["entries"][0]["hits"], 3);
    get(p.addr, "/kept-across", 1, &[]).await;
    let admin_addr = p.admin;
    wait_for("the restored URL to count on", WAIT, || async move {
        (inventory(admin_addr).await["entries"][0]["hits"] == 4).then_some(())
    })
    .await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_written_file_starts_empty_with_a_warning() {
    let old = path_store("old", &[]).await;
    let new = path_store("new", &[]).await;
    let text = config(old.addr, new.addr, 0.0, &format!("{PLAN_TABLE}{EXTRA}"));
    let cfg = TempConfig::new(&text);
    std::fs::write(cfg.file("plan.csv"), PLAN).unwrap();
    // The first line and half an entry: what a crash mid-write without a rename would leave.
    std::fs::write(
        cfg.file("inventory.txt"),
        "cutover-inventory 1 entries=2\n120\t0\t40\t1767225600\t1767312000\t200\ttraf",
    )
    .unwrap();
    let mut p = ProxyProcess::spawn(cfg.path());
    let warned = p
        .wait_log(|v| {
            v["level"] == "WARN"
                && v.to_string().contains("inventory.txt")
                && v.to_string().contains("starting with an empty inventory")
        })
        .await;
    assert!(warned.is_some(), "no warning in the log:\n{}", p.log_text());
    let inv = inventory(p.admin).await;
    assert_eq!(inv["stats"]["urls"], 0);
    assert_eq!(inv["persistence"]["load"], "started_empty");
    let warning = inv["persistence"]["load_warning"].as_str().unwrap();
    assert!(warning.contains("inventory.txt"), "{warning}");
    assert!(
        cfg.file("inventory.txt.bad").exists(),
        "the bad file is kept aside"
    );
    let page = scrape(p.admin).await;
    assert_eq!(metric(&page, "cutover_inventory_load_failed"), Some(1.0));
    // The status says so too, for as long as the process runs: its JSON and `cutover status`.
    let (s, b) = admin(p.admin, Method::GET, "/admin/status", None, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let status: Value = serde_json::from_str(&b).unwrap();
    let inv_status = &status["inventory"];
    assert_eq!(inv_status["load"], "started_empty", "{status}");
    let file = cfg.file("inventory.txt").display().to_string();
    assert_eq!(inv_status["file"], file.as_str(), "{status}");
    let reason = inv_status["load_warning"].as_str().unwrap();
    assert!(reason.contains(&file), "{reason}");
    assert!(reason.contains("half-written"), "{reason}");
    let (code, out, err) = cli(cfg.dir(), &["status", "--admin", &p.admin.to_string()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "inventory   0 of 100000 URLs; file {file} REJECTED at start\n"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "WARNING     URL inventory started empty: {reason}"
        )),
        "{out}"
    );
    // It still serves and counts.
    get(p.addr, "/after", 1, &[]).await;
    wait_urls(p.admin, 1).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sitemaps_import_into_the_running_proxy_and_a_malformed_one_imports_nothing() {
    let old = path_store("old", &[]).await;
    let new = path_store("new", &[]).await;
    let (cfg, p) = start(old.addr, new.addr, PLAN);
    let admin_arg = p.admin.to_string();
    std::fs::write(
        cfg.file("sitemap.xml"),
        "<?xml version=\"1.0\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n\
         <url><loc>https://old.example/old-shoes</loc></url>\n\
         <url><loc>https://old.example/only-in-sitemap</loc></url>\n</urlset>\n",
    )
    .unwrap();
    std::fs::write(
        cfg.file("broken.xml"),
        "<urlset><url><loc>/x</loc></urlset>",
    )
    .unwrap();

    let (code, out, err) = cli(
        cfg.dir(),
        &[
            "inventory",
            "import-sitemap",
            "broken.xml",
            "--admin",
            &admin_arg,
        ],
    );
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("nothing imported") && err.contains("broken.xml"),
        "{err}"
    );
    assert_eq!(inventory(p.admin).await["stats"]["urls"], 0);

    let (code, out, err) = cli(
        cfg.dir(),
        &[
            "inventory",
            "import-sitemap",
            "sitemap.xml",
            "--admin",
            &admin_arg,
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("imported 2 URLs"), "{out}");
    let report = coverage(p.admin).await;
    assert_eq!(row(&report, "/only-in-sitemap")["verdict"], "uncovered");
    assert_eq!(row(&report, "/only-in-sitemap")["in_sitemap"], true);
    assert_eq!(row(&report, "/old-shoes")["verdict"], "redirected");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_section_the_endpoints_say_how_to_turn_it_on() {
    let old = path_store("old", &[]).await;
    let new = path_store("new", &[]).await;
    let cfg = TempConfig::new(&config(old.addr, new.addr, 0.0, ""));
    let p = ProxyProcess::spawn(cfg.path());
    get(p.addr, "/x", 1, &[]).await;
    let (s, b) = admin(p.admin, Method::GET, "/inventory/coverage", None, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(b.contains("[inventory]"), "{b}");
    assert!(!scrape(p.admin).await.contains("cutover_inventory_"));
    p.stop().await;
}

#[test]
fn a_bad_section_is_reported_with_its_line_by_check() {
    let cfg = TempConfig::new(&config(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
        0.0,
        "\n[inventory]\nenabled = true\ncapacity = 0\npersist_interval = \"10ms\"\n",
    ));
    let (code, out, err) = check(cfg.path());
    assert_eq!(code, 1, "{out}\n{err}");
    let all = format!("{out}{err}");
    let line = all
        .lines()
        .find(|l| l.contains("inventory.capacity"))
        .unwrap_or_else(|| panic!("{all}"));
    assert!(
        line.contains("cutover.toml:") || line.contains(".toml:"),
        "{line}"
    );
    assert!(all.contains("inventory.persist_interval"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_random_urls_stays_within_capacity_and_heavy_hitters_stay() {
    let old = path_store("old", &[]).await;
    let new = path_store("new", &[]).await;
    let extra = format!("{PLAN_TABLE}\n[inventory]\nenabled = true\ncapacity = 32\n");
    let cfg = TempConfig::new(&config(old.addr, new.addr, 0.0, &extra));
    std::fs::write(cfg.file("plan.csv"), PLAN).unwrap();
    let p = ProxyProcess::spawn(cfg.path());
    // Space-Saving keeps any URL with more than N/K hits: 60 of ~80 in /heavy's shard of 2 slots.
    get(p.addr, "/heavy", 60, &[]).await;
    for i in 0..300 {
        get(p.addr, &format!("/scan/{i:x}"), 1, &[]).await;
    }
    let admin_addr = p.admin;
    let inv = wait_for("the flood to be counted", WAIT, || async move {
        let v = inventory(admin_addr).await;
        let e = v["entries"].as_array().unwrap();
        (e.iter().any(|e| e["url"] == "/scan/12b")
            || e.iter().map(|e| e["hits"].as_u64().unwrap()).sum::<u64>() >= 360)
            .then_some(v)
    })
    .await;
    let capacity = inv["stats"]["capacity"].as_u64().unwrap();
    assert!((32..=48).contains(&capacity), "{inv}");
    assert!(inv["stats"]["urls"].as_u64().unwrap() <= capacity, "{inv}");
    assert_eq!(inv["entries"][0]["url"], "/heavy", "{inv}");
    assert_eq!(inv["entries"][0]["hits"], 60);
    assert_eq!(inv["entries"][0]["hits_error"], 0);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_turns_recording_off_and_on_and_the_counts_go_on() {
    let old = path_store("old", &[]).await;
    let new = path_store("new", &[]).await;
    let (cfg, p) = start(old.addr, new.addr, PLAN);
    let on = std::fs::read_to_string(cfg.path()).unwrap();
    let reload = |text: String| {
        let (path, admin_addr) = (cfg.path().to_path_buf(), p.admin);
        async move {
            std::fs::write(&path, text).unwrap();
            let (s, b) = admin(admin_addr, Method::POST, "/admin/reload", None, None).await;
            assert_eq!(s, StatusCode::OK, "{b}");
        }
    };
    get(p.addr, "/x", 2, &[]).await;
    wait_urls(p.admin, 1).await;
    reload(on.replace(
        "[inventory]\nenabled = true",
        "[inventory]\nenabled = false",
    ))
    .await;
    get(p.addr, "/x", 3, &[]).await;
    get(p.addr, "/while-off", 1, &[]).await;
    reload(on.clone()).await;
    get(p.addr, "/after", 1, &[]).await;
    let inv = wait_urls(p.admin, 2).await;
    let hits = |url: &str| {
        inv["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["url"] == url)
            .map(|e| e["hits"].as_u64().unwrap())
    };
    assert_eq!(hits("/x"), Some(2), "not counted while off: {inv}");
    assert_eq!(hits("/while-off"), None, "{inv}");
    assert_eq!(hits("/after"), Some(1), "{inv}");
    p.stop().await;
}
