//! The shadow and fallback counters (issue 18), exported at scrape time.
//!
//! The mirror and the fallback count in plain atomics ([`crate::shadow::counters`]); the request
//! path never touches a Prometheus handle for them. At each scrape this collector asks `source`
//! (wired by the app to the snapshot in force) for the totals and hands Prometheus counters with
//! those values. Every label value exists from the first scrape (zeros when shadowing is off), so
//! dashboards and the alert rule always have series; a mirror restarted by a reload with new
//! settings starts from zero, which Prometheus reads as a counter reset.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, Opts, Registry};

use super::names::{label, FALLBACK_TOTAL, SHADOW_MISMATCHES_TOTAL, SHADOW_REQUESTS_TOTAL};
use super::MetricsError;
use crate::shadow::counters::ShadowCountsSnapshot;
use crate::shadow::fallback::FallbackResult;
use crate::shadow::{MismatchKind, ShadowResult};

/// The totals at one scrape; `None` where the feature is off.
#[derive(Debug, Default)]
pub struct ShadowTotals {
    /// The mirror's counters.
    pub shadow: Option<ShadowCountsSnapshot>,
    /// The fallback's outcomes.
    pub fallback: Option<Vec<(FallbackResult, u64)>>,
}

type Source = Box<dyn Fn() -> ShadowTotals + Send + Sync>;

/// The collector; register it once per process with [`ShadowMetrics::register`].
pub struct ShadowMetrics {
    requests: IntCounterVec,
    mismatches: IntCounterVec,
    fallback: IntCounterVec,
    source: Source,
    /// One scrape at a time sets the values (read-then-add must not interleave).
    scrape: std::sync::Mutex<()>,
}

/// Sets a counter to `value` (a lower value means the source restarted: a reset).
fn set(vec: &IntCounterVec, label: &str, value: u64) {
    let c = vec.with_label_values(&[label]);
    let now = c.get();
    if value < now {
        c.reset();
        c.inc_by(value);
    } else {
        c.inc_by(value - now);
    }
}

fn vec(name: &'static str, help: &str, label: &str) -> Result<IntCounterVec, MetricsError> {
    IntCounterVec::new(Opts::new(name, help), &[label])
        .map_err(|source| MetricsError::Register { name, source })
}

impl ShadowMetrics {
    /// Registers the three counters in `registry`, read from `source` at each scrape.
    pub fn register(
        registry: &Registry,
        source: impl Fn() -> ShadowTotals + Send + Sync + 'static,
    ) -> Result<(), MetricsError> {
        let m = ShadowMetrics {
            requests: vec(
                SHADOW_REQUESTS_TOTAL,
                "Shadow comparisons by result: match, mismatch, error (a storefront failed or timed out), dropped (queue or concurrency bound).",
                label::RESULT,
            )?,
            mismatches: vec(
                SHADOW_MISMATCHES_TOTAL,
                "Shadow mismatches by kind (one comparison may find several).",
                label::KIND,
            )?,
            fallback: vec(
                FALLBACK_TOTAL,
                "404 fallback outcomes: served (old had the page), still_404, old_error, not_eligible (not a bodiless GET/HEAD).",
                label::RESULT,
            )?,
            source: Box::new(source),
            scrape: std::sync::Mutex::new(()),
        };
        for r in ShadowResult::ALL {
            m.requests.with_label_values(&[r.as_str()]);
        }
        for k in MismatchKind::ALL {
            m.mismatches.with_label_values(&[k.as_str()]);
        }
        for r in FallbackResult::ALL {
            m.fallback.with_label_values(&[r.as_str()]);
        }
        registry
            .register(Box::new(m))
            .map_err(|source| MetricsError::Register {
                name: SHADOW_REQUESTS_TOTAL,
                source,
            })
    }
}

impl Collector for ShadowMetrics {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.requests.desc();
        d.extend(self.mismatches.desc());
        d.extend(self.fallback.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        let totals = (self.source)();
        if let Some(s) = &totals.shadow {
            for (r, n) in &s.results {
                set(&self.requests, r.as_str(), *n);
            }
            for (k, n) in &s.mismatches {
                set(&self.mismatches, k.as_str(), *n);
            }
        }
        if let Some(f) = &totals.fallback {
            for (r, n) in f {
                set(&self.fallback, r.as_str(), *n);
            }
        }
        let mut families = self.requests.collect();
        families.extend(self.mismatches.collect());
        families.extend(self.fallback.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[test]
    fn totals_are_read_at_each_scrape_and_a_restart_is_a_reset() {
        let registry = Registry::new();
        let matches = Arc::new(AtomicU64::new(5));
        let m = Arc::clone(&matches);
        ShadowMetrics::register(&registry, move || ShadowTotals {
            shadow: Some(ShadowCountsSnapshot {
                results: vec![(ShadowResult::Match, m.load(Ordering::Relaxed))],
                mismatches: vec![(MismatchKind::Title, 2)],
            }),
            fallback: Some(vec![(FallbackResult::Served, 1)]),
        })
        .unwrap();
        let text = |r: &Registry| {
            let mut s = String::new();
            prometheus::TextEncoder::new()
                .encode_utf8(&r.gather(), &mut s)
                .unwrap();
            s
        };
        let t = text(&registry);
        assert!(
            t.contains("cutover_shadow_requests_total{result=\"match\"} 5"),
            "{t}"
        );
        assert!(
            t.contains("cutover_shadow_requests_total{result=\"dropped\"} 0"),
            "{t}"
        );
        assert!(
            t.contains("cutover_shadow_mismatches_total{kind=\"title\"} 2"),
            "{t}"
        );
        assert!(
            t.contains("cutover_fallback_total{result=\"served\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("cutover_fallback_total{result=\"not_eligible\"} 0"),
            "{t}"
        );
        matches.store(9, Ordering::Relaxed);
        assert!(text(&registry).contains("cutover_shadow_requests_total{result=\"match\"} 9"));
        matches.store(1, Ordering::Relaxed);
        assert!(text(&registry).contains("cutover_shadow_requests_total{result=\"match\"} 1"));
    }
}
