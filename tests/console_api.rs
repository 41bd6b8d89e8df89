//! The console's server side on the built binary: the page and its assets carry the headers that
//! keep them from being framed, cached or extended with inline script, and `/admin/timeseries`
//! turns real traffic into per-storefront figures.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::Value;

use support::admin::request_fresh;
use support::stores::StatusStore;
use support::upstream::free_port;
use support::{wait_for, ProxyProcess, TempConfig, SLOW_WAIT};

fn config(old: &StatusStore, new: &StatusStore) -> String {
    format!(
        r#"[[listener]]
address = "127.0.0.1:0"

[admin]
address = "127.0.0.1:0"

[storefront.old]
upstream = "{old}"

[storefront.new]
upstream = "{new}"

[split]
new_share = 50

[cohort]
key = "{key}"

[override]
enabled = true
"#,
        old = old.url(),
        new = new.url(),
        key = support::KEY,
    )
}

async fn get(addr: SocketAddr, path: &str) -> (StatusCode, http::HeaderMap, String) {
    let (s, h, b) = request_fresh(addr, Method::GET, path, &[], None)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (s, h, String::from_utf8_lossy(&b).into_owned())
}

fn header<'a>(h: &'a http::HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

#[tokio::test]
async fn the_page_and_its_assets_forbid_framing_caching_and_inline_script() {
    let (old, new) = (
        StatusStore::start("old").await,
        StatusStore::start("new").await,
    );
    let cfg = TempConfig::new(&config(&old, &new));
    let proxy = ProxyProcess::spawn(cfg.path());
    for (path, ty) in [
        ("/", "text/html; charset=utf-8"),
        ("/console.js", "text/javascript; charset=utf-8"),
        ("/console.css", "text/css; charset=utf-8"),
    ] {
        let (s, h, body) = get(proxy.admin, path).await;
        assert_eq!(s, StatusCode::OK, "{path}");
        assert_eq!(header(&h, "content-type"), ty, "{path}");
        let csp = header(&h, "content-security-policy");
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(part), "{path}: CSP `{csp}` lacks {part}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(header(&h, "x-frame-options"), "DENY", "{path}");
        assert_eq!(header(&h, "cache-control"), "no-store", "{path}");
        assert_eq!(header(&h, "x-content-type-options"), "nosniff", "{path}");
        assert!(!body.is_empty());
    }
    let (_, _, page) = get(proxy.admin, "/").await;
    assert!(page.contains("<script src=\"/console.js\" defer></script>"));
    // Only GET (and HEAD) reach the page: a POST is told which methods exist.
    let (s, h, _) = request_fresh(proxy.admin, Method::POST, "/", &[], None)
        .await
        .expect("POST /");
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&h, "allow"), "GET, HEAD");
    // The data-plane listener does not serve the console: it is the shop.
    let (_, h, _) = get(proxy.addr, "/").await;
    assert!(h.get("content-security-policy").is_none());
    proxy.stop().await;
}

/// The newest point's figures of `storefront`, once the sampler has one with requests.
fn side<'a>(series: &'a Value, storefront: &str) -> Option<&'a Value> {
    series["points"]
        .as_array()?
        .last()?
        .get("storefronts")?
        .as_array()?
        .iter()
        .find(|s| s["storefront"] == storefront)
}

