use std::time::Duration;

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use http::header::{CONNECTION, CONTENT_LENGTH};

use super::body::{chunk_size, MAX_CHUNK_LINE};
use super::framing::*;
use super::*;
use crate::http1::scan::push_decimal;

fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn head_of(p: &Parts, empty: bool, exact: Option<u64>) -> (String, bool, u64) {
    let mut out = Vec::new();
    let (chunked, left) = encode_head(&mut out, p, None, empty, exact);
    (String::from_utf8(out).unwrap(), chunked, left)
}

#[test]
fn request_heads_are_framed_like_hyper_frames_them() {
    let get = parts("GET", "/a?b=1", &[("host", "shop"), ("x-a", "1")]);
    assert_eq!(
        head_of(&get, true, Some(0)),
        (
            "GET /a?b=1 HTTP/1.1\r\nhost: shop\r\nx-a: 1\r\n\r\n".into(),
            false,
            0
        )
    );
    // A declared length that matches the body is kept as it is.
    let post = parts("POST", "/p", &[("content-length", "5")]);
    assert_eq!(
        head_of(&post, false, Some(5)),
        (
            "POST /p HTTP/1.1\r\ncontent-length: 5\r\n\r\n".into(),
            false,
            5
        )
    );
    // A known length nobody declared is declared; a stray Transfer-Encoding never goes out.
    let put = parts("PUT", "/p", &[("transfer-encoding", "gzip")]);
    assert_eq!(
        head_of(&put, false, Some(12)),
        (
            "PUT /p HTTP/1.1\r\ncontent-length: 12\r\n\r\n".into(),
            false,
            12
        )
    );
    // Unknown length: chunked, and any Content-Length is dropped.
    let stream = parts("POST", "/s", &[("content-length", "9"), ("x", "y")]);
    assert_eq!(
        head_of(&stream, false, None),
        (
            "POST /s HTTP/1.1\r\nx: y\r\ntransfer-encoding: chunked\r\n\r\n".into(),
            true,
            0
        )
    );
    // No path at all (an authority-form URI) still sends an origin-form target.
    let bare = parts("OPTIONS", "http://shop", &[]);
    assert!(head_of(&bare, true, None)
        .0
        .starts_with("OPTIONS / HTTP/1.1\r\n"));
}

#[test]
fn numbers_are_written_without_formatting_machinery() {
    for n in [0u64, 1, 9, 10, 255, 4096, 1 << 40, u64::MAX] {
        let (mut d, mut h) = (Vec::new(), Vec::new());
        push_decimal(&mut d, n);
        push_hex(&mut h, n);
        assert_eq!(String::from_utf8(d).unwrap(), n.to_string());
        assert_eq!(String::from_utf8(h).unwrap(), format!("{n:X}"));
    }
}

#[test]
fn content_lengths_are_digits_or_equal_lists() {
    let cl = |s: &'static str| content_length(&HeaderValue::from_static(s));
    assert_eq!(cl("42"), Some(42));
    assert_eq!(cl("7, 7"), Some(7));
    assert_eq!(cl("7, 8"), None);
    for bad in ["", "+4", "-1", "0x10", "4 2", "99999999999999999999"] {
        assert_eq!(cl(bad), None, "{bad:?}");
    }
}

