//! HTTPS end to end (issue 6): real sockets, certificates generated here, the proxy started
//! in-process. SNI selection, ALPN, the shopper-facing behaviour over h2, the HTTP -> HTTPS
//! redirect, upstream TLS with a private CA, and the h2 stream limit.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use http::{StatusCode, Version};
use support::conn::*;
use support::metrics::{metric_sum, scrape};
use support::proxy::{start_in, storefronts, tls_listener};
use support::stores::{recording_store, RecordingStore};
use support::tls::*;
use support::upstream::free_port;
use support::wait::{bounded, wait_for, SLOW_WAIT};
use support::Page;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const H2: &[u8] = b"h2";
const H1: &[u8] = b"http/1.1";

/// What most tests here start from: a CA, a `www.shop.example` certificate written as `www.crt`
/// and `www.key` in a temp dir, and two recording storefronts.
struct Shop {
    dir: tempfile::TempDir,
    ca: Ca,
    old: RecordingStore,
    new: RecordingStore,
}

impl Shop {
    async fn new(ca_name: &str) -> Shop {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new(ca_name);
        ca.leaf(&["www.shop.example"]).write(dir.path(), "www");
        let (old, new) = (recording_store("old").await, recording_store("new").await);
        Shop { dir, ca, old, new }
    }
}

/// Three certificates chosen by SNI, a default that is not the first one, and the default for
/// unknown names and for clients that send no SNI at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_among_three_certificates_and_the_default_for_unknown_names() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("sni test CA");
    let www = ca.leaf(&["www.shop.example", "shop.example"]);
    let fr = ca.leaf(&["shop.fr", "www.shop.fr"]);
    let de = ca.leaf(&["*.shop.de"]);
    www.write(dir.path(), "www");
    fr.write(dir.path(), "fr");
    de.write(dir.path(), "de");
    let (old, new) = (recording_store("old").await, recording_store("new").await);
    let config = format!(
        "{}\n{}\n[split]\nnew_share = 0\n",
        tls_listener(
            &[("www", "www", None), ("fr", "fr", None), ("de", "de", None)],
            "default = \"fr\"",
        ),
        storefronts(&old, &new),
    );
    let app = start_in(dir.path(), &config).await;
    let addr = app.addresses[0];

    // Names a certificate claims: verified against the CA, so the chain is complete and valid.
    for (sni, want, label) in [
        ("www.shop.example", &www, "www"),
        ("shop.example", &www, "www"),
        ("shop.fr", &fr, "fr"),
        ("www.shop.fr", &fr, "fr"),
        ("checkout.shop.de", &de, "de"),
    ] {
        let tls = bounded(sni, connect(addr, sni, client(ca.roots(), &[H1])))
            .await
            .unwrap_or_else(|e| panic!("{sni}: handshake failed: {e}"));
        assert!(presented(&tls) == want.der, "{sni} should get {label}");
        let got = Conn::negotiated(tls).await.get(sni, "/", &[]).await;
        assert_eq!(got.status, StatusCode::OK, "{sni}");
    }

    // Unknown names (including a name one level below the wildcard) and no SNI: the default.
    for sni in ["unknown.example", "a.b.shop.de", "shop.de"] {
        let tls = bounded(sni, connect(addr, sni, client_any(&[H1], true)))
            .await
            .unwrap();
        assert!(presented(&tls) == fr.der, "{sni} should get the default");
    }
    let tls = bounded(
        "no SNI",
        connect(addr, "nosni.invalid", client_any(&[H1], false)),
    )
    .await
    .unwrap();
    assert!(presented(&tls) == fr.der, "no SNI should get the default");
    // A client verifying an unknown name against the default certificate refuses it, and the
    // proxy counts the failed handshake.
    let refused = bounded(
        "mismatch",
        connect(addr, "unknown.example", client(ca.roots(), &[H1])),
    )
    .await;
    assert!(
        refused.is_err(),
        "the default cert does not cover unknown.example"
    );
}

