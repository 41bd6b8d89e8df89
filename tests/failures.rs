//! Upstream failures map the way nginx/Envoy users expect: refused 502, header timeout 504, reset
//! before headers 502, reset after headers a visibly truncated response; a connect failure is
//! retried once for bodyless idempotent requests and never for POST. Every framing x mid-body
//! failure x shopper protocol, checked with curl, is in `tests/failure_matrix.rs`.

mod support;

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use support::client::{request, send_new_conn};
use support::{raw, tls, Backend, Client, ConfigSpec, InProc, ProxyProcess, Resp};
use tokio::io::AsyncWriteExt;

/// The local error page names the storefront and carries the request id of the response header.
fn assert_error_page(r: &Resp, status: StatusCode, storefront: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let text = r.text();
    assert!(
        text.contains(&format!("storefront \"{storefront}\"")),
        "error names the storefront: {text}"
    );
    let id = r.header("x-request-id").expect("x-request-id on errors");
    assert!(!id.is_empty());
    assert!(
        text.contains(&format!("request id: {id}")),
        "body carries the same request id as the header ({id}): {text}"
    );
    assert!(text.len() < 512, "error pages are small");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_is_502_naming_the_storefront_with_request_id() {
    let old = Backend::echo("old").await;
    let dead = support::upstream::refused_addr();
    let spec = ConfigSpec::new(&old.url(), &format!("http://{dead}"), 100.0);
    let proxy = InProc::start(&spec).await;
    let client = Client::new(proxy.addr);
    let r = client.get("/cart").await;
    assert_error_page(&r, StatusCode::BAD_GATEWAY, "new");
    assert_eq!(r.header("x-cutover-storefront").as_deref(), Some("new"));

    // A client-supplied, well-formed request id is kept end to end.
    let r = client
        .get_h("/cart", &[("x-request-id", "shopper-req-42")])
        .await;
    assert_error_page(&r, StatusCode::BAD_GATEWAY, "new");
    assert_eq!(r.header("x-request-id").as_deref(), Some("shopper-req-42"));
    assert_eq!(
        old.requests(),
        0,
        "a failed storefront does not fall over to the other one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storefront_silent_past_response_header_timeout_is_504() {
    let old = Backend::echo("old").await;
    let hang = Backend::hang("new").await;
    let spec = ConfigSpec::new(&old.url(), &hang.url(), 100.0)
        .store_extra("new", "response_header_timeout = \"500ms\"");
    let proxy = InProc::start(&spec).await;
    let r = Client::new(proxy.addr).get("/slow").await;
    assert_error_page(&r, StatusCode::GATEWAY_TIMEOUT, "new");
    assert_eq!(
        hang.requests(),
        1,
        "the request reached the storefront once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_before_response_headers_is_502() {
    let old = Backend::echo("old").await;
    let reset = Backend::reset_before_headers("new").await;
    let proxy = InProc::start(&ConfigSpec::new(&old.url(), &reset.url(), 100.0)).await;
    let r = Client::new(proxy.addr).get("/").await;
    assert_error_page(&r, StatusCode::BAD_GATEWAY, "new");
}

/// Reads a response head, lets the backend reset, then reads the body: it must fail.
async fn truncated_after_headers(chunked: bool) {
    let old = Backend::echo("old").await;
    let reset = Backend::reset_mid_body("new", chunked).await;
    let proxy = InProc::start(&ConfigSpec::new(&old.url(), &reset.url(), 100.0)).await;

    // With hyper as the client: the body errors instead of ending.
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/big")
        .header("host", "shop.test")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(support::WAIT, sender.send_request(req))
        .await
        .expect("head in time")
        .expect("head");
    assert_eq!(resp.status(), 200, "headers were relayed before the reset");
    reset.go();
    let body = tokio::time::timeout(support::WAIT, resp.into_body().collect()).await;
    let body = body.expect("the proxy ends the response promptly");
    assert!(
        body.is_err(),
        "chunked={chunked}: a reset mid-body must not look like a complete response"
    );

    // With raw bytes: the connection closes without the framing ever completing.
    let mut s = raw::connect(proxy.addr).await;
    s.write_all(b"GET /big HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        .await
        .unwrap();
    // Wait (bounded) for the head and the first part of the body, then let the backend reset.
    let mut head = Vec::new();
    for _ in 0..30 {
        let (bytes, closed) =
            raw::read_until_close(&mut s, std::time::Duration::from_millis(300)).await;
        head.extend_from_slice(&bytes);
        if closed || head.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "head relayed before the reset"
    );
    reset.go();
    let (rest, closed) = raw::read_until_close(&mut s, support::WAIT).await;
    assert!(closed, "the proxy aborts the client connection");
    let mut all = head;
    all.extend_from_slice(&rest);
    assert!(
        raw::parse_one(&all).is_none(),
        "chunked={chunked}: bytes received form a complete response: {:?}",
        String::from_utf8_lossy(&all[..all.len().min(200)])
    );

    // Both failures are counted apart from complete responses, for the dashboard and a rollout
    // gate to compare old and new (the request itself still counts under its 200).
    let page = proxy.app.proxy.metrics().encode();
    let failed = support::metrics::metric_sum(
        &page,
        "cutover_upstream_errors_total",
        &[("storefront", "new"), ("kind", "body_failed")],
    );
    assert_eq!(failed, 2.0, "chunked={chunked}: mid-body failures counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_after_headers_truncates_a_content_length_response() {
    truncated_after_headers(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_after_headers_truncates_a_chunked_response() {
    truncated_after_headers(true).await;
}

/// The retry rule, made observable: an https storefront whose next connections are dropped
/// during the TLS handshake (a connect failure: nothing of the request was sent) counts every
/// attempt, and a dropped attempt can be followed by a working one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_is_retried_once_for_get_and_never_for_post() {
    // `auto` over https: hyper-util's client (ALPN may pick h2); `http1`: cutover's own pool.
    for protocol in ["auto", "http1"] {
        connect_retry_rule(protocol).await;
    }
}

async fn connect_retry_rule(protocol: &str) {
    let old = Backend::echo("old").await;
    let dir = tempfile::tempdir().unwrap();
    let (flaky, ca) = tls::flaky_https("new", dir.path()).await;
    let spec = ConfigSpec::new(&old.url(), &format!("https://{}", flaky.addr), 100.0)
        // No pooling: every request needs a fresh connect, so every attempt is counted.
        .store_extra(
            "new",
            &format!(
                "tls = {{ ca_file = \"{}\" }}\npool_max_idle = 0\nprotocol = \"{protocol}\"",
                ca.display()
            ),
        );
    let proxy = InProc::start(&spec).await;
    let client = Client::new(proxy.addr);
    let attempts = || flaky.connections();
    let requests = || flaky.requests();

    // Sanity: a working https storefront answers on the first attempt.
    assert_eq!(client.get("/").await.backend(), "new");
    assert_eq!((attempts(), requests()), (1, 1));

    // GET: first connect fails, the retry succeeds.
    flaky.log.drop_next.store(1, Ordering::SeqCst);
    let r = client.get("/retry-me").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.backend(), "new");
    assert_eq!(
        (attempts(), requests()),
        (3, 2),
        "one failed attempt, one retry"
    );

    // GET: two failures -> 502 after exactly one retry.
    flaky.log.drop_next.store(2, Ordering::SeqCst);
    let r = client.get("/twice").await;
    assert_error_page(&r, StatusCode::BAD_GATEWAY, "new");
    assert_eq!((attempts(), requests()), (5, 2), "retried once, not more");

    // POST, with and without a body: never retried.
    for body in ["", "item=42"] {
        flaky.log.drop_next.store(1, Ordering::SeqCst);
        let before = attempts();
        let r = client
            .send(request(proxy.addr, Method::POST, "/cart", &[], body))
            .await;
        assert_error_page(&r, StatusCode::BAD_GATEWAY, "new");
        assert_eq!(
            attempts() - before,
            1,
            "POST {body:?} was attempted exactly once"
        );
        assert_eq!(flaky.log.drop_next.load(Ordering::SeqCst), 0);
    }
    assert_eq!(requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_to_a_storefront_that_resets_is_sent_exactly_once() {
    let old = Backend::echo("old").await;
    let reset = Backend::reset_before_headers("new").await;
    let proxy = InProc::start(&ConfigSpec::new(&old.url(), &reset.url(), 100.0)).await;
    let req = request(proxy.addr, Method::POST, "/checkout", &[], "order=1");
    let r = send_new_conn(proxy.addr, req).await.expect("response");
    assert_error_page(&r, StatusCode::BAD_GATEWAY, "new");
    // Let any (wrong) second attempt arrive before counting.
    let r2 = Client::new(proxy.addr).get("/after").await;
    assert_eq!(r2.status, StatusCode::BAD_GATEWAY);
    let posts = reset.seen().iter().filter(|s| s.method == "POST").count();
    assert_eq!(posts, 1, "the POST reached the storefront exactly once");
    assert_eq!(reset.seen().iter().filter(|s| s.method == "GET").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_request_id_is_on_the_log_line() {
    let old = Backend::echo("old").await;
    let dead = support::upstream::refused_addr();
    let spec = ConfigSpec::new(&old.url(), &format!("http://{dead}"), 100.0);
    let mut proxy = ProxyProcess::start_spec(&spec);
    let r = Client::new(proxy.addr).get("/cart").await;
    assert_error_page(&r, StatusCode::BAD_GATEWAY, "new");
    let id = r.header("x-request-id").unwrap();
    let line = proxy
        .wait_log(|v| {
            v["request_id"]
                .as_str()
                .is_some_and(|s| s.trim_matches('"') == id)
        })
        .await;
    let line =
        line.unwrap_or_else(|| panic!("no log line with request id {id}: {:?}", proxy.log_lines()));
    assert_eq!(line["storefront"], "new", "{line}");
    assert_eq!(line["kind"], "connect", "{line}");
}
