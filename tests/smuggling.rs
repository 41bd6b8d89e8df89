//! Request smuggling basics (raw TCP, recording storefront), following the shape of sozu's H1
//! security suite and HAProxy's `reg-tests/http-messaging`: each ambiguous request carries a
//! pipelined `GET /smuggled-...` that only a desynchronised parser would see as a request.
//! Pass: the client gets 400 or the connection closes (at most the first request answered), the
//! storefront never receives the smuggled request, and a fresh request afterwards succeeds.

mod support;

use support::raw::{self, RawResp};
use support::{get_new_conn, Backend, ConfigSpec, InProc};
use tokio::io::AsyncWriteExt;

/// `(name, request bytes up to the smuggled part, whether the answer must be 400)`. Where it
/// need not be, the first request may legitimately be answered (then the connection closes).
#[rustfmt::skip]
const CASES: &[(&str, &str, bool)] = &[
    // CL.TE: Content-Length covers the smuggled request, chunked ends before it.
    ("cl-then-te",
     "POST /a HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 49\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     false),
    // TE.CL: chunked covers the smuggled request, Content-Length ends before it.
    ("te-then-cl",
     "POST /a HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
     false),
    ("duplicate-te-identity-last",
     "POST /a HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
     true),
    ("te-list-not-ending-in-chunked",
     "POST /a HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
     true),
    ("obfuscated-te-xchunked",
     "POST /a HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
     true),
    ("obfuscated-te-space-before-colon",
     "POST /a HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
     true),
    ("obfuscated-te-trailing-tab",
     "POST /a HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\t\r\nContent-Length: 49\r\n\r\n0\r\n\r\n",
     false),
    ("obfuscated-te-obs-fold",
     "POST /a HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
     true),
    ("duplicate-content-length",
     "POST /a HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 5\r\nContent-Length: 49\r\n\r\nhello",
     true),
    ("content-length-list",
     "POST /a HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 5, 49\r\n\r\nhello",
     true),
    ("signed-content-length",
     "POST /a HTTP/1.1\r\nHost: shop.test\r\nContent-Length: +5\r\n\r\nhello",
     true),
    ("http10-with-te",
     "POST /a HTTP/1.0\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 49\r\n\r\n0\r\n\r\n",
     true),
    // The head is valid and forwarded; the body is not: the shopper gets 400, not a 502 that
    // blames the storefront.
    ("chunk-size-overflow",
     "POST /a HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\nx\r\n0\r\n\r\n",
     true),
    ("bare-lf-in-chunk-framing",
     "POST /a HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
     true),
];

fn smuggled(name: &str) -> String {
    format!("GET /smuggled-{name} HTTP/1.1\r\nHost: shop.test\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_never_smuggles_a_request() {
    let old = Backend::echo("old").await;
    let new = Backend::echo("new").await;
    let proxy = InProc::start(&ConfigSpec::new(&old.url(), &new.url(), 0.0)).await;
    let mut failures = Vec::new();
    for (name, attack, want_400) in CASES {
        let bytes = format!("{attack}{}", smuggled(name));
        let (responses, closed) = raw::exchange(proxy.addr, bytes.as_bytes()).await;
        let statuses: Vec<u16> = responses.iter().map(|r: &RawResp| r.status).collect();
        let reached = old
            .seen()
            .iter()
            .any(|s| s.uri.contains("smuggled") || s.uri.contains("SMUGGLED"));
        println!("{name}: statuses {statuses:?}, closed {closed}, smuggled reached {reached}");
        let ok = !reached && closed && statuses.len() <= 1 && (!want_400 || statuses == [400]);
        if !ok {
            failures.push(format!(
                "{name}: statuses {statuses:?}, closed {closed}, smuggled request reached the storefront: {reached}"
            ));
        }
        let fresh = get_new_conn(proxy.addr, "/fresh", &[]).await;
        assert_eq!(fresh.status, 200, "{name}: a fresh request afterwards");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiple_host_headers_are_rejected() {
    let old = Backend::echo("old").await;
    let new = Backend::echo("new").await;
    let proxy = InProc::start(&ConfigSpec::new(&old.url(), &new.url(), 0.0)).await;
    let mut s = raw::connect(proxy.addr).await;
    s.write_all(b"GET /two-hosts HTTP/1.1\r\nHost: shop.test\r\nHost: admin.internal\r\n\r\n")
        .await
        .unwrap();
    let r = raw::read_response(&mut s).await.expect("response");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.has("x-request-id"));
    assert_eq!(old.connections(), 0, "nothing reached a storefront");
    assert_eq!(get_new_conn(proxy.addr, "/fresh", &[]).await.status, 200);
}
