//! Header hygiene through the real proxy: hop-by-hop headers (and those a `Connection` header
//! names) stop at the proxy in both directions; `X-Forwarded-*` and `Forwarded` are set or
//! appended correctly.

mod support;

use support::{raw, Backend, ConfigSpec, InProc};
use tokio::io::AsyncWriteExt;

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "transfer-encoding",
    "x-hop-secret",
    "x-other-hop",
];

/// Sends raw request bytes and returns the head the storefront received.
async fn storefront_sees(req: &[u8]) -> support::upstream::Seen {
    let old = Backend::echo("old").await;
    let new = Backend::echo("new").await;
    let proxy = InProc::start(&ConfigSpec::new(&old.url(), &new.url(), 0.0)).await;
    let mut s = raw::connect(proxy.addr).await;
    s.write_all(req).await.unwrap();
    let r = raw::read_response(&mut s).await.expect("response");
    assert_eq!(r.status, 200, "{r:?}");
    let seen = old.seen();
    assert_eq!(seen.len(), 1);
    seen[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_and_connection_named_headers_never_reach_the_storefront() {
    let seen = storefront_sees(
        b"POST /form?x=1 HTTP/1.1\r\n\
Host: shop.test\r\n\
Connection: keep-alive, X-Hop-Secret\r\n\
Connection: x-other-hop\r\n\
X-Hop-Secret: do-not-forward\r\n\
X-Other-Hop: do-not-forward\r\n\
Keep-Alive: timeout=5\r\n\
Proxy-Connection: keep-alive\r\n\
TE: gzip\r\n\
Trailer: X-Checksum\r\n\
Upgrade: h2c\r\n\
Transfer-Encoding: chunked\r\n\
Accept: text/html\r\n\
X-End-To-End: kept\r\n\
\r\n\
5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    for name in HOP_BY_HOP {
        let v = seen.header(name);
        // hyper's client frames the forwarded body itself: its own chunked framing is fine,
        // only the shopper's headers must not pass through.
        if *name == "transfer-encoding" && v.as_deref() == Some("chunked") {
            continue;
        }
        assert!(v.is_none(), "{name}: {v:?} reached the storefront");
    }
    assert_eq!(seen.header("accept").as_deref(), Some("text/html"));
    assert_eq!(seen.header("x-end-to-end").as_deref(), Some("kept"));
    assert_eq!(seen.header("host").as_deref(), Some("shop.test"));
    assert_eq!(seen.uri, "/form?x=1");
    assert_eq!(seen.body_len, 5, "the body passed through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_without_incoming_x_forwarded_for() {
    let seen = storefront_sees(b"GET / HTTP/1.1\r\nHost: shop.test:8080\r\n\r\n").await;
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        seen.header("x-forwarded-host").as_deref(),
        Some("shop.test:8080")
    );
    assert_eq!(
        seen.header("forwarded").as_deref(),
        Some("for=127.0.0.1;proto=http;host=\"shop.test:8080\"")
    );
    assert!(seen.header("x-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_with_incoming_x_forwarded_for() {
    let seen = storefront_sees(
        b"GET / HTTP/1.1\r\n\
Host: shop.test\r\n\
X-Forwarded-For: 203.0.113.7\r\n\
X-Forwarded-For: 198.51.100.2, 192.0.2.1\r\n\
X-Forwarded-Proto: https\r\n\
X-Forwarded-Host: evil.example\r\n\
Forwarded: for=198.51.100.1;proto=https\r\n\
\r\n",
    )
    .await;
    assert_eq!(
        seen.headers.get_all("x-forwarded-for").iter().count(),
        1,
        "one X-Forwarded-For line"
    );
    assert_eq!(
        seen.header("x-forwarded-for").as_deref(),
        Some("203.0.113.7, 198.51.100.2, 192.0.2.1, 127.0.0.1"),
        "the client address is appended to the incoming list"
    );
    assert_eq!(
        seen.header("x-forwarded-proto").as_deref(),
        Some("http"),
        "an untrusted incoming proto is replaced"
    );
    assert_eq!(
        seen.header("x-forwarded-host").as_deref(),
        Some("shop.test")
    );
    assert_eq!(
        seen.header("forwarded").as_deref(),
        Some("for=198.51.100.1;proto=https, for=127.0.0.1;proto=http;host=\"shop.test\"")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_hop_by_hop_headers_are_stripped() {
    let old = Backend::scripted(
        "old",
        b"HTTP/1.1 200 OK\r\n\
Content-Length: 2\r\n\
Connection: X-Internal-Hop, keep-alive\r\n\
X-Internal-Hop: secret\r\n\
Keep-Alive: timeout=5\r\n\
Proxy-Connection: keep-alive\r\n\
Trailer: X-Checksum\r\n\
Upgrade: h2c\r\n\
Proxy-Authenticate: Basic realm=\"internal\"\r\n\
X-End-To-End: kept\r\n\
\r\n\
ok",
    )
    .await;
    let new = Backend::echo("new").await;
    let proxy = InProc::start(&ConfigSpec::new(&old.url(), &new.url(), 0.0)).await;
    let mut s = raw::connect(proxy.addr).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        .await
        .unwrap();
    let r = raw::read_response(&mut s).await.expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"ok");
    assert_eq!(r.header("x-end-to-end"), Some("kept"));
    for name in [
        "x-internal-hop",
        "keep-alive",
        "proxy-connection",
        "trailer",
        "upgrade",
        "proxy-authenticate",
    ] {
        assert!(!r.has(name), "{name} reached the shopper: {r:?}");
    }
    if let Some(c) = r.header("connection") {
        assert!(
            !c.to_ascii_lowercase().contains("x-internal-hop"),
            "the storefront's Connection header was relayed: {c}"
        );
    }
    // The connection is still usable afterwards (keep-alive to the shopper is the proxy's own).
    s.write_all(b"GET /2 HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        raw::read_response(&mut s).await.expect("second").status,
        200
    );
}
