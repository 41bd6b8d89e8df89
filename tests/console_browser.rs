//! The cutover console in a real browser: Debian's Chromium driven by Playwright
//! (`tests/console/console_test.py`) against the built binary with both storefronts, traffic, a
//! redirect plan, the inventory and the shadow comparison on. The script asserts on text and
//! state (never pixels): figures move, the share set through the page moves new shoppers, a wrong
//! token is refused and said so, the page survives a proxy restart, and URLs from traffic that
//! carry markup are shown as text and run nothing.
//!
//! The script asks this test to stop and start the proxy over stdout (`STOP`, `START`) and waits
//! for the answer on stdin, so the restart happens exactly when the page is watching.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::raw::exchange;
use support::stores::{path_store, StatusStore};
use support::upstream::free_port;
use support::{Dir, ProxyProcess};

const TOKEN: &str = "console-test-token";
/// An attribute-breaking URL: it reaches the missed redirects and the shadow report verbatim.
const ATTRIBUTE_URL: &str = "/x\"onmouseover=\"window.pwned=1";
/// A markup URL as a browser sends it (percent-encoded): what lands in the reports.
const SCRIPT_URL: &str = "/%3Cscript%3Ewindow.pwned=1%3C/script%3E";
/// Raw markup does get through in a `Host` header, which per-host missed redirects keep as sent:
/// an element that runs script the moment it is parsed as HTML, and a script element.
const MARKUP_HOSTS: [&str; 2] = [
    "<img src=x onerror=\"window.pwned=1\">",
    "<script>window.pwned=1</script>",
];
/// The page new lacks that the markup hosts ask for.
const MISSING: &str = "/missing-page";
/// The whole browser run, restart included; generous for a shared two-core machine.
const SCRIPT_LIMIT: Duration = Duration::from_secs(150);

fn config(dir: &Dir, proxy: u16, admin: u16, old: &str, new: &str) -> PathBuf {
    dir.write("plan.csv", "old_url,new_url\n/old-home,/\n");
    dir.write("token", TOKEN);
    dir.write(
        "cutover.toml",
        &format!(
            r#"[[listener]]
address = "127.0.0.1:{proxy}"

[admin]
address = "127.0.0.1:{admin}"
token_file = "token"

[storefront.old]
upstream = "{old}"

[storefront.new]
upstream = "{new}"

[split]
new_share = 10

[cohort]
key = "{key}"

[override]
enabled = true

[headers]
storefront_response_header = true

[[redirects]]
name = "plan"
file = "plan.csv"

[redirect_misses]
per_host = true

[inventory]
enabled = true

[shadow]
sample = 1.0

# A rollout for the page's levers only: an hour between evaluations, so it never moves itself.
[rollout]
steps = [10, 50, 100]
min_hold = "1h"
interval = "1h"
window = "5m"
min_requests = 200
failure_limit = 3
action = "pause"
evacuate_new = false
mode = "enforce"
inconclusive_timeout = "2h"

[rollout.gates.error_ratio]
max_vs_old = 2.0
max_delta = 0.01
"#,
            key = support::KEY,
        ),
    )
}

/// Sends `path` for `host` through the proxy on a raw connection (a browser would
/// percent-encode a `"`; a crawler or an attacker need not) pinned to `side`; returns the status.
async fn raw_get(addr: SocketAddr, host: &str, path: &str, side: &str) -> u16 {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nx-cutover-force: {side}\r\nConnection: close\r\n\r\n"
    );
    let (resps, _) = exchange(addr, req.as_bytes()).await;
    resps.first().map_or(0, |r| r.status)
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/console_test.py")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_chromium_watches_steers_and_survives_a_restart() {
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Debian's chromium is missing: tests/run installs it (apt-get install chromium)"
    );
    let old = StatusStore::start("old").await;
    // New lacks the two odd URLs: they become missed redirects and `missing_on_new` mismatches.
    let new = path_store("new", &[ATTRIBUTE_URL, SCRIPT_URL, MISSING]).await;
    let dir = Dir::new();
    let (proxy_port, admin_port) = (free_port(), free_port());
    let cfg = config(
        &dir,
        proxy_port,
        admin_port,
        &old.url(),
        &format!("http://{}", new.addr),
    );
    let mut proxy = Some(ProxyProcess::spawn(&cfg));
    let addr = proxy.as_ref().unwrap().addr;

    // Markup in a raw request target is refused before it reaches anything.
    let shop = "shop.test";
    assert_eq!(
        raw_get(addr, shop, "/<script>window.pwned=1</script>", "new").await,
        400
    );
    for url in [ATTRIBUTE_URL, SCRIPT_URL] {
        // On new: no plan entry, 404 -> a missed redirect. On old: 200, copied to new (404)
        // -> a shadow mismatch, and an old-store URL in the inventory.
        assert_eq!(raw_get(addr, shop, url, "new").await, 404, "{url} on new");
        assert_eq!(raw_get(addr, shop, url, "old").await, 200, "{url} on old");
    }
    for host in MARKUP_HOSTS {
        assert_eq!(raw_get(addr, host, MISSING, "new").await, 404, "{host}");
    }

    let mut child = Command::new("python3")
        .arg(script())
        .env("CONSOLE_URL", format!("http://127.0.0.1:{admin_port}/"))
        .env("PROXY_URL", format!("http://{addr}"))
        .env("ADMIN_TOKEN", TOKEN)
        .env("ATTRIBUTE_URL", ATTRIBUTE_URL)
        .env("SCRIPT_URL", SCRIPT_URL)
        .env("MARKUP_HOSTS", MARKUP_HOSTS.join("\n"))
        .env("FIRST_PID", proxy.as_ref().unwrap().pid.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 (tests/run installs it with Playwright)");
    let mut to_script = child.stdin.take().expect("stdin");
    let from_script = child.stdout.take().expect("stdout");
    let (lines_tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(from_script).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    let deadline = std::time::Instant::now() + SCRIPT_LIMIT;
    let mut transcript = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = match lines.recv_timeout(left) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!(
                    "the browser script took longer than {SCRIPT_LIMIT:?}:\n{}",
                    transcript.join("\n")
                );
            }
        };
        println!("console_test.py: {line}");
        transcript.push(line.clone());
        match line.as_str() {
            "STOP" => {
                proxy.take().expect("running").stop().await;
                writeln!(to_script, "STOPPED").expect("answering the script");
            }
            "START" => {
                let p = ProxyProcess::spawn(&cfg);
                writeln!(to_script, "STARTED {}", p.pid).expect("answering the script");
                proxy = Some(p);
            }
            _ => {}
        }
    }
    let status = child.wait().expect("waiting for the script");
    assert!(
        status.success(),
        "the browser script failed ({status}):\n{}",
        transcript.join("\n")
    );
    assert!(
        transcript.iter().any(|l| l == "PASS"),
        "the script ended without PASS:\n{}",
        transcript.join("\n")
    );
    if let Some(p) = proxy {
        p.stop().await;
    }
}
