//! Protocol limits at the shopper side: too many or too large headers 431, a long URI 414, a
//! client that sends its head slowly (or not at all) is cut off at `header_read_timeout`, and
//! the connection cap answers 503 while the connections already in keep working.

mod support;

use std::time::Duration;

use support::{get_new_conn, raw, Backend, Client, ConfigSpec, InProc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn proxy_with(limits: &str) -> (InProc, Backend, Backend) {
    let old = Backend::echo("old").await;
    let new = Backend::echo("new").await;
    let spec = ConfigSpec::new(&old.url(), &new.url(), 0.0).limits(limits);
    (InProc::start(&spec).await, old, new)
}

/// A head of `n` header lines (Host and Connection included).
fn head_with_headers(n: usize) -> String {
    let mut req = String::from("GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n");
    for i in 0..n - 2 {
        req.push_str(&format!("X-Header-{i}: {i}\r\n"));
    }
    req.push_str("\r\n");
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_headers_is_431() {
    let (proxy, old, _new) = proxy_with("").await;
    for n in [101, 150] {
        let (responses, _) = raw::exchange(proxy.addr, head_with_headers(n).as_bytes()).await;
        assert_eq!(
            responses.first().map(|r| r.status),
            Some(431),
            "{n} headers"
        );
    }
    assert_eq!(
        old.connections(),
        0,
        "rejected heads never reach a storefront"
    );
    // The default limit is 100 headers, inclusive.
    let (responses, _) = raw::exchange(proxy.addr, head_with_headers(100).as_bytes()).await;
    assert_eq!(responses.first().map(|r| r.status), Some(200));
    // And it is configurable.
    let (proxy, _old, _new) = proxy_with("max_headers = 200").await;
    let (responses, _) = raw::exchange(proxy.addr, head_with_headers(150).as_bytes()).await;
    assert_eq!(responses.first().map(|r| r.status), Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_headers_is_431() {
    let (proxy, old, _new) = proxy_with("max_header_bytes = \"16KiB\"").await;
    let big = "v".repeat(20 * 1024);
    let req = format!("GET / HTTP/1.1\r\nHost: shop.test\r\nX-Big: {big}\r\n\r\n");
    let (responses, _) = raw::exchange(proxy.addr, req.as_bytes()).await;
    assert_eq!(
        responses.first().map(|r| r.status),
        Some(431),
        "{responses:?}"
    );
    assert_eq!(old.connections(), 0);
    let small = "v".repeat(8 * 1024);
    let r = Client::new(proxy.addr)
        .get_h("/", &[("x-big", &small)])
        .await;
    assert_eq!(r.status, 200, "a head under the limit passes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uri_longer_than_max_uri_length_is_414() {
    let (proxy, old, _new) = proxy_with("max_uri_length = 1024").await;
    let client = Client::new(proxy.addr);
    let long = format!("/search?q={}", "a".repeat(2000));
    let r = client.get(&long).await;
    assert_eq!(r.status, 414, "{}", r.text());
    assert!(r.header("x-request-id").is_some());
    assert_eq!(old.connections(), 0);
    let fits = format!("/search?q={}", "a".repeat(1000));
    assert_eq!(client.get(&fits).await.status, 200);
    assert_eq!(old.seen()[0].uri, fits);
}

/// Dribbles header lines every 200 ms (never ending the head) until the proxy closes the
/// connection or 40 lines are sent. Returns whether the proxy closed it.
async fn dribble_until_closed(proxy: std::net::SocketAddr, first: &[u8]) -> bool {
    let s = raw::connect(proxy).await;
    let (mut rd, mut wr) = s.into_split();
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        let mut got = Vec::new();
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    });
    let _ = wr.write_all(first).await;
    for i in 0..40 {
        if reader.is_finished() {
            break;
        }
        // The slowloris's pace: the behaviour under test, not a wait.
        tokio::time::sleep(Duration::from_millis(200)).await;
        if wr
            .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
            .await
            .is_err()
        {
            break;
        }
    }
    let closed = tokio::time::timeout(Duration::from_secs(1), reader).await;
    match closed {
        Ok(Ok(got)) => {
            let text = String::from_utf8_lossy(&got);
            assert!(
                got.is_empty() || text.starts_with("HTTP/1.1 408"),
                "a slow client gets a closed connection (or 408), got {text:?}"
            );
            true
        }
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_headers_slowly_is_cut_off_at_header_read_timeout() {
    let (proxy, old, _new) = proxy_with("header_read_timeout = \"1s\"").await;
    assert!(
        dribble_until_closed(proxy.addr, b"GET / HTTP/1.1\r\nHost: shop.test\r\n").await,
        "the proxy kept a slowloris head open for 8 s with a 1 s header timeout"
    );
    assert_eq!(old.connections(), 0);
    // The proxy still serves others.
    assert_eq!(get_new_conn(proxy.addr, "/", &[]).await.status, 200);
}

/// On a keep-alive connection each request head gets its own `header_read_timeout`, counted from
/// when the proxy starts waiting for it. cutover's timer (src/timer.rs) keeps the timer entry
/// armed for the previous request's deadline and moves the deadline lazily: the old deadline
/// passing must neither close the connection early nor leave the next head unbounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_on_a_keep_alive_connection_gets_its_own_header_timeout() {
    // The sleeps below are the thing under test (a head that takes its time), not waits for an
    // event. Their margins are a whole second either side of each deadline so a loaded machine
    // does not decide the outcome.
    let (proxy, old, _new) = proxy_with("header_read_timeout = \"4s\"").await;
    let mut s = raw::connect(proxy.addr).await;
    // Request 1's head takes 2 s: the entry is armed for t=4 s; request 2 starts at ~t=2 s.
    s.write_all(b"GET /one HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.write_all(b"Host: shop.test\r\n\r\n").await.unwrap();
    let first = raw::read_response(&mut s).await.expect("first response");
    assert_eq!(first.status, 200);
    // Request 2: started at once, finished at ~t=5 s, after request 1's deadline (4 s) and
    // before its own (~6 s).
    s.write_all(b"GET /two HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.write_all(b"Host: shop.test\r\n\r\n").await.unwrap();
    let second = raw::read_response(&mut s)
        .await
        .expect("the connection was cut at the previous request's deadline");
    assert_eq!(second.status, 200);
    assert_eq!(old.connections(), 1, "one upstream connection, reused");
    // Request 3 never finishes its head: cut off, within a bound.
    s.write_all(b"GET /three HTTP/1.1\r\n").await.unwrap();
    let (got, closed) = raw::read_until_close(&mut s, support::SLOW_WAIT).await;
    assert!(
        closed,
        "a stalled third head was held for 30 s with a 4 s header timeout"
    );
    assert!(got.is_empty() || got.starts_with(b"HTTP/1.1 408"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_nothing_is_cut_off_at_header_read_timeout() {
    let (proxy, _old, _new) = proxy_with("header_read_timeout = \"1s\"").await;
    let mut s = raw::connect(proxy.addr).await;
    let (got, closed) = raw::read_until_close(&mut s, Duration::from_secs(8)).await;
    assert!(
        closed,
        "a silent connection was held for 8 s with a 1 s header timeout"
    );
    assert!(got.is_empty() || got.starts_with(b"HTTP/1.1 408"));
    // Likewise a client that sends the first bytes of the HTTP/2 preface and stops.
    let mut s = raw::connect(proxy.addr).await;
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let (_, closed) = raw::read_until_close(&mut s, Duration::from_secs(8)).await;
    assert!(closed, "a stalled HTTP/2 preface was held for 8 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_stops_arriving_is_cut_at_body_idle_timeout() {
    let (proxy, old, _new) = proxy_with("body_idle_timeout = \"1s\"").await;
    let mut s = raw::connect(proxy.addr).await;
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let (bytes, closed) = raw::read_until_close(&mut s, Duration::from_secs(8)).await;
    assert!(
        closed,
        "a stalled upload was held for 8 s with a 1 s body idle timeout"
    );
    let responses = raw::parse_all(&bytes);
    assert_eq!(
        responses.first().map(|r| r.status),
        Some(408),
        "the shopper is told the body timed out, not that the storefront failed"
    );
    assert_eq!(old.connections(), 1, "the request head had been forwarded");
}

/// At the cap, an idle keep-alive connection (one that was served and has nothing in flight) is
/// closed to let a new shopper in, oldest first, as nginx reuses idle connections; the others
/// keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_the_oldest_idle_keep_alive_connection_makes_room() {
    let (proxy, old, _new) = proxy_with("max_connections = 2").await;
    let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let (mut first, st) = held_from(lo, proxy.addr).await.expect("served");
    assert_eq!(st, 200);
    let (mut second, st) = held_from(lo, proxy.addr).await.expect("served");
    assert_eq!(st, 200);

    // The cap is reached, both are idle: the new shopper gets in.
    let (responses, _) = raw::exchange(
        proxy.addr,
        b"GET /third HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        responses.first().map(|r| r.status),
        Some(200),
        "{responses:?}"
    );
    assert!(old.seen().iter().any(|s| s.uri == "/third"));
    // The oldest idle connection was the one closed for it.
    let (got, closed) = raw::read_until_close(&mut first, support::WAIT).await;
    assert!(
        closed && got.is_empty(),
        "the oldest idle connection is closed, without an answer: {got:?}"
    );
    assert_eq!(
        evicted(&proxy),
        1.0,
        "the connection closed to make room is counted"
    );
    second
        .write_all(b"GET /again HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        .await
        .unwrap();
    let again = raw::read_response(&mut second)
        .await
        .expect("the newer one is still served");
    assert_eq!(again.status, 200);
}

/// At the cap with every connection busy (a request in flight), a new connection gets the fast
/// 503 and nothing in flight is cut for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_answers_503_and_spares_busy_connections() {
    let (proxy, old, _new) = proxy_with("max_connections = 2").await;

    // Two connections, each with an upload still arriving: in flight at the proxy and upstream.
    let mut busy = Vec::new();
    for i in 0..2 {
        let mut s = raw::connect(proxy.addr).await;
        s.write_all(
            format!("POST /up{i} HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 4\r\n\r\nab")
                .as_bytes(),
        )
        .await
        .unwrap();
        busy.push(s);
    }
    support::wait_for(
        "both uploads to reach the storefront",
        support::WAIT,
        || async { old.connections() >= 2 },
    )
    .await;

    let (responses, closed) = raw::exchange(
        proxy.addr,
        b"GET /third HTTP/1.1\r\nHost: shop.test\r\n\r\n",
    )
    .await;
    assert!(closed, "the over-cap connection is closed");
    assert_eq!(
        responses.first().map(|r| r.status),
        Some(503),
        "{responses:?}"
    );
    assert!(responses[0].has("retry-after"));

    // The busy two complete.
    for s in busy.iter_mut() {
        s.write_all(b"cd").await.unwrap();
        let r = raw::read_response(s)
            .await
            .expect("the busy request completes");
        assert_eq!(r.status, 200);
    }
    assert!(old.seen().iter().all(|s| s.uri != "/third"));
    assert_eq!(old.seen().iter().filter(|s| s.body_len == 4).count(), 2);
    assert_eq!(evicted(&proxy), 0.0, "no busy connection was closed for it");
}

/// `cutover_connections_evicted_total{listener="shopper"}`.
fn evicted(proxy: &InProc) -> f64 {
    support::metrics::metric_sum(
        &proxy.app.proxy.metrics().encode(),
        "cutover_connections_evicted_total",
        &[("listener", "shopper")],
    )
}

/// One GET from a client socket bound to `from`, on a fresh connection kept open afterwards.
async fn held_from(
    from: std::net::IpAddr,
    proxy: std::net::SocketAddr,
) -> Option<(tokio::net::TcpStream, u16)> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.bind((from, 0).into()).ok()?;
    let mut stream = socket.connect(proxy).await.ok()?;
    stream
        .write_all(b"GET /held HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        .await
        .ok()?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(support::WAIT, stream.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let status = String::from_utf8_lossy(&buf[..n])
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((stream, status))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_address_cannot_take_every_connection() {
    let (proxy, _old, _new) =
        proxy_with("max_connections = 100\nmax_connections_per_client = 3").await;
    let greedy: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let other: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        let (stream, status) = held_from(greedy, proxy.addr).await.expect("served");
        assert_eq!(status, 200);
        held.push(stream);
    }
    let (_, status) = held_from(greedy, proxy.addr).await.expect("an answer");
    assert_eq!(
        status, 503,
        "the fourth connection from one address is refused"
    );
    let (_kept, status) = held_from(other, proxy.addr).await.expect("an answer");
    assert_eq!(status, 200, "another address is still served");
    // Closing one of the greedy client's connections gives it a slot back (the proxy notices the
    // close asynchronously: retry until it has, bounded).
    drop(held.pop());
    let _slot = support::wait_for("the freed slot to be usable", support::WAIT, || async {
        match held_from(greedy, proxy.addr).await {
            Some((s, 200)) => Some(s),
            _ => None,
        }
    })
    .await;
}