/// Both ALPN protocols are served on the same port; HSTS goes out on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_h2_and_http11_are_both_served() {
    let Shop { dir, ca, old, new } = Shop::new("alpn CA").await;
    let config = format!(
        "{}\n{}\n[split]\nnew_share = 0\n",
        tls_listener(
            &[("www", "www", None)],
            "hsts = { max_age = 600, include_subdomains = true }"
        ),
        storefronts(&old, &new),
    );
    let app = start_in(dir.path(), &config).await;
    let addr = app.addresses[0];
    let host = "www.shop.example";

    for (offer, want_alpn, want_version) in [
        (vec![H2, H1], Some(H2), Version::HTTP_2),
        (vec![H2], Some(H2), Version::HTTP_2),
        (vec![H1], Some(H1), Version::HTTP_11),
        (vec![], None, Version::HTTP_11),
    ] {
        let tls = bounded("handshake", connect(addr, host, client(ca.roots(), &offer)))
            .await
            .unwrap();
        assert_eq!(alpn(&tls).as_deref(), want_alpn, "offered {offer:?}");
        let mut conn = Conn::negotiated(tls).await;
        for i in 0..3 {
            let got = conn.get(host, &format!("/alpn/{i}"), &[]).await;
            assert_eq!(got.status, StatusCode::OK);
            assert_eq!(got.version, want_version);
            assert_eq!(got.body, "old");
            assert_eq!(
                got.header("strict-transport-security"),
                "max-age=600; includeSubDomains"
            );
        }
    }
    // The storefront got every request, with the shopper's host, whatever the client spoke.
    let seen = old.seen();
    assert_eq!(seen.len(), 12);
    for s in &seen {
        assert_eq!(s.headers.get("host").unwrap(), host);
        assert_eq!(s.headers.get("x-forwarded-proto").unwrap(), "https");
    }
}

/// The bucket in a response's cohort cookie (`v1.<bucket>.<pin>.<mac>`).
fn bucket(got: &Page) -> Option<String> {
    let c = got.cookie("cutover_cohort")?;
    Some(c.split('.').nth(1)?.to_string())
}

fn split_config(dir: &std::path::Path, old: &RecordingStore, new: &RecordingStore) -> String {
    std::fs::write(
        dir.join("plan.csv"),
        "old_url,new_url,status\n/old-page,/new-page,301\n/product.php?id=42,/products/42,301\n/gone,,410\n",
    )
    .unwrap();
    format!(
        r#"{listener}
{storefronts}
[split]
from = "old"
to = "new"
new_share = 50

[cohort]
cookie = "cutover_cohort"
key = "tls-e2e-test-key-0123456789"
session_cookie = "sid"

[headers]
storefront_response_header = true

[[route]]
name = "help"
path_prefix = "/help"
to = "old"

[[redirects]]
name = "plan"
file = "plan.csv"
apply_to = "all"
"#,
        listener = tls_listener(&[("www", "www", None)], ""),
        storefronts = storefronts(old, new),
    )
}

