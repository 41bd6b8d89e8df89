//! Issue 5, "Rejected changes": a truncated file, a syntax error, an unknown storefront, a
//! redirect loop, and a half-written file followed by the complete write. Each bad change is
//! rejected whole (logged with file:line, counted, shown by `/admin/status`), the proxy keeps
//! serving the last good generation, and the complete write then goes live.

mod support;

use std::time::Duration;

use http::{Method, StatusCode};

use support::admin::*;
use support::cohort_cookie;
use support::control::*;
use support::dir::{replace_atomically, write_in_place};
use support::process::*;
use support::stores::Stores;
use support::wait::wait_for;

async fn rejections(admin_addr: std::net::SocketAddr) -> Vec<String> {
    let (s, b) = admin(admin_addr, Method::GET, "/admin/history", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let h: Vec<serde_json::Value> = serde_json::from_str(&b).unwrap();
    h.iter()
        .filter(|e| e["applied"] == false)
        .map(|e| e["error"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Waits for one more rejection and returns its error text.
async fn next_rejection(proxy: &ProxyProcess, before: usize) -> String {
    let addr = proxy.admin;
    wait_for(
        "the bad change to be rejected",
        Duration::from_secs(10),
        || async move { rejections(addr).await.len() > before },
    )
    .await;
    rejections(addr).await.pop().unwrap()
}

/// Still serving generation `generation` with a 10% share: bucket 500 on new, 5000 on old.
async fn still_serving(proxy: &ProxyProcess, generation: u64) {
    let st = status(proxy.admin).await;
    assert_eq!(st["config"]["generation"], generation);
    assert_eq!(st["split"]["new_share"], 10.0);
    for (bucket, store) in [(500, "new"), (5000, "old")] {
        let cookie = cohort_cookie(bucket);
        let (s, h, _) = request_fresh(proxy.addr, Method::GET, "/", &[("cookie", &cookie)], None)
            .await
            .unwrap();
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h["x-echo-storefront"], store);
        assert_eq!(h["x-echo-generation"], generation.to_string().as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_changes_are_rejected_whole_and_the_complete_write_applies() {
    let stores = Stores::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cutover.toml");
    let csv = dir.path().join("plan.csv");
    std::fs::write(&csv, "old_url,new_url\n/old-a,/new-a\n/old-b,/new-b\n").unwrap();
    let redirects = "\n[[redirects]]\nname = \"plan\"\nfile = \"plan.csv\"\n";
    let good = |share: &str| {
        config_text(
            &stores,
            &Params {
                share: share.into(),
                tail: redirects.into(),
                ..Params::default()
            },
        )
    };
    std::fs::write(&config, good("10")).unwrap();
    let proxy = ProxyProcess::spawn(&config);
    let load = Load::start(proxy.addr, 2, 1, usize::MAX);
    let g0 = status(proxy.admin).await["config"]["generation"]
        .as_u64()
        .unwrap();
    let config_name = config.display().to_string();

    // 1. Truncated file (a copy cut short mid-line).
    let mut seen = 0;
    let text = good("20");
    replace_atomically(&config, &text[..text.find("[split]").unwrap() + 9]);
    let e = next_rejection(&proxy, seen).await;
    seen += 1;
    assert!(e.contains(&config_name), "{e}");
    still_serving(&proxy, g0).await;

    // 2. Syntax error, located.
    let line = good("20")
        .lines()
        .position(|l| l.starts_with("new_share"))
        .unwrap()
        + 1;
    replace_atomically(
        &config,
        &good("20").replace("new_share = 20", "new_share = = 20"),
    );
    let e = next_rejection(&proxy, seen).await;
    seen += 1;
    assert!(e.contains(&format!("{config_name}:{line}:")), "{e}");
    still_serving(&proxy, g0).await;

    // 3. A route to a storefront that does not exist.
    let unknown = format!(
        "{}\n[[route]]\nname = \"x\"\npath_prefix = \"/x\"\nto = \"nope\"\n",
        good("20")
    );
    replace_atomically(&config, &unknown);
    let e = next_rejection(&proxy, seen).await;
    seen += 1;
    assert!(e.contains("unknown storefront `nope`"), "{e}");
    assert!(e.contains(&format!("{config_name}:")), "{e}");
    still_serving(&proxy, g0).await;

    // 4. The config is fine again but the redirect table it names now has a loop: the table
    //    file is watched too, and the whole change is refused.
    replace_atomically(&config, &good("10"));
    wait_for(
        "the good file to apply",
        Duration::from_secs(10),
        || async { status(proxy.admin).await["config"]["generation"] == g0 + 1 },
    )
    .await;
    let g1 = g0 + 1;
    replace_atomically(&csv, "old_url,new_url\n/a,/b\n/b,/a\n");
    let e = next_rejection(&proxy, seen).await;
    seen += 1;
    assert!(e.to_lowercase().contains("loop"), "{e}");
    assert!(e.contains("plan.csv:"), "{e}");
    still_serving(&proxy, g1).await;
    replace_atomically(&csv, "old_url,new_url\n/old-a,/new-a\n");
    wait_for(
        "the fixed table to apply",
        Duration::from_secs(10),
        || async { status(proxy.admin).await["config"]["generation"] == g1 + 1 },
    )
    .await;
    let g2 = g1 + 1;

    // 5. Half-written, then complete: the half is rejected, the whole applies.
    let full = good("30");
    let half = &full[..full.len() / 2];
    write_in_place(&config, half);
    let e = next_rejection(&proxy, seen).await;
    seen += 1;
    assert!(e.contains(&config_name), "{e}");
    still_serving(&proxy, g2).await;
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&config)
            .unwrap();
        f.write_all(&full.as_bytes()[full.len() / 2..]).unwrap();
    }
    wait_for(
        "the complete file to apply",
        Duration::from_secs(10),
        || async { share(proxy.admin).await == 30.0 },
    )
    .await;
    let st = status(proxy.admin).await;
    assert_eq!(st["config"]["generation"], g2 + 1);
    assert_eq!(st["last_reload"]["applied"], true);

    // Every rejection was counted, logged with its location, and nothing failed meanwhile.
    let (_, metrics) = admin(proxy.admin, Method::GET, "/metrics", None, None).await;
    let rejected = metrics
        .lines()
        .find(|l| l.starts_with("cutover_config_reloads_total{result=\"rejected\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap();
    assert_eq!(rejected, seen);
    assert!(proxy.log_text().contains("configuration rejected"));
    assert!(proxy.log_text().contains(&format!("{config_name}:{line}:")));
    let result = load.stop().await;
    assert!(
        result.failures.is_empty(),
        "requests failed during rejected changes: {:?}",
        &result.failures[..result.failures.len().min(5)]
    );
    assert!(!result.answers.is_empty());
}