fn framing_of(
    head_request: bool,
    status: u16,
    version: Version,
    headers: &[(&str, &str)],
) -> Result<(Framing, bool, HeaderMap), H1Error> {
    let mut map = HeaderMap::new();
    for (n, v) in headers {
        map.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let status = StatusCode::from_u16(status).unwrap();
    let close = crate::headers::connection_has(&map, "close");
    response_framing(head_request, status, version, close, &mut map).map(|(f, r)| (f, r, map))
}

#[test]
fn connection_lines_naming_only_options_are_told_apart() {
    let o = |v: &[u8]| {
        let c = connection_options(v);
        (c.close, c.only)
    };
    assert_eq!(o(b"keep-alive"), (false, true));
    assert_eq!(o(b"Keep-Alive"), (false, true));
    assert_eq!(o(b"close"), (true, true));
    assert_eq!(o(b" CLOSE , keep-alive,"), (true, true));
    assert_eq!(
        o(b"close, x-secret"),
        (true, false),
        "names a field to strip"
    );
    assert_eq!(o(b"upgrade"), (false, false));
    assert_eq!(o(b"closed"), (false, false));
}

#[tokio::test]
async fn a_connection_line_of_options_only_stays_out_of_the_head_and_still_counts() {
    let (conn, _server) = storefront(vec![
        vec![b"HTTP/1.1 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok"],
        vec![b"HTTP/1.1 200 OK\r\nconnection: x-a\r\nx-a: 1\r\ncontent-length: 2\r\n\r\nok"],
        vec![b"HTTP/1.1 200 OK\r\nConnection: Close\r\ncontent-length: 2\r\n\r\nok"],
    ])
    .await;
    let (head, conn) = exchange(conn, "/a").await;
    let head = head.unwrap();
    assert!(!head.headers.contains_key(CONNECTION));
    assert!(head.reusable);
    let (_, mut body) = read_body(conn, &head).await;
    let conn = body.take_idle().expect("reusable");
    let (head, conn) = exchange(*conn, "/b").await;
    let head = head.unwrap();
    assert_eq!(
        head.headers[CONNECTION], "x-a",
        "names a field: kept for the strip"
    );
    let (_, mut body) = read_body(conn, &head).await;
    let conn = body.take_idle().expect("reusable");
    let (head, _) = exchange(*conn, "/c").await;
    let head = head.unwrap();
    assert!(!head.headers.contains_key(CONNECTION));
    assert!(
        !head.reusable,
        "close is honoured though the line is not kept"
    );
}

#[test]
fn response_framing_follows_rfc_9112() {
    use Framing::*;
    let v11 = Version::HTTP_11;
    let f = |h, s, hs: &[(&str, &str)]| {
        let (f, r, _) = framing_of(h, s, v11, hs).unwrap();
        (f, r)
    };
    assert_eq!(f(false, 200, &[("content-length", "3")]), (Length(3), true));
    assert_eq!(
        f(true, 200, &[("content-length", "3")]),
        (Empty, true),
        "HEAD"
    );
    assert_eq!(f(false, 204, &[]), (Empty, true));
    assert_eq!(f(false, 304, &[("content-length", "10")]), (Empty, true));
    assert_eq!(
        f(false, 200, &[("transfer-encoding", "chunked")]),
        (Chunked, true)
    );
    assert_eq!(
        f(false, 200, &[("transfer-encoding", "gzip, chunked")]),
        (Chunked, true)
    );
    assert_eq!(
        f(false, 200, &[("transfer-encoding", "gzip")]),
        (Close, false)
    );
    assert_eq!(f(false, 200, &[]), (Close, false), "delimited by the close");
    assert_eq!(
        f(
            false,
            200,
            &[("content-length", "3"), ("connection", "close")]
        ),
        (Length(3), false)
    );
    assert_eq!(
        f(false, 101, &[]),
        (Empty, false),
        "an upgrade never goes back"
    );
    // Both framings: chunked wins, the length goes, and the connection is not trusted.
    let (framing, reusable, map) = framing_of(
        false,
        200,
        v11,
        &[("content-length", "3"), ("transfer-encoding", "chunked")],
    )
    .unwrap();
    assert_eq!((framing, reusable), (Chunked, false));
    assert!(!map.contains_key(CONTENT_LENGTH));
    let (framing, reusable, _) =
        framing_of(false, 200, Version::HTTP_10, &[("content-length", "3")]).unwrap();
    assert_eq!((framing, reusable), (Length(3), false), "HTTP/1.0 closes");
    for bad in [
        &[("content-length", "x")][..],
        &[("content-length", "3"), ("content-length", "4")],
    ] {
        assert!(matches!(
            framing_of(false, 200, v11, bad),
            Err(H1Error::Invalid(_))
        ));
    }
}

#[test]
fn chunk_size_lines() {
    assert_eq!(chunk_size(b"1a\r\nxx").unwrap(), Some((26, 4)));
    assert_eq!(chunk_size(b"0;name=value\r\n").unwrap(), Some((0, 14)));
    assert_eq!(chunk_size(b"FF \r\n").unwrap(), Some((255, 5)));
    assert_eq!(chunk_size(b"1a").unwrap(), None, "incomplete");
    for bad in [
        &b"\r\n"[..],
        b"zz\r\n",
        b"1 2\r\n",
        b"12345678901234567\r\n",
    ] {
        assert!(chunk_size(bad).is_err(), "{bad:?}");
    }
    assert!(
        chunk_size(&[b'1'; MAX_CHUNK_LINE + 1]).is_err(),
        "unbounded line"
    );
}

/// A storefront on a real socket that reads one request head per entry in `script` and answers
/// it with the entry's pieces, written separately with a pause between them.
async fn storefront(
    script: Vec<Vec<&'static [u8]>>,
) -> (Conn, tokio::task::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        for pieces in script {
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let mut b = [0u8; 1024];
                let n = s.read(&mut b).await.unwrap();
                if n == 0 {
                    return seen;
                }
                req.extend_from_slice(&b[..n]);
            }
            seen.push(String::from_utf8_lossy(&req).into_owned());
            for piece in pieces {
                s.write_all(piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        seen
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    (
        Conn::new(TokioIo::new(MaybeHttpsStream::Http(TokioIo::new(tcp)))),
        server,
    )
}

async fn exchange(conn: Conn, path: &str) -> (Result<Head, H1Error>, Box<Conn>) {
    let mut conn = Box::new(conn);
    let p = parts("GET", path, &[("host", "shop")]);
    let head = conn.send(&p, None, UpstreamBody::Empty).await;
    (head, conn)
}

async fn read_body(conn: Box<Conn>, head: &Head) -> (Result<Vec<u8>, BoxError>, Body) {
    let mut body = Body::new(conn, head.framing, head.reusable);
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => out.extend_from_slice(&f.into_data().unwrap()),
            Err(e) => return (Err(e), body),
        }
    }
    (Ok(out), body)
}

#[tokio::test]
async fn a_response_arriving_in_pieces_is_reassembled_and_the_connection_reused() {
    let (conn, server) = storefront(vec![
        vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 20",
            b"0 OK\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n",
            b"\r\n5\r\nhel",
            b"lo\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
        ],
        vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"],
    ])
    .await;
    let (head, conn) = exchange(conn, "/one").await;
    let head = head.unwrap();
    assert_eq!(head.status, StatusCode::OK, "the 100 was skipped");
    assert_eq!(head.headers["x-a"], "1");
    assert_eq!(head.framing, Framing::Chunked);
    let (body, mut body_state) = read_body(conn, &head).await;
    assert_eq!(body.unwrap(), b"hello world");
    let conn = body_state
        .take_idle()
        .expect("a chunked body that ended cleanly is reusable");

    let (head, conn) = exchange(*conn, "/two").await;
    let head = head.unwrap();
    assert_eq!(head.framing, Framing::Length(2));
    let (body, mut body_state) = read_body(conn, &head).await;
    assert_eq!(body.unwrap(), b"ok");
    assert!(body_state.take_idle().is_some());
    let seen = server.await.unwrap();
    assert!(seen[0].starts_with("GET /one HTTP/1.1\r\nhost: shop\r\n"));
    assert!(seen[1].starts_with("GET /two HTTP/1.1\r\n"));
}

