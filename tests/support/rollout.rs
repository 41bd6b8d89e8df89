//! The rollout suites' storefronts and shoppers: a storefront whose error rate the test sets, and
//! cookie-less shoppers that keep traffic flowing through one or more proxies.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;

use super::upstream::{bind_local, serve_auto, spawn_accept};
use super::{Client, ConfigSpec};

/// A storefront whose share of 500 answers the test sets (per mille, deterministic: request `i`
/// fails when `i % 1000 < permille`, so any 1000 consecutive requests fail exactly that many).
pub struct FlakyStore {
    /// Where it listens.
    pub addr: SocketAddr,
    fail_permille: Arc<AtomicU64>,
    /// The status a failing request gets (500 unless the test says 404).
    fail_status: Arc<AtomicU64>,
    /// Milliseconds every answer waits (0: at once).
    delay_ms: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FlakyStore {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FlakyStore {
    /// Starts one on 127.0.0.1:0, answering 200 with its name.
    pub async fn start(name: &'static str) -> FlakyStore {
        let (listener, addr) = bind_local().await;
        let fail_permille = Arc::new(AtomicU64::new(0));
        let fail_status = Arc::new(AtomicU64::new(500));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let count = Arc::new(AtomicU64::new(0));
        let (f, code, delay) = (
            Arc::clone(&fail_permille),
            Arc::clone(&fail_status),
            Arc::clone(&delay_ms),
        );
        let task = spawn_accept(listener, move |stream| {
            let (f, code, delay, count) = (
                Arc::clone(&f),
                Arc::clone(&code),
                Arc::clone(&delay),
                Arc::clone(&count),
            );
            serve_auto(stream, move |_req| {
                let i = count.fetch_add(1, Ordering::Relaxed);
                let fail = i % 1000 < f.load(Ordering::Relaxed);
                let code = code.load(Ordering::Relaxed) as u16;
                let delay = delay.load(Ordering::Relaxed);
                async move {
                    if delay > 0 {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    let status = if fail {
                        StatusCode::from_u16(code).expect("a status the test chose")
                    } else {
                        StatusCode::OK
                    };
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from(name)))
                            .expect("valid response"),
                    )
                }
            })
        });
        FlakyStore {
            addr,
            fail_permille,
            fail_status,
            delay_ms,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers 500 to `permille` of every 1000 requests from now on.
    pub fn fail(&self, permille: u64) {
        self.fail_permille.store(permille, Ordering::Relaxed);
    }

    /// Waits `ms` before every answer from now on (the latency the p95/p99 gates see).
    pub fn delay(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Answers 404 to `permille` of every 1000 requests from now on.
    pub fn not_found(&self, permille: u64) {
        self.fail_status.store(404, Ordering::Relaxed);
        self.fail_permille.store(permille, Ordering::Relaxed);
    }
}

/// Shoppers without a cookie, one after another on a few keep-alive connections: each is
/// assigned by the share in force, so new gets its share of the traffic.
pub struct Shoppers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Shoppers {
    /// Four shoppers per proxy address, until dropped.
    pub fn start(addrs: &[SocketAddr]) -> Shoppers {
        Self::start_paths(addrs, &["/products/1"])
    }

    /// [`Shoppers::start`], each shopper going through `paths` in turn.
    pub fn start_paths(addrs: &[SocketAddr], paths: &[&'static str]) -> Shoppers {
        Self::start_paced(addrs, paths, Duration::ZERO)
    }

    /// [`Shoppers::start_paths`], each shopper waiting `pause` between requests (pacing, so
    /// several proxies in one test do not saturate a shared machine).
    pub fn start_paced(addrs: &[SocketAddr], paths: &[&'static str], pause: Duration) -> Shoppers {
        let paths: Arc<[&'static str]> = paths.into();
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = addrs
            .iter()
            .flat_map(|a| std::iter::repeat_n(*a, 4))
            .map(|addr| {
                let stop = Arc::clone(&stop);
                let paths = Arc::clone(&paths);
                tokio::spawn(async move {
                    let client = Client::new(addr);
                    let mut turn = 0;
                    while !stop.load(Ordering::Relaxed) {
                        turn += 1;
                        let req = super::client::request(
                            addr,
                            Method::GET,
                            paths[turn % paths.len()],
                            &[],
                            Bytes::new(),
                        );
                        if client.try_send(req).await.is_err() {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        } else if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                })
            })
            .collect();
        Shoppers { stop, tasks }
    }
}

impl Drop for Shoppers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The config: old and new, the admin API on a free loopback port, and `[rollout]` with `plan`.
pub fn config(old: &FlakyStore, new: &FlakyStore, share_pct: f64, plan: &str) -> String {
    ConfigSpec::new(&old.url(), &new.url(), share_pct)
        .admin_on_loopback()
        .tail(&format!("[rollout]\n{plan}"))
        .render()
}