/// The split, stickiness, routes and the redirect table give an HTTP/2 shopper exactly what an
/// HTTP/1.1 shopper gets: same storefront for the same session, same cohort cookie behaviour,
/// same redirect status and Location.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_stickiness_and_redirects_behave_identically_over_h2() {
    let Shop { dir, ca, old, new } = Shop::new("h2 CA").await;
    let app = start_in(dir.path(), &split_config(dir.path(), &old, &new)).await;
    let addr = app.addresses[0];
    let host = "www.shop.example";
    let open = |alpn: &'static [u8]| {
        let roots = ca.roots();
        async move {
            let tls = bounded("handshake", connect(addr, host, client(roots, &[alpn])))
                .await
                .unwrap();
            let conn = Conn::negotiated(tls).await;
            assert_eq!(conn.is_h2(), alpn == H2);
            conn
        }
    };
    let mut h1 = open(H1).await;
    let mut h2 = open(H2).await;

    // Split: the same session lands on the same storefront over both protocols, and the 50%
    // share sends sessions to both.
    let mut sides = HashMap::new();
    for i in 0..40 {
        let cookie = format!("sid=session-{i}");
        let a = h1.get(host, "/", &[("cookie", &cookie)]).await;
        let b = h2.get(host, "/", &[("cookie", &cookie)]).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(b.status, StatusCode::OK);
        assert_eq!(b.version, Version::HTTP_2);
        let side = a.header("x-cutover-storefront").to_string();
        assert_eq!(side, b.header("x-cutover-storefront"), "session-{i}");
        assert_eq!(a.body, b.body, "session-{i}");
        // Same bucket in the cohort cookie, whatever the protocol.
        assert_eq!(bucket(&a), bucket(&b), "session-{i}");
        *sides.entry(side).or_insert(0) += 1;
    }
    assert_eq!(
        sides.len(),
        2,
        "a 50% split uses both storefronts: {sides:?}"
    );

    // Stickiness: a new shopper over h2 gets a cohort cookie; with it, every request (h2
    // streams in parallel on one connection, and h1) goes to the same storefront.
    let first = h2.get(host, "/", &[]).await;
    let cookie = first
        .cookie("cutover_cohort")
        .expect("a new shopper gets a cohort cookie over h2");
    assert!(first
        .headers
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap().contains("; Secure")));
    let side = first.header("x-cutover-storefront").to_string();
    let sender = h2.h2_sender();
    let mut parallel = Vec::new();
    for i in 0..16 {
        let mut s = sender.clone();
        let req = protocol_request(
            true,
            "GET",
            host,
            &format!("/p/{i}"),
            &[("cookie", &cookie)],
        );
        parallel.push(tokio::spawn(async move {
            bounded("h2 ready", s.ready()).await.unwrap();
            read(bounded("h2 stream", s.send_request(req)).await.unwrap()).await
        }));
    }
    for p in parallel {
        let got = p.await.unwrap();
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.header("x-cutover-storefront"), side);
    }
    let again = h1.get(host, "/", &[("cookie", &cookie)]).await;
    assert_eq!(again.header("x-cutover-storefront"), side);
    // The other way round: a cookie issued over h1 holds over h2.
    let first1 = h1.get(host, "/", &[]).await;
    let cookie1 = first1.cookie("cutover_cohort").unwrap();
    for _ in 0..5 {
        let got = h2.get(host, "/", &[("cookie", &cookie1)]).await;
        assert_eq!(
            got.header("x-cutover-storefront"),
            first1.header("x-cutover-storefront")
        );
    }

    // Routes: /help stays on old for every session.
    for i in 0..5 {
        let cookie = format!("sid=session-{i}");
        let a = h1.get(host, "/help/faq", &[("cookie", &cookie)]).await;
        let b = h2.get(host, "/help/faq", &[("cookie", &cookie)]).await;
        assert_eq!(a.header("x-cutover-storefront"), "old");
        assert_eq!(b.header("x-cutover-storefront"), "old");
    }

    // Redirects: same status (permanent served as temporary during a partial shift) and
    // Location; tracking parameters carried over; 410 for removed pages.
    for (path, status, location) in [
        ("/old-page", 302, "/new-page"),
        (
            "/old-page?utm_source=mail",
            302,
            "/new-page?utm_source=mail",
        ),
        ("/product.php?id=42", 302, "/products/42"),
        ("/gone", 410, ""),
    ] {
        let a = h1.get(host, path, &[]).await;
        let b = h2.get(host, path, &[]).await;
        // The first request on a fresh HTTP/1.1 connection is answered by the front (src/front)
        // rather than through hyper: the same answer, over TLS.
        let c = open(H1).await.get(host, path, &[]).await;
        for (got, what) in [(&a, "h1"), (&b, "h2"), (&c, "h1 front")] {
            assert_eq!(got.status.as_u16(), status, "{what} {path}");
            assert_eq!(got.header("location"), location, "{what} {path}");
            assert!(
                got.cookie("cutover_cohort").is_some(),
                "{what} {path}: a first visit gets a cohort cookie"
            );
        }
        assert_eq!(b.version, Version::HTTP_2);
        assert_eq!(a.body, c.body, "{path}");
        assert_eq!(a.header("content-type"), c.header("content-type"), "{path}");
        assert!(
            c.headers
                .get_all("set-cookie")
                .iter()
                .any(|v| v.to_str().unwrap().contains("; Secure")),
            "the front marks the cookie Secure over TLS"
        );
    }

    // The storefronts saw the same request whichever protocol the shopper spoke: the host from
    // `:authority`, one request line per request.
    for s in old.seen().iter().chain(new.seen().iter()) {
        assert_eq!(s.headers.get("host").unwrap(), host, "{s:?}");
    }
}