#[tokio::test]
async fn a_body_delimited_by_the_close_ends_there_and_is_not_reused() {
    let (conn, _server) =
        storefront(vec![vec![b"HTTP/1.1 200 OK\r\n\r\nuntil ", b"the end"]]).await;
    let (head, conn) = exchange(conn, "/").await;
    let head = head.unwrap();
    assert_eq!((head.framing, head.reusable), (Framing::Close, false));
    let (body, mut state) = read_body(conn, &head).await;
    assert_eq!(body.unwrap(), b"until the end");
    assert!(state.take_idle().is_none());
}

#[tokio::test]
async fn a_body_cut_short_is_an_error_not_an_end() {
    let (conn, _server) = storefront(vec![vec![
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
    ]])
    .await;
    let (head, conn) = exchange(conn, "/").await;
    let (body, mut state) = read_body(conn, &head.unwrap()).await;
    let err = body.expect_err("7 bytes never came");
    assert!(err.to_string().contains("7 bytes before the end"), "{err}");
    assert!(state.take_idle().is_none());

    let (conn, _server) = storefront(vec![vec![
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab",
    ]])
    .await;
    let (head, conn) = exchange(conn, "/").await;
    let (body, _) = read_body(conn, &head.unwrap()).await;
    assert!(
        body.is_err(),
        "a chunked body without its last chunk is cut off"
    );

    let (conn, _server) = storefront(vec![vec![
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    ]])
    .await;
    let (head, conn) = exchange(conn, "/").await;
    let (body, _) = read_body(conn, &head.unwrap()).await;
    assert!(body.is_err(), "an invalid chunk size");
}

