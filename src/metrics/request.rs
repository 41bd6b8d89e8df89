//! The request-path half of the metrics: handles resolved once per config snapshot.
//!
//! Looking up a labelled child in a `prometheus` vec hashes the label values and takes a read lock on
//! every call. A proxy that does that per request pays for it on every core at once, so instead every
//! label combination a snapshot can produce is resolved when the snapshot is compiled and kept in flat
//! arrays. Recording is then index arithmetic plus atomic adds: no allocation, no lock, no hashing.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use prometheus::{Histogram, IntCounter, IntGauge};

pub use crate::routing::Reason;
pub use crate::upstream::UpstreamErrorKind;

/// Label index of a reason: its position in [`Reason::ALL`] (declaration order).
fn reason_index(r: Reason) -> usize {
    r as usize
}

/// Status class label values, index = class - 1.
pub(crate) const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Index into [`STATUS_CLASSES`]. `http` admits codes up to 999; anything past 5xx is counted as 5xx
/// because a client that receives it is as broken as one that receives a 500.
pub(crate) fn status_class_index(status: StatusCode) -> usize {
    let class = usize::from(status.as_u16() / 100);
    class.clamp(1, 5) - 1
}

/// Redirect status label values; anything else a table could hold is folded into "other".
pub(crate) const REDIRECT_STATUSES: [&str; 6] = ["301", "302", "303", "307", "308", "other"];

pub(crate) fn redirect_status_index(status: StatusCode) -> usize {
    match status.as_u16() {
        301 => 0,
        302 => 1,
        303 => 2,
        307 => 3,
        308 => 4,
        _ => 5,
    }
}

/// True in the `no-metrics` benchmark baseline: every request-path recording below returns at once.
/// A constant, so the default build compiles exactly the code it would without the feature.
const OFF: bool = cfg!(feature = "no-metrics");

/// Pre-resolved handles for one config snapshot. Cheap to clone (one `Arc`); the core keeps one in
/// each snapshot so a request always records under the labels of the config that routed it.
#[derive(Clone)]
pub struct RequestMetrics {
    inner: Arc<Handles>,
}

pub(crate) struct Handles {
    pub(crate) storefronts: Box<[Arc<str>]>,
    pub(crate) routes: Box<[Arc<str>]>,
    /// `((sf * routes + route) * 5 + class) * Reason::ALL.len() + reason`
    pub(crate) requests: Box<[IntCounter]>,
    /// `sf * routes + route`
    pub(crate) duration: Box<[Histogram]>,
    /// `sf * routes + route`
    pub(crate) ttfb: Box<[Histogram]>,
    /// `sf`
    pub(crate) in_flight: Box<[IntGauge]>,
    /// `sf * 5 + kind`
    pub(crate) upstream_errors: Box<[IntCounter]>,
    /// `sf`
    pub(crate) assigned: Box<[IntCounter]>,
    /// index from [`redirect_status_index`]
    pub(crate) redirects: Box<[IntCounter]>,
    pub(crate) redirect_misses: IntCounter,
    // rollout: 404s per `sf * routes + route`, for the 404-ratio gate.
    pub(crate) not_found: Box<[IntCounter]>,
    // shoppers: `sf`, where shoppers are.
    pub(crate) shoppers: Box<[Arc<super::shoppers::StorefrontShoppers>]>,
}

impl std::fmt::Debug for RequestMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestMetrics")
            .field("storefronts", &self.storefronts())
            .field("routes", &self.routes())
            .finish()
    }
}

impl RequestMetrics {
    pub(crate) fn from_handles(handles: Handles) -> Self {
        RequestMetrics {
            inner: Arc::new(handles),
        }
    }

    pub(crate) fn handles(&self) -> &Handles {
        &self.inner
    }

    /// Storefront names these handles were resolved for (index = storefront id). Shared `Arc<str>`
    /// so the access log can carry a name without copying it.
    pub fn storefronts(&self) -> &[Arc<str>] {
        &self.inner.storefronts
    }

    /// Route names these handles were resolved for (index = route id).
    pub fn routes(&self) -> &[Arc<str>] {
        &self.inner.routes
    }

    /// Marks a request to `sf` as in flight until the guard drops. Take it before forwarding and keep
    /// it in the response body so streaming responses count until their last byte.
    pub fn start(&self, sf: usize) -> InFlightGuard {
        if OFF {
            return InFlightGuard { gauge: None };
        }
        let gauge = self.inner.in_flight.get(sf).cloned();
        debug_assert!(gauge.is_some(), "storefront id {sf} out of range");
        if let Some(g) = &gauge {
            g.inc();
        }
        InFlightGuard { gauge }
    }

