//! Forwarded requests answered by the HTTP/1 front must be byte for byte what hyper's server
//! would have sent (less the date and the cohort cookie's random bucket): the same status line,
//! headers in the same order, the same framing for every kind of storefront body, and the same
//! reset when a storefront's body fails half-way.
//!
//! Each request is sent twice to the same proxy: as a plain `GET`/`HEAD`, which the front
//! forwards, and with `Content-Length: 0`, a framing header the front never takes, so hyper's
//! server answers it. The storefront is a raw server that answers by path with exact bytes.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::proxy::ConfigSpec;
use support::raw;
use support::upstream::{bind_local, read_head, spawn_raw, Backend};
use support::Dir;
use tokio::io::AsyncWriteExt;

/// What the storefront answers for a path, and whether it closes the connection after it.
fn script(path: &str) -> (Vec<u8>, bool) {
    let fixed = |s: &str| (s.as_bytes().to_vec(), false);
    match path {
        "/len" => fixed("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 5\r\n\r\nhello"),
        "/chunked" => fixed("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncache-control: max-age=60\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        "/empty" => fixed("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
        "/204" => fixed("HTTP/1.1 204 No Content\r\nx-b: y\r\n\r\n"),
        "/304" => fixed("HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\n\r\n"),
        "/404" => fixed("HTTP/1.1 404 Not Found\r\ncontent-type: text/html\r\ncontent-length: 9\r\n\r\nnot here\n"),
        "/dated" => fixed("HTTP/1.1 200 OK\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\ncontent-length: 2\r\n\r\nok"),
        "/slow" => fixed("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow"),
        "/teapot" => fixed("HTTP/1.1 418 I'm a teapot\r\ncontent-length: 0\r\n\r\n"),
        "/odd-status" => fixed("HTTP/1.1 299 Whatever\r\ncontent-length: 1\r\n\r\nx"),
        "/big" => {
            let body = "0123456789abcdef".repeat(16 * 1024);
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            ([head.as_bytes(), body.as_bytes()].concat(), false)
        }
        // Delimited by the storefront closing its connection: relayed chunked.
        "/until-close" => (
            b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it until the close".to_vec(),
            true,
        ),
        // Announces 100 bytes, sends 10, closes: the shopper must see an error.
        "/cut" => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789".to_vec(),
            true,
        ),
        _ => fixed("HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"),
    }
}

/// The storefront: answers each request by its path, as [`script`] says.
async fn scripted_store() -> Backend {
    let (listener, _) = bind_local().await;
    spawn_raw("new", listener, |mut stream, log, _| async move {
        let mut buf = Vec::new();
        while let Some((head, _)) = read_head(&mut stream, &mut buf, &log).await {
            let path = head.split(' ').nth(1).unwrap_or("/").to_string();
            if path == "/slow" {
                // Held until the test lets it go: a request in flight for as long as needed.
                log.requests
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = tokio::time::timeout(support::WAIT, log.go.notified()).await;
            }
            let (mut bytes, close) = script(&path);
            if head.starts_with("HEAD ") {
                // A HEAD answer is the GET answer's head only.
                let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                bytes.truncate(end);
            }
            if stream.write_all(&bytes).await.is_err() || close {
                return;
            }
        }
    })
}

struct Fixture {
    _dir: Dir,
    app: cutover::app::App,
    store: Backend,
    addr: SocketAddr,
}

async fn start() -> Fixture {
    start_with("").await
}

/// The proxy with extra `[limits]` lines.
async fn start_with(limits: &str) -> Fixture {
    let store = scripted_store().await;
    let url = format!("http://{}", store.addr);
    let dir = Dir::new();
    let spec = ConfigSpec::new(&url, &url, 100.0)
        .limits(limits)
        .admin_on_loopback();
    let path = dir.write("cutover.toml", &spec.render());
    let app = cutover::app::start(&path).await.expect("proxy starts");
    Fixture {
        addr: app.addresses[0],
        _dir: dir,
        app,
        store,
    }
}

/// Waits until the storefront holds a `/slow` request.
async fn slow_arrived(f: &Fixture) {
    let log = std::sync::Arc::clone(&f.store.log);
    support::wait_for("the slow request at the storefront", support::WAIT, || {
        let log = std::sync::Arc::clone(&log);
        async move { log.requests.load(std::sync::atomic::Ordering::SeqCst) >= 1 }
    })
    .await;
}

