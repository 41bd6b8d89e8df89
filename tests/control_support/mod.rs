//! Helpers for the live-control end-to-end tests: echo storefronts, configs in temp dirs, the
//! `cutover` binary run as a process (signals, exits and handovers are process behaviour), an
//! admin client and a load generator that records where every response came from.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use cutover::cohort::{encode, CohortCookie, CohortKeys};

/// The cohort key every test config uses.
pub const KEY: &str = "control-test-key";

/// Fails a test that waited too long for something, with what it waited for.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Storefronts

/// An echo storefront: answers 200 with its name, and echoes the routing headers cutover sent.
/// `/slow?ms=N` answers after N ms (and wakes `slow_started` when it begins).
pub struct Store {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Requests received.
    pub requests: Arc<AtomicU64>,
    /// Notified when a `/slow` request arrives.
    pub slow_started: Arc<Notify>,
    /// Count of `/slow` requests that arrived.
    pub slow_count: Arc<AtomicUsize>,
}

async fn store_handle(
    name: &'static str,
    req: Request<Incoming>,
    requests: Arc<AtomicU64>,
    slow_started: Arc<Notify>,
    slow_count: Arc<AtomicUsize>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    requests.fetch_add(1, Ordering::Relaxed);
    let generation = req
        .headers()
        .get("x-cutover-generation")
        .cloned()
        .unwrap_or(http::HeaderValue::from_static("-"));
    let routed_to = req
        .headers()
        .get("x-cutover-storefront")
        .cloned()
        .unwrap_or(http::HeaderValue::from_static("-"));
    let mut body = Bytes::from(name);
    if req.uri().path() == "/slow" {
        let ms: u64 = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        slow_count.fetch_add(1, Ordering::SeqCst);
        slow_started.notify_waiters();
        tokio::time::sleep(Duration::from_millis(ms)).await;
        body = Bytes::from(vec![b's'; 64 * 1024]);
    }
    let resp = Response::builder()
        .header("x-echo-storefront", name)
        .header("x-echo-generation", generation)
        .header("x-echo-routed-to", routed_to)
        .body(Full::new(body))
        .unwrap();
    Ok(resp)
}