/// Browsers split cookies into separate `cookie` fields over h2 (HPACK compresses them better);
/// RFC 9113 8.2.3 requires joining them with "; " before passing them to HTTP/1.1. A storefront
/// that reads one `Cookie` header would otherwise lose the shopper's session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_cookie_fields_reach_an_http1_storefront_as_one_header() {
    let Shop { dir, ca, old, new } = Shop::new("cookie CA").await;
    let config = format!(
        "{}\n{}\n[split]\nnew_share = 0\n",
        tls_listener(&[("www", "www", None)], ""),
        storefronts(&old, &new),
    );
    let app = start_in(dir.path(), &config).await;
    let host = "www.shop.example";
    let tls = bounded(
        "handshake",
        connect(app.addresses[0], host, client(ca.roots(), &[H2])),
    )
    .await
    .unwrap();
    let mut conn = Conn::negotiated(tls).await;
    let mut req = protocol_request(true, "GET", host, "/cart", &[]);
    for c in ["PHPSESSID=abc123", "cart=7", "lang=fr"] {
        req.headers_mut()
            .append(http::header::COOKIE, c.parse().unwrap());
    }
    let got = conn.send(req).await;
    assert_eq!(got.status, StatusCode::OK);
    let seen = old.seen();
    let cookies: Vec<_> = seen[0].headers.get_all("cookie").iter().collect();
    assert_eq!(
        cookies,
        ["PHPSESSID=abc123; cart=7; lang=fr"],
        "one Cookie header for the HTTP/1.1 storefront"
    );
}

/// The plain port next to an HTTPS listener answers 308 to the same host, path and query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_https_redirect_keeps_path_and_query() {
    let Shop { dir, ca, old, new } = Shop::new("redirect CA").await;
    let plain_port = free_port();
    let config = format!(
        "{}\n{}\n[split]\nnew_share = 0\n",
        tls_listener(
            &[("www", "www", None)],
            &format!("redirect_http = \"127.0.0.1:{plain_port}\"")
        ),
        storefronts(&old, &new),
    );
    let app = start_in(dir.path(), &config).await;
    let https = app.addresses[0].port();
    let plain: std::net::SocketAddr = format!("127.0.0.1:{plain_port}").parse().unwrap();

    let tcp = bounded("connect", tokio::net::TcpStream::connect(plain))
        .await
        .unwrap();
    let mut conn = Conn::h1(tcp).await;
    for (method, host, path) in [
        ("GET", "www.shop.example", "/"),
        ("GET", "www.shop.example", "/a/b?x=1&y=%20z&utm_source=ad"),
        ("GET", "www.shop.example:80", "/checkout?step=2"),
        ("POST", "WWW.Shop.Example", "/cart/add?sku=9"),
        ("HEAD", "shop.example", "/p%C3%A9/x;y?q"),
    ] {
        let req = protocol_request(false, method, host, path, &[]);
        let got = conn.send(req).await;
        assert_eq!(
            got.status,
            StatusCode::PERMANENT_REDIRECT,
            "{method} {path}"
        );
        let bare = tls_support_strip_port(host);
        assert_eq!(
            got.header("location"),
            format!("https://{bare}:{https}{path}"),
            "{method} {host}{path}"
        );
    }
    // The storefronts never saw any of it.
    assert!(old.seen().is_empty() && new.seen().is_empty());
    // And the HTTPS side serves.
    let tls = bounded(
        "handshake",
        connect(
            app.addresses[0],
            "www.shop.example",
            client(ca.roots(), &[H1]),
        ),
    )
    .await
    .unwrap();
    let got = Conn::negotiated(tls)
        .await
        .get("www.shop.example", "/a/b?x=1", &[])
        .await;
    assert_eq!(got.status, StatusCode::OK);
}

