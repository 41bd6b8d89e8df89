//! Where shoppers are: per storefront, how many distinct shoppers were seen in the last
//! [`WINDOW_SECONDS`], how many of them a pin holds there, and how many of those the share would
//! have sent elsewhere (issue 16: "100% on new, but ~N shoppers pinned to old").
//!
//! Shoppers' state lives in their cookies, so these are estimates of what this replica saw
//! ([`RecentDistinct`]: HyperLogLog over a ring of one-minute sketches, within [`ERROR_BOUND`]);
//! who counts as a shopper is `routing::shopper`. Each storefront's counters are resolved by name
//! once per snapshot, like every other handle, and outlive reloads: a `cutover shift` must not
//! forget where shoppers were a second before. The gauges are computed at scrape time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGaugeVec, Opts, Registry};
use serde::{Deserialize, Serialize};

use super::names::{
    label, SHOPPERS_PINNED_AGAINST_SHARE_RECENT, SHOPPERS_PINNED_RECENT, SHOPPERS_SEEN_RECENT,
};
use super::recent_distinct::RecentDistinct;
pub use super::recent_distinct::{ERROR_BOUND, WINDOW_SECONDS};
use super::MetricsError;
use crate::routing::shopper::Shopper;

/// One storefront's counters.
#[derive(Debug)]
pub struct StorefrontShoppers {
    origin: Instant,
    seen: RecentDistinct,
    pinned: RecentDistinct,
    pinned_against_share: RecentDistinct,
}

/// Estimated distinct shoppers of one storefront over the last [`WINDOW_SECONDS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RecentShoppers {
    /// The window the counts cover, seconds.
    pub window_seconds: u64,
    /// Shoppers sent to this storefront by the split (returning ones: with a cohort cookie or a
    /// session).
    pub seen_estimate: u64,
    /// Of which held here by a pin (split pin or staff override).
    pub pinned_estimate: u64,
    /// Of which pinned here while the share would send them to the other side.
    pub pinned_against_share_estimate: u64,
    /// Relative error of each estimate (0.05: within 5%).
    pub estimate_relative_error: f64,
}

impl StorefrontShoppers {
    fn new(origin: Instant) -> Self {
        StorefrontShoppers {
            origin,
            seen: RecentDistinct::new(),
            pinned: RecentDistinct::new(),
            pinned_against_share: RecentDistinct::new(),
        }
    }

    /// Counts `shopper` as seen now. Allocation-free and lock-free: a few atomic loads.
    pub fn record(&self, shopper: &Shopper) {
        self.record_at(shopper, self.origin.elapsed().as_secs());
    }

    /// [`Self::record`] on an injected clock (seconds since any fixed origin).
    pub fn record_at(&self, shopper: &Shopper, now_seconds: u64) {
        self.seen.insert(shopper.id, now_seconds);
        if shopper.pinned {
            self.pinned.insert(shopper.id, now_seconds);
        }
        if shopper.pinned_against_share {
            self.pinned_against_share.insert(shopper.id, now_seconds);
        }
    }

    /// The estimates now.
    pub fn recent(&self) -> RecentShoppers {
        self.recent_at(self.origin.elapsed().as_secs())
    }

    /// The estimates on an injected clock.
    pub fn recent_at(&self, now_seconds: u64) -> RecentShoppers {
        RecentShoppers {
            window_seconds: WINDOW_SECONDS,
            seen_estimate: self.seen.estimate(now_seconds),
            pinned_estimate: self.pinned.estimate(now_seconds),
            pinned_against_share_estimate: self.pinned_against_share.estimate(now_seconds),
            estimate_relative_error: ERROR_BOUND,
        }
    }
}

/// Every storefront's counters by name; touched on reloads and scrapes, never per request.
pub struct ShopperCensus {
    origin: Instant,
    by_name: Mutex<BTreeMap<String, Arc<StorefrontShoppers>>>,
}

impl Default for ShopperCensus {
    fn default() -> Self {
        ShopperCensus {
            origin: Instant::now(),
            by_name: Mutex::default(),
        }
    }
}

impl ShopperCensus {
    fn by_name(&self) -> MutexGuard<'_, BTreeMap<String, Arc<StorefrontShoppers>>> {
        self.by_name.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The counters of `storefronts` (index = storefront id): the same ones for a name already
    /// known, so counts run on across reloads.
    pub(crate) fn resolve(&self, storefronts: &[&str]) -> Box<[Arc<StorefrontShoppers>]> {
        let mut map = self.by_name();
        storefronts
            .iter()
            .map(|name| {
                Arc::clone(
                    map.entry(name.to_string())
                        .or_insert_with(|| Arc::new(StorefrontShoppers::new(self.origin))),
                )
            })
            .collect()
    }

    /// Forgets storefronts a reload removed.
    pub(crate) fn retain(&self, keep: &BTreeSet<&str>) {
        self.by_name()
            .retain(|name, _| keep.contains(name.as_str()));
    }

