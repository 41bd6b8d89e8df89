//! The checks behind the `http1_head` and `fast_path` fuzz targets: what the HTTP/1 front may
//! answer itself and what it must leave to hyper, from bytes a shopper sends.

use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{assert_safe_location, CONFIG_DIR, DEMO_TOML};
use crate::config::{build, CompileInput, Source};
use crate::fast_path::{self, Leave, Outcome};
use crate::http1::head::{parse, Parsed, SLOTS};
use crate::http1::HeadLimits;
use crate::metrics::Metrics;
use crate::proxy::{ConnInfo, Proxy};
use crate::state::Limits;

/// Headers the front never answers with: they frame a body or change the connection.
const FRAMING: [&str; 5] = [
    "content-length",
    "transfer-encoding",
    "expect",
    "upgrade",
    "te",
];

/// The shopper-side head parser, under hyper's default limits and under tight ones: it never
/// panics; a head it accepts is a GET or HEAD in HTTP/1.1 with an origin-form target of plain
/// bytes, exactly one `Host`, no framing header, a `Connection` of `keep-alive` only, within the
/// limits, and ends at the first blank line (no shorter prefix is a head, the head alone parses
/// the same). Anything else is `Partial` or hyper's.
pub fn check_http1_head(data: &[u8]) {
    for limits in [
        HeadLimits::default(),
        HeadLimits {
            max_header_bytes: 64,
            max_headers: 2,
        },
    ] {
        let mut slots = [const { MaybeUninit::uninit() }; SLOTS];
        let Parsed::Head(head, len) = parse(data, &mut slots, &limits) else {
            continue;
        };
        assert!(
            len <= data.len() && len <= limits.max_header_bytes,
            "len {len}"
        );
        assert!(head.headers.len() <= limits.max_headers);
        let raw = &data[..len];
        // Ends with an empty line; httparse (and so hyper) takes a bare LF for CRLF anywhere.
        assert!(
            raw.ends_with(b"\n\n") || raw.ends_with(b"\n\r\n"),
            "{raw:?}"
        );
        // Empty lines before the request line are skipped (RFC 9112 2.2), by hyper too.
        let first_line = raw
            .split(|&b| b == b'\n')
            .find(|l| !l.trim_ascii().is_empty())
            .unwrap_or_default();
        assert!(
            first_line.trim_ascii_end().ends_with(b"HTTP/1.1"),
            "only HTTP/1.1 is the front's: {first_line:?}"
        );
        assert!(
            head.method == "GET" || head.method == "HEAD",
            "{}",
            head.method
        );
        assert!(head.target.starts_with('/'), "{}", head.target);
        assert!(
            !head
                .target
                .bytes()
                .any(|b| b <= b' ' || b >= 0x7f || b"#\"<>\\^`{|}[]".contains(&b)),
            "target {:?}",
            head.target
        );
        match head.query {
            Some(q) => assert_eq!(format!("{}?{q}", head.path), head.target),
            None => assert_eq!(head.path, head.target),
        }
        assert!(!head.path.contains('?'));
        let hosts = head
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("host"))
            .count();
        assert_eq!(hosts, 1, "exactly one Host");
        for h in head.headers {
            assert!(
                !FRAMING.iter().any(|f| h.name.eq_ignore_ascii_case(f)),
                "framing header {} taken by the front",
                h.name
            );
            if h.name.eq_ignore_ascii_case("connection") {
                let v = String::from_utf8_lossy(h.value);
                assert!(
                    v.split(',')
                        .all(|t| t.trim().eq_ignore_ascii_case("keep-alive")),
                    "Connection: {v}"
                );
            }
        }
        // The decision is the head's alone: the same bytes on their own, the same answer; a
        // shorter prefix is never a head.
        let mut again = [const { MaybeUninit::uninit() }; SLOTS];
        assert!(matches!(parse(raw, &mut again, &limits), Parsed::Head(_, l) if l == len));
        for cut in [len - 1, len / 2] {
            let mut s = [const { MaybeUninit::uninit() }; SLOTS];
            assert!(
                !matches!(parse(&data[..cut], &mut s, &limits), Parsed::Head(..)),
                "a prefix of {cut} of {len} bytes taken for a head"
            );
        }
    }
}

/// Where the fuzzed proxy's storefronts are: a port nothing listens on (tcpmux, never served
/// on a test machine), so a forwarded head is answered at once with the storefront-down status
/// and no input reaches a real server.
const NOBODY: &str = "http://127.0.0.1:1";

/// The demo's proxy with every shopper on the new storefront, so its redirect plan applies, and
/// both storefronts at [`NOBODY`].
fn front_proxy() -> &'static Arc<Proxy> {
    static PROXY: OnceLock<Arc<Proxy>> = OnceLock::new();
    PROXY.get_or_init(|| {
        let source = Source {
            path: PathBuf::from(CONFIG_DIR).join("demo.toml"),
            text: DEMO_TOML
                .replace("new_share = 10\n", "new_share = 100\n")
                .replace("http://127.0.0.1:8081", NOBODY)
                .replace("http://127.0.0.1:8082", NOBODY),
        };
        let metrics = Metrics::new();
        let input = CompileInput {
            source: &source,
            generation: 1,
            previous: None,
            metrics: &metrics,
        };
        let snap = build(None, input).unwrap_or_else(|e| panic!("the demo config compiles: {e}"));
        assert_eq!(snap.routing.split.share_bp, 10_000);
        Proxy::new(Arc::new(ArcSwap::from_pointee(snap)), metrics)
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime")
    })
}