fn tls_support_strip_port(host: &str) -> &str {
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// An origin behind a private CA: trusted with `ca_file` (and reached over h2 when it offers
/// it), a clear 502 naming the storefront and a `kind="tls"` error without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_private_ca_verifies_with_ca_file_and_fails_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let shopper_ca = Ca::new("front CA");
    shopper_ca
        .leaf(&["www.shop.example"])
        .write(dir.path(), "www");
    let private = Ca::new("private origin CA");
    private.write(dir.path(), "origin-ca.pem");
    let origin = recording_tls_store("origin", &private.leaf(&["origin.internal"])).await;
    let config = format!(
        r#"{listener}
[admin]
address = "127.0.0.1:0"

[storefront.old]
upstream = "https://{addr}"
host_header = "upstream"
[storefront.old.tls]
ca_file = "origin-ca.pem"
server_name = "origin.internal"

[storefront.new]
upstream = "https://{addr}"
host_header = "upstream"
[storefront.new.tls]
server_name = "origin.internal"

[split]
new_share = 0

[[route]]
name = "untrusted"
path_prefix = "/untrusted"
to = "new"
"#,
        listener = tls_listener(&[("www", "www", None)], ""),
        addr = origin.addr,
    );
    let app = start_in(dir.path(), &config).await;
    let admin = app.admin_address.unwrap();
    let host = "www.shop.example";
    let tls = bounded(
        "handshake",
        connect(app.addresses[0], host, client(shopper_ca.roots(), &[H2])),
    )
    .await
    .unwrap();
    let mut conn = Conn::negotiated(tls).await;

    let good = conn.get(host, "/products/1", &[]).await;
    assert_eq!(good.status, StatusCode::OK, "{}", good.body);
    assert_eq!(good.body, "origin");
    let seen = origin.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].version,
        Version::HTTP_2,
        "h2 to an origin that offers it"
    );

    let bad = conn.get(host, "/untrusted/products/1", &[]).await;
    assert_eq!(bad.status, StatusCode::BAD_GATEWAY);
    assert!(
        bad.body.contains("storefront \"new\"") && bad.body.contains("TLS"),
        "the 502 names the storefront and the cause: {}",
        bad.body
    );
    assert_eq!(origin.seen().len(), 1, "no request reached the origin");
    let text = scrape(admin).await;
    assert!(
        metric_sum(
            &text,
            "cutover_upstream_errors_total",
            &[("storefront", "new"), ("kind", "tls")]
        ) >= 1.0,
        "{text}"
    );
    assert_eq!(
        metric_sum(
            &text,
            "cutover_upstream_errors_total",
            &[("storefront", "old"), ("kind", "tls")]
        ),
        0.0
    );
}

fn limit_config(old: &RecordingStore, new: &RecordingStore) -> String {
    format!(
        "{}\n{}\n[split]\nnew_share = 0\n[limits]\nh2_max_concurrent_streams = 2\n",
        tls_listener(&[("www", "www", None)], ""),
        storefronts(old, new),
    )
}

/// A well-behaved client (hyper's) waits for a free stream slot, as SETTINGS tells it: every
/// request completes and the storefront never sees more than two at once from the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_client_obeying_settings_waits_for_a_stream_slot() {
    let Shop { dir, ca, old, new } = Shop::new("limit CA").await;
    let app = start_in(dir.path(), &limit_config(&old, &new)).await;
    let host = "www.shop.example";
    let tls = bounded(
        "handshake",
        connect(app.addresses[0], host, client(ca.roots(), &[H2])),
    )
    .await
    .unwrap();
    let mut conn = Conn::negotiated(tls).await;
    // One round trip first: a client only knows the limit once the server's SETTINGS arrived.
    // Streams sent in the very first flight, before that, may be refused (REFUSED_STREAM, which
    // browsers retry); the raw-frame test below covers refusals.
    assert_eq!(conn.get(host, "/", &[]).await.status, StatusCode::OK);
    let sender = conn.h2_sender();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut s = sender.clone();
        let req = protocol_request(true, "GET", host, &format!("/slow/{i}"), &[]);
        tasks.push(tokio::spawn(async move {
            bounded("h2 ready", s.ready()).await.unwrap();
            read(bounded("h2 stream", s.send_request(req)).await.unwrap()).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().status, StatusCode::OK);
    }
    assert_eq!(old.seen().len(), 9);
    assert!(
        old.max_in_flight() <= 2,
        "at most 2 streams at once, saw {}",
        old.max_in_flight()
    );
}

// A minimal HTTP/2 framer: enough to open more streams than SETTINGS allows, which no
// well-behaved client library will do.
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;
const ACK: u8 = 1;
const REFUSED_STREAM: u32 = 7;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK: `GET https://authority/path`, literals without indexing, no Huffman.
fn get_block(authority: &str, path: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x87]; // :method GET, :scheme https
    for (index, value) in [(4u8, path), (1u8, authority)] {
        b.push(index); // literal without indexing, indexed name (:path 4, :authority 1)
        b.push(value.len() as u8);
        b.extend_from_slice(value.as_bytes());
    }
    b
}

async fn read_frame<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> (u8, u8, u32, Vec<u8>) {
    let mut head = [0u8; 9];
    bounded("h2 frame", r.read_exact(&mut head))
        .await
        .expect("frame header");
    let len = (head[0] as usize) << 16 | (head[1] as usize) << 8 | head[2] as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    bounded("h2 frame payload", r.read_exact(&mut payload))
        .await
        .expect("frame payload");
    (head[3], head[4], stream, payload)
}