    fn snapshot(&self) -> Vec<(String, RecentShoppers)> {
        let all: Vec<(String, Arc<StorefrontShoppers>)> = self
            .by_name()
            .iter()
            .map(|(n, s)| (n.clone(), Arc::clone(s)))
            .collect();
        all.into_iter().map(|(n, s)| (n, s.recent())).collect()
    }
}

/// The three gauges, computed from the census at each scrape.
struct ShopperGauges {
    census: Arc<ShopperCensus>,
    seen: IntGaugeVec,
    pinned: IntGaugeVec,
    against: IntGaugeVec,
    scrape: Mutex<()>,
}

fn gauge(name: &'static str, help: &str) -> Result<IntGaugeVec, MetricsError> {
    IntGaugeVec::new(Opts::new(name, help), &[label::STOREFRONT])
        .map_err(|source| MetricsError::Register { name, source })
}

/// Registers the `cutover_shoppers_*_10m` gauges of `census` in `registry`.
pub(crate) fn register(
    registry: &Registry,
    census: Arc<ShopperCensus>,
) -> Result<(), MetricsError> {
    let g = ShopperGauges {
        census,
        seen: gauge(
            SHOPPERS_SEEN_RECENT,
            "Distinct returning shoppers the split sent to the storefront in the last 10 minutes (HyperLogLog estimate, within 5%).",
        )?,
        pinned: gauge(
            SHOPPERS_PINNED_RECENT,
            "Of those, shoppers held there by a pin (split pin or staff override).",
        )?,
        against: gauge(
            SHOPPERS_PINNED_AGAINST_SHARE_RECENT,
            "Of those, shoppers pinned there while the share would send them to the other side: who a share change does not move.",
        )?,
        scrape: Mutex::new(()),
    };
    registry
        .register(Box::new(g))
        .map_err(|source| MetricsError::Register {
            name: SHOPPERS_SEEN_RECENT,
            source,
        })
}

impl Collector for ShopperGauges {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.seen.desc();
        d.extend(self.pinned.desc());
        d.extend(self.against.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.seen.reset();
        self.pinned.reset();
        self.against.reset();
        for (name, r) in self.census.snapshot() {
            let n = [name.as_str()];
            let set = |g: &IntGaugeVec, v: u64| {
                g.with_label_values(&n)
                    .set(i64::try_from(v).unwrap_or(i64::MAX))
            };
            set(&self.seen, r.seen_estimate);
            set(&self.pinned, r.pinned_estimate);
            set(&self.against, r.pinned_against_share_estimate);
        }
        let mut families = self.seen.collect();
        families.extend(self.pinned.collect());
        families.extend(self.against.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::shopper::mix;

    fn shopper(i: u64, pinned: bool, against: bool) -> Shopper {
        Shopper {
            id: mix(i),
            pinned,
            pinned_against_share: against,
        }
    }

    #[test]
    fn counts_run_on_across_a_reload_and_removed_storefronts_are_forgotten() {
        let registry = Registry::new();
        let census = Arc::new(ShopperCensus::default());
        register(&registry, Arc::clone(&census)).unwrap();
        let first = census.resolve(&["old", "new"]);
        for i in 0..300 {
            first[0].record(&shopper(i, i < 200, i < 120));
        }
        for i in 300..350 {
            first[1].record(&shopper(i, false, false));
        }
        let text = |r: &Registry| {
            let mut s = String::new();
            prometheus::TextEncoder::new()
                .encode_utf8(&r.gather(), &mut s)
                .unwrap();
            s
        };
        // A reload: same names, other order, one gone.
        let second = census.resolve(&["new", "old"]);
        assert!(Arc::ptr_eq(&first[0], &second[1]), "the same counters");
        let r = second[1].recent();
        assert!(r.seen_estimate.abs_diff(300) <= 14, "{r:?}");
        assert!(r.pinned_estimate.abs_diff(200) <= 10, "{r:?}");
        assert!(r.pinned_against_share_estimate.abs_diff(120) <= 6, "{r:?}");
        assert_eq!(r.window_seconds, 600);
        let t = text(&registry);
        assert!(
            t.contains("cutover_shoppers_seen_10m{storefront=\"new\"}"),
            "{t}"
        );
        assert!(
            t.contains("cutover_shoppers_pinned_against_share_10m{storefront=\"old\"}"),
            "{t}"
        );
        census.retain(&BTreeSet::from(["new"]));
        let t = text(&registry);
        assert!(!t.contains("storefront=\"old\""), "{t}");
    }

    #[test]
    fn an_unpinned_shopper_counts_only_as_seen() {
        let s = StorefrontShoppers::new(Instant::now());
        s.record_at(&shopper(1, false, false), 30);
        s.record_at(&shopper(2, true, false), 30);
        s.record_at(&shopper(3, true, true), 30);
        let r = s.recent_at(40);
        assert_eq!(
            (
                r.seen_estimate,
                r.pinned_estimate,
                r.pinned_against_share_estimate
            ),
            (3, 2, 1)
        );
        assert_eq!(
            s.recent_at(40 + WINDOW_SECONDS).seen_estimate,
            0,
            "the window slid"
        );
    }
}
