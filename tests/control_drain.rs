//! Issue 5, "Drain": a slow request (5 s) started before SIGTERM completes, a new connection
//! after SIGTERM is refused, `/readyz` turns false, and the process exits within grace + 1 s;
//! with a 1 s grace a stuck request is cut and the process still exits within grace + 1 s.

mod support;

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use tokio::net::TcpStream;

use support::admin::*;
use support::control::*;
use support::process::*;
use support::stores::Stores;
use support::wait::wait_for;

fn with_grace(stores: &Stores, grace: &str) -> String {
    config_text(
        stores,
        &Params {
            limits: format!("drain_timeout = \"{grace}\""),
            ..Params::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_slow_request_finish_refuses_new_connections_and_exits_in_time() {
    let stores = Stores::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cutover.toml");
    std::fs::write(&config, with_grace(&stores, "8s")).unwrap();
    let mut proxy = ProxyProcess::spawn(&config);
    let addr = proxy.addr;

    // An idle keep-alive client must not hold the exit up.
    let keep_alive = request_fresh(addr, Method::GET, "/", &[], None)
        .await
        .unwrap();
    assert_eq!(keep_alive.0, StatusCode::OK);
    let slow =
        tokio::spawn(
            async move { request_fresh(addr, Method::GET, "/slow?ms=5000", &[], None).await },
        );
    stores.slow_arrived().await;

    let term = Instant::now();
    signal(proxy.pid, "TERM");
    let admin_addr = proxy.admin;
    wait_for(
        "/readyz to turn false",
        Duration::from_secs(3),
        || async move {
            let r = request_fresh(admin_addr, Method::GET, "/readyz", &[], None).await;
            matches!(r, Ok((s, _, _)) if s == StatusCode::SERVICE_UNAVAILABLE)
        },
    )
    .await;
    wait_for("new connections to be refused", Duration::from_secs(3), || async move {
        matches!(TcpStream::connect(addr).await, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
    })
    .await;
    let refused_after = term.elapsed();
    assert!(
        !slow.is_finished(),
        "the slow request should still be in flight when connections are refused"
    );

    let (status, headers, body) = slow.await.unwrap().expect("the slow request completes");
    let completed_after = term.elapsed();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len(), 64 * 1024);
    assert_eq!(headers["connection"], "close");

    let exit = proxy
        .wait_exit(Duration::from_secs(9).saturating_sub(term.elapsed()))
        .await
        .expect("exited within grace + 1 s");
    let exited_after = term.elapsed();
    assert!(exit.success(), "a clean drain exits 0: {exit}");
    assert!(proxy.log_text().contains("draining"));
    eprintln!(
        "drain: refused new connections {refused_after:?} after SIGTERM, slow request done after {completed_after:?}, exited after {exited_after:?} (grace 8 s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_request_is_cut_when_the_grace_period_ends() {
    let stores = Stores::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cutover.toml");
    std::fs::write(&config, with_grace(&stores, "1s")).unwrap();
    let mut proxy = ProxyProcess::spawn(&config);
    let addr = proxy.addr;
    let stuck = tokio::spawn(async move {
        request_fresh(addr, Method::GET, "/slow?ms=120000", &[], None).await
    });
    stores.slow_arrived().await;

    let term = Instant::now();
    signal(proxy.pid, "TERM");
    let exit = proxy
        .wait_exit(Duration::from_secs(2))
        .await
        .expect("exited within grace (1 s) + 1 s");
    let exited_after = term.elapsed();
    assert!(!exit.success(), "an unclean drain is reported: {exit}");
    let cut = tokio::time::timeout(Duration::from_secs(5), stuck)
        .await
        .expect("the stuck request ends with the process")
        .unwrap();
    assert!(
        cut.is_err(),
        "the stuck request cannot have completed: {cut:?}"
    );
    assert!(proxy.log_text().contains("grace period over"));
    eprintln!("drain: stuck request cut, exited {exited_after:?} after SIGTERM (grace 1 s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_delay_keeps_accepting_while_readiness_is_off() {
    let stores = Stores::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cutover.toml");
    let text = config_text(
        &stores,
        &Params {
            limits: "drain_timeout = \"5s\"\ndrain_delay = \"2s\"".into(),
            ..Params::default()
        },
    );
    std::fs::write(&config, text).unwrap();
    let mut proxy = ProxyProcess::spawn(&config);
    let (addr, admin_addr) = (proxy.addr, proxy.admin);
    signal(proxy.pid, "TERM");
    wait_for(
        "/readyz to turn false",
        Duration::from_secs(3),
        || async move {
            let r = request_fresh(admin_addr, Method::GET, "/readyz", &[], None).await;
            matches!(r, Ok((s, _, _)) if s == StatusCode::SERVICE_UNAVAILABLE)
        },
    )
    .await;
    // Not ready, still serving: the load balancer has time to notice.
    let (s, h, _) = request_fresh(addr, Method::GET, "/", &[], None)
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        h["connection"], "close",
        "answers while draining close the connection"
    );
    wait_for("new connections to be refused", Duration::from_secs(5), || async move {
        matches!(TcpStream::connect(addr).await, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
    })
    .await;
    let exit = proxy
        .wait_exit(Duration::from_secs(8))
        .await
        .expect("exits after the delay and the drain");
    assert!(
        exit.success(),
        "nothing was in flight: a clean drain exits 0: {exit}"
    );
}
