//! Small end-to-end helpers for the metrics tests: temp configs, tiny upstream stores on
//! 127.0.0.1:0, an HTTP client, and a `/metrics` scrape parsed into a map for exact assertions.
//!
//! Kept apart from the shared `tests/support/` helper on purpose (it is written on another branch);
//! fold the two together once both have landed.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use cutover::cohort::{self, CohortCookie, CohortKeys};

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(20);

/// The cohort key the test configs use, so tests can mint cohort cookies with a chosen bucket.
pub const COHORT_KEY: &str = "metrics-e2e-test-key";

/// A `Cookie` header value that places a shopper in `bucket` (0..9999) with no pin: with pinning off
/// the split sends bucket < share to `to` and the rest to `from`, with reason `split`.
pub fn bucket_cookie(bucket: u16) -> String {
    let value = cohort::encode(
        &CohortCookie { bucket, pin: None },
        &CohortKeys::derive(COHORT_KEY),
        |_| unreachable!("no pin"),
    );
    format!("cutover_cohort={value}")
}

/// A tiny storefront. Answers every path with `NAME PATH` and 200, except `/status/NNN` (that
/// status, `/status/NNN/anything` too); `/hold/...` answers only once the test adds a permit to
/// [`Upstream::release`]. Echoes what cutover told it in `x-seen-request-id` and `x-seen-reason`.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Requests it received (counted on arrival, before any hold).
    pub hits: Arc<AtomicUsize>,
    /// One permit lets one held request answer.
    pub release: Arc<Semaphore>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    /// Starts one on 127.0.0.1:0.
    pub async fn start(name: &'static str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream address");
        let hits = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Semaphore::new(0));
        let (counter, gate) = (Arc::clone(&hits), Arc::clone(&release));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (counter, gate) = (Arc::clone(&counter), Arc::clone(&gate));
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        counter.fetch_add(1, Ordering::Relaxed);
                        let gate = Arc::clone(&gate);
                        async move {
                            if req.uri().path().starts_with("/hold/") {
                                gate.acquire().await.expect("never closed").forget();
                            }
                            Ok::<_, Infallible>(answer(name, &req))
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            hits,
            release,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn answer(name: &str, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let status = path
        .strip_prefix("/status/")
        .and_then(|s| s.split('/').next())
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut b = Response::builder().status(status);
    for (from, to) in [
        ("x-request-id", "x-seen-request-id"),
        ("x-cutover-reason", "x-seen-reason"),
    ] {
        if let Some(v) = req.headers().get(from) {
            b = b.header(to, v.clone());
        }
    }
    b.body(Full::new(Bytes::from(format!("{name} {path}\n"))))
        .expect("valid response")
}

/// An address nothing listens on: bound, then closed, so connecting is refused.
pub fn refused_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address")
}

/// A temp directory holding one config file.
pub struct TempConfig {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The config file.
    pub path: PathBuf,
}

impl TempConfig {
    /// Writes `toml` as `cutover.toml` in a new temp directory.
    pub fn new(toml: &str) -> TempConfig {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cutover.toml");
        std::fs::write(&path, toml).expect("write config");
        TempConfig { dir, path }
    }

    /// A file next to the config.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces the config atomically (write + rename), as editors and ConfigMaps do, so a watcher
    /// never sees half a file.
    pub fn rewrite(&self, toml: &str) {
        let tmp = self.dir.path().join(".cutover.toml.new");
        std::fs::write(&tmp, toml).expect("write config");
        std::fs::rename(&tmp, &self.path).expect("replace config");
    }
}

