//! Issue 24, the process's documented behaviour around stopping, each on the built binary:
//! - a second SIGTERM during the drain cuts it short (the grace period is far from over);
//! - under systemd (`NOTIFY_SOCKET`), a handover reports `READY=1` with the new `MAINPID`, the
//!   process that handed over stays silent, and the last one reports `STOPPING=1` when it drains;
//! - an HTTP/2 connection gets `GOAWAY` when the drain starts and its in-flight stream completes.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixDatagram};

use support::admin::*;
use support::control::*;
use support::process::*;
use support::stores::Stores;
use support::wait::{bounded, SLOW_WAIT};

fn config_with(stores: &Stores, limits: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cutover.toml");
    let p = Params {
        limits: limits.into(),
        ..Params::default()
    };
    std::fs::write(&config, config_text(stores, &p)).unwrap();
    (dir, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_cuts_the_drain_short() {
    let stores = Stores::start().await;
    // A grace period no test run reaches: only the second signal can end this drain early.
    let (_dir, config) = config_with(&stores, "drain_timeout = \"600s\"");
    let mut proxy = ProxyProcess::spawn(&config);
    let addr = proxy.addr;
    let stuck = tokio::spawn(async move {
        request_fresh(addr, Method::GET, "/slow?ms=600000", &[], None).await
    });
    stores.slow_arrived().await;

    proxy.signal("TERM");
    // The drain has begun (and is waiting on the stuck request) before the second signal.
    assert!(
        proxy
            .wait_log(|v| v["message"] == "draining")
            .await
            .is_some(),
        "no drain started:\n{}",
        proxy.log_text()
    );
    assert!(
        !stuck.is_finished(),
        "the stuck request holds the drain open"
    );
    proxy.signal("TERM");
    let exit = proxy
        .wait_exit(SLOW_WAIT)
        .await
        .expect("the second SIGTERM ends the process long before its 600 s grace period");
    assert!(
        !exit.success(),
        "a cut drain is reported as unclean: {exit}"
    );
    assert!(
        proxy.log_text().contains("second signal"),
        "{}",
        proxy.log_text()
    );
    let cut = bounded("the stuck request to end with the process", stuck)
        .await
        .unwrap();
    assert!(
        cut.is_err(),
        "the stuck request cannot have completed: {cut:?}"
    );
}

/// Reads the next datagram from the notify socket, bounded.
async fn next_notification(sock: &UnixDatagram) -> String {
    let mut buf = vec![0u8; 4096];
    let n = bounded("an sd_notify message", sock.recv(&mut buf))
        .await
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd_notify_reports_ready_mainpid_and_stopping_across_a_handover() {
    let stores = Stores::start().await;
    let (dir, config) = config_with(&stores, "drain_timeout = \"10s\"");
    let notify_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify_path).unwrap();
    let mut proxy = ProxyProcess::spawn_with(
        &config,
        &[("NOTIFY_SOCKET", notify_path.to_str().unwrap())],
        SLOW_WAIT,
    );
    let first = proxy.pid;
    assert_eq!(
        next_notification(&sock).await,
        format!("READY=1\nMAINPID={first}"),
        "the first process reports readiness"
    );

    // `cutover upgrade` (POST /admin/upgrade): the successor is the service from now on.
    let (s, b) = admin(proxy.admin, Method::POST, "/admin/upgrade", None, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let second = serde_json::from_str::<serde_json::Value>(&b).unwrap()["new_pid"]
        .as_u64()
        .unwrap() as u32;
    proxy.adopt(second);
    assert_eq!(
        next_notification(&sock).await,
        format!("READY=1\nMAINPID={second}"),
        "the successor reports itself as the main process"
    );
    let exit = proxy
        .wait_exit(SLOW_WAIT)
        .await
        .expect("the first process drains and exits");
    assert!(exit.success(), "{exit}");

    // The first process's drain said nothing: systemd would have taken STOPPING=1 from it as the
    // whole unit stopping. The next message is the successor's own, when it is told to stop.
    assert!(signal(second, "TERM"));
    assert_eq!(next_notification(&sock).await, "STOPPING=1");
    bounded("the successor to exit", async {
        while alive(second) {
            tokio::time::sleep(Duration::from_millis(20)).await; // polling a pid: no event to wait on
        }
    })
    .await;
    let mut buf = [0u8; 64];
    assert!(
        sock.try_recv(&mut buf).is_err(),
        "no further notification (the first process must not send STOPPING=1)"
    );
}

// --- a minimal HTTP/2 client over cleartext (prior knowledge), frame by frame, so the test sees
// the GOAWAY frame itself rather than a client library's interpretation of it.

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;
const ACK: u8 = 1;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK "literal header field without indexing, new name", no Huffman (RFC 7541 6.2.2).
fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0);
    for s in [name, value] {
        assert!(s.len() < 127);
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
}

async fn read_frame(s: &mut TcpStream) -> (u8, u8, u32, Vec<u8>) {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await.expect("an HTTP/2 frame");
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.unwrap();
    (head[3], head[4], stream, payload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_gets_goaway_on_drain_and_its_stream_completes() {
    let stores = Stores::start().await;
    let (_dir, config) = config_with(&stores, "drain_timeout = \"30s\"");
    let mut proxy = ProxyProcess::spawn(&config);
    let addr: SocketAddr = proxy.addr;

    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    // Room for the whole 64 KiB answer (the default window is one byte short of it).
    out.extend(frame(WINDOW_UPDATE, 0, 0, &(1u32 << 20).to_be_bytes()));
    let mut block = Vec::new();
    for (n, v) in [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "shop.example"),
        (":path", "/slow?ms=1500"),
    ] {
        literal(&mut block, n, v);
    }
    out.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
    out.extend(frame(WINDOW_UPDATE, 0, 1, &(1u32 << 20).to_be_bytes()));
    s.write_all(&out).await.unwrap();
    stores.slow_arrived().await;
    proxy.signal("TERM");

    // Read until stream 1 ends: a GOAWAY must come first (or at least before the end of the
    // stream), and the stream's headers and all its data must arrive.
    let (mut goaways, mut status_seen, mut body, mut ended) = (Vec::new(), false, 0usize, false);
    bounded("the in-flight HTTP/2 stream to end", async {
        while !ended {
            let (kind, flags, stream, payload) = read_frame(&mut s).await;
            match kind {
                SETTINGS if flags & ACK == 0 => {
                    s.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap()
                }
                // hyper's graceful shutdown: GOAWAY(max), PING, then GOAWAY(last processed).
                PING if flags & ACK == 0 => {
                    s.write_all(&frame(PING, ACK, 0, &payload)).await.unwrap()
                }
                GOAWAY => goaways.push(payload),
                HEADERS if stream == 1 => {
                    // `:status: 200` is HPACK static index 8 (0x88).
                    status_seen = payload.first() == Some(&0x88);
                    ended = flags & END_STREAM != 0;
                }
                DATA if stream == 1 => {
                    body += payload.len();
                    ended = flags & END_STREAM != 0;
                }
                _ => {}
            }
        }
    })
    .await;
    assert!(!goaways.is_empty(), "no GOAWAY before the stream ended");
    assert!(status_seen, "stream 1 answered 200");
    assert_eq!(body, 64 * 1024, "the whole body of the in-flight stream");
    // The last GOAWAY names stream 1 as processed, with NO_ERROR.
    let last = goaways.last().unwrap();
    let last_stream = u32::from_be_bytes([last[0], last[1], last[2], last[3]]) & 0x7fff_ffff;
    let code = u32::from_be_bytes([last[4], last[5], last[6], last[7]]);
    assert!(last_stream >= 1, "GOAWAY last-stream-id {last_stream}");
    assert_eq!(code, 0, "GOAWAY with NO_ERROR");
    let exit = proxy.wait_exit(SLOW_WAIT).await.expect("the drain ends");
    assert!(
        exit.success(),
        "a drain whose streams all completed is clean: {exit}"
    );
}