#[tokio::test]
async fn failures_before_the_head_say_what_happened() {
    // Closed without a byte: the pool may retry this on a fresh connection.
    let (conn, _server) = storefront(vec![vec![]]).await;
    let (head, conn) = exchange(conn, "/").await;
    assert!(matches!(head, Err(H1Error::Closed)), "{head:?}");
    assert!(!conn.received());

    // Half a head, then the close: also Closed, but something arrived.
    let (conn, _server) = storefront(vec![vec![b"HTTP/1.1 200 OK\r\ncontent-le"]]).await;
    let (head, conn) = exchange(conn, "/").await;
    assert!(matches!(head, Err(H1Error::Closed)), "{head:?}");
    assert!(conn.received());

    let (conn, _server) = storefront(vec![vec![b"SSH-2.0-OpenSSH_9.2\r\n\r\n"]]).await;
    let (head, _) = exchange(conn, "/").await;
    assert!(matches!(head, Err(H1Error::Parse(_))), "{head:?}");

    let (conn, _server) = storefront(vec![vec![
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
    ]])
    .await;
    let (head, _) = exchange(conn, "/").await;
    assert!(matches!(head, Err(H1Error::Invalid(_))), "{head:?}");

    static HUGE: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
        let mut h = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
        h.resize(MAX_HEAD + 10, b'a');
        h
    });
    let (conn, _server) = storefront(vec![vec![HUGE.as_slice()]]).await;
    let (head, _) = exchange(conn, "/").await;
    assert!(matches!(head, Err(H1Error::TooLarge)), "{head:?}");
}

#[tokio::test]
async fn an_idle_connection_the_storefront_closed_is_not_used() {
    let (conn, server) =
        storefront(vec![vec![b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"]]).await;
    let (head, conn) = exchange(conn, "/").await;
    let head = head.unwrap();
    let mut conn = Body::new(conn, head.framing, head.reusable)
        .take_idle()
        .expect("an empty body is over at once");
    assert!(conn.idle_is_usable(), "open and quiet");
    server.await.unwrap(); // the storefront closes its end
                           // The FIN reaches the reactor on its next turn.
    let mut usable = true;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        usable = conn.idle_is_usable();
        if !usable {
            break;
        }
    }
    assert!(!usable, "a closed connection must not be handed out");
}
