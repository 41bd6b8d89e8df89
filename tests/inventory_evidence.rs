//! The new storefront's answers feed the inventory's coverage (issues 17 and 18), end to end on
//! the built binary with real storefronts on 127.0.0.1: a URL new serves on its own path reads
//! `same_path`, one new answers 404 and the 404 fallback serves from old reads
//! `fallback_served`, one new answers 404 without a fallback stays `uncovered`; the evidence
//! survives a restart through the inventory file.

mod support;

use std::net::SocketAddr;

use http::{Method, StatusCode};
use serde_json::Value;

use support::admin::admin;
use support::process::cli;
use support::redirects::config;
use support::stores::path_store;
use support::{get_new_conn, wait_for, ProxyProcess, TempConfig, SLOW_WAIT, WAIT};

/// Fallback on `/catalog` only; the inventory persisted beside the config.
const EXTRA: &str = r#"
[fallback]
statuses = [404]

[[route]]
name = "catalog"
path_prefix = "/catalog"
to = "split"
fallback = true

[inventory]
enabled = true
file = "inventory.txt"
persist_interval = "1h"
"#;

const OLD: &[(&str, &str)] = &[("x-side", "old")];

async fn coverage(admin_addr: SocketAddr) -> Value {
    let (s, b) = admin(admin_addr, Method::GET, "/inventory/coverage", None, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    serde_json::from_str(&b).unwrap()
}

fn verdict(report: &Value, url: &str) -> String {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["old_url"] == url)
        .map_or_else(
            || "absent".into(),
            |r| r["verdict"].as_str().unwrap().into(),
        )
}

/// Waits until every `(url, verdict)` holds (evidence is recorded when a response ends).
async fn wait_verdicts(admin_addr: SocketAddr, want: &[(&str, &str)]) -> Value {
    wait_for(
        "coverage verdicts from new's answers",
        WAIT,
        || async move {
            let r = coverage(admin_addr).await;
            want.iter()
                .all(|(url, v)| verdict(&r, url) == *v)
                .then_some(r)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_stores_answers_give_same_path_and_fallback_served_and_survive_a_restart() {
    let old = path_store("old", &[]).await;
    let new = path_store("new", &["/catalog/only-old", "/lost"]).await;
    // Every fresh shopper on new; `x-side: old` reaches old through a rule.
    let cfg = TempConfig::new(&config(old.addr, new.addr, 100.0, EXTRA));
    let mut p = ProxyProcess::spawn(cfg.path());

    for url in ["/same", "/catalog/only-old", "/lost", "/unseen"] {
        get_new_conn(p.addr, url, OLD).await;
    }
    let all_uncovered: Vec<(&str, &str)> = ["/same", "/catalog/only-old", "/lost", "/unseen"]
        .into_iter()
        .map(|u| (u, "uncovered"))
        .collect();
    wait_verdicts(p.admin, &all_uncovered).await;

    // Shoppers on new: its own page, a 404 the fallback answers from old, a 404 without a
    // fallback, and a page old never served (not an old-store URL: never inventoried).
    let same = get_new_conn(p.addr, "/same", &[]).await;
    assert_eq!(same.header("x-upstream").as_deref(), Some("new"));
    let fell_back = get_new_conn(p.addr, "/catalog/only-old", &[]).await;
    assert_eq!(fell_back.status, StatusCode::OK);
    assert_eq!(fell_back.header("x-upstream").as_deref(), Some("old"));
    assert_eq!(
        get_new_conn(p.addr, "/lost", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    get_new_conn(p.addr, "/only-on-new", &[]).await;

    let want = [
        ("/same", "same_path"),
        ("/catalog/only-old", "fallback_served"),
        ("/lost", "uncovered"),
        ("/unseen", "uncovered"),
    ];
    let report = wait_verdicts(p.admin, &want).await;
    assert_eq!(verdict(&report, "/only-on-new"), "absent", "{report}");
    // The fallback answer was old's: a hit; new's own answers are not.
    assert_eq!(report["hits"], 5, "{report}");
    assert_eq!(report["covered_hits"], 1, "{report}");

    let (s, csv) = admin(
        p.admin,
        Method::GET,
        "/inventory/coverage?format=csv",
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(csv.contains("/same,1,0,same_path,/same\n"), "{csv}");
    assert!(
        csv.contains("/catalog/only-old,2,0,fallback_served,\n"),
        "{csv}"
    );
    assert!(csv.contains("/lost,1,0,uncovered,\n"), "{csv}");

    let admin_arg = p.admin.to_string();
    let (code, out, err) = cli(cfg.dir(), &["inventory", "coverage", "--admin", &admin_arg]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("same_path 1"), "{out}");
    assert!(out.contains("fallback_served 1"), "{out}");
    assert!(
        out.contains("URLs covered:           25.0% (1 of 4)"),
        "{out}"
    );
    assert!(out.contains("/catalog/only-old  (fallback)"), "{out}");

    // The evidence is in the file written on drain, and read back at start.
    p.signal("TERM");
    assert!(p.wait_exit(SLOW_WAIT).await.is_some(), "{}", p.log_text());
    let file = std::fs::read_to_string(cfg.file("inventory.txt")).expect("saved on drain");
    assert!(
        file.contains("traffic+fallback_served\t-\t/catalog/only-old"),
        "{file}"
    );
    let p = ProxyProcess::spawn(cfg.path());
    let report = coverage(p.admin).await;
    for (url, v) in want {
        assert_eq!(verdict(&report, url), v, "{url} after a restart: {report}");
    }
    p.stop().await;
}