/// A client that ignores SETTINGS_MAX_CONCURRENT_STREAMS and opens four streams at once: the
/// two beyond the limit are refused with RST_STREAM(REFUSED_STREAM) (safe to retry: nothing was
/// processed), the connection stays up (no GOAWAY), the two admitted streams complete, and a
/// new stream opened afterwards on the same connection is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_streams_beyond_the_limit_are_refused_and_the_others_complete() {
    let Shop { dir, ca, old, new } = Shop::new("raw h2 CA").await;
    let app = start_in(dir.path(), &limit_config(&old, &new)).await;
    let host = "www.shop.example";
    let mut tls = bounded(
        "handshake",
        connect(app.addresses[0], host, client(ca.roots(), &[H2])),
    )
    .await
    .unwrap();
    assert_eq!(alpn(&tls).as_deref(), Some(H2));

    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    tls.write_all(&out).await.unwrap();
    // The server's SETTINGS announce the limit.
    let mut max_streams = None;
    loop {
        let (kind, flags, _, payload) = read_frame(&mut tls).await;
        if kind == SETTINGS && flags & ACK == 0 {
            for s in payload.chunks(6) {
                if u16::from_be_bytes([s[0], s[1]]) == 3 {
                    max_streams = Some(u32::from_be_bytes([s[2], s[3], s[4], s[5]]));
                }
            }
            tls.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
            break;
        }
    }
    assert_eq!(max_streams, Some(2), "SETTINGS_MAX_CONCURRENT_STREAMS");

    // Four requests that the storefront holds until released.
    let mut burst = Vec::new();
    for id in [1u32, 3, 5, 7] {
        burst.extend(frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            id,
            &get_block(host, &format!("/hold/{id}")),
        ));
    }
    tls.write_all(&burst).await.unwrap();
    tls.flush().await.unwrap();

    let mut refused = Vec::new();
    let mut status_200 = Vec::new();
    let mut finished = Vec::new();
    let mut released = false;
    while finished.len() < 2 || refused.len() < 2 {
        let (kind, flags, stream, payload) = read_frame(&mut tls).await;
        match kind {
            RST_STREAM => {
                let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                assert_eq!(
                    code, REFUSED_STREAM,
                    "stream {stream} reset with code {code}"
                );
                refused.push(stream);
            }
            HEADERS => {
                // `:status: 200` is HPACK static index 8.
                assert_eq!(payload.first(), Some(&0x88), "stream {stream}: {payload:?}");
                status_200.push(stream);
                if flags & END_STREAM != 0 {
                    finished.push(stream);
                }
            }
            DATA if flags & END_STREAM != 0 => finished.push(stream),
            GOAWAY => panic!("connection closed: {payload:?}"),
            PING if flags & ACK == 0 => {
                tls.write_all(&frame(PING, ACK, 0, &payload)).await.unwrap();
            }
            _ => {}
        }
        // Release the storefront only once the excess streams were refused, so the admitted
        // ones were certainly still open when the others arrived.
        if refused.len() == 2 && !released {
            wait_for("two requests held at the storefront", SLOW_WAIT, || async {
                (old.in_flight() == 2).then_some(())
            })
            .await;
            old.release();
            released = true;
        }
    }
    refused.sort_unstable();
    status_200.sort_unstable();
    finished.sort_unstable();
    assert_eq!(refused, [5, 7], "the streams beyond the limit are refused");
    assert_eq!(status_200, [1, 3]);
    assert_eq!(finished, [1, 3], "the admitted streams complete");
    let mut paths: Vec<_> = old.seen().into_iter().map(|s| s.path_and_query).collect();
    paths.sort();
    assert_eq!(
        paths,
        ["/hold/1", "/hold/3"],
        "refused streams never reach the storefront"
    );

    // The connection is still good for new streams.
    tls.write_all(&frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        9,
        &get_block(host, "/after"),
    ))
    .await
    .unwrap();
    loop {
        let (kind, flags, stream, payload) = read_frame(&mut tls).await;
        assert_ne!(kind, GOAWAY, "connection closed: {payload:?}");
        assert_ne!(kind, RST_STREAM, "stream {stream} reset: {payload:?}");
        if stream == 9 && (kind == DATA || kind == HEADERS) && flags & END_STREAM != 0 {
            break;
        }
    }
    assert_eq!(old.seen().len(), 3);
    let _ = tokio::time::timeout(Duration::from_secs(1), tls.shutdown()).await;
}
