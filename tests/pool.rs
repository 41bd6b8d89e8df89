//! cutover's own HTTP/1.1 pool (storefronts on `http://` with `protocol = "auto"`, and every
//! `protocol = "http1"` storefront): connections are reused, a storefront closing idle
//! connections never costs a shopper an error, `Connection: close` is honoured, and
//! `pool_max_idle` bounds what is kept.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use support::raw;
use support::upstream::{bind_local, read_head, serve_h1, spawn_raw};
use support::{Backend, Client, ConfigSpec, InProc, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A config sending every shopper to `new`, with extra lines for `new`.
fn all_new(old: &Backend, new: &Backend, extra: &str) -> ConfigSpec {
    ConfigSpec::new(&old.url(), &new.url(), 100.0).store_extra("new", extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_share_one_storefront_connection() {
    for protocol in ["auto", "http1"] {
        let old = Backend::counting("old").await;
        let new = Backend::counting("new").await;
        let spec = all_new(&old, &new, &format!("protocol = \"{protocol}\""));
        let proxy = InProc::start(&spec).await;
        let client = Client::new(proxy.addr);
        for i in 0..50 {
            let r = client.get(&format!("/p/{i}")).await;
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.backend(), "new");
        }
        assert_eq!(new.requests(), 50, "{protocol}");
        assert_eq!(
            new.connections(),
            1,
            "{protocol}: 50 sequential requests on one pooled connection"
        );
    }
}

/// A storefront answering `200 ok` (keep-alive, nothing said about closing) that closes each
/// connection once it has been idle for `keep_alive` (zero: right after the response).
async fn closes_idle(name: &str, keep_alive: Duration) -> Backend {
    let (listener, _) = bind_local().await;
    // Zero keep-alive still waits for the connection's one request: a zero read timeout would
    // race the proxy's first write and close a fresh connection unanswered (a flaky 502).
    let first_wait = if keep_alive.is_zero() {
        WAIT
    } else {
        keep_alive
    };
    spawn_raw(name, listener, move |mut stream, log, _| async move {
        let mut buf = Vec::new();
        loop {
            let Ok(Some(_)) =
                tokio::time::timeout(first_wait, read_head(&mut stream, &mut buf, &log)).await
            else {
                return;
            };
            log.requests
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let resp = b"HTTP/1.1 200 OK\r\nx-backend: new\r\ncontent-length: 2\r\n\r\nok";
            if stream.write_all(resp).await.is_err() {
                return;
            }
            if keep_alive.is_zero() {
                let _ = stream.shutdown().await;
                return;
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storefront_closing_idle_connections_never_fails_a_get() {
    let old = Backend::counting("old").await;
    // Keep-alive shorter than the gap between requests: every pooled connection is gone by the
    // time the next request wants it.
    let short = closes_idle("new", Duration::from_millis(100)).await;
    let proxy = InProc::start(&all_new(&old, &short, "")).await;
    let client = Client::new(proxy.addr);
    for i in 0..5 {
        let r = client.get(&format!("/gap/{i}")).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(short.requests(), 5);
    assert_eq!(
        short.connections(),
        5,
        "a closed connection is never reused"
    );

    // Closed right after each response, without `Connection: close`: the next request may find
    // the connection closing under it, and must still succeed.
    let abrupt = closes_idle("new", Duration::ZERO).await;
    let proxy = InProc::start(&all_new(&old, &abrupt, "")).await;
    let client = Client::new(proxy.addr);
    for i in 0..30 {
        let r = client.get(&format!("/abrupt/{i}")).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    assert_eq!(abrupt.requests(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_with_connection_close_is_not_reused() {
    let old = Backend::counting("old").await;
    // Says `Connection: close` but keeps the connection open and would answer more requests:
    // only the proxy can keep itself from reusing it.
    let closing = Backend::scripted(
        "new",
        b"HTTP/1.1 200 OK\r\nconnection: close\r\nx-backend: new\r\ncontent-length: 2\r\n\r\nok",
    )
    .await;
    let proxy = InProc::start(&all_new(&old, &closing, "")).await;
    let client = Client::new(proxy.addr);
    for i in 0..5 {
        let r = client.get(&format!("/close/{i}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "ok");
    }
    assert_eq!(closing.connections(), 5, "one connection per request");
}

/// A storefront that answers only once `n` requests are waiting, so `n` concurrent requests
/// need `n` connections.
async fn gathering(name: &str, n: usize) -> Backend {
    let (listener, _) = bind_local().await;
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    spawn_raw(name, listener, move |stream, log, _| {
        let barrier = Arc::clone(&barrier);
        serve_h1(stream, move |_req| {
            let barrier = Arc::clone(&barrier);
            let log = Arc::clone(&log);
            async move {
                log.requests
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = tokio::time::timeout(WAIT, barrier.wait()).await;
                Response::builder()
                    .header("x-backend", "new")
                    .body(Full::new(Bytes::from_static(b"ok")))
                    .unwrap()
            }
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_max_idle_bounds_the_idle_connections() {
    const BURST: usize = 6;
    let old = Backend::counting("old").await;
    let new = gathering("new", BURST).await;
    let proxy = InProc::start(&all_new(&old, &new, "pool_max_idle = 2")).await;
    let client = Arc::new(Client::new(proxy.addr));
    let burst = || async {
        let tasks: Vec<_> = (0..BURST)
            .map(|i| {
                let client = Arc::clone(&client);
                tokio::spawn(async move { client.get(&format!("/burst/{i}")).await })
            })
            .collect();
        for t in tasks {
            let r = t.await.unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
        }
    };
    burst().await;
    assert_eq!(new.connections(), BURST, "a burst of {BURST} needs {BURST}");
    // Let the last response bodies end and their connections go back.
    tokio::time::sleep(Duration::from_millis(200)).await;
    burst().await;
    assert_eq!(
        new.connections(),
        BURST + (BURST - 2),
        "two idle connections were kept and reused, the other four were closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_reach_the_storefront_whole_in_either_framing() {
    let old = Backend::echo("old").await;
    let new = Backend::echo("new").await;
    let proxy = InProc::start(&all_new(&old, &new, "")).await;
    let host = format!("Host: {}\r\n", proxy.addr);
    // Chunked from the shopper (length unknown): re-chunked to the storefront.
    let chunked = format!(
        "POST /up HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    );
    // A declared length is kept.
    let sized = format!("PUT /up HTTP/1.1\r\n{host}Content-Length: 11\r\n\r\nhello world");
    for (request, framing) in [(chunked, "transfer-encoding"), (sized, "content-length")] {
        let mut s = raw::connect(proxy.addr).await;
        s.write_all(request.as_bytes()).await.unwrap();
        let resp = raw::read_response(&mut s).await.expect("a response");
        assert_eq!(resp.status, 200, "{framing}");
        let seen = new.seen().pop().expect("the storefront saw the request");
        assert_eq!(seen.body_len, 11, "{framing}: the whole body arrived");
        assert!(
            seen.header(framing).is_some(),
            "{framing}: {:?}",
            seen.headers
        );
    }
}

/// A storefront that answers `413` as soon as it has a request head, without reading the body,
/// and keeps the connection open.
async fn refuses_bodies(name: &str) -> Backend {
    let (listener, _) = bind_local().await;
    spawn_raw(name, listener, move |mut stream, log, _| async move {
        let mut buf = Vec::new();
        if read_head(&mut stream, &mut buf, &log).await.is_none() {
            return;
        }
        log.requests
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let resp = b"HTTP/1.1 413 Payload Too Large\r\nx-backend: new\r\ncontent-length: 0\r\n\r\n";
        if stream.write_all(resp).await.is_err() {
            return;
        }
        // Whatever else arrives is read and ignored until the proxy hangs up.
        let mut sink = [0u8; 16 * 1024];
        while let Ok(Ok(n)) = tokio::time::timeout(WAIT, stream.read(&mut sink)).await {
            if n == 0 {
                return;
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storefront_answering_before_the_body_ends_is_not_kept_waiting() {
    let old = Backend::counting("old").await;
    let new = refuses_bodies("new").await;
    // The shopper's body stalls; only the storefront's early answer can end the exchange
    // before the (long) body idle timeout.
    let spec = all_new(&old, &new, "").limits("body_idle_timeout = \"60s\"");
    let proxy = InProc::start(&spec).await;
    for round in 0..2 {
        let mut s = raw::connect(proxy.addr).await;
        let head = format!(
            "POST /big HTTP/1.1\r\nHost: {}\r\nContent-Length: 16777216\r\n\r\n",
            proxy.addr
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&vec![b'x'; 64 * 1024]).await.unwrap();
        let resp = raw::read_response(&mut s)
            .await
            .expect("the storefront's answer, while the body is still owed");
        assert_eq!(resp.status, 413, "round {round}");
    }
    assert_eq!(
        new.connections(),
        2,
        "a connection whose request body was cut short is never reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_storefront_connection_is_reused_too() {
    let old = Backend::counting("old").await;
    let dir = tempfile::tempdir().unwrap();
    let (new, ca) = support::tls::flaky_https("new", dir.path()).await;
    let spec = ConfigSpec::new(&old.url(), &format!("https://{}", new.addr), 100.0).store_extra(
        "new",
        &format!(
            "tls = {{ ca_file = \"{}\" }}\nprotocol = \"http1\"",
            ca.display()
        ),
    );
    let proxy = InProc::start(&spec).await;
    let client = Client::new(proxy.addr);
    for i in 0..30 {
        let r = client.get(&format!("/tls/{i}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.backend(), "new");
    }
    assert_eq!(new.requests(), 30);
    assert_eq!(
        new.connections(),
        1,
        "30 sequential requests over one pooled TLS connection"
    );
}
