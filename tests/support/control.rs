//! What the live-control tests (reload, admin API, drain, handover) share: their config, and
//! a load generator that records which storefront and config generation answered each request,
//! so a test can prove no request was lost or misrouted while the proxy changed under it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::cohort_cookie;
use super::proxy::ConfigSpec;
use super::stores::Stores;

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

/// A config text for `stores`: listener `web`, the admin API on a free loopback port, the
/// staff override off, the storefront response header off (the stores say who answered).
pub fn config_text(stores: &Stores, p: &Params) -> String {
    ConfigSpec::new(
        &format!("http://{}", stores.old.addr),
        &format!("http://{}", stores.new.addr),
        0.0,
    )
    .share_text(&p.share)
    .listener("name = \"web\"")
    .admin_on_loopback()
    .admin(&p.admin_extra)
    .limits(&p.limits)
    .overrides("enabled = false")
    .headers("storefront_response_header = false")
    .tail(&p.tail)
    .render()
}

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