impl Store {
    /// Starts a store called `name` on a free port.
    pub async fn start(name: &'static str) -> Store {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let slow_started = Arc::new(Notify::new());
        let slow_count = Arc::new(AtomicUsize::new(0));
        let (r, s, c) = (requests.clone(), slow_started.clone(), slow_count.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (r, s, c) = (r.clone(), s.clone(), c.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        store_handle(name, req, r.clone(), s.clone(), c.clone())
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Store {
            addr,
            requests,
            slow_started,
            slow_count,
        }
    }
}

/// The two storefronts of every test.
pub struct Stores {
    /// `old`.
    pub old: Store,
    /// `new`.
    pub new: Store,
}

impl Stores {
    /// Starts both.
    pub async fn start() -> Stores {
        Stores {
            old: Store::start("old").await,
            new: Store::start("new").await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Configs

/// What varies between test configs.
#[derive(Clone)]
pub struct Params {
    /// `[split] new_share`, as written (e.g. `"12.5"`).
    pub share: String,
    /// `[admin]` lines besides the address.
    pub admin_extra: String,
    /// `[limits]` lines.
    pub limits: String,
    /// Anything appended at the end (routes, redirects).
    pub tail: String,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            share: "10".into(),
            admin_extra: String::new(),
            limits: String::new(),
            tail: String::new(),
        }
    }
}

/// A config text for `stores`.
pub fn config_text(stores: &Stores, p: &Params) -> String {
    format!(
        r#"# written by the control tests
[[listener]]
name = "web"
address = "127.0.0.1:0"

[admin]
address = "127.0.0.1:0"
{admin_extra}

[limits]
{limits}

[storefront.old]
upstream = "http://{old}"

[storefront.new]
upstream = "http://{new}"

[split]
from = "old"
to = "new"
new_share = {share}

[cohort]
key = "{KEY}"

[override]
enabled = false
{tail}
"#,
        admin_extra = p.admin_extra,
        limits = p.limits,
        old = stores.old.addr,
        new = stores.new.addr,
        share = p.share,
        tail = p.tail,
    )
}

/// Replaces `path` atomically, the way editors and `kubectl cp` do: temp file + rename.
pub fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-edit");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Rewrites `path` in place (truncate, then write), the way `echo > file` does.
pub fn write_in_place(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.flush().unwrap();
}

/// A cohort cookie header value placing the shopper in `bucket` (no pin).
pub fn cohort_cookie(bucket: u16) -> String {
    let keys = CohortKeys::derive(KEY);
    let v = encode(&CohortCookie { bucket, pin: None }, &keys, |_| {
        String::new()
    });
    format!("cutover_cohort={v}")
}

// ---------------------------------------------------------------------------------------------
// The proxy process

/// One `cutover started` log line.
#[derive(Debug, Clone)]
pub struct Started {
    /// Its pid.
    pub pid: u32,
    /// Data-plane addresses.
    pub listeners: Vec<SocketAddr>,
    /// Admin address.
    pub admin: SocketAddr,
}

/// `cutover serve` as a child process with JSON logs captured.
pub struct ProxyProcess {
    /// The child (the first process; a successor is not our child).
    pub child: Child,
    /// Every process started by this test (first and successors), killed on drop.
    pub pids: Arc<Mutex<Vec<u32>>>,
    /// Log lines from stderr (of the first process and its successors).
    pub logs: Arc<Mutex<Vec<String>>>,
    started: Arc<Mutex<Vec<Started>>>,
    /// Data-plane address of the first process.
    pub addr: SocketAddr,
    /// Admin address of the first process.
    pub admin: SocketAddr,
    /// Its pid.
    pub pid: u32,
}

/// The path of the binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cutover"))
}

impl ProxyProcess {
    /// Starts `cutover serve --config config` and waits (bounded) until it serves.
    pub fn spawn(config: &Path) -> ProxyProcess {
        Self::spawn_with(config, &[])
    }

    /// Same with extra environment variables.
    pub fn spawn_with(config: &Path, env: &[(&str, &str)]) -> ProxyProcess {
        let mut cmd = Command::new(binary());
        cmd.args(["--log-format", "json", "--log", "info", "serve", "--config"])
            .arg(config)
            .env_remove("CUTOVER_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning cutover");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let started = Arc::new(Mutex::new(Vec::new()));
        let pids = Arc::new(Mutex::new(vec![child.id()]));
        {
            let logs = logs.clone();
            let started = started.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(s) = parse_started(&line) {
                        started.lock().unwrap().push(s);
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(30);
        let first = loop {
            if let Some(s) = started
                .lock()
                .unwrap()
                .iter()
                .find(|s| s.pid == pid)
                .cloned()
            {
                break s;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "cutover exited before serving ({status}):\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "cutover did not start within 30 s:\n{}",
                logs.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        ProxyProcess {
            child,
            pids,
            logs,
            started,
            addr: first.listeners[0],
            admin: first.admin,
            pid,
        }
    }

    /// The `cutover started` line of process `pid`, waiting for it (bounded).
    pub async fn started(&self, pid: u32, timeout: Duration) -> Started {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self
                .started
                .lock()
                .unwrap()
                .iter()
                .find(|s| s.pid == pid)
                .cloned()
            {
                return s;
            }
            assert!(Instant::now() < deadline, "pid {pid} never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Records a successor so it is killed with this test.
    pub fn adopt(&self, pid: u32) {
        self.pids.lock().unwrap().push(pid);
    }

    /// Log lines so far.
    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Waits (bounded) for the first process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        for pid in self.pids.lock().unwrap().iter() {
            signal(*pid, "KILL");
        }
        let _ = self.child.wait();
    }
}

fn parse_started(line: &str) -> Option<Started> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("message")?.as_str()? != "cutover started" {
        return None;
    }
    Some(Started {
        pid: v.get("pid")?.as_u64()? as u32,
        listeners: v
            .get("listeners")?
            .as_str()?
            .split(',')
            .filter_map(|a| a.parse().ok())
            .collect(),
        admin: v.get("admin")?.as_str()?.parse().ok()?,
    })
}

/// Sends a signal (`TERM`, `HUP`, `KILL`...) with kill(1).
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// Whether a process exists.
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// One request on a fresh connection; the body is read to the end.
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Bytes>,
) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.unwrap_or_default())).unwrap();
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((parts.status, parts.headers, body))
}

/// An admin call: (status, body text).
pub async fn admin(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    let (s, _, b) = request(
        addr,
        method,
        path,
        &headers,
        body.map(|b| Bytes::from(b.to_string())),
    )
    .await
    .unwrap_or_else(|e| panic!("admin {path}: {e}"));
    (s, String::from_utf8_lossy(&b).into_owned())
}

/// `GET /admin/status` as JSON.
pub async fn status(addr: SocketAddr) -> serde_json::Value {
    let (s, b) = admin(addr, Method::GET, "/admin/status", None, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    serde_json::from_str(&b).unwrap()
}

/// Share in force (percent), from `/admin/status`.
pub async fn share(addr: SocketAddr) -> f64 {
    status(addr).await["split"]["new_share"].as_f64().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Load

/// One answered request: the shopper's bucket, which store answered, under which generation.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Cohort bucket sent.
    pub bucket: u16,
    /// `old` or `new`, from the store itself.
    pub store: String,
    /// Config generation that routed it (from `x-cutover-generation`).
    pub generation: u64,
}

/// Results of a load run.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// Successful answers.
    pub answers: Vec<Answer>,
    /// Failures, with what went wrong.
    pub failures: Vec<String>,
    /// Requests sent on reused keep-alive connections.
    pub keep_alive: usize,
    /// Requests sent on a new connection each.
    pub new_connection: usize,
}

/// A running load: `keep_alive` workers reusing connections and `fresh` workers opening one per
/// request, until [`Load::stop`] (or `max` requests). Each request carries a cohort cookie with a
/// bucket spread over 0..10000.
pub struct Load {
    stop: Arc<AtomicBool>,
    /// Requests completed (ok or not).
    pub done: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<LoadResult>>,
}

impl Load {
    /// Starts the workers against `addr`.
    pub fn start(addr: SocketAddr, keep_alive: usize, fresh: usize, max: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for w in 0..keep_alive + fresh {
            let (stop, done) = (stop.clone(), done.clone());
            let reuse = w < keep_alive;
            tasks.push(tokio::spawn(async move {
                worker(addr, reuse, w as u64, stop, done, max).await
            }));
        }
        Load { stop, done, tasks }
    }

    /// Requests completed so far.
    pub fn count(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    /// Stops the workers and gathers their results (bounded).
    pub async fn stop(self) -> LoadResult {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = LoadResult::default();
        for t in self.tasks {
            let r = tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("load worker did not stop within 60 s")
                .unwrap();
            all.answers.extend(r.answers);
            all.failures.extend(r.failures);
            all.keep_alive += r.keep_alive;
            all.new_connection += r.new_connection;
        }
        all
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn worker(
    addr: SocketAddr,
    reuse: bool,
    seed: u64,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    max: usize,
) -> LoadResult {
    let mut out = LoadResult::default();
    let mut sender: Option<Sender> = None;
    let mut i: u64 = seed * 7919;
    let cookies: HashMap<u16, String> = HashMap::new();
    let mut cookies = cookies;
    while !stop.load(Ordering::Relaxed) && done.load(Ordering::Relaxed) < max {
        i += 1;
        // Buckets walk 0..10000 with a stride coprime to it: every bucket gets traffic.
        let bucket = ((i * 7_477) % 10_000) as u16;
        let cookie = cookies
            .entry(bucket)
            .or_insert_with(|| cohort_cookie(bucket))
            .clone();
        let result = one(addr, reuse, &mut sender, &cookie).await;
        done.fetch_add(1, Ordering::Relaxed);
        if reuse {
            out.keep_alive += 1;
        } else {
            out.new_connection += 1;
        }
        match result {
            Ok((store, generation)) => out.answers.push(Answer {
                bucket,
                store,
                generation,
            }),
            Err(e) => {
                out.failures.push(e);
                sender = None;
            }
        }
    }
    out
}

async fn one(
    addr: SocketAddr,
    reuse: bool,
    sender: &mut Option<Sender>,
    cookie: &str,
) -> Result<(String, u64), String> {
    if sender.as_ref().is_none_or(|s| s.is_closed()) || !reuse {
        *sender = Some(connect(addr).await?);
    }
    let s = sender.as_mut().unwrap();
    s.ready().await.map_err(|e| format!("ready: {e}"))?;
    let mut req = Request::builder()
        .uri("/load")
        .header("host", "shop.test")
        .header("cookie", cookie);
    if !reuse {
        req = req.header("connection", "close");
    }
    let req = req.body(Full::new(Bytes::new())).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), s.send_request(req))
        .await
        .map_err(|_| "no answer within 20 s".to_string())?
        .map_err(|e| format!("send (keep-alive={reuse}): {e}"))?;
    let status = resp.status();
    let close = resp
        .headers()
        .get("connection")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let store = resp
        .headers()
        .get("x-echo-storefront")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let generation = resp
        .headers()
        .get("x-echo-generation")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    if close || !reuse {
        *sender = None;
    }
    if status != StatusCode::OK {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    if body.as_ref() != store.as_bytes() {
        return Err(format!("body {:?} from store {store}", body));
    }
    Ok((store, generation))
}
