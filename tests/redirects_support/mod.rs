//! Small end-to-end helpers for the redirect-table tests: temp configs, a tiny upstream that
//! answers its name (404 for configured paths), a keep-alive client, a raw-bytes client, and the
//! `cutover` binary as a child process. Every wait is bounded.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long any single network step may take before a test fails instead of hanging.
pub const STEP: Duration = Duration::from_secs(20);

/// Polls `check` every `every` until it returns `Some`, for at most `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, every: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Files

/// A temp directory holding a config and its CSV files.
pub struct Dir {
    pub dir: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// In-place rewrite: truncate and write the same inode, as `echo > file` or most editors do.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).expect("write file");
        p
    }

    /// Atomic replace: write a sibling temp file, then rename it over `name`.
    pub fn write_atomic(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        let tmp = self.path(&format!(".{name}.tmp"));
        std::fs::write(&tmp, content).expect("write temp file");
        std::fs::rename(&tmp, &p).expect("rename over file");
        p
    }
}

/// A config with two storefronts, `new_share` percent on `new`, listener and admin on port 0,
/// and header routes so a test picks the side: `x-side: old` -> old, `x-side: new` -> new.
/// `extra` (more `[[route]]` or `[[redirects]]` tables) is appended.
pub fn config(old: SocketAddr, new: SocketAddr, new_share: f64, extra: &str) -> String {
    format!(
        r#"[[listener]]
address = "127.0.0.1:0"

[admin]
address = "127.0.0.1:0"

[storefront.old]
upstream = "http://{old}"

[storefront.new]
upstream = "http://{new}"

[split]
from = "old"
to = "new"
new_share = {new_share}

[cohort]
key = "end-to-end-test-key"

[override]
enabled = true
token = "staff-token"

[headers]
storefront_response_header = true

[[route]]
name = "side-old"
header = {{ name = "x-side", value = "old" }}
to = "old"

[[route]]
name = "side-new"
header = {{ name = "x-side", value = "new" }}
to = "new"

{extra}
"#
    )
}

// ---------------------------------------------------------------------------------------------
// Upstream

/// A storefront stand-in: answers `200 <name> <path?query>` with `x-upstream: <name>`, or 404
/// for the configured paths.
pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
}

pub async fn upstream(name: &'static str, not_found: &[&str]) -> Upstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream address");
    let hits = Arc::new(AtomicU64::new(0));
    let not_found: Arc<Vec<String>> = Arc::new(not_found.iter().map(|s| s.to_string()).collect());
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let not_found = Arc::clone(&not_found);
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    let pq = req
                        .uri()
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_string();
                    let status = if not_found.iter().any(|p| p == req.uri().path()) {
                        StatusCode::NOT_FOUND
                    } else {
                        StatusCode::OK
                    };
                    async move {
                        let mut resp =
                            Response::new(Full::new(Bytes::from(format!("{name} {pq}"))));
                        *resp.status_mut() = status;
                        resp.headers_mut()
                            .insert("x-upstream", http::HeaderValue::from_static(name));
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Upstream { addr, hits }
}

// ---------------------------------------------------------------------------------------------
// Clients

/// A response read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(http::header::LOCATION)
            .map(|v| v.to_str().expect("Location is visible ASCII"))
    }

    /// Which storefront answered (the upstream's own header, so redirects have none).
    pub fn upstream(&self) -> Option<&str> {
        self.headers.get("x-upstream").and_then(|v| v.to_str().ok())
    }
}

/// A keep-alive HTTP/1.1 client.
#[derive(Clone)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<HttpConnector, Empty<Bytes>>,
}

impl Client {
    pub fn new() -> Client {
        Client {
            inner: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(8)
                .build_http(),
        }
    }

    /// GET `path_and_query` from `addr` with extra headers; panics on transport errors.
    pub async fn get(&self, addr: SocketAddr, pq: &str, headers: &[(&str, &str)]) -> Resp {
        self.try_get(addr, pq, headers)
            .await
            .unwrap_or_else(|e| panic!("GET {pq} from {addr}: {e}"))
    }

    /// GET, with transport errors and timeouts returned.
    pub async fn try_get(
        &self,
        addr: SocketAddr,
        pq: &str,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        let mut req = Request::get(format!("http://{addr}{pq}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Empty::new()).map_err(|e| e.to_string())?;
        let fut = async {
            let resp = self.inner.request(req).await.map_err(|e| e.to_string())?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok(Resp {
                status: parts.status,
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        tokio::time::timeout(STEP, fut)
            .await
            .map_err(|_| format!("no answer within {STEP:?}"))?
    }
}

/// Sends `request` as raw bytes on a fresh connection and returns everything the server sent
/// until it closed (send `Connection: close`).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(request).await.expect("write request");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        out
    };
    tokio::time::timeout(STEP, fut)
        .await
        .expect("raw request answered and closed in time")
}

/// The head of a raw response: status code and header lines (name lowercase, value).
pub fn parse_head(raw: &[u8]) -> (u16, Vec<(String, String)>) {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers)
}

/// The value of one metric series from a Prometheus text page (`name{labels}` as printed).
pub fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == series).then(|| v.parse().ok()).flatten()
    })
}

/// Reads one metric from an admin listener.
pub async fn admin_metric(client: &Client, admin: SocketAddr, series: &str) -> Option<f64> {
    let page = client.try_get(admin, "/metrics", &[]).await.ok()?;
    metric(&page.body, series)
}

// ---------------------------------------------------------------------------------------------
// The binary

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cutover")
}

/// `cutover serve` as a child process; killed when dropped.
pub struct Process {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub log: PathBuf,
}

/// Starts `cutover serve --config config`, logging JSON to `log`, and waits (bounded) for its
/// "cutover started" line to learn the bound addresses.
pub async fn serve(config: &Path, log: PathBuf, limit: Duration) -> Process {
    let out = std::fs::File::create(&log).expect("create log");
    let child = Command::new(bin())
        .args(["--log", "info", "--log-format", "json", "serve", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .expect("spawn cutover");
    let mut p = Process {
        child,
        addr: "127.0.0.1:1".parse().unwrap(),
        admin: "127.0.0.1:1".parse().unwrap(),
        log,
    };
    let log = p.log.clone();
    let (addr, admin) = wait_for("cutover to start", limit, Duration::from_millis(50), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        async move { started_addresses(&text) }
    })
    .await;
    if let Ok(Some(status)) = p.child.try_wait() {
        panic!("cutover exited: {status}\n{}", p.log_text());
    }
    p.addr = addr;
    p.admin = admin;
    p
}

fn started_addresses(log: &str) -> Option<(SocketAddr, SocketAddr)> {
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["message"] != "cutover started" {
            continue;
        }
        let listeners = v["listeners"].as_str()?; // "127.0.0.1:1234,127.0.0.1:1235"
        let admin = v["admin"].as_str()?; // "127.0.0.1:5678" or "off"
        let addr = listeners
            .trim_matches(['[', ']'])
            .split(',')
            .next()?
            .trim()
            .parse()
            .ok()?;
        let admin = admin
            .trim_start_matches("Some(")
            .trim_end_matches(')')
            .parse()
            .ok()?;
        return Some((addr, admin));
    }
    None
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} {}", self.pid());
    }

    /// User + system CPU seconds the process has used (Linux), a figure that does not depend on
    /// what else runs on the machine.
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (ticks(11) + ticks(12)) / 100.0
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then a bounded wait for a clean exit.
    pub async fn stop(mut self) {
        self.signal("TERM");
        let deadline = Instant::now() + STEP;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "cutover exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "cutover did not exit on SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
