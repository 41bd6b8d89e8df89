//! Issue 5, "Admin security", plus the override lifecycle (runtime changes survive a restart
//! until the file changes) and the CLI over the admin API.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::admin::*;
use support::control::*;
use support::dir::replace_atomically;
use support::process::*;
use support::stores::Stores;
use support::wait::wait_for;

const TOKEN: &str = "t0ken-for-tests-0123456789";

/// Sends raw bytes to `addr` and returns the status code of the first response, if any.
async fn raw_status(addr: SocketAddr, bytes: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(bytes).await.ok()?;
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_mutations_need_the_token_and_good_json_and_never_disturb_the_data_plane() {
    let stores = Stores::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
    let config = dir.path().join("cutover.toml");
    let p = Params {
        admin_extra: "token_file = \"token\"".into(),
        ..Params::default()
    };
    std::fs::write(&config, config_text(&stores, &p)).unwrap();
    let proxy = ProxyProcess::spawn(&config);
    let load = Load::start(proxy.addr, 2, 2, usize::MAX);
    let a = proxy.admin;
    let split = Some(r#"{"new_share": 20}"#);

    // A slow client holds an admin connection with a promised body that never comes.
    let mut stalled = TcpStream::connect(a).await.unwrap();
    stalled
        .write_all(
            format!(
                "PUT /admin/split HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-length: 100\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .unwrap();

    // 401 without a token, with a wrong one, with another scheme.
    let (s, b) = admin(a, Method::PUT, "/admin/split", None, split).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert!(b.contains("Bearer"), "{b}");
    let (s, _) = admin(a, Method::PUT, "/admin/split", Some("wrong"), split).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, h, _) = request_fresh(
        a,
        Method::POST,
        "/admin/reload",
        &[("authorization", &format!("Basic {TOKEN}"))],
        None,
    )
    .await
    .unwrap();
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(h.contains_key("www-authenticate"));
    for path in ["/admin/evacuate/new", "/admin/reload", "/admin/upgrade"] {
        let (s, _) = admin(a, Method::POST, path, None, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
    }

    // 405 for GET (or any other method) on a mutation, with Allow.
    for (path, allow) in [
        ("/admin/split", "PUT"),
        ("/admin/reload", "POST"),
        ("/admin/evacuate/new", "POST"),
        ("/admin/upgrade", "POST"),
    ] {
        let (s, h, _) = request_fresh(a, Method::GET, path, &[], None)
            .await
            .unwrap();
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(h["allow"], allow);
    }
    let (s, _) = admin(a, Method::POST, "/admin/split", Some(TOKEN), split).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    let (s, _) = admin(a, Method::DELETE, "/admin/status", Some(TOKEN), None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);

    // 400 for malformed or wrong JSON, with a message that shows the expected shape.
    for bad in [
        "{\"new_share\": ",
        "{\"share\": 5}",
        "{\"new_share\": 101}",
        "{\"new_share\": \"ten\"}",
        "{\"new_share\": 12.345}",
        "[]",
        "",
        "\u{0}\u{1}garbage",
    ] {
        let (s, b) = admin(a, Method::PUT, "/admin/split", Some(TOKEN), Some(bad)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad:?}: {b}");
        assert!(b.contains("\"error\""), "{b}");
    }
    let (s, _) = admin(
        a,
        Method::POST,
        "/admin/reload",
        Some(TOKEN),
        Some("{\"x\":1}"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // 413 for oversized bodies, declared or chunked.
    let big = format!(
        "{{\"new_share\": 5, \"pad\": \"{}\"}}",
        "x".repeat(100 * 1024)
    );
    let (s, _) = admin(a, Method::PUT, "/admin/split", Some(TOKEN), Some(&big)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let mut chunked = format!(
        "PUT /admin/split HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..20 {
        chunked.extend_from_slice(format!("1000\r\n{}\r\n", "y".repeat(4096)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(raw_status(a, &chunked).await, Some(413));

    // Garbage on the admin port is answered or dropped; the data plane does not notice.
    let _ = raw_status(a, b"\x16\x03\x01 not http at all\r\n\r\n").await;

    // 404 for an unknown storefront; then the real changes work.
    let (s, b) = admin(a, Method::POST, "/admin/evacuate/nope", Some(TOKEN), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert!(b.contains("known: new, old"), "{b}");
    let (s, b) = admin(a, Method::PUT, "/admin/split", Some(TOKEN), split).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(share(a).await, 20.0);
    let (s, b) = admin(
        a,
        Method::PUT,
        "/admin/split",
        Some(TOKEN),
        Some(r#"{"new_share": "12.5%"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(share(a).await, 12.5);
    let (s, b) = admin(a, Method::POST, "/admin/evacuate/new", Some(TOKEN), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = admin(a, Method::POST, "/admin/reload", Some(TOKEN), Some("{}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Reads need no token.
    let st = status(a).await;
    assert_eq!(st["split"]["new_share_source"], "override");
    assert!(st["storefronts"][0]["responses"].as_u64().unwrap() > 0);

    // The stalled admin client held nothing up, and is answered 408 once the body timeout (10 s
    // from its request) is over: the documented answer, waited for with a deadline that only
    // bounds a hang.
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), stalled.read_to_end(&mut answer)).await;
    let head = String::from_utf8_lossy(&answer);
    assert!(
        head.starts_with("HTTP/1.1 408"),
        "a stalled admin body gets 408: {head:?}"
    );
    drop(stalled);
    let result = load.stop().await;
    assert!(
        result.failures.is_empty(),
        "data plane failures: {:?}",
        &result.failures[..result.failures.len().min(5)]
    );
    assert!(result.answers.len() > 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_admin_address_without_a_token_is_a_config_error() {
    let stores = Stores::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cutover.toml");
    let text = config_text(&stores, &Params::default()).replace(
        "[admin]\naddress = \"127.0.0.1:0\"",
        "[admin]\naddress = \"0.0.0.0:0\"",
    );
    std::fs::write(&config, &text).unwrap();
    let out = tokio::process::Command::new(binary())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("admin.address") && err.contains("needs a token"),
        "{err}"
    );
    std::fs::write(
        &config,
        text.replace(
            "address = \"0.0.0.0:0\"",
            "address = \"0.0.0.0:0\"\ntoken = \"abc\"",
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new(binary())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_survive_a_restart_until_the_file_changes() {
    let stores = Stores::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cutover.toml");
    let state = dir.path().join("cutover.toml.state.json");
    std::fs::write(&config, config_text(&stores, &Params::default())).unwrap();

    let mut first = ProxyProcess::spawn(&config);
    let (s, b) = admin(
        first.admin,
        Method::PUT,
        "/admin/split",
        None,
        Some(r#"{"new_share": 25}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = admin(first.admin, Method::POST, "/admin/evacuate/new", None, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(state.exists());
    let st = status(first.admin).await;
    assert_eq!(st["split"]["new_share"], 25.0);
    assert_eq!(st["overrides"]["file_new_share"], 10.0);
    let new = &st["storefronts"][0];
    assert_eq!(new["name"], "new");
    assert_eq!(new["evacuated_at_source"], "override");

    // Writing the state file does not look like a config change: no reload follows.
    let history_len = |a| async move {
        let (_, h) = admin(a, Method::GET, "/admin/history", None, None).await;
        serde_json::from_str::<Vec<serde_json::Value>>(&h)
            .unwrap()
            .len()
    };
    let n = history_len(first.admin).await;
    // An observation window for an absence (no reload), not synchronisation: four debounces
    // long. A busy machine can only make it pass when it should not, never fail a good build.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(history_len(first.admin).await, n);
    // SIGHUP with the file unchanged keeps the overrides.
    signal(first.pid, "HUP");
    wait_for("the SIGHUP reload", Duration::from_secs(10), || async {
        history_len(first.admin).await > n
    })
    .await;
    assert_eq!(share(first.admin).await, 25.0);

    // Restart: the state file applies to the same file.
    signal(first.pid, "TERM");
    assert!(first.wait_exit(Duration::from_secs(35)).await.is_some());
    let second = ProxyProcess::spawn(&config);
    let st = status(second.admin).await;
    assert_eq!(st["split"]["new_share"], 25.0);
    assert_eq!(st["split"]["new_share_source"], "override");
    assert!(st["storefronts"][0]["evacuated_at"].is_u64());

    // The file changes: it wins, the overrides and the state file go.
    replace_atomically(
        &config,
        &config_text(
            &stores,
            &Params {
                share: "40".into(),
                ..Params::default()
            },
        ),
    );
    wait_for("the file to win", Duration::from_secs(10), || async {
        share(second.admin).await == 40.0
    })
    .await;
    let st = status(second.admin).await;
    assert!(st["overrides"].is_null(), "{st}");
    assert_eq!(st["last_reload"]["overrides_cleared"], true);
    assert!(!state.exists());
    drop(second);

    // And a state file saved for another version of the file is ignored at startup.
    let stale = r#"{"format":1,"config":"x","config_hash":"00","since":1,"updated_at":1,"overrides":{"new_share_bp":9900}}"#;
    std::fs::write(&state, stale).unwrap();
    let third = ProxyProcess::spawn(&config);
    let st = status(third.admin).await;
    assert_eq!(st["split"]["new_share"], 40.0);
    assert!(st["state_file_error"]
        .as_str()
        .unwrap()
        .contains("different version"));
}

use support::ports::free_port;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_finds_the_proxy_and_its_token_like_the_server() {
    let stores = Stores::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    std::fs::write(dir.path().join("wrong"), "not-the-token").unwrap();
    let config = dir.path().join("cutover.toml");
    let port = free_port();
    let text = config_text(
        &stores,
        &Params {
            admin_extra: "token_file = \"token\"".into(),
            ..Params::default()
        },
    )
    .replace(
        "[admin]\naddress = \"127.0.0.1:0\"",
        &format!("[admin]\naddress = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&config, text).unwrap();
    let _proxy = ProxyProcess::spawn(&config);
    let c = config.to_str().unwrap();

    let (ok, out, err) = run_cli(&["status", "--config", c]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("generation 1") && out.contains("10.00% of shoppers on new"),
        "{out}"
    );

    let (ok, out, err) = run_cli(&["shift", "25", "--config", c]).await;
    assert!(ok, "{err}");
    assert!(out.contains("10.00% -> 25.00%"), "{out}");

    // CUTOVER_CONFIG is found like the server finds it; --json is the API's answer.
    let (ok, out, err) = run_cli_env(&["shift", "12.5%", "--json"], &[("CUTOVER_CONFIG", c)]).await;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["new_share"], 12.5);
    assert_eq!(v["persisted"], true);
    let (ok, out, _) = run_cli(&["status", "--json", "--config", c]).await;
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["split"]["new_share_source"], "override");

    let (ok, out, err) = run_cli(&["evacuate", "new", "--config", c]).await;
    assert!(ok, "{err}");
    assert!(out.contains("evacuated new"), "{out}");
    let (ok, _, err) = run_cli(&["evacuate", "nope", "--config", c]).await;
    assert!(!ok);
    assert!(err.contains("no storefront named `nope`"), "{err}");
    let (ok, out, err) = run_cli(&["reload", "--config", c]).await;
    assert!(ok, "{err}");
    assert!(out.contains("configuration applied"), "{out}");

    // Clear errors: wrong token, bad percentage, nothing listening.
    let wrong = dir.path().join("wrong");
    let (ok, _, err) = run_cli(&[
        "shift",
        "5",
        "--config",
        c,
        "--token-file",
        wrong.to_str().unwrap(),
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("refused the token"), "{err}");
    let (ok, _, err) = run_cli(&["shift", "150", "--config", c]).await;
    assert!(!ok);
    assert!(err.contains("between 0 and 100"), "{err}");
    let (ok, _, err) = run_cli(&["status", "--admin", "127.0.0.1:1"]).await;
    assert!(!ok);
    assert!(
        err.contains("cannot reach") && err.contains("127.0.0.1:1"),
        "{err}"
    );
    let _ = Bytes::new();
}