/// The bytes a connection got for one request (until the proxy closes it, or a short quiet
/// after the answer), and whether it ended with a reset.
async fn ask(addr: SocketAddr, request: &str) -> (Vec<u8>, bool) {
    use tokio::io::AsyncReadExt;
    let mut s = raw::connect(addr).await;
    s.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    loop {
        let mut chunk = [0u8; 16 * 1024];
        // The quiet after an answer on a connection that stays open.
        match tokio::time::timeout(Duration::from_millis(700), s.read(&mut chunk)).await {
            Err(_) | Ok(Ok(0)) => return (bytes, false),
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return (bytes, e.kind() == std::io::ErrorKind::ConnectionReset),
        }
    }
}

/// The response bytes with what differs by nature masked: the date's value and the cohort
/// cookie's value (a random bucket).
fn masked(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    let mut in_head = true;
    for line in text.split_inclusive("\r\n") {
        if in_head && line.starts_with("date: ") {
            out.push_str("date: *\r\n");
        } else if in_head && line.starts_with("set-cookie: ") {
            let attributes = line.split_once(';').map_or("", |(_, a)| a);
            out.push_str(&format!("set-cookie: *;{attributes}"));
        } else {
            out.push_str(line);
        }
        if line == "\r\n" {
            in_head = false;
        }
    }
    out
}

fn request(method: &str, path: &str, hyper: bool) -> String {
    let framing = if hyper { "Content-Length: 0\r\n" } else { "" };
    format!("{method} {path} HTTP/1.1\r\nHost: shop.test\r\n{framing}\r\n")
}

/// Every kind of storefront answer, to a GET and to a HEAD: the front's bytes are hyper's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_answers_are_byte_for_byte_hyper_s() {
    let f = start().await;
    let paths = [
        "/len",
        "/chunked",
        "/empty",
        "/204",
        "/304",
        "/404",
        "/dated",
        "/teapot",
        "/odd-status",
        "/big",
        "/until-close",
    ];
    // All at once: each connection is read until a short quiet after its answer.
    let asks = ["GET", "HEAD"].into_iter().flat_map(|method| {
        paths.into_iter().map(move |path| async move {
            let (front, front_reset) = ask(f.addr, &request(method, path, false)).await;
            let (hyper, hyper_reset) = ask(f.addr, &request(method, path, true)).await;
            (
                format!("{method} {path}"),
                front,
                hyper,
                front_reset || hyper_reset,
            )
        })
    });
    for (what, front, hyper, reset) in futures_util::future::join_all(asks).await {
        assert!(!front.is_empty(), "{what}: answered");
        assert_eq!(masked(&front), masked(&hyper), "{what}");
        assert!(!reset, "{what}: no reset");
    }
    // The storefront's own reason phrase is not relayed by either: the canonical one is, or
    // hyper's `<none>` for a status without one.
    let (odd, _) = ask(f.addr, &request("GET", "/odd-status", false)).await;
    assert!(
        odd.starts_with(b"HTTP/1.1 299 <none>\r\n"),
        "{}",
        masked(&odd)
    );
    let (chunked, _) = ask(f.addr, &request("GET", "/until-close", false)).await;
    let text = masked(&chunked);
    assert!(
        text.contains("transfer-encoding: chunked\r\n") && text.ends_with("0\r\n\r\n"),
        "a close-delimited body is relayed chunked: {text}"
    );
}

/// A body that fails half-way ends the shopper's connection with a reset on both servers, after
/// the same head and the same bytes: a client never takes the short page for a whole one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_short_is_a_reset_from_either_server() {
    let f = start().await;
    let (front, front_reset) = ask(f.addr, &request("GET", "/cut", false)).await;
    let (hyper, hyper_reset) = ask(f.addr, &request("GET", "/cut", true)).await;
    assert!(front_reset, "front: {}", masked(&front));
    assert!(hyper_reset, "hyper: {}", masked(&hyper));
    assert!(masked(&front).starts_with("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n"));
}

