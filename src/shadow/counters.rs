//! Plain atomic counters behind the shadow and fallback metrics.
//!
//! The request path increments them without locks or allocation (a dropped copy is counted where
//! it is dropped); the metrics layer reads [`ShadowCounters::snapshot`] at scrape time and exports
//! `cutover_shadow_requests_total{result}`, `cutover_shadow_mismatches_total{kind}` and
//! `cutover_fallback_total{result}`. Labels come from the fixed enums, never from requests.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::compare::{MismatchKind, ShadowResult};
use super::fallback::FallbackResult;

/// Counts of shadow comparisons by result, and of mismatches by kind. Monotonic (never cleared:
/// Prometheus counters); clearing the report does not touch them.
#[derive(Debug, Default)]
pub struct ShadowCounters {
    results: [AtomicU64; ShadowResult::ALL.len()],
    kinds: [AtomicU64; MismatchKind::ALL.len()],
}

/// A copy of [`ShadowCounters`] at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShadowCountsSnapshot {
    /// `(result, total)` for every [`ShadowResult`], in label order.
    pub results: Vec<(ShadowResult, u64)>,
    /// `(kind, total)` for every [`MismatchKind`], in label order.
    pub mismatches: Vec<(MismatchKind, u64)>,
}

impl ShadowCountsSnapshot {
    /// The total of one result.
    pub fn result(&self, result: ShadowResult) -> u64 {
        self.results
            .iter()
            .find(|(r, _)| *r == result)
            .map_or(0, |(_, n)| *n)
    }

    /// The total of one mismatch kind.
    pub fn kind(&self, kind: MismatchKind) -> u64 {
        self.mismatches[kind.index()].1
    }
}

impl ShadowCounters {
    /// Counts one comparison (or drop).
    pub fn result(&self, result: ShadowResult) {
        self.results[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one mismatch of `kind`.
    pub fn mismatch(&self, kind: MismatchKind) {
        self.kinds[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The total of one result so far.
    pub fn get(&self, result: ShadowResult) -> u64 {
        self.results[result as usize].load(Ordering::Relaxed)
    }

    /// Every counter, for a scrape or a test.
    pub fn snapshot(&self) -> ShadowCountsSnapshot {
        ShadowCountsSnapshot {
            results: ShadowResult::ALL
                .iter()
                .map(|&r| (r, self.get(r)))
                .collect(),
            mismatches: MismatchKind::ALL
                .iter()
                .map(|&k| (k, self.kinds[k.index()].load(Ordering::Relaxed)))
                .collect(),
        }
    }
}

/// Counts of fallback outcomes, for `cutover_fallback_total{result}`.
#[derive(Debug, Default)]
pub struct FallbackCounters {
    results: [AtomicU64; FallbackResult::ALL.len()],
}

impl FallbackCounters {
    /// Counts one outcome.
    pub fn record(&self, result: FallbackResult) {
        self.results[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// `(result, total)` for every [`FallbackResult`], in label order.
    pub fn snapshot(&self) -> Vec<(FallbackResult, u64)> {
        FallbackResult::ALL
            .iter()
            .map(|&r| (r, self.results[r as usize].load(Ordering::Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_label() {
        let c = ShadowCounters::default();
        c.result(ShadowResult::Match);
        c.result(ShadowResult::Dropped);
        c.result(ShadowResult::Dropped);
        c.mismatch(MismatchKind::Timeout);
        let s = c.snapshot();
        assert_eq!(s.result(ShadowResult::Match), 1);
        assert_eq!(s.result(ShadowResult::Dropped), 2);
        assert_eq!(s.result(ShadowResult::Error), 0);
        assert_eq!(s.kind(MismatchKind::Timeout), 1);
        assert_eq!(s.mismatches.len(), MismatchKind::ALL.len());

        let f = FallbackCounters::default();
        f.record(FallbackResult::Served);
        assert_eq!(f.snapshot()[0], (FallbackResult::Served, 1));
        assert_eq!(f.snapshot().len(), 4);
    }
}