    /// Records one answered request. `upstream_ttfb` is `None` when no upstream answered (redirects,
    /// upstream errors); `total` spans request head to last byte sent.
    pub fn record(
        &self,
        sf: usize,
        route: usize,
        reason: Reason,
        status: StatusCode,
        upstream_ttfb: Option<Duration>,
        total: Duration,
    ) {
        if OFF {
            return;
        }
        let h = &*self.inner;
        let routes = h.routes.len();
        if sf >= h.storefronts.len() || route >= routes {
            // Ids come from the same compiled snapshot, so this is a core bug; never panic a request.
            debug_assert!(false, "storefront {sf} / route {route} out of range");
            return;
        }
        let pair = sf * routes + route;
        let idx = (pair * STATUS_CLASSES.len() + status_class_index(status)) * Reason::ALL.len()
            + reason_index(reason);
        h.requests[idx].inc();
        h.duration[pair].observe(total.as_secs_f64());
        // rollout:
        if status == StatusCode::NOT_FOUND {
            h.not_found[pair].inc();
        }
        if let Some(ttfb) = upstream_ttfb {
            h.ttfb[pair].observe(ttfb.as_secs_f64());
        }
    }

    /// Totals for storefront `sf` since the process started (counters outlive reloads), for
    /// `/admin/status`. Sums a few hundred atomics: fine for a status page, never per request.
    pub fn storefront_totals(&self, sf: usize) -> StorefrontTotals {
        let h = &*self.inner;
        let mut t = StorefrontTotals::default();
        if sf >= h.storefronts.len() {
            return t;
        }
        let per_sf = h.routes.len() * STATUS_CLASSES.len() * Reason::ALL.len();
        for (i, c) in h.requests[sf * per_sf..(sf + 1) * per_sf]
            .iter()
            .enumerate()
        {
            let class = (i / Reason::ALL.len()) % STATUS_CLASSES.len();
            t.responses += c.get();
            if class == 4 {
                t.responses_5xx += c.get();
            }
        }
        let k = UpstreamErrorKind::ALL.len();
        for (i, c) in h.upstream_errors[sf * k..(sf + 1) * k].iter().enumerate() {
            t.upstream_errors += c.get();
            if c.get() > 0 {
                t.upstream_errors_by_kind
                    .push((UpstreamErrorKind::ALL[i].as_str(), c.get()));
            }
        }
        t.in_flight = h.in_flight.get(sf).map_or(0, |g| g.get());
        t
    }

    /// Counts one failed exchange with storefront `sf`.
    pub fn upstream_error(&self, sf: usize, kind: UpstreamErrorKind) {
        if OFF {
            return;
        }
        let idx = sf * UpstreamErrorKind::ALL.len() + kind as usize;
        match self.inner.upstream_errors.get(idx) {
            Some(c) => c.inc(),
            None => debug_assert!(false, "storefront id {sf} out of range"),
        }
    }

    /// Counts a shopper newly assigned to storefront `sf`.
    pub fn assigned(&self, sf: usize) {
        if OFF {
            return;
        }
        match self.inner.assigned.get(sf) {
            Some(c) => c.inc(),
            None => debug_assert!(false, "storefront id {sf} out of range"),
        }
    }

    /// Counts a returning shopper the split placed on storefront `sf` (`routing::shopper`).
    pub fn shopper_seen(&self, sf: usize, shopper: &crate::routing::shopper::Shopper) {
        if OFF {
            return;
        }
        match self.inner.shoppers.get(sf) {
            Some(s) => s.record(shopper),
            None => debug_assert!(false, "storefront id {sf} out of range"),
        }
    }

    /// Where shoppers were in the last 10 minutes on storefront `sf` (estimates). Merges a few
    /// hundred KiB of registers: for the status page and `cutover shift`, never per request.
    pub fn recent_shoppers(&self, sf: usize) -> super::shoppers::RecentShoppers {
        self.inner
            .shoppers
            .get(sf)
            .map(|s| s.recent())
            .unwrap_or_default()
    }

    /// Counts a redirect answered from the table with `status`.
    pub fn redirect_served(&self, status: StatusCode) {
        if OFF {
            return;
        }
        self.inner.redirects[redirect_status_index(status)].inc();
    }

    /// Counts a request that had no redirect entry and that the new storefront answered with 404:
    /// an old URL the redirect table should probably cover.
    pub fn redirect_missed(&self) {
        if OFF {
            return;
        }
        self.inner.redirect_misses.inc();
    }
}

/// Per-storefront totals read from the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorefrontTotals {
    /// Responses answered for this storefront (any status, including local errors).
    pub responses: u64,
    /// Of which 5xx.
    pub responses_5xx: u64,
    /// Failed exchanges with the storefront.
    pub upstream_errors: u64,
    /// Non-zero failure counts by kind.
    pub upstream_errors_by_kind: Vec<(&'static str, u64)>,
    /// Requests in flight now.
    pub in_flight: i64,
}

/// Keeps a request counted in `cutover_requests_in_flight` until dropped.
#[must_use = "the request stops counting as in flight when the guard drops"]
pub struct InFlightGuard {
    gauge: Option<IntGauge>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Some(g) = &self.gauge {
            g.dec();
        }
    }
}
