//! Two small demo storefronts so a newcomer can watch the split, stickiness, the override and
//! the redirect table work with nothing else installed.
//!
//! The "old" store answers every URL, the way a legacy platform does, including its
//! query-string product pages. The "new" store answers 404 for old-style URLs, so a missing
//! redirect shows up the way it would on cutover night.
//!
//! Layer: edge. May import its own layer and control, server, request, config, snapshot, observe,
//! clients, domain, policy, wire; nothing is above it.

// rollout: the demo's shoppers and its rollout (`cutover demo --traffic`, `--rollout`).
pub mod rollout;
pub mod traffic;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// Which demo store to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// The legacy platform: `/index.php?route=...` URLs, everything answers.
    Old,
    /// The new platform: clean URLs; legacy URLs are 404.
    New,
}

fn page(name: &str, flavor: Flavor, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let legacy = path.starts_with("/index.php")
        || path.starts_with("/product.php")
        || path.starts_with("/catalog/");
    let (status, title) = if flavor == Flavor::New && legacy {
        (StatusCode::NOT_FOUND, "Page not found")
    } else {
        (StatusCode::OK, "Welcome")
    };
    let (color, tagline) = match flavor {
        Flavor::Old => ("#8a5a00", "the legacy platform"),
        Flavor::New => ("#0b6e4f", "the new platform"),
    };
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let escaped = pq
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    // Same titles on both stores, except the spring-sale post, which moves from /blog/ to /news/
    // (config/redirects.csv) and was renamed on the way: the shadow comparison (`[shadow]` in
    // config/demo.toml) compares old's page with the one the plan maps it to, and reports a
    // `title` mismatch.
    let page_title = match path {
        "/blog/spring-sale" => "Spring sale | Demo shop",
        "/news/spring-sale" => "Spring sale 2026 | Demo shop",
        _ => "Demo shop",
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{page_title}</title></head>\
         <body style=\"font-family:sans-serif;border-top:12px solid {color};padding:1em\">\
         <h1>{title} to the <span style=\"color:{color}\">{name}</span> store</h1>\
         <p>This page is served by <b>{name}</b>, {tagline}.</p>\
         <p>Path: <code>{escaped}</code></p>\
         <ul><li><a href=\"/\">home</a></li><li><a href=\"/cart\">cart</a></li>\
         <li><a href=\"/blog/spring-sale\">blog</a></li>\
         <li><a href=\"/index.php?route=product/product&amp;product_id=42\">an old product URL</a></li>\
         <li><a href=\"/index.php?route=information/information&amp;information_id=8\">our story</a> and \
         <a href=\"/catalog/gift-cards\">gift cards</a>: old pages the plan does not map</li>\
         <li><a href=\"/?cutover=new\">switch me to new</a> / <a href=\"/?cutover=old\">to old</a> / \
         <a href=\"/?cutover=clear\">clear</a></li></ul></body></html>\n"
    );
    Response::builder()
        .status(status)
        .header("content-type", "text/html; charset=utf-8")
        .header("x-demo-store", name)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

/// Serves a demo store on an already bound listener until the task is dropped.
pub async fn serve(listener: TcpListener, name: String, flavor: Flavor) {
    serve_with(listener, name, flavor, None).await;
}

/// The 503 of a store past its capacity (the rollout demo's overloaded new platform).
fn over_capacity(name: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .header("content-type", "text/plain; charset=utf-8")
        .header("x-demo-store", name)
        .body(Full::new(Bytes::from_static(
            b"over capacity: try again later\n",
        )))
        .expect("static response parts are valid")
}

/// [`serve`] with a capacity: shoppers' requests past it get a 503 (shadow copies always
/// pass: they are not shoppers).
pub async fn serve_with(
    listener: TcpListener,
    name: String,
    flavor: Flavor,
    capacity: Option<Arc<rollout::Capacity>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let name = name.clone();
        let capacity = capacity.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let shadow = req
                    .headers()
                    .contains_key(crate::shadow::mirror::SHADOW_HEADER);
                let resp = match &capacity {
                    Some(c) if !shadow && !c.admit() => over_capacity(&name),
                    _ => page(&name, flavor, &req),
                };
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Binds and starts a demo store; returns its address.
pub async fn start(addr: SocketAddr, name: &str, flavor: Flavor) -> std::io::Result<SocketAddr> {
    start_with(addr, name, flavor, None).await
}

/// [`start`] with a capacity (see [`serve_with`]).
pub async fn start_with(
    addr: SocketAddr,
    name: &str,
    flavor: Flavor,
    capacity: Option<Arc<rollout::Capacity>>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(serve_with(listener, name.to_string(), flavor, capacity));
    Ok(local)
}
