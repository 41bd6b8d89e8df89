//! Issue 5, "Restart handover": under load (keep-alive and new-connection clients), a second
//! process starts on the same sockets and the first one stops: zero failed requests. Done twice:
//! once through `POST /admin/upgrade` (what `cutover upgrade` sends), once with SIGUSR2 to the
//! successor, and a request in flight on the first process during the handover completes.

mod support;

use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use support::admin::*;
use support::control::*;
use support::process::*;
use support::stores::Stores;
use support::wait::{wait_for, SLOW_WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_hand_the_sockets_over_without_failing_a_request() {
    let stores = Stores::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cutover.toml");
    let params = Params {
        limits: "drain_timeout = \"10s\"".into(),
        ..Params::default()
    };
    std::fs::write(&config, config_text(&stores, &params)).unwrap();
    let mut proxy = ProxyProcess::spawn(&config);
    let (addr, admin_addr, first) = (proxy.addr, proxy.admin, proxy.pid);

    let load = Load::start(addr, 4, 4, usize::MAX);
    wait_for("load to warm up", Duration::from_secs(30), || {
        let n = load.count();
        async move { n >= 2_000 }
    })
    .await;
    // A request in flight on the first process while it hands over.
    let slow =
        tokio::spawn(
            async move { request_fresh(addr, Method::GET, "/slow?ms=1500", &[], None).await },
        );
    stores.slow_arrived().await;

    // 1. POST /admin/upgrade: the first process starts the second with its sockets.
    let t0 = Instant::now();
    let (s, b) = admin(admin_addr, Method::POST, "/admin/upgrade", None, None).await;
    assert_eq!(s, StatusCode::OK, "{b}\n{}", proxy.log_text());
    let answer: serde_json::Value = serde_json::from_str(&b).unwrap();
    let second = answer["new_pid"].as_u64().unwrap() as u32;
    proxy.adopt(second);
    assert_eq!(answer["old_pid"], first);
    let started = proxy.started(second, Duration::from_secs(10)).await;
    assert_eq!(started.listeners, vec![addr], "same socket, same port");
    assert_eq!(started.admin, Some(admin_addr));
    let exit = proxy
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("the first process exits after draining");
    assert!(exit.success(), "{exit}");
    let first_gone = t0.elapsed();
    let (s, _, body) = slow
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!((s, body.len()), (StatusCode::OK, 64 * 1024));
    let at_exit = load.count();
    wait_for(
        "load on the second process",
        Duration::from_secs(60),
        || {
            let n = load.count();
            async move { n >= at_exit + 2_000 }
        },
    )
    .await;
    assert_eq!(status(admin_addr).await["pid"], second);

    // 2. SIGUSR2 to the second: it hands over to a third the same way.
    signal(second, "USR2");
    let third = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // The second process closes its admin socket while handing over: a poll may
            // land on it as it goes.
            let pid = try_status(admin_addr)
                .await
                .and_then(|s| s["pid"].as_u64())
                .map(|p| p as u32);
            if let Some(pid) = pid.filter(|&p| p != second && p != first) {
                break pid;
            }
            assert!(Instant::now() < deadline, "no third process");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    proxy.adopt(third);
    wait_for(
        "the second process to exit",
        Duration::from_secs(15),
        || async { !alive(second) },
    )
    .await;
    let at_exit = load.count();
    wait_for("load on the third process", Duration::from_secs(60), || {
        let n = load.count();
        async move { n >= at_exit + 2_000 }
    })
    .await;

    let result = load.stop().await;
    eprintln!(
        "handover: {} requests ({} keep-alive, {} new-connection) over 3 processes, {} failures; first process gone {first_gone:?} after the upgrade call",
        result.answers.len() + result.failures.len(),
        result.keep_alive,
        result.new_connection,
        result.failures.len()
    );
    assert!(
        result.failures.is_empty(),
        "{} failed requests, e.g. {:?}",
        result.failures.len(),
        &result.failures[..result.failures.len().min(5)]
    );
    assert!(alive(third));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_that_cannot_start_leaves_the_running_process_serving() {
    let stores = Stores::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cutover.toml");
    std::fs::write(&config, config_text(&stores, &Params::default())).unwrap();
    let proxy = ProxyProcess::spawn(&config);
    // The successor reads the config again: break it on disk without letting the running
    // process reload it (a file it would reject anyway).
    std::fs::write(&config, "this is not toml").unwrap();
    let (s, b) = admin(proxy.admin, Method::POST, "/admin/upgrade", None, None).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{b}");
    assert!(b.contains("did not become ready"), "{b}");
    let (s, _, _) = request_fresh(proxy.addr, Method::GET, "/", &[], None)
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(status(proxy.admin).await["pid"], proxy.pid);
    assert!(!status(proxy.admin).await["draining"].as_bool().unwrap());
}

/// systemd socket activation: a socket passed with `LISTEN_FDS` is used instead of binding, and
/// matched to the listener by its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_from_systemd_socket_activation_are_used() {
    use std::os::fd::AsRawFd;
    let stores = Stores::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cutover.toml");
    std::fs::write(&config, config_text(&stores, &Params::default())).unwrap();
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    socket2::SockRef::from(&socket).set_cloexec(false).unwrap();
    let fd = socket.as_raw_fd().to_string();
    let proxy = ProxyProcess::spawn_with(
        &config,
        &[
            ("LISTEN_FDS", "1"),
            ("LISTEN_FDS_FIRST_FD", &fd),
            ("LISTEN_FDNAMES", "web"),
        ],
        SLOW_WAIT,
    );
    let _ = socket2::SockRef::from(&socket).set_cloexec(true);
    assert_eq!(proxy.addr.port(), port, "the passed socket, not a new one");
    drop(socket);
    let (s, _, _) = request_fresh(proxy.addr, Method::GET, "/", &[], None)
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    assert!(proxy.log_text().contains("inherited listening socket"));
}
