//! `cutover demo --traffic`: simulated shoppers, so the demo's dashboards, inventory, shadow
//! report and rollout have something to show.
//!
//! Bounded by construction: a fixed number of shoppers, a fixed total rate (one request per
//! tick of one timer, handed to the next shopper in turn), one request per shopper at a time
//! with a timeout; a tick that finds its shopper still busy is skipped and counted, never
//! queued. Shoppers behave like a shop's: each keeps the cookies it was given (so the cohort
//! cookie makes it a returning shopper, on the same side of the split), browses a mix of the
//! new store's pages and old-platform URLs (some of which the redirect plan maps, some not),
//! and now and then leaves, its place taken by a new shopper without cookies, who is assigned
//! by the share in force.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinHandle;

/// What a shopper asks for, with weights: the new store's pages, the old platform's URLs (the
/// first two are in the demo's redirect plan, the next two are pages the plan does not map)
/// and the help centre a rule keeps on old.
pub const BROWSE: &[(&str, u32)] = &[
    ("/", 20),
    ("/cart", 8),
    ("/blog/spring-sale", 6),
    ("/products/organic-mug-95", 10),
    ("/collections/kitchen", 8),
    ("/index.php?route=product/product&product_id=40", 8),
    ("/index.php?route=product/category&path=20", 6),
    (
        "/index.php?route=information/information&information_id=8",
        3,
    ),
    ("/catalog/gift-cards", 3),
    ("/help/shipping", 4),
];

/// One shopper in this many leaves after a page and is replaced by a new one.
const LEAVE_ONE_IN: u32 = 12;
/// Cookies a shopper keeps at most.
const MAX_COOKIES: usize = 4;
/// Per request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The generator's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrafficOptions {
    /// Concurrent shoppers.
    pub shoppers: usize,
    /// Requests per second, all shoppers together.
    pub per_second: u32,
}

impl Default for TrafficOptions {
    fn default() -> Self {
        TrafficOptions {
            shoppers: 40,
            per_second: 20,
        }
    }
}

/// What the shoppers did so far.
#[derive(Debug, Default)]
pub struct TrafficCounts {
    /// Answers received, by status class (index 1..=5: 1xx..5xx; 0: failed exchanges).
    pub by_class: [AtomicU64; 6],
    /// Ticks skipped because the shopper was still waiting (overload is dropped, not queued).
    pub skipped: AtomicU64,
    /// Shoppers who left and were replaced.
    pub replaced: AtomicU64,
}