/// The fast-path decision, on a connection that sends `data` and then closes its side: the front
/// answers a run of heads from the start, one answer per head it took, each a redirect with a
/// safe `Location` or the storefront-down answer of a forwarded request (the storefronts are at
/// [`NOBODY`]), and either hands hyper exactly the bytes it did not answer, unread, or closes when
/// the client has gone with nothing left but an unfinished head. Every head it answered is one
/// the head parser accepts.
pub fn check_fast_path(data: &[u8]) {
    let data = &data[..data.len().min(32 * 1024)];
    let (outcome, handed, answers) = run_front(data);
    let handed_len = handed.as_ref().map_or(0, Vec::len);
    assert!(handed_len <= data.len());
    let answered = &data[..data.len() - handed_len];
    if let Some(rest) = &handed {
        assert_eq!(
            rest[..],
            data[answered.len()..],
            "handed over unread and whole"
        );
    }
    // The answered bytes are a run of heads the parser accepts (and, when the front closed, an
    // unfinished head the client never completed).
    let limits = HeadLimits::default();
    let mut at = 0;
    let mut heads = Vec::new();
    while at < answered.len() {
        let mut slots = [const { MaybeUninit::uninit() }; SLOTS];
        match parse(&answered[at..], &mut slots, &limits) {
            Parsed::Head(head, len) => {
                at += len;
                heads.push(head.method == "HEAD");
            }
            other => {
                assert!(
                    outcome == "closed" && matches!(other, Parsed::Partial),
                    "bytes neither answered nor handed to hyper ({outcome}): {other:?}"
                );
                break;
            }
        }
    }
    // One answer per head taken, in order, each framed by its Content-Length (none sent after a
    // HEAD), each a redirect or a 410 with a safe Location, or a forwarded request's 502.
    let mut rest = &answers[..];
    for (i, is_head) in heads.iter().enumerate() {
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("answer {i} of {} has no whole head", heads.len()));
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        let status = head
            .strip_prefix("HTTP/1.1 ")
            .unwrap_or_else(|| panic!("{head}"));
        assert!(
            ["301 ", "302 ", "307 ", "308 ", "410 ", "502 "]
                .iter()
                .any(|p| status.starts_with(p)),
            "the front answers redirects, or forwards to the storefront that is down: {head}"
        );
        let mut body = 0;
        for line in head.split("\r\n").skip(1) {
            if let Some(loc) = line.strip_prefix("location: ") {
                assert_safe_location(loc, &"a fast-path answer");
            }
            if let Some(n) = line.strip_prefix("content-length: ") {
                body = n.parse::<usize>().unwrap_or_else(|_| panic!("{head}"));
            }
        }
        let body = if *is_head { 0 } else { body };
        assert!(rest.len() >= end + 4 + body, "answer {i} is cut short");
        rest = &rest[end + 4 + body..];
    }
    assert!(
        rest.is_empty(),
        "answers beyond the heads taken: {:?}",
        String::from_utf8_lossy(rest)
    );
}

/// Sends `data` to the front on an in-memory connection, then closes the client's side: how the
/// front let go (`closed` or `handed`), the bytes it handed to hyper, and what it answered.
fn run_front(data: &[u8]) -> (&'static str, Option<Vec<u8>>, Vec<u8>) {
    let proxy = front_proxy();
    runtime().block_on(async {
        let (mut client, server) = tokio::io::duplex(4 * 1024 * 1024);
        client
            .write_all(data)
            .await
            .expect("the duplex holds the input");
        client.shutdown().await.expect("client write side closes");
        let conn = ConnInfo {
            peer: "127.0.0.1:40000".parse().expect("address"),
            tls: false,
            listener: 0,
        };
        let outside = std::future::pending::<Leave>();
        tokio::pin!(outside);
        let outcome =
            fast_path::serve(proxy, server, conn, &Limits::default(), outside, |_| {}).await;
        let (kind, handed) = match outcome {
            Outcome::Closed => ("closed", None),
            Outcome::BodyFailed => panic!("a local answer's body cannot fail"),
            Outcome::Evicted => panic!("nothing evicts the fuzzed connection"),
            Outcome::HandOff { mut io, .. } => {
                let mut rest = Vec::new();
                io.read_to_end(&mut rest).await.expect("the prefix reads");
                ("handed", Some(rest))
            }
        };
        let mut answers = Vec::new();
        client
            .read_to_end(&mut answers)
            .await
            .expect("answers read");
        (kind, handed, answers)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds reach every branch: the front answers a plan URL itself, forwards the page
    /// request after it (to a storefront that is down: 502), and hands over the POST after that,
    /// unread.
    #[test]
    fn the_front_answers_the_plan_forwards_pages_and_hands_over_the_rest() {
        let data = b"GET /index.php?route=checkout/cart HTTP/1.1\r\nHost: shop.example.com\r\n\r\nGET /page HTTP/1.1\r\nHost: shop.example.com\r\n\r\nPOST /cart HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 1\r\n\r\nx";
        let (outcome, handed, answers) = run_front(data);
        assert_eq!(outcome, "handed");
        let answers = String::from_utf8(answers).unwrap();
        assert!(answers.starts_with("HTTP/1.1 302 "), "{answers}");
        assert!(answers.contains("location: /cart\r\n"), "{answers}");
        let (_, page) = answers
            .split_once("HTTP/1.1 502 ")
            .expect("the page forwarded");
        assert!(page.contains("\r\ncontent-length: "), "{page}");
        assert_eq!(
            handed.unwrap(),
            b"POST /cart HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 1\r\n\r\nx"
        );
        check_fast_path(data);
    }
}