/// The test config: two storefronts in a split (`old`, `new`, share `share_pct` on new), a third
/// one `gone` that refuses connections and serves `/down`, a rule route `help` (`/help` -> old),
/// a redirect table `plan` applied to every shopper (`/old-page` -> `/new-page`), override on
/// without a token, pinning off, the storefront response header on. `extra` is appended.
pub fn config(old: &Upstream, new: &Upstream, share_pct: f64, extra: &str) -> String {
    format!(
        r#"
[[listener]]
address = "127.0.0.1:0"

[admin]
address = "127.0.0.1:0"

[storefront.old]
upstream = "{old}"

[storefront.new]
upstream = "{new}"

[storefront.gone]
upstream = "http://{gone}"
connect_timeout = "2s"

[split]
from = "old"
to = "new"
new_share = "{share_pct}%"

[cohort]
key = "{COHORT_KEY}"

[override]
enabled = true

[headers]
storefront_response_header = true

[[route]]
name = "help"
path_prefix = "/help"
to = "old"

[[route]]
name = "down"
path_prefix = "/down"
to = "gone"

[[redirects]]
name = "plan"
file = "redirects.csv"
apply_to = "all"
query = "ignore"
{extra}
"#,
        old = old.url(),
        new = new.url(),
        gone = refused_addr(),
    )
}

/// The redirect table [`config`] names.
pub const REDIRECTS_CSV: &str = "old_url,new_url,status\n/old-page,/new-page,301\n";

/// Writes [`config`] and its redirect table into a temp directory.
pub fn temp_config(old: &Upstream, new: &Upstream, share_pct: f64, extra: &str) -> TempConfig {
    let c = TempConfig::new(&config(old, new, share_pct, extra));
    std::fs::write(c.file("redirects.csv"), REDIRECTS_CSV).expect("write redirects");
    c
}

/// What a test needs from a response.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Answer {
    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// `x-cutover-storefront`.
    pub fn storefront(&self) -> &str {
        self.header("x-cutover-storefront")
    }
}

/// A keep-alive HTTP/1.1 client.
#[derive(Clone)]
pub struct Client {
    inner: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Default for Client {
    fn default() -> Self {
        Client {
            inner: HyperClient::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl Client {
    /// GET `http://ADDR{path_and_query}` with extra headers; the whole body is read (bounded).
    pub async fn get(&self, addr: SocketAddr, pq: &str, headers: &[(&str, &str)]) -> Answer {
        let mut req = Request::get(format!("http://{addr}{pq}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::new())).expect("valid request");
        let fut = async {
            let resp = self.inner.request(req).await.expect("request failed");
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.expect("read body").to_bytes();
            Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            }
        };
        bounded(&format!("GET {pq}"), fut).await
    }
}

/// Runs `fut` with the [`WAIT`] bound.
pub async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {WAIT:?}"))
}

/// One scrape of `/metrics`: series (`name{k="v",...}` with labels sorted) -> value.
#[derive(Debug, Clone, PartialEq)]
pub struct Scrape {
    /// Every sample.
    pub series: BTreeMap<String, f64>,
}

impl Scrape {
    /// Fetches and parses `http://ADMIN/metrics`.
    pub async fn fetch(client: &Client, admin: SocketAddr) -> Scrape {
        let a = client.get(admin, "/metrics", &[]).await;
        assert_eq!(a.status, StatusCode::OK, "GET /metrics");
        Scrape::parse(std::str::from_utf8(&a.body).expect("metrics are UTF-8"))
    }

    /// Parses the Prometheus text format (what the `prometheus` crate writes).
    pub fn parse(text: &str) -> Scrape {
        let mut series = BTreeMap::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, labels, rest) = match line.find('{') {
                Some(open) => {
                    let close = line.rfind('}').expect("closing brace");
                    (
                        &line[..open],
                        parse_labels(&line[open + 1..close]),
                        &line[close + 1..],
                    )
                }
                None => {
                    let sp = line.find(' ').expect("value after name");
                    (&line[..sp], Vec::new(), &line[sp..])
                }
            };
            let value: f64 = match rest.trim() {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            series.insert(key(name, &labels), value);
        }
        Scrape { series }
    }

    /// The value of the series with exactly these labels; 0 when absent is NOT assumed: panics.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let k = key(name, &labels);
        *self
            .series
            .get(&k)
            .unwrap_or_else(|| panic!("no series {k} in the scrape"))
    }

    /// Sum over every series of `name` whose labels include all of `filter`.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.matching(name, filter).map(|(_, v)| v).sum()
    }

    /// Series of `name` (exact metric name, labels included in the key) matching `filter`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        filter: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = (&'a String, f64)> + 'a {
        self.series.iter().filter_map(move |(k, v)| {
            let (n, labels) = split_key(k);
            (n == name
                && filter
                    .iter()
                    .all(|(fk, fv)| labels.iter().any(|(lk, lv)| lk == fk && lv == fv)))
            .then_some((k, *v))
        })
    }

