//! Every storefront framing x every mid-body failure x both shopper protocols, checked with curl:
//! a page the storefront cut short must never reach the shopper as a complete page, whatever the
//! framing on either side, and each cut is counted under `cutover_upstream_errors_total{kind}`
//! so a rollout gate can compare old and new.
//!
//! Framings: `content-length`, `chunked`, and an HTTP/1.0 close-delimited answer. Failures after
//! the head and 4 KiB of body: a reset, an early FIN (a clean close before the end), and silence
//! past the storefront's `read_timeout`. An early FIN on a close-delimited answer is, by
//! definition, its end: that one cell must arrive complete and count nothing.

mod support;

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::upstream::{parse_head, read_head, spawn_raw};
use support::{Backend, ConfigSpec, InProc, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Body bytes sent before the failure.
const PART: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Framing {
    ContentLength,
    Chunked,
    CloseDelimited,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Failure {
    Reset,
    EarlyFin,
    Silence,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum ClientVersion {
    Http11,
    Http10,
}

impl Framing {
    const ALL: [Framing; 3] = [
        Framing::ContentLength,
        Framing::Chunked,
        Framing::CloseDelimited,
    ];

    fn path(self) -> &'static str {
        match self {
            Framing::ContentLength => "content-length",
            Framing::Chunked => "chunked",
            Framing::CloseDelimited => "close",
        }
    }

    fn from_path(path: &str) -> Framing {
        Framing::ALL
            .into_iter()
            .find(|f| path.ends_with(f.path()))
            .expect("matrix path names a framing")
    }

    /// The head and the first [`PART`] bytes of a body meant to be much longer (or, when
    /// close-delimited, of unknown length).
    fn start(self) -> Vec<u8> {
        let part = [b'x'; PART];
        let mut out = Vec::new();
        match self {
            Framing::ContentLength => {
                out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n");
                out.extend_from_slice(&part);
            }
            Framing::Chunked => {
                out.extend_from_slice(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
                out.extend_from_slice(format!("{PART:x}\r\n").as_bytes());
                out.extend_from_slice(&part);
                out.extend_from_slice(b"\r\n");
            }
            Framing::CloseDelimited => {
                out.extend_from_slice(b"HTTP/1.0 200 OK\r\ncontent-type: text/html\r\n\r\n");
                out.extend_from_slice(&part);
            }
        }
        out
    }
}

impl Failure {
    /// The `kind` label the cut is counted under; `None` when the answer is in fact complete.
    fn counted_as(self, framing: Framing) -> Option<&'static str> {
        match (self, framing) {
            (Failure::EarlyFin, Framing::CloseDelimited) => None,
            (Failure::Silence, _) => Some("body_timeout"),
            _ => Some("body_failed"),
        }
    }
}

/// A storefront that answers `/<framing>` with the framing's head and [`PART`] bytes, waits for
/// [`Backend::go`] (the shopper has those bytes), then fails as `failure` says.
async fn failing_storefront(failure: Failure) -> Backend {
    let (listener, _) = support::upstream::bind_local().await;
    spawn_raw("new", listener, move |mut s, log, _| async move {
        let mut buf = Vec::new();
        let Some((head, _)) = read_head(&mut s, &mut buf, &log).await else {
            return;
        };
        let framing = Framing::from_path(&parse_head(&head).uri);
        log.requests.fetch_add(1, Ordering::SeqCst);
        if s.write_all(&framing.start()).await.is_err() {
            return;
        }
        let _ = s.flush().await;
        let _ = tokio::time::timeout(WAIT, log.go.notified()).await;
        match failure {
            Failure::Reset => {
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            }
            Failure::EarlyFin => {
                let _ = s.shutdown().await;
            }
            // Hold the connection open and send nothing until the proxy gives up on it.
            Failure::Silence => wait_for_close(&mut s).await,
        }
    })
}

async fn wait_for_close(s: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(WAIT, async {
        while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// What curl made of one exchange.
struct CurlRun {
    exit: Option<i32>,
    status_line: String,
    body_len: usize,
}

/// Fetches `url` with curl, lets the storefront fail once curl has printed the head and some
/// body (the event that proves the cut comes mid-body), then collects curl's verdict.
async fn curl_through(url: &str, client: ClientVersion, store: &Backend) -> CurlRun {
    let version = match client {
        ClientVersion::Http11 => "--http1.1",
        ClientVersion::Http10 => "--http1.0",
    };
    let mut child = tokio::process::Command::new("curl")
        .args(["-s", "-i", "-N", "--max-time", "30", version, url])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("curl is installed (tests/run installs it)");
    let mut out = child.stdout.take().expect("piped stdout");
    let mut seen = Vec::new();
    let mut chunk = [0u8; 8192];
    let started = tokio::time::timeout(WAIT, async {
        loop {
            match out.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
            if let Some(end) = header_end(&seen) {
                if seen.len() > end {
                    return true;
                }
            }
        }
    })
    .await;
    assert_eq!(
        started,
        Ok(true),
        "{url} {client:?}: curl printed a head and some body before the failure: {:?}",
        String::from_utf8_lossy(&seen)
    );
    store.go();
    let rest = tokio::time::timeout(WAIT, async {
        let _ = out.read_to_end(&mut seen).await;
    })
    .await;
    assert!(
        rest.is_ok(),
        "{url} {client:?}: the proxy ends the response promptly"
    );
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("curl exits")
        .expect("curl ran");
    let end = header_end(&seen).expect("head");
    let text = String::from_utf8_lossy(&seen[..end]).into_owned();
    CurlRun {
        exit: status.code(),
        status_line: text.lines().next().unwrap_or("").to_string(),
        body_len: seen.len() - end,
    }
}

fn header_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
}

fn body_errors(proxy: &InProc, kind: &str) -> f64 {
    support::metrics::metric_sum(
        &proxy.app.proxy.metrics().encode(),
        "cutover_upstream_errors_total",
        &[("storefront", "new"), ("kind", kind)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_framing_and_failure_is_an_error_the_shopper_sees_and_a_counted_one() {
    let old = Backend::echo("old").await;
    let mut cells = 0;
    for failure in [Failure::Reset, Failure::EarlyFin, Failure::Silence] {
        let store = failing_storefront(failure).await;
        let mut spec = ConfigSpec::new(&old.url(), &store.url(), 100.0);
        if failure == Failure::Silence {
            // Short, so the silent cells end quickly; the other cells keep the default (60 s)
            // so a slow test machine cannot turn a reset into a timeout.
            spec = spec.store_extra("new", "read_timeout = \"500ms\"");
        }
        let proxy = InProc::start(&spec).await;
        for framing in Framing::ALL {
            for client in [ClientVersion::Http11, ClientVersion::Http10] {
                let cell = format!("{framing:?} x {failure:?} x {client:?}");
                let kind = failure.counted_as(framing);
                let before = ["body_failed", "body_timeout"].map(|k| body_errors(&proxy, k));
                let url = format!("http://{}/matrix/{}", proxy.addr, framing.path());
                let run = curl_through(&url, client, &store).await;

                let expected_line = match client {
                    ClientVersion::Http11 => "HTTP/1.1 200",
                    ClientVersion::Http10 => "HTTP/1.0 200",
                };
                assert!(
                    run.status_line.starts_with(expected_line),
                    "{cell}: answered in the shopper's protocol: {}",
                    run.status_line
                );
                if kind.is_some() {
                    assert_ne!(
                        run.exit,
                        Some(0),
                        "{cell}: a cut page must not look complete ({} body bytes)",
                        run.body_len
                    );
                    assert_ne!(run.exit, Some(28), "{cell}: curl's own timeout, not a cut");
                } else {
                    assert_eq!(
                        run.exit,
                        Some(0),
                        "{cell}: a close-delimited end is complete"
                    );
                    assert_eq!(run.body_len, PART, "{cell}: every byte relayed");
                }

                let after = ["body_failed", "body_timeout"].map(|k| body_errors(&proxy, k));
                let delta = [after[0] - before[0], after[1] - before[1]];
                let expected = match kind {
                    Some("body_failed") => [1.0, 0.0],
                    Some(_) => [0.0, 1.0],
                    None => [0.0, 0.0],
                };
                assert_eq!(
                    delta, expected,
                    "{cell}: [body_failed, body_timeout] counted once, under {kind:?}"
                );
                cells += 1;
            }
        }
    }
    assert_eq!(cells, 18);
}
