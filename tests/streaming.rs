//! Bodies stream through without buffering (the proxy's memory stays flat while 256 MiB pass
//! each way), WebSocket upgrades are tunnelled once the storefront answers 101, and an upgrade
//! the storefront refuses carries no tunnel.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::Request;
use support::client::{send_counting, send_new_conn_within};
use support::raw;
use support::upstream::RepeatBody;
use support::{Backend, ConfigSpec, InProc, ProxyProcess};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

const BIG: u64 = 256 * 1024 * 1024;
const RSS_LIMIT_KIB: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_and_download_of_256_mib_keep_proxy_memory_flat() {
    let store = Backend::stream("store", BIG).await;
    let spec = ConfigSpec::new(&store.url(), &store.url(), 0.0);
    let proxy = ProxyProcess::start_spec(&spec);
    let (hwm_start, _) = proxy.memory_kib();
    let limit = Duration::from_secs(120);

    let up = Request::post(format!("http://{}/upload", proxy.addr))
        .header("host", "shop.test")
        .body(RepeatBody::new(BIG))
        .unwrap();
    let r = send_new_conn_within(proxy.addr, up, limit)
        .await
        .expect("upload through the proxy");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        BIG.to_string(),
        "the storefront drained the whole upload"
    );

    let down = Request::get(format!("http://{}/download", proxy.addr))
        .header("host", "shop.test")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let (status, got) = send_counting(proxy.addr, down, limit).await;
    assert_eq!(status, 200);
    assert_eq!(got, Ok(BIG), "the whole download arrived");

    let (hwm, rss) = proxy.memory_kib();
    println!("proxy memory: VmHWM {hwm} KiB (at start {hwm_start} KiB), VmRSS {rss} KiB");
    assert!(
        hwm < RSS_LIMIT_KIB,
        "proxy peak RSS {hwm} KiB while streaming 2 x 256 MiB (limit {RSS_LIMIT_KIB} KiB)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_works_through_the_proxy() {
    let old = Backend::echo("old").await;
    let ws = Backend::ws_echo("new").await;
    let proxy = InProc::start(&ConfigSpec::new(&old.url(), &ws.url(), 100.0)).await;

    let tcp = raw::connect(proxy.addr).await;
    let (mut socket, resp) =
        tokio_tungstenite::client_async(format!("ws://{}/chat", proxy.addr), tcp)
            .await
            .expect("websocket handshake through the proxy");
    assert_eq!(resp.status(), 101);
    assert_eq!(
        resp.headers().get("x-cutover-storefront").unwrap(),
        "new",
        "the upgrade went to the assigned storefront"
    );
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let messages = [
        Message::text("hello through cutover"),
        Message::binary(big),
        Message::text("bye"),
    ];
    for m in messages {
        socket.send(m.clone()).await.expect("send");
        let echoed = tokio::time::timeout(support::WAIT, socket.next())
            .await
            .expect("echo timed out")
            .expect("stream open")
            .expect("frame");
        assert_eq!(echoed, m);
    }
    socket.close(None).await.expect("close");
    assert_eq!(ws.requests(), 1);
    assert_eq!(old.requests(), 0);
}

const UPGRADE_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: shop.test\r\nConnection: Upgrade\r\n\
Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_the_storefront_refuses_carries_no_tunnel() {
    let old = Backend::echo("old").await;
    let refuser = Backend::refuse_upgrade("new").await;
    let proxy = InProc::start(&ConfigSpec::new(&old.url(), &refuser.url(), 100.0)).await;

    // Bytes that are not HTTP, sent after the refused upgrade, must not be tunnelled.
    let mut s = raw::connect(proxy.addr).await;
    s.write_all(UPGRADE_REQUEST).await.unwrap();
    let r = raw::read_response(&mut s).await.expect("response");
    assert_eq!(r.status, 200, "the storefront's refusal is relayed");
    assert_eq!(r.body, b"no upgrade\n");
    s.write_all(b"TUNNELLED-MARKER \x00\x01\x02 raw websocket frame bytes\r\n\r\n")
        .await
        .unwrap();
    let (rest, closed) = raw::read_until_close(&mut s, Duration::from_secs(5)).await;
    let after = raw::parse_all(&rest);
    assert!(
        closed || after.iter().all(|r| r.status == 400),
        "after a refused upgrade, garbage gets 400 or a closed connection"
    );
    assert!(after.iter().all(|r| r.status == 400), "{after:?}");

    // A well-formed pipelined request after the refusal is proxied as a new request (with
    // cutover's headers), not copied raw to the storefront.
    let mut s = raw::connect(proxy.addr).await;
    let mut both = UPGRADE_REQUEST.to_vec();
    both.extend_from_slice(
        b"GET /after-refusal HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
    );
    s.write_all(&both).await.unwrap();
    let (bytes, _) = raw::read_until_close(&mut s, Duration::from_secs(5)).await;
    let responses = raw::parse_all(&bytes);
    assert_eq!(
        responses.len(),
        2,
        "two answers: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(responses.iter().all(|r| r.status == 200));

    let raw_seen = refuser.raw();
    assert!(
        !raw_seen
            .windows(b"TUNNELLED-MARKER".len())
            .any(|w| w == b"TUNNELLED-MARKER"),
        "bytes after a refused upgrade reached the storefront"
    );
    let seen = refuser.seen();
    let after = seen
        .iter()
        .find(|s| s.uri == "/after-refusal")
        .expect("the pipelined request was proxied");
    assert_eq!(
        after.header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert!(after.header("x-request-id").is_some());
    assert!(after.header("upgrade").is_none());
    assert_eq!(
        seen.iter().filter(|s| s.uri == "/chat").count(),
        2,
        "each upgrade request reached the storefront once"
    );
}
