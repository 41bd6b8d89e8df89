//! Issue 24, the admin API's documented promises on who may change things and what a change
//! reports, each against the built binary:
//! - without a token, changes are accepted from loopback peers only: a peer on the machine's own
//!   non-loopback address gets 403 while reads still answer;
//! - `token_file` is read again on reload: once the file changes and the proxy reloads, the old
//!   token is refused and the new one accepted;
//! - a state file that cannot be written answers `"persisted": false` while the change applies.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use support::admin::*;
use support::control::*;
use support::process::*;
use support::stores::Stores;
use support::wait::{wait_for, WAIT};

/// This machine's first IPv4 address outside 127.0.0.0/8 (`ip -4 -o addr show scope global`).
/// A socket bound to it and connected to 127.0.0.1 presents a non-loopback peer address to the
/// admin listener, which is exactly what a request from another machine looks like to
/// `control::request::authorize` (it trusts the peer address, nothing else).
fn non_loopback_address() -> Option<Ipv4Addr> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next()?.parse().ok())
        .filter(|ip: &Ipv4Addr| !ip.is_loopback())
}

/// One request from a socket bound to `source`; the status code of the answer and its body.
async fn request_from(
    source: IpAddr,
    to: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let mut s = socket.connect(to).await.expect("connect from {source}");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: admin\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .expect("the admin answer within the wait bound")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_changes_from_a_non_loopback_peer_are_refused() {
    let Some(outside) = non_loopback_address() else {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v != "true"),
            "CI=true: this machine has no non-loopback IPv4 address to present as a remote peer"
        );
        eprintln!("SKIPPED: no non-loopback IPv4 address on this machine (`ip -4 addr`)");
        return;
    };
    let stores = Stores::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cutover.toml");
    std::fs::write(&config, config_text(&stores, &Params::default())).unwrap();
    let proxy = ProxyProcess::spawn(&config);
    let split = r#"{"new_share": 30}"#;

    // From the machine's own non-loopback address: reads answer, changes are refused.
    let (s, b) = request_from(outside.into(), proxy.admin, "GET", "/admin/status", "").await;
    assert_eq!(s, 200, "reads are open to any peer: {b}");
    let (s, b) = request_from(outside.into(), proxy.admin, "PUT", "/admin/split", split).await;
    assert_eq!(s, 403, "a change from {outside} without a token: {b}");
    assert!(b.contains("token_file"), "the refusal says what to do: {b}");
    let (s, b) = request_from(outside.into(), proxy.admin, "POST", "/admin/reload", "").await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(
        share(proxy.admin).await,
        10.0,
        "the refused change did nothing"
    );

    // The same request from 127.0.0.1 applies: the peer address is the whole difference.
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (s, b) = request_from(local, proxy.admin, "PUT", "/admin/split", split).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(share(proxy.admin).await, 30.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_token_file_takes_effect_on_reload() {
    let stores = Stores::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "first-token-0123456789\n").unwrap();
    let config = dir.path().join("cutover.toml");
    let p = Params {
        admin_extra: "token_file = \"token\"".into(),
        ..Params::default()
    };
    std::fs::write(&config, config_text(&stores, &p)).unwrap();
    let proxy = ProxyProcess::spawn(&config);
    let a = proxy.admin;
    let reload = |token: &'static str| async move {
        admin(a, Method::POST, "/admin/reload", Some(token), None)
            .await
            .0
    };
    assert_eq!(reload("first-token-0123456789").await, StatusCode::OK);
    assert_eq!(
        reload("second-token-987654321").await,
        StatusCode::UNAUTHORIZED
    );

    // Rotate the token the way a secret manager does (write, then rename over), then SIGHUP.
    let tmp = dir.path().join("token.tmp");
    std::fs::write(&tmp, "second-token-987654321\n").unwrap();
    std::fs::rename(&tmp, &token_file).unwrap();
    proxy.signal("HUP");
    wait_for("the new token to be accepted", WAIT, || async {
        reload("second-token-987654321").await == StatusCode::OK
    })
    .await;
    assert_eq!(
        reload("first-token-0123456789").await,
        StatusCode::UNAUTHORIZED,
        "the old token is refused once the file changed and the proxy reloaded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_state_file_reports_persisted_false_and_the_change_applies() {
    let stores = Stores::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A path under a regular file cannot be created, even by root (ENOTDIR).
    std::fs::write(dir.path().join("not-a-directory"), "").unwrap();
    let config = dir.path().join("cutover.toml");
    let p = Params {
        admin_extra: "state_file = \"not-a-directory/state.json\"".into(),
        ..Params::default()
    };
    std::fs::write(&config, config_text(&stores, &p)).unwrap();
    let mut proxy = ProxyProcess::spawn(&config);

    let (s, b) = admin(
        proxy.admin,
        Method::PUT,
        "/admin/split",
        None,
        Some(r#"{"new_share": 35}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let answer: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(answer["persisted"], false, "{answer}");
    assert_eq!(answer["new_share"], 35.0, "{answer}");
    assert!(!dir.path().join("not-a-directory/state.json").exists());

    // Applied all the same: the status and a shopper's request in bucket 3400 see it.
    assert_eq!(share(proxy.admin).await, 35.0);
    let cookie = support::cohort_cookie(3400);
    let (s, h, _) = request_fresh(proxy.addr, Method::GET, "/", &[("cookie", &cookie)], None)
        .await
        .unwrap();
    assert_eq!(
        (s, &h["x-echo-storefront"]),
        (StatusCode::OK, &"new".parse().unwrap())
    );
    // And the operator is told why it will not survive a restart.
    let warned = proxy
        .wait_log(|v| {
            v.to_string().contains("not-a-directory") && v["level"].as_str() != Some("DEBUG")
        })
        .await;
    assert!(
        warned.is_some(),
        "no log names the state file:\n{}",
        proxy.log_text()
    );
}