impl TrafficCounts {
    /// Answers received (any status).
    pub fn answered(&self) -> u64 {
        self.by_class[1..]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// One line for the demo's output.
    pub fn summary(&self) -> String {
        let c = |i: usize| self.by_class[i].load(Ordering::Relaxed);
        format!(
            "{} answers (2xx {}, 3xx {}, 4xx {}, 5xx {}), {} failed, {} skipped, {} shoppers replaced",
            self.answered(),
            c(2),
            c(3),
            c(4),
            c(5),
            c(0),
            self.skipped.load(Ordering::Relaxed),
            self.replaced.load(Ordering::Relaxed)
        )
    }
}

/// A shopper: the cookies it keeps, and whether a request of its own is in flight.
#[derive(Default)]
struct Shopper {
    cookies: Mutex<BTreeMap<String, String>>,
    busy: AtomicBool,
}

impl Shopper {
    fn cookie_header(&self) -> Option<String> {
        let jar = self.cookies.lock().unwrap_or_else(|p| p.into_inner());
        (!jar.is_empty()).then(|| {
            jar.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn keep(&self, set_cookie: &str) {
        let Some((name, value)) = set_cookie
            .split(';')
            .next()
            .and_then(|pair| pair.split_once('='))
        else {
            return;
        };
        let (name, value) = (name.trim(), value.trim());
        let mut jar = self.cookies.lock().unwrap_or_else(|p| p.into_inner());
        if value.is_empty() {
            jar.remove(name);
        } else if jar.len() < MAX_COOKIES || jar.contains_key(name) {
            jar.insert(name.to_string(), value.to_string());
        }
    }
}

/// Running shoppers; dropping it stops them.
pub struct Traffic {
    counts: Arc<TrafficCounts>,
    task: JoinHandle<()>,
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Traffic {
    /// Starts `options.shoppers` shoppers browsing through the proxy at `proxy`.
    pub fn start(proxy: SocketAddr, options: TrafficOptions) -> Traffic {
        let counts = Arc::new(TrafficCounts::default());
        let task = tokio::spawn(run(proxy, options, Arc::clone(&counts)));
        Traffic { counts, task }
    }

    /// What the shoppers did so far.
    pub fn counts(&self) -> &TrafficCounts {
        &self.counts
    }
}

/// A page from [`BROWSE`] by weight, for a number in `0..total weight`.
pub fn page_for(mut pick: u32) -> &'static str {
    for (path, weight) in BROWSE {
        if pick < *weight {
            return path;
        }
        pick -= weight;
    }
    BROWSE[0].0
}

async fn run(proxy: SocketAddr, options: TrafficOptions, counts: Arc<TrafficCounts>) {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let shoppers: Vec<Arc<Mutex<Arc<Shopper>>>> = (0..options.shoppers.max(1))
        .map(|_| Arc::new(Mutex::new(Arc::new(Shopper::default()))))
        .collect();
    let total_weight: u32 = BROWSE.iter().map(|(_, w)| w).sum();
    let mut tick =
        tokio::time::interval(Duration::from_secs(1) / options.per_second.clamp(1, 1000));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut next = 0usize;
    loop {
        tick.tick().await;
        let slot = Arc::clone(&shoppers[next % shoppers.len()]);
        next = next.wrapping_add(1);
        let shopper = Arc::clone(&slot.lock().unwrap_or_else(|p| p.into_inner()));
        if shopper.busy.swap(true, Ordering::AcqRel) {
            counts.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let path = page_for(fastrand::u32(0..total_weight));
        let leaves = fastrand::u32(0..LEAVE_ONE_IN) == 0;
        let (client, counts) = (client.clone(), Arc::clone(&counts));
        tokio::spawn(async move {
            visit(&client, proxy, &shopper, path, &counts).await;
            shopper.busy.store(false, Ordering::Release);
            if leaves {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(Shopper::default());
                counts.replaced.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

async fn visit(
    client: &Client<HttpConnector, Empty<Bytes>>,
    proxy: SocketAddr,
    shopper: &Shopper,
    path: &str,
    counts: &TrafficCounts,
) {
    let mut req = Request::get(format!("http://{proxy}{path}"))
        .header(header::USER_AGENT, "cutover-demo-shopper");
    if let Some(c) = shopper.cookie_header() {
        req = req.header(header::COOKIE, c);
    }
    let req = req.body(Empty::new()).expect("a demo request is valid");
    let exchange = async {
        let resp = client.request(req).await.ok()?;
        for v in resp.headers().get_all(header::SET_COOKIE) {
            if let Ok(v) = v.to_str() {
                shopper.keep(v);
            }
        }
        let status = resp.status().as_u16();
        resp.into_body().collect().await.ok()?;
        Some(status)
    };
    let class = match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(Some(status)) => usize::from(status / 100).min(5),
        _ => 0,
    };
    counts.by_class[class].fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_weight_maps_to_its_page() {
        let total: u32 = BROWSE.iter().map(|(_, w)| w).sum();
        assert_eq!(page_for(0), "/");
        assert_eq!(page_for(20), "/cart");
        assert_eq!(page_for(total - 1), "/help/shipping");
        assert_eq!(page_for(total + 5), "/", "out of range falls back to home");
    }

    #[test]
    fn a_shopper_keeps_its_cookies_bounded_and_forgets_cleared_ones() {
        let s = Shopper::default();
        assert!(s.cookie_header().is_none());
        s.keep("cutover_cohort=abc.def; Path=/; Max-Age=2592000; HttpOnly");
        s.keep("session=1; Path=/");
        assert_eq!(
            s.cookie_header().unwrap(),
            "cutover_cohort=abc.def; session=1"
        );
        s.keep("session=; Max-Age=0");
        assert_eq!(s.cookie_header().unwrap(), "cutover_cohort=abc.def");
        for i in 0..10 {
            s.keep(&format!("c{i}=x"));
        }
        assert_eq!(s.cookies.lock().unwrap().len(), MAX_COOKIES, "bounded jar");
        s.keep("garbage without an equals sign");
        s.keep("cutover_cohort=new");
        assert!(s.cookie_header().unwrap().contains("cutover_cohort=new"));
    }
}
