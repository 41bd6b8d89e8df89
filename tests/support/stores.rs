//! Storefront stand-ins that differ from the generic [`super::upstream::Backend`] in what they
//! answer, each shaped by what its suite asserts: echoing cutover's routing headers, answering
//! chosen statuses, holding requests until released, recording protocol versions.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::sync::{watch, Notify, Semaphore};

use super::upstream::{bind_local, serve_auto, serve_h1, spawn_accept};
use super::wait::SLOW_WAIT;

/// An echo storefront: answers 200 with its name, and echoes the routing headers cutover sent.
/// `/slow?ms=N` answers after N ms (and wakes `slow_started` when it begins).
pub struct EchoStore {
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

impl EchoStore {
    /// Starts a store called `name` on a free port.
    pub async fn start(name: &'static str) -> EchoStore {
        let (listener, addr) = bind_local().await;
        let requests = Arc::new(AtomicU64::new(0));
        let slow_started = Arc::new(Notify::new());
        let slow_count = Arc::new(AtomicUsize::new(0));
        let (r, s, c) = (requests.clone(), slow_started.clone(), slow_count.clone());
        spawn_accept(listener, move |stream| {
            let (r, s, c) = (r.clone(), s.clone(), c.clone());
            serve_auto(stream, move |req| {
                store_handle(name, req, r.clone(), s.clone(), c.clone())
            })
        });
        EchoStore {
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
    pub old: EchoStore,
    /// `new`.
    pub new: EchoStore,
}

impl Stores {
    /// Starts both.
    pub async fn start() -> Stores {
        Stores {
            old: EchoStore::start("old").await,
            new: EchoStore::start("new").await,
        }
    }

    /// Requests for `/slow` that have reached either storefront so far.
    pub fn slow_arrivals(&self) -> usize {
        self.old.slow_count.load(Ordering::SeqCst) + self.new.slow_count.load(Ordering::SeqCst)
    }

    /// Waits (up to 10 s) until a `/slow` request has reached a storefront: only then is it
    /// in flight, which is what the drain and handover tests need before they act.
    pub async fn slow_arrived(&self) {
        super::wait::wait_for(
            "a slow request to reach a storefront",
            Duration::from_secs(10),
            || async { self.slow_arrivals() > 0 },
        )
        .await;
    }
}

/// A tiny storefront. Answers every path with `NAME PATH` and 200, except `/status/NNN` (that
/// status, `/status/NNN/anything` too); `/hold/...` answers only once the test adds a permit to
/// [`StatusStore::release`]. Echoes what cutover told it in `x-seen-request-id` and `x-seen-reason`.
pub struct StatusStore {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Requests it received (counted on arrival, before any hold).
    pub hits: Arc<AtomicUsize>,
    /// One permit lets one held request answer.
    pub release: Arc<Semaphore>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StatusStore {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StatusStore {
    /// Starts one on 127.0.0.1:0.
    pub async fn start(name: &'static str) -> StatusStore {
        let (listener, addr) = bind_local().await;
        let hits = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Semaphore::new(0));
        let (counter, gate) = (Arc::clone(&hits), Arc::clone(&release));
        let task = spawn_accept(listener, move |stream| {
            let (counter, gate) = (Arc::clone(&counter), Arc::clone(&gate));
            serve_auto(stream, move |req: Request<Incoming>| {
                counter.fetch_add(1, Ordering::Relaxed);
                let gate = Arc::clone(&gate);
                async move {
                    if req.uri().path().starts_with("/hold/") {
                        gate.acquire().await.expect("never closed").forget();
                    }
                    Ok::<_, Infallible>(answer(name, &req))
                }
            })
        });
        StatusStore {
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

/// A storefront stand-in: answers `200 <name> <path?query>` with `x-upstream: <name>`, or 404
/// for the configured paths.
pub struct PathStore {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Requests received.
    pub hits: Arc<AtomicU64>,
}

/// Starts a [`PathStore`] called `name` that answers 404 for the paths in `not_found`.
pub async fn path_store(name: &'static str, not_found: &[&str]) -> PathStore {
    let (listener, addr) = bind_local().await;
    let hits = Arc::new(AtomicU64::new(0));
    let not_found: Arc<Vec<String>> = Arc::new(not_found.iter().map(|s| s.to_string()).collect());
    let counter = Arc::clone(&hits);
    spawn_accept(listener, move |stream| {
        let not_found = Arc::clone(&not_found);
        let counter = Arc::clone(&counter);
        serve_h1(stream, move |req: Request<Incoming>| {
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
                let mut resp = Response::new(Full::new(Bytes::from(format!("{name} {pq}"))));
                *resp.status_mut() = status;
                resp.headers_mut()
                    .insert("x-upstream", http::HeaderValue::from_static(name));
                resp
            }
        })
    });
    PathStore { addr, hits }
}

/// One request as a storefront saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path_and_query: String,
    /// The protocol the proxy spoke to the storefront.
    pub version: Version,
    /// Headers.
    pub headers: HeaderMap,
}

/// A storefront's answer, boxed so the service has a nameable type.
type Reply =
    std::pin::Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

/// A recording storefront. `GET /hold...` waits until [`RecordingStore::release`] (bounded);
/// `GET /slow...` takes 100 ms; everything else answers at once with `200 <name>`.
#[derive(Clone)]
pub struct RecordingStore {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its name, answered as the body and `x-backend`.
    pub name: String,
    seen: Arc<Mutex<Vec<Recorded>>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    gate: Arc<watch::Sender<bool>>,
}

impl RecordingStore {
    /// Requests seen so far.
    pub fn seen(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    /// The most requests this storefront had in progress at once.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    /// Requests in progress now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Lets held requests finish (and every later one pass straight through).
    pub fn release(&self) {
        let _ = self.gate.send(true);
    }

    pub(super) fn service(&self) -> impl Fn(Request<Incoming>) -> Reply + Clone {
        let me = self.clone();
        move |req: Request<Incoming>| {
            let me = me.clone();
            Box::pin(async move {
                me.seen.lock().unwrap().push(Recorded {
                    method: req.method().to_string(),
                    path_and_query: req
                        .uri()
                        .path_and_query()
                        .map_or("/".into(), |p| p.to_string()),
                    version: req.version(),
                    headers: req.headers().clone(),
                });
                let path = req.uri().path().to_string();
                let now = me.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                me.max_in_flight.fetch_max(now, Ordering::SeqCst);
                if path.starts_with("/hold") {
                    let mut rx = me.gate.subscribe();
                    let _ = tokio::time::timeout(SLOW_WAIT, rx.wait_for(|open| *open)).await;
                } else if path.starts_with("/slow") {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                me.in_flight.fetch_sub(1, Ordering::SeqCst);
                let resp = Response::builder()
                    .header("x-backend", me.name.as_str())
                    .header("content-type", "text/plain")
                    .body(Full::new(Bytes::from(me.name.clone())))
                    .unwrap();
                Ok(resp)
            })
        }
    }

    pub(super) fn new(addr: SocketAddr, name: &str) -> RecordingStore {
        let (gate, _) = watch::channel(false);
        RecordingStore {
            addr,
            name: name.to_string(),
            seen: Arc::default(),
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
            gate: Arc::new(gate),
        }
    }
}

/// A plain-HTTP storefront (HTTP/1.1 and h2c) on 127.0.0.1.
pub async fn recording_store(name: &str) -> RecordingStore {
    let (listener, addr) = bind_local().await;
    let b = RecordingStore::new(addr, name);
    let svc = b.service();
    spawn_accept(listener, move |tcp| serve_auto(tcp, svc.clone()));
    b
}