    /// Series of `name` with a value other than 0, as `label=value,...` (sorted) -> value.
    pub fn nonzero(&self, name: &str) -> BTreeMap<String, f64> {
        self.matching(name, &[])
            .filter(|(_, v)| *v != 0.0)
            .map(|(k, v)| {
                let (_, labels) = split_key(k);
                let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                (l.join(","), v)
            })
            .collect()
    }

    /// Number of samples (lines) in the scrape.
    pub fn len(&self) -> usize {
        self.series.len()
    }
}

fn key(name: &str, labels: &[(String, String)]) -> String {
    let mut l = labels.to_vec();
    l.sort();
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

fn split_key(k: &str) -> (&str, Vec<(String, String)>) {
    let open = k.find('{').expect("key has braces");
    (&k[..open], parse_labels(&k[open + 1..k.len() - 1]))
}

/// `a="x",b="y\"z"` -> pairs. Handles the escapes the text format defines.
fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            return out;
        }
        assert_eq!(chars.next(), Some('"'), "label value is quoted in {s:?}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(o) => value.push(o),
                    None => break,
                },
                '"' => break,
                o => value.push(o),
            }
        }
        out.push((name.trim().to_string(), value));
    }
}

/// Scrapes until `done` holds (bounded by [`WAIT`]) and returns that scrape. Metrics are recorded
/// when a response body ends on the server side, which can be a moment after the client read it.
pub async fn scrape_until(
    client: &Client,
    admin: SocketAddr,
    what: &str,
    done: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = Scrape::fetch(client, admin).await;
        if done(&s) {
            return s;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: not reached within {WAIT:?}; last scrape:\n{s:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `f` until it returns `Some` (bounded by [`WAIT`]).
pub async fn poll_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: not reached within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads a file's lines ("" when it does not exist yet).
pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The real binary, killed when the test ends however it ends.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Starts `cutover serve` (the binary under test); returns it with its first data-plane address
/// and its admin address, read from its JSON startup log so port 0 works and nothing is guessed.
pub fn serve(config: &std::path::Path) -> (Proc, SocketAddr, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["serve", "--config"])
        .arg(config)
        .env("CUTOVER_LOG_FORMAT", "json")
        .env("CUTOVER_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cutover");
    let stderr = child.stderr.take().expect("stderr");
    let proc = Proc(child);
    let (tx, rx) = mpsc::channel();
    // Keeps draining stderr for the process's whole life so it never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("cutover did not log its start in time");
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["message"] != "cutover started" {
            continue;
        }
        // Both fields use Debug formatting: "[127.0.0.1:PORT]" and "Some(127.0.0.1:PORT)".
        let addr = |field: &str, open: &str, close: char| -> SocketAddr {
            let text = v[field].as_str().expect("address field");
            text.trim_start_matches(open)
                .trim_end_matches(close)
                .split(',')
                .next()
                .unwrap_or("")
                .parse()
                .unwrap_or_else(|_| panic!("{field} address in {line}"))
        };
        return (
            proc,
            addr("listeners", "[", ']'),
            addr("admin", "Some(", ')'),
        );
    }
}
