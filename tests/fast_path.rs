//! The HTTP/1 front (src/fast_path): redirects answered from the raw head, and the hand-over to
//! hyper. One connection starts on the front, moves to hyper at its first proxied request, and
//! keeps going there: the answers on both sides of that move must be the same answers.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use cutover::app::App;
use cutover::fast_path::{self, Leave, Outcome};
use cutover::proxy::ConnInfo;
use cutover::state::Limits;
use support::metrics::read_lines;
use support::raw::{self, RawResp};
use support::redirects::{spec, PLAN_TABLE};
use support::stores::{path_store, PathStore};
use support::{bounded, Dir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PLAN: &str = "old_url,new_url,status
/old-lamp,/products/lamp,301
/removed,,410
/old-sale?id=7,/collections/sale,308
";

struct Fixture {
    dir: Dir,
    app: App,
    addr: SocketAddr,
    new: PathStore,
    _old: PathStore,
}

async fn start(limits: &str) -> Fixture {
    let old = path_store("old", &[]).await;
    let new = path_store("new", &[]).await;
    let dir = Dir::new();
    dir.write("plan.csv", PLAN);
    let text = spec(old.addr, new.addr, 100.0)
        .limits(limits)
        .tail(PLAN_TABLE)
        .render();
    let path = dir.write("cutover.toml", &text);
    let app = cutover::app::start(&path).await.expect("proxy starts");
    Fixture {
        addr: app.addresses[0],
        dir,
        app,
        new,
        _old: old,
    }
}

/// A first visit (no cohort cookie) at a 100% share: the split sends it to `new`.
fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\n\r\n")
}

/// A request the front does not take (a framing header), so hyper takes the connection from it.
fn hand_over(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 0\r\n\r\n")
}

/// Header names of a response, sorted, less the ones that differ by nature (`date`,
/// `set-cookie` values are compared separately) or by position (`connection` on the last).
fn names(r: &RawResp) -> Vec<String> {
    let mut n: Vec<String> = r
        .headers
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|k| k != "connection")
        .collect();
    n.sort();
    n
}

fn same_answer(front: &RawResp, hyper: &RawResp, what: &str) {
    assert_eq!(front.status, hyper.status, "{what}: status");
    assert_eq!(front.body, hyper.body, "{what}: body");
    assert_eq!(names(front), names(hyper), "{what}: header names");
    // The cookie's value carries a random bucket; its attributes must match.
    let attributes = |v: &str| v.split_once(';').map(|(_, a)| a.to_string());
    for (name, value) in &front.headers {
        if name == "set-cookie" {
            assert_eq!(
                attributes(value),
                hyper.header(name).and_then(attributes),
                "{what}: {name}"
            );
        } else if name != "date" {
            assert_eq!(Some(value.as_str()), hyper.header(name), "{what}: {name}");
        }
    }
    assert!(front.has("date"), "{what}: date");
}

/// Pipelined on one connection: three answers from the front, a page from the storefront asked
/// in a way the front leaves to hyper (the hand-over), then the same three requests again, now
/// answered through hyper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_answers_as_hyper_does_and_hands_over_mid_connection() {
    let f = start("").await;
    let asks = [
        ("a redirect", get("/old-lamp")),
        ("a 410", get("/removed")),
        ("a query key", get("/old-sale?id=7")),
    ];
    let mut bytes = String::new();
    for (_, req) in &asks {
        bytes.push_str(req);
    }
    bytes.push_str(&hand_over("/a-page"));
    for (_, req) in &asks {
        bytes.push_str(req);
    }
    bytes.push_str("GET /old-lamp HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n");
    let (got, closed) = raw::exchange(f.addr, bytes.as_bytes()).await;
    assert!(closed, "Connection: close is honoured after the hand-over");
    assert_eq!(got.len(), 8, "every pipelined request answered: {got:#?}");

    assert_eq!(
        (got[0].status, got[0].header("location")),
        (301, Some("/products/lamp"))
    );
    assert_eq!(got[1].status, 410);
    assert_eq!(got[1].body, b"This page has been removed.\n");
    assert_eq!(
        got[1].header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        (got[2].status, got[2].header("location")),
        (308, Some("/collections/sale"))
    );
    assert_eq!(got[3].status, 200);
    assert_eq!(got[3].body, b"new /a-page");
    assert_eq!(f.new.hits.load(std::sync::atomic::Ordering::Relaxed), 1);
    for (i, (what, _)) in asks.iter().enumerate() {
        same_answer(&got[i], &got[i + 4], what);
    }
    same_answer(&got[0], &got[7], "the redirect before a close");
    assert_eq!(got[7].header("connection"), Some("close"));
    // The front counts the three it answered; hyper answered the other five.
    let page = support::metrics::scrape(f.app.admin_address.expect("admin")).await;
    assert_eq!(
        support::metrics::metric(&page, "cutover_http1_front_requests_total"),
        Some(3.0)
    );
    // A shopper without a cohort cookie gets one from either path.
    for r in [&got[0], &got[4]] {
        assert!(
            r.header("set-cookie")
                .is_some_and(|c| c.starts_with("cutover_cohort=")),
            "{r:?}"
        );
    }
}