/// Pipelined requests on one connection are answered in order by the front, whatever their
/// bodies' framing, and a request with a body after them is hyper's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_forwards_are_answered_in_order() {
    let f = start().await;
    let mut bytes = String::new();
    for (method, path) in [
        ("GET", "/len"),
        ("GET", "/empty"),
        ("GET", "/chunked"),
        ("GET", "/204"),
        ("GET", "/big"),
    ] {
        bytes.push_str(&request(method, path, false));
    }
    bytes.push_str(
        "POST /len HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    );
    let (got, closed) = raw::exchange(f.addr, bytes.as_bytes()).await;
    assert!(closed);
    let summary: Vec<(u16, usize)> = got.iter().map(|r| (r.status, r.body.len())).collect();
    assert_eq!(
        summary,
        [
            (200, 5),
            (200, 0),
            (200, 11),
            (204, 0),
            (200, 256 * 1024),
            (200, 5)
        ]
    );
    assert_eq!(got[2].body, b"hello world");
}

/// A drain that begins while the front forwards a request: the answer still comes, says
/// `Connection: close`, and the connection closes after it, as hyper's answers do once the drain
/// began; the drain then completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_during_a_forward_closes_after_its_answer() {
    let f = start().await;
    let mut s = raw::connect(f.addr).await;
    s.write_all(request("GET", "/slow", false).as_bytes())
        .await
        .unwrap();
    slow_arrived(&f).await;
    let ready = std::sync::Arc::clone(&f.app.ready);
    let store = f.store;
    let drained = tokio::spawn(f.app.drain());
    support::wait_for("the drain to begin", support::WAIT, || async {
        !ready.load(std::sync::atomic::Ordering::Acquire)
    })
    .await;
    store.go();
    let (bytes, closed) = raw::read_until_close(&mut s, support::WAIT).await;
    let got = raw::parse_all(&bytes);
    assert_eq!(got.len(), 1, "{}", masked(&bytes));
    assert_eq!(
        (
            got[0].status,
            got[0].body.as_slice(),
            got[0].header("connection")
        ),
        (200, &b"slow"[..], Some("close"))
    );
    assert!(closed, "closed after the answer");
    assert!(
        support::bounded("the drain", drained).await.unwrap(),
        "clean drain"
    );
}

/// At the connection cap, a connection whose request the front is forwarding is busy: it is not
/// given up for a new shopper (who gets the 503), and its answer arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_in_flight_is_never_given_up_at_the_cap() {
    let f = start_with("max_connections = 1").await;
    let mut s = raw::connect(f.addr).await;
    s.write_all(request("GET", "/slow", false).as_bytes())
        .await
        .unwrap();
    slow_arrived(&f).await;
    let (others, _) = raw::exchange(f.addr, request("GET", "/len", false).as_bytes()).await;
    assert_eq!(others.first().map(|r| r.status), Some(503), "{others:?}");
    f.store.go();
    let r = raw::read_response(&mut s)
        .await
        .expect("the busy request completes");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"slow"[..]));
}

/// `cutover_http1_front_requests_total` counts what the front answered, and
/// `limits.http1_front = false` gives every connection to hyper's server: the same answers, and
/// the counter stays at 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_can_be_turned_off_and_its_answers_are_counted() {
    let on = start().await;
    let off = start_with("http1_front = false").await;
    let front_requests = |f: &Fixture| {
        let admin = f.app.admin_address.expect("admin listener");
        async move {
            let page = support::metrics::scrape(admin).await;
            support::metrics::metric(&page, "cutover_http1_front_requests_total")
        }
    };
    for path in ["/len", "/chunked", "/204"] {
        let (a, _) = ask(on.addr, &request("GET", path, false)).await;
        let (b, _) = ask(off.addr, &request("GET", path, false)).await;
        assert_eq!(masked(&a), masked(&b), "GET {path}");
    }
    assert_eq!(
        front_requests(&on).await,
        Some(3.0),
        "three forwards by the front"
    );
    assert_eq!(
        front_requests(&off).await,
        Some(0.0),
        "none with the front off"
    );
    // A request the front never takes is not counted on either.
    let (_, _) = ask(on.addr, &request("GET", "/len", true)).await;
    assert_eq!(front_requests(&on).await, Some(3.0));
}
