//! A scripted storefront for the shadow suites: a real hyper HTTP/1.1 server on 127.0.0.1 that
//! answers each path as told, records every request it receives, and can hang.

#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// How a storefront answers one path.
#[derive(Clone)]
pub enum Page {
    /// Status, headers, body.
    Answer(u16, Vec<(&'static str, String)>, String),
    /// Never answers.
    Hang,
}

/// An HTML page.
pub fn html(body: &str) -> Page {
    Page::Answer(
        200,
        vec![("content-type", "text/html; charset=utf-8".into())],
        body.into(),
    )
}

/// A status with optional Location.
pub fn status(code: u16, location: Option<&str>) -> Page {
    let headers = location
        .map(|l| vec![("location", l.to_string())])
        .unwrap_or_default();
    Page::Answer(code, headers, String::new())
}

/// One request the storefront received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
}

/// A running storefront.
pub struct Store {
    pub base: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Notified for every request received.
    pub arrived: Arc<Notify>,
}

impl Store {
    /// Paths received, in order.
    pub fn paths(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.path.clone())
            .collect()
    }

    /// The requests received for `path`.
    pub fn seen(&self, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }
}

/// Starts a storefront: `pages` by path and query; anything else is 200 `text/html` with a plain
/// page; `default_hang` makes every unknown path hang instead.
pub async fn start(pages: HashMap<&'static str, Page>, default_hang: bool) -> Store {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let arrived = Arc::new(Notify::new());
    let pages = Arc::new(pages);
    let (seen2, arrived2) = (seen.clone(), arrived.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (pages, seen, arrived) = (pages.clone(), seen2.clone(), arrived2.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let (pages, seen, arrived) = (pages.clone(), seen.clone(), arrived.clone());
                    async move {
                        let path = req
                            .uri()
                            .path_and_query()
                            .map_or("/".to_string(), |p| p.to_string());
                        seen.lock().unwrap().push(Seen {
                            path: path.clone(),
                            headers: req.headers().clone(),
                        });
                        arrived.notify_waiters();
                        let page = pages.get(path.as_str()).cloned().unwrap_or_else(|| {
                            if default_hang {
                                Page::Hang
                            } else {
                                html("<title>Plain</title><h1>Plain</h1>")
                            }
                        });
                        match page {
                            Page::Hang => {
                                std::future::pending::<()>().await;
                                unreachable!()
                            }
                            Page::Answer(code, headers, body) => {
                                let mut resp = Response::new(Full::new(Bytes::from(body)));
                                *resp.status_mut() = http::StatusCode::from_u16(code).unwrap();
                                for (name, value) in headers {
                                    resp.headers_mut().insert(name, value.parse().unwrap());
                                }
                                Ok::<_, Infallible>(resp)
                            }
                        }
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Store {
        base: format!("http://{addr}"),
        seen,
        arrived,
    }
}

/// A generous deadline for waiting on events (never an assertion about time).
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Waits until the shadow has finished `n` comparisons.
pub async fn wait_completions(shadow: &cutover::shadow::Shadow, n: u64) {
    let mut rx = shadow.completions();
    tokio::time::timeout(DEADLINE, rx.wait_for(|&done| done >= n))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{n} comparisons did not finish: {}",
                *shadow.completions().borrow()
            )
        })
        .unwrap();
}