/// HEAD is answered with the GET answer's head and no body, on either path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_requests_get_heads_only() {
    let f = start("").await;
    for path in ["/old-lamp", "/removed"] {
        let head = format!("HEAD {path} HTTP/1.1\r\nHost: shop.test\r\n\r\n");
        // Alone on its connection: the front answers, then the client closes.
        let mut s = raw::connect(f.addr).await;
        s.write_all(head.as_bytes()).await.unwrap();
        let (front, _) = raw::read_until_close(&mut s, Duration::from_millis(500)).await;
        // After a request the front leaves to hyper: hyper answers.
        let mut s = raw::connect(f.addr).await;
        s.write_all(hand_over("/a-page").as_bytes()).await.unwrap();
        assert_eq!(raw::read_response(&mut s).await.unwrap().status, 200);
        s.write_all(head.as_bytes()).await.unwrap();
        let (hyper, _) = raw::read_until_close(&mut s, Duration::from_millis(500)).await;
        let (fs, fh) = raw::response_head(&front);
        let (hs, hh) = raw::response_head(&hyper);
        assert_eq!(fs, hs, "{path}");
        let length = |h: &[(String, String)]| {
            h.iter()
                .find(|(k, _)| k == "content-length")
                .map(|(_, v)| v.clone())
        };
        assert_eq!(length(&fh), length(&hh), "{path}: content-length");
        for raw in [&front, &hyper] {
            assert!(
                raw.ends_with(b"\r\n\r\n"),
                "{path}: no body after a HEAD answer: {:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}

/// A head that arrives a few bytes at a time is answered once whole, and the connection then
/// serves the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_in_pieces_is_answered_once_whole() {
    let f = start("").await;
    let mut s = raw::connect(f.addr).await;
    let req = get("/old-lamp");
    for piece in req.as_bytes().chunks(7) {
        s.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = raw::read_response(&mut s).await.expect("answered");
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("/products/lamp"))
    );
    s.write_all(get("/removed").as_bytes()).await.unwrap();
    assert_eq!(
        raw::read_response(&mut s).await.expect("second").status,
        410
    );
}

/// Requests the front leaves alone reach hyper intact, bytes already read included: a body, a
/// malformed head (400 from hyper), an oversized one (431), HTTP/1.0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_front_does_not_answer_reaches_hyper_whole() {
    let f = start("").await;
    let post = "POST /old-lamp HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    let (got, _) = raw::exchange(f.addr, post.as_bytes()).await;
    assert_eq!(
        got.first().map(|r| (r.status, r.header("location"))),
        Some((301, Some("/products/lamp"))),
        "a POST to an old URL is redirected by hyper's path: {got:?}"
    );
    let (got, _) = raw::exchange(f.addr, b"GET /p HTTP/1.1\r\nHo st: x\r\n\r\n").await;
    assert_eq!(got.first().map(|r| r.status), Some(400));
    let big = format!(
        "GET /old-lamp HTTP/1.1\r\nHost: shop.test\r\nX-Big: {}\r\n\r\n",
        "v".repeat(70 * 1024)
    );
    let (got, _) = raw::exchange(f.addr, big.as_bytes()).await;
    assert_eq!(got.first().map(|r| r.status), Some(431));
    let old_http = "GET /old-lamp HTTP/1.0\r\nHost: shop.test\r\n\r\n";
    let (got, closed) = raw::exchange(f.addr, old_http.as_bytes()).await;
    assert_eq!(got.first().map(|r| r.status), Some(301));
    assert!(closed, "HTTP/1.0 without keep-alive closes");
}