#[tokio::test]
async fn the_time_series_follows_traffic_per_storefront() {
    let (old, new) = (
        StatusStore::start("old").await,
        StatusStore::start("new").await,
    );
    let cfg = TempConfig::new(&config(&old, &new));
    let proxy = ProxyProcess::spawn(cfg.path());
    let (s, h, body) = get(proxy.admin, "/admin/timeseries").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(header(&h, "content-type"), "application/json");
    let empty: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(empty["interval_seconds"], 2.0);
    assert_eq!(empty["capacity"], 300);
    assert_eq!(
        empty["metrics"]["not_found_ratio"],
        "cutover_not_found_total"
    );
    assert_eq!(
        empty["metrics"]["p95_seconds"],
        "cutover_request_duration_seconds"
    );
    // Traffic until a point shows it: old answers 200, new 200 / 404 / 500 in equal parts.
    let addr = proxy.addr;
    let series = wait_for(
        "a time-series point with both storefronts' traffic",
        SLOW_WAIT,
        || async move {
            for path in ["/", "/status/404/gone", "/status/500/broken"] {
                for side in ["old", "new"] {
                    let _ =
                        request_fresh(addr, Method::GET, path, &[("x-cutover-force", side)], None)
                            .await;
                }
            }
            let (_, _, body) = get(proxy.admin, "/admin/timeseries").await;
            let v: Value = serde_json::from_str(&body).unwrap();
            let busy = |sf: &str| {
                side(&v, sf).is_some_and(|s| s["requests_per_second"].as_f64() > Some(0.0))
            };
            (busy("old") && busy("new")).then_some(v)
        },
    )
    .await;
    for sf in ["old", "new"] {
        let s = side(&series, sf).unwrap();
        let ratio = |k: &str| s[k].as_f64().unwrap_or_else(|| panic!("{sf} {k}: {s}"));
        // Every request pair sent one 404 and one 500 of three to each side.
        assert!(
            ratio("error_ratio") > 0.0 && ratio("error_ratio") < 1.0,
            "{s}"
        );
        assert!(
            ratio("not_found_ratio") > 0.0 && ratio("not_found_ratio") < 1.0,
            "{s}"
        );
        assert!(ratio("p95_seconds") > 0.0, "{s}");
    }
    assert_eq!(
        series["points"].as_array().unwrap().last().unwrap()["new_share"],
        50.0
    );
    // A quiet interval has no ratio at all (no data), not a ratio of 0.
    let quiet = wait_for(
        "a point without requests",
        Duration::from_secs(20),
        || async {
            let (_, _, body) = get(proxy.admin, "/admin/timeseries").await;
            let v: Value = serde_json::from_str(&body).unwrap();
            side(&v, "old")
                .filter(|s| s["requests_per_second"] == 0.0)
                .cloned()
        },
    )
    .await;
    assert!(
        quiet["error_ratio"].is_null() && quiet["p95_seconds"].is_null(),
        "{quiet}"
    );
    proxy.stop().await;
}

/// `cutover demo` names the console before anything else, and the URL it names serves it.
#[tokio::test]
async fn the_demo_prints_the_console_first() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let [proxy, admin, old, new] = [free_port(), free_port(), free_port(), free_port()];
    let dir = support::Dir::new();
    let cfg = dir.write(
        "demo.toml",
        &format!(
            "[[listener]]\naddress = \"127.0.0.1:{proxy}\"\n\n[admin]\naddress = \"127.0.0.1:{admin}\"\n\n\
             [storefront.old]\nupstream = \"http://127.0.0.1:{old}\"\n\n\
             [storefront.new]\nupstream = \"http://127.0.0.1:{new}\"\n\n[split]\nnew_share = 10\n"
        ),
    );
    let mut demo = Command::new(support::process::binary())
        .arg("demo")
        .arg("--config")
        .arg(&cfg)
        .env_remove("CUTOVER_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cutover demo");
    let stdout = demo.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
        let urls = lines
            .by_ref()
            .skip_while(|l| !l.starts_with("cutover demo is running"))
            .skip(1)
            .find(|l| l.contains("http://"));
        let _ = tx.send(urls);
        // Keep reading: a closed stdout makes the demo's next line end it (as `cutover status |
        // head` would), which made this test flaky.
        lines.for_each(drop);
    });
    let first = rx.recv_timeout(SLOW_WAIT);
    // Ready first (the documented signal that start-up is over), then the page.
    let admin_addr = SocketAddr::from(([127, 0, 0, 1], admin));
    wait_for("the demo to be ready", SLOW_WAIT, || async {
        request_fresh(admin_addr, Method::GET, "/readyz", &[], None)
            .await
            .is_ok_and(|(status, _, _)| status == StatusCode::OK)
    })
    .await;
    let page = request_fresh(admin_addr, Method::GET, "/", &[], None).await;
    let _ = demo.kill();
    let _ = demo.wait();
    let first = first
        .expect("the demo printed its URLs")
        .expect("a URL line");
    assert_eq!(
        first,
        format!("  the console (watch, steer): http://127.0.0.1:{admin}/")
    );
    let (status, headers, body) = page.expect("the console answers");
    assert_eq!(status, StatusCode::OK);
    assert!(headers.contains_key("content-security-policy"));
    assert!(String::from_utf8_lossy(&body).contains("<title>cutover console</title>"));
}
