//! Issue 4, "Tests": reload metrics move on applied and rejected reloads, through a config file
//! rewritten under a running proxy (in process) and through SIGHUP to the real binary.
// The `no-metrics` benchmark baseline records nothing per request.
#![cfg(not(feature = "no-metrics"))]

mod support;

use std::net::SocketAddr;

use http::StatusCode;
use support::metrics::*;
use support::process::{signal, ProxyProcess};
use support::wait::bounded;
use support::HttpClient;

const APPLIED: &[(&str, &str)] = &[("result", "applied")];
const REJECTED: &[(&str, &str)] = &[("result", "rejected")];
const RELOADS: &str = "cutover_config_reloads_total";
const GENERATION: &str = "cutover_config_generation";
const SUCCESSFUL: &str = "cutover_config_last_reload_successful";
const TIMESTAMP: &str = "cutover_config_last_reload_success_timestamp_seconds";

/// (applied, rejected, generation, last successful)
fn reloads(s: &Scrape) -> (f64, f64, f64, f64) {
    (
        s.value(RELOADS, APPLIED),
        s.value(RELOADS, REJECTED),
        s.value(GENERATION, &[]),
        s.value(SUCCESSFUL, &[]),
    )
}

/// Scrapes until (applied, rejected, generation, last successful) is exactly `want`. A scrape is
/// not atomic across metrics (one taken while a reload publishes can mix before and after), so the
/// whole tuple is waited for, never one field and then the rest. Panics with the last scrape.
/// Returns a fresh scrape taken after that: `reload::publish` counts the reload last, so by then
/// everything else the reload publishes (share, sides, tables, retired labels) is in place.
async fn reached(c: &HttpClient, admin: SocketAddr, want: (f64, f64, f64, f64)) -> Scrape {
    scrape_until(c, admin, &format!("reload metrics {want:?}"), |s| {
        reloads(s) == want
    })
    .await;
    let s = Scrape::fetch(c, admin).await;
    assert_eq!(reloads(&s), want, "reload metrics moved on their own");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_metrics_move_when_the_config_file_changes() {
    let StatusShop { old, new, cfg } = StatusShop::new(50.0, "").await;
    let app = cutover::app::start(cfg.path()).await.expect("proxy starts");
    let (proxy, admin) = (app.addresses[0], app.admin_address.expect("admin on"));
    let c = HttpClient::new();

    let s = Scrape::fetch(&c, admin).await;
    assert_eq!(
        reloads(&s),
        (1.0, 0.0, 1.0, 1.0),
        "the startup load is applied"
    );
    assert_eq!(s.value("cutover_split_new_share_ratio", &[]), 0.5);
    let ts1 = s.value(TIMESTAMP, &[]);
    assert!(ts1 > 0.0);
    assert_eq!(
        s.value("cutover_redirect_table_generation", &[("table", "plan")]),
        1.0
    );
    let a = c.get(proxy, "/help/x", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    scrape_until(&c, admin, "help request counted", |s| {
        s.sum("cutover_requests_total", &[("route", "help")]) == 1.0
    })
    .await;

    // Applied: share 50% -> 25%, route `help` renamed `support`.
    let renamed = config(&old, &new, 25.0, "").replace("name = \"help\"", "name = \"support\"");
    cfg.rewrite(&renamed);
    let s = reached(&c, admin, (2.0, 0.0, 2.0, 1.0)).await;
    assert_eq!(s.value("cutover_split_new_share_ratio", &[]), 0.25);
    assert!(s.value(TIMESTAMP, &[]) >= ts1);
    // The renamed route's old label is gone, the new one is there from the first scrape.
    assert_eq!(
        s.matching("cutover_requests_total", &[("route", "help")])
            .count(),
        0
    );
    assert_eq!(
        s.matching(
            "cutover_request_duration_seconds_count",
            &[("route", "help")]
        )
        .count(),
        0
    );
    assert!(
        s.matching("cutover_requests_total", &[("route", "support")])
            .count()
            > 0
    );
    // The unchanged redirect table was reused, not reloaded.
    assert_eq!(
        s.value("cutover_redirect_table_generation", &[("table", "plan")]),
        1.0
    );

    // A changed redirect table is a reload too, and its metrics follow.
    std::fs::write(
        cfg.file("redirects.csv"),
        format!("{REDIRECTS_CSV}/older-page,/new-page,301\n"),
    )
    .expect("write redirects");
    let s = reached(&c, admin, (3.0, 0.0, 3.0, 1.0)).await;
    assert_eq!(
        s.value("cutover_redirect_table_entries", &[("table", "plan")]),
        2.0
    );
    assert_eq!(
        s.value("cutover_redirect_table_generation", &[("table", "plan")]),
        3.0
    );

    // Rejected: an impossible share. The running config stays, and so do its metrics.
    cfg.rewrite(&config(&old, &new, 150.0, ""));
    let s = reached(&c, admin, (3.0, 1.0, 3.0, 0.0)).await;
    assert_eq!(s.value("cutover_split_new_share_ratio", &[]), 0.25);
    let a = c.get(proxy, "/help/x", &[]).await;
    assert_eq!(
        (a.status, a.storefront(), a.header("x-seen-reason")),
        (StatusCode::OK, "old", "rule"),
        "still serving generation 3"
    );
    scrape_until(&c, admin, "counted under the renamed route", |s| {
        s.sum(
            "cutover_requests_total",
            &[("route", "support"), ("reason", "rule")],
        ) == 1.0
    })
    .await;

    // Fixed again: applied, successful.
    cfg.rewrite(&config(&old, &new, 75.0, ""));
    let s = reached(&c, admin, (4.0, 1.0, 4.0, 1.0)).await;
    assert_eq!(s.value("cutover_split_new_share_ratio", &[]), 0.75);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_binary_and_the_metrics_say_so() {
    let StatusShop {
        old: _old,
        new: _new,
        cfg,
    } = StatusShop::new(50.0, "").await;
    let proc = ProxyProcess::spawn(cfg.path());
    let admin = proc.admin;
    let pid = proc.pid;
    let c = HttpClient::new();

    reached(&c, admin, (1.0, 0.0, 1.0, 1.0)).await;

    // SIGHUP with the file unchanged: re-read and applied as a new generation.
    assert!(signal(pid, "HUP"), "kill -HUP {pid}");
    reached(&c, admin, (2.0, 0.0, 2.0, 1.0)).await;

    // A broken file is rejected by the file watcher; SIGHUP re-reads it and rejects it again.
    cfg.rewrite("this is = not [valid toml\n");
    reached(&c, admin, (2.0, 1.0, 2.0, 0.0)).await;
    assert!(signal(pid, "HUP"), "kill -HUP {pid}");
    reached(&c, admin, (2.0, 2.0, 2.0, 0.0)).await;
    let a = c.get(admin, "/readyz", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "a rejected reload keeps serving");

    // SIGTERM drains and exits cleanly.
    assert!(signal(pid, "TERM"), "kill -TERM {pid}");
    let mut proc = proc;
    let status = bounded("exit after SIGTERM", async {
        loop {
            if let Some(st) = proc.child.try_wait().expect("wait") {
                break st;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(status.success(), "exit status {status}");
}
