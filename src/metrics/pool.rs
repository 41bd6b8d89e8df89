//! The storefront connection pools' counters (issue 22), exported at scrape time.
//!
//! The pools count in plain atomics ([`crate::upstream::pool::PoolCounts`]); the request path
//! never touches a Prometheus handle for them. At each scrape this collector asks `source`
//! (wired by the app to the snapshot in force) for every pooled storefront's counts and exports
//! them as they are: a pool rebuilt by a reload with new connection settings starts from zero,
//! which Prometheus reads as a counter reset, and a storefront removed by a reload disappears.
//! Storefronts on hyper-util's client (`auto` over https, `h2c`) have no series.
//!
//! What an operator reads from them: connections opened per request
//! (`rate(opened) / rate(requests_by_connection)`) near 0 is a pool doing its job; near 1 is
//! a connect (and a TLS handshake, for https) per request.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use super::names::{
    label, CONNECTION_LABEL, UPSTREAM_CONNECTIONS_OPENED_TOTAL, UPSTREAM_IDLE_CONNECTIONS,
    UPSTREAM_IDLE_TARGET, UPSTREAM_REQUESTS_BY_CONNECTION_TOTAL,
};
use super::{err, MetricsError};
use crate::upstream::pool::PoolCounts;

type Source = Box<dyn Fn() -> Vec<(String, PoolCounts)> + Send + Sync>;

/// The collector; register it once per process with [`PoolMetrics::register`].
pub struct PoolMetrics {
    opened: IntCounterVec,
    requests: IntCounterVec,
    idle: IntGaugeVec,
    target: IntGaugeVec,
    source: Source,
    /// One scrape at a time rebuilds the values.
    scrape: std::sync::Mutex<()>,
}

impl PoolMetrics {
    /// Registers the four series in `registry`, read from `source` (storefront name and its
    /// pool's counts) at each scrape.
    pub fn register(
        registry: &Registry,
        source: impl Fn() -> Vec<(String, PoolCounts)> + Send + Sync + 'static,
    ) -> Result<(), MetricsError> {
        let sf = &[label::STOREFRONT];
        let m = PoolMetrics {
            opened: IntCounterVec::new(
                Opts::new(
                    UPSTREAM_CONNECTIONS_OPENED_TOTAL,
                    "Connections opened to the storefront by its pool.",
                ),
                sf,
            )
            .map_err(err(UPSTREAM_CONNECTIONS_OPENED_TOTAL))?,
            requests: IntCounterVec::new(
                Opts::new(
                    UPSTREAM_REQUESTS_BY_CONNECTION_TOTAL,
                    "Storefront responses by connection: reused (kept from an earlier request) or new (opened for this one).",
                ),
                &[label::STOREFRONT, CONNECTION_LABEL],
            )
            .map_err(err(UPSTREAM_REQUESTS_BY_CONNECTION_TOTAL))?,
            idle: IntGaugeVec::new(
                Opts::new(
                    UPSTREAM_IDLE_CONNECTIONS,
                    "Idle keep-alive connections the storefront's pool holds now.",
                ),
                sf,
            )
            .map_err(err(UPSTREAM_IDLE_CONNECTIONS))?,
            target: IntGaugeVec::new(
                Opts::new(
                    UPSTREAM_IDLE_TARGET,
                    "Idle connections the pool keeps at most now: the recent peak of requests in flight, within pool_max_idle / pool_idle_ceiling.",
                ),
                sf,
            )
            .map_err(err(UPSTREAM_IDLE_TARGET))?,
            source: Box::new(source),
            scrape: std::sync::Mutex::new(()),
        };
        registry
            .register(Box::new(m))
            .map_err(err(UPSTREAM_CONNECTIONS_OPENED_TOTAL))
    }
}

impl Collector for PoolMetrics {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.opened.desc();
        d.extend(self.requests.desc());
        d.extend(self.idle.desc());
        d.extend(self.target.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.opened.reset();
        self.requests.reset();
        self.idle.reset();
        self.target.reset();
        for (name, c) in (self.source)() {
            let name = name.as_str();
            self.opened.with_label_values(&[name]).inc_by(c.opened);
            self.requests
                .with_label_values(&[name, "reused"])
                .inc_by(c.reused);
            self.requests
                .with_label_values(&[name, "new"])
                .inc_by(c.new);
            self.idle.with_label_values(&[name]).set(c.idle as i64);
            self.target.with_label_values(&[name]).set(c.target as i64);
        }
        let mut families = self.opened.collect();
        families.extend(self.requests.collect());
        families.extend(self.idle.collect());
        families.extend(self.target.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    fn text(r: &Registry) -> String {
        let mut s = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&r.gather(), &mut s)
            .unwrap();
        s
    }

    #[test]
    fn counts_are_read_at_each_scrape_and_removed_storefronts_disappear() {
        let registry = Registry::new();
        let opened = Arc::new(AtomicU64::new(3));
        let o = Arc::clone(&opened);
        PoolMetrics::register(&registry, move || {
            let n = o.load(Ordering::Relaxed);
            let mut v = vec![(
                "new".to_string(),
                PoolCounts {
                    opened: n,
                    reused: 10,
                    new: n,
                    idle: 2,
                    target: 4,
                },
            )];
            if n < 5 {
                v.push(("old".to_string(), PoolCounts::default()));
            }
            v
        })
        .unwrap();
        let t = text(&registry);
        for line in [
            "cutover_upstream_connections_opened_total{storefront=\"new\"} 3",
            "cutover_upstream_requests_by_connection_total{connection=\"reused\",storefront=\"new\"} 10",
            "cutover_upstream_requests_by_connection_total{connection=\"new\",storefront=\"new\"} 3",
            "cutover_upstream_idle_connections{storefront=\"new\"} 2",
            "cutover_upstream_idle_target{storefront=\"new\"} 4",
            "cutover_upstream_connections_opened_total{storefront=\"old\"} 0",
        ] {
            assert!(t.contains(line), "{line} in\n{t}");
        }
        opened.store(7, Ordering::Relaxed);
        let t = text(&registry);
        assert!(t.contains("cutover_upstream_connections_opened_total{storefront=\"new\"} 7"));
        assert!(!t.contains("storefront=\"old\""), "{t}");
    }
}