/// After an answer, the next head has `header_read_timeout` from then: a connection that goes
/// quiet on the front is closed, and one that keeps asking is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_on_the_front_is_closed_at_header_read_timeout() {
    let f = start("header_read_timeout = \"3s\"").await;
    let mut s = raw::connect(f.addr).await;
    for _ in 0..3 {
        // 3 × 1.5 s: longer than one timeout in all, shorter than it between answers, with 1.5 s
        // of margin either way. The pause is the behaviour under test, not a wait for an event.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        s.write_all(get("/old-lamp").as_bytes()).await.unwrap();
        assert_eq!(
            raw::read_response(&mut s).await.expect("answered").status,
            301
        );
    }
    s.write_all(b"GET /old-lamp HTTP/1.1\r\n").await.unwrap();
    let (got, closed) = raw::read_until_close(&mut s, support::SLOW_WAIT).await;
    assert!(
        closed,
        "a stalled head on the front was held for 30 s with a 3 s timeout"
    );
    assert!(got.is_empty(), "closed without an answer, as hyper does");
}

/// A redirect the front answers is counted and logged like any other: one access log line with
/// the shopper's request id (or a generated one), the path without its query, and the bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_answers_are_logged() {
    let f = start("[access_log]\nenabled = true\npath = \"access.log\"\n").await;
    let asks =
        "GET /old-sale?id=7 HTTP/1.1\r\nHost: shop.test:8080\r\nX-Request-Id: front-1\r\n\r\n\
                GET /removed HTTP/1.1\r\nHost: shop.test\r\nConnection: keep-alive\r\n\r\n";
    let mut s = raw::connect(f.addr).await;
    s.write_all(asks.as_bytes()).await.unwrap();
    assert_eq!(raw::read_response(&mut s).await.unwrap().status, 308);
    let log = f.dir.path("access.log");
    let lines = bounded("two access log lines", async {
        loop {
            let l = read_lines(&log);
            if l.len() >= 2 {
                break l;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let v: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(v[0]["request_id"], "front-1");
    assert_eq!(v[0]["status"], 308);
    assert_eq!(v[0]["reason"], "redirect");
    assert_eq!(v[0]["storefront"], "new");
    assert_eq!(v[0]["method"], "GET");
    assert_eq!(v[0]["host"], "shop.test:8080");
    assert_eq!(v[0]["path"], "/old-sale");
    assert_eq!(v[0]["bytes_sent"], 0);
    assert_eq!(v[1]["status"], 410);
    assert_eq!(v[1]["bytes_sent"], "This page has been removed.\n".len());
    assert_eq!(
        v[1]["request_id"].as_str().map(str::len),
        Some(32),
        "generated"
    );
}

/// A drain reaches a connection that is waiting on the front: a request sent just after it
/// began is still answered, with `Connection: close`, and the connection then closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_closes_front_connections_at_a_request_boundary() {
    let f = start("").await;
    let mut s = raw::connect(f.addr).await;
    s.write_all(get("/old-lamp").as_bytes()).await.unwrap();
    let first = raw::read_response(&mut s).await.unwrap();
    assert_eq!((first.status, first.header("connection")), (301, None));
    let ready = std::sync::Arc::clone(&f.app.ready);
    let drained = tokio::spawn(f.app.drain());
    // Readiness turns off once connections have been told of the drain (`App::drain`).
    support::wait_for("the drain to begin", support::WAIT, || async {
        !ready.load(std::sync::atomic::Ordering::Acquire)
    })
    .await;
    s.write_all(get("/old-lamp").as_bytes()).await.unwrap();
    let (rest, closed) = raw::read_until_close(&mut s, Duration::from_secs(5)).await;
    let rest = raw::parse_all(&rest);
    assert_eq!(rest.len(), 1, "answered during the drain: {rest:?}");
    assert_eq!(
        (rest[0].status, rest[0].header("connection")),
        (301, Some("close"))
    );
    assert!(closed, "closed after the answer");
    assert!(bounded("the drain", drained).await.unwrap(), "clean drain");
}

/// The front itself, driven over an in-memory stream: it answers the redirects and forwards the
/// page (hyper never sees them), stops at the first request it does not take, and hands over
/// exactly the bytes it did not answer. This is what the tests above cannot tell apart from hyper
/// answering everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_answers_redirects_itself_and_hands_over_the_rest_unread() {
    let f = start("").await;
    let conn = ConnInfo {
        peer: "127.0.0.1:40000".parse().unwrap(),
        tls: false,
        listener: 0,
    };
    let serve = |server: tokio::io::DuplexStream| {
        let proxy = std::sync::Arc::clone(&f.app.proxy);
        tokio::spawn(async move {
            let outside = std::future::pending::<Leave>();
            tokio::pin!(outside);
            fast_path::serve(&proxy, server, conn, &Limits::default(), outside, |_| {}).await
        })
    };

    // Two redirects, a page, then a request with a framing header and a redirect after it: the
    // front answers the first three.
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let task = serve(server);
    let rest = format!("{}{}", hand_over("/a-page"), get("/removed"));
    let sent = format!(
        "{}{}{}{rest}",
        get("/old-lamp"),
        get("/old-sale?id=7"),
        get("/a-page")
    );
    client.write_all(sent.as_bytes()).await.unwrap();
    let outcome = bounded("the hand-over", task).await.unwrap();
    let Outcome::HandOff { mut io, served } = outcome else {
        panic!("a request with a framing header must be handed to hyper");
    };
    assert!(served, "the front answered the requests before it");
    assert_eq!(
        f.new.hits.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the page was forwarded by the front"
    );
    let mut unread = vec![0u8; rest.len()];
    io.read_exact(&mut unread).await.unwrap();
    assert_eq!(
        String::from_utf8(unread).unwrap(),
        rest,
        "handed over whole"
    );
    drop(io);
    let mut answers = Vec::new();
    client.read_to_end(&mut answers).await.unwrap();
    let answers = raw::parse_all(&answers);
    let got: Vec<_> = answers
        .iter()
        .map(|r| (r.status, r.header("location")))
        .collect();
    assert_eq!(
        got,
        [
            (301, Some("/products/lamp")),
            (308, Some("/collections/sale")),
            (200, None)
        ]
    );
    assert_eq!(answers[2].body, b"new /a-page");

    // Only redirects, then the client hangs up: all answered, nothing handed over.
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let task = serve(server);
    client.write_all(get("/removed").as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = client.read(&mut buf).await.unwrap();
    assert_eq!(
        raw::parse_all(&buf[..n]).first().map(|r| r.status),
        Some(410)
    );
    client.shutdown().await.unwrap();
    drop(client);
    assert!(matches!(
        bounded("the close", task).await.unwrap(),
        Outcome::Closed
    ));
}

/// A header line that never ends is not buffered without bound: once the head reaches
/// `max_header_bytes` it goes to hyper, which answers 431, even though the front only re-parses
/// a partial head when a line of it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_header_line_is_431_at_the_size_limit() {
    let f = start("max_header_bytes = \"16KiB\"").await;
    let mut s = raw::connect(f.addr).await;
    s.write_all(b"GET /old-lamp HTTP/1.1\r\nHost: shop.test\r\nX-Big: ")
        .await
        .unwrap();
    let chunk = [b'v'; 1024];
    for _ in 0..24 {
        if s.write_all(&chunk).await.is_err() {
            break; // answered and closed already
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (got, _) = raw::read_until_close(&mut s, Duration::from_secs(5)).await;
    assert!(
        got.starts_with(b"HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&got[..got.len().min(200)])
    );
}
