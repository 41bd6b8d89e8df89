//! Window figures per side (old, new), overall and per route, and the local source that derives
//! them from this process's cumulative counters.
//!
//! Every measure is optional: "no data" (a Prometheus query with an empty result, no samples yet)
//! is not zero, and a gate given no data says `insufficient`, never `pass`.

use std::collections::{BTreeMap, VecDeque};

/// A latency histogram over a window: cumulative counts per upper bound, ascending, the last bound
/// being `+Inf` (whose count is the total).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// `(upper bound in seconds, cumulative count)`, ascending by bound, last bound `+Inf`.
    pub buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// Observations in the window.
    pub fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |b| b.1)
    }

    /// The `q` quantile (0..=1) by linear interpolation inside the bucket that holds the rank,
    /// the way Prometheus' `histogram_quantile` computes it: the lowest bucket starts at 0 (when its
    /// bound is positive), a rank in the `+Inf` bucket answers the highest finite bound, and
    /// non-monotonic counts (counters scraped at slightly different times) are flattened.
    /// `None` with no observations, fewer than two buckets or no `+Inf` bucket.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if !(0.0..=1.0).contains(&q) || self.buckets.len() < 2 {
            return None;
        }
        let last = self.buckets.last()?;
        if last.0 != f64::INFINITY {
            return None;
        }
        // Prometheus' "ensure monotonic": a count below its predecessor is raised to it.
        let mut counts = Vec::with_capacity(self.buckets.len());
        let mut max = 0.0f64;
        for &(_, c) in &self.buckets {
            max = max.max(c);
            counts.push(max);
        }
        let total = *counts.last()?;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let i = counts.iter().position(|&c| c >= rank)?;
        if i == self.buckets.len() - 1 {
            return Some(self.buckets[i - 1].0);
        }
        let end = self.buckets[i].0;
        if i == 0 && end <= 0.0 {
            return Some(end);
        }
        let (start, below) = if i == 0 {
            (0.0, 0.0)
        } else {
            (self.buckets[i - 1].0, counts[i - 1])
        };
        let in_bucket = counts[i] - below;
        if in_bucket <= 0.0 {
            return Some(end);
        }
        Some(start + (end - start) * (rank - below) / in_bucket)
    }
}

/// One side's figures over the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SideFigures {
    /// Requests answered (`None` = no data).
    pub requests: Option<f64>,
    /// 5xx answers plus failures not visible in the status.
    pub errors: Option<f64>,
    /// 404 answers.
    pub not_found: Option<f64>,
    /// Request duration histogram.
    pub latency: Option<Histogram>,
}

/// Old and new side by side.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PairFigures {
    /// The old storefront.
    pub old: SideFigures,
    /// The new storefront.
    pub new: SideFigures,
}

/// Everything one evaluation looks at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowFigures {
    /// All traffic.
    pub overall: PairFigures,
    /// Per named route (only routes the source reported).
    pub routes: BTreeMap<String, PairFigures>,
}

/// What a source answered for one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// Figures (possibly with missing measures).
    Figures(WindowFigures),
    /// The source could not answer (down, timeout, query error): neither pass nor fail.
    Inconclusive(String),
}

/// Cumulative counters of one route on one storefront, as the metrics registry holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteCounters {
    /// Responses by status class, index = class - 1 (`1xx`..`5xx`).
    pub by_class: [u64; 5],
    /// 404 answers.
    pub not_found: u64,
    /// Failures not visible in the status (mid-body resets once the faults work counts them).
    /// Upstream failures before the response head are already 5xx (502/504): do not add them here.
    pub failed_after_head: u64,
    /// Cumulative duration histogram counts, one per bound of [`LocalSource::new`]'s `bounds`, then
    /// the total count (`+Inf`).
    pub latency: Vec<u64>,
}

/// Cumulative counters of both sides at one instant, per route name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterSample {
    /// Unix milliseconds when the counters were read.
    pub at_ms: u64,
    /// Old storefront, per route.
    pub old: BTreeMap<String, RouteCounters>,
    /// New storefront, per route.
    pub new: BTreeMap<String, RouteCounters>,
}

/// Window figures from this process's own counters: the lead records one [`CounterSample`] per
/// evaluation; deltas come from a bounded ring of samples.
#[derive(Debug)]
pub struct LocalSource {
    bounds: Vec<f64>,
    window_ms: u64,
    ring: VecDeque<CounterSample>,
    capacity: usize,
}

/// Most samples a local source keeps, whatever the window / interval ratio.
pub const MAX_SAMPLES: usize = 1024;

impl LocalSource {
    /// `bounds` are the histogram's finite upper bounds (`metrics::LATENCY_BUCKETS`); samples
    /// are kept for `window_ms` plus one older sample as the base, at most `interval`-spaced
    /// `window / interval + 2` of them (and never more than [`MAX_SAMPLES`]).
    pub fn new(bounds: &[f64], window_ms: u64, interval_ms: u64) -> Self {
        let per_window = window_ms / interval_ms.max(1);
        let capacity = usize::try_from(per_window)
            .unwrap_or(MAX_SAMPLES)
            .saturating_add(2)
            .min(MAX_SAMPLES);
        LocalSource {
            bounds: bounds.to_vec(),
            window_ms,
            ring: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Adds a sample (samples older than the newest are ignored: the clock went backwards).
    pub fn record(&mut self, sample: CounterSample) {
        if self.ring.back().is_some_and(|b| sample.at_ms < b.at_ms) {
            return;
        }
        // Keep one sample at or before the window start as the base; drop older ones.
        let start = sample.at_ms.saturating_sub(self.window_ms);
        while self.ring.len() >= 2 && self.ring[1].at_ms <= start {
            self.ring.pop_front();
        }
        if self.ring.len() >= self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(sample);
    }

    /// Samples held (for tests and status).
    pub fn samples(&self) -> usize {
        self.ring.len()
    }

    /// Figures over the window ending at the newest sample. With fewer than two samples every
    /// measure is `None` (no data yet, e.g. right after a restart).
    pub fn figures(&self) -> Reading {
        let mut out = WindowFigures::default();
        if self.ring.len() < 2 {
            return Reading::Figures(out);
        }
        let newest = self.ring.back().map_or(0, |s| s.at_ms);
        let start = newest.saturating_sub(self.window_ms);
        // The base is the newest sample at or before the window start, else the oldest.
        let base = self
            .ring
            .iter()
            .rposition(|s| s.at_ms <= start)
            .unwrap_or(0);
        let samples: Vec<&CounterSample> = self.ring.iter().skip(base).collect();
        let mut names: Vec<&String> = samples
            .iter()
            .flat_map(|s| s.old.keys().chain(s.new.keys()))
            .collect();
        names.sort();
        names.dedup();
        let mut overall_old = Acc::new(self.bounds.len());
        let mut overall_new = Acc::new(self.bounds.len());
        for name in names {
            let mut old = Acc::new(self.bounds.len());
            let mut new = Acc::new(self.bounds.len());
            for pair in samples.windows(2) {
                old.add(pair[0].old.get(name), pair[1].old.get(name));
                new.add(pair[0].new.get(name), pair[1].new.get(name));
            }
            overall_old.merge(&old);
            overall_new.merge(&new);
            out.routes.insert(
                name.clone(),
                PairFigures {
                    old: old.figures(&self.bounds),
                    new: new.figures(&self.bounds),
                },
            );
        }
        out.overall = PairFigures {
            old: overall_old.figures(&self.bounds),
            new: overall_new.figures(&self.bounds),
        };
        Reading::Figures(out)
    }
}

/// Delta of a cumulative counter between two reads; a decrease is a reset (process restart), so
/// the new value is everything counted since (Prometheus' `increase` does the same).
fn delta(before: u64, after: u64) -> u64 {
    if after >= before {
        after - before
    } else {
        after
    }
}

struct Acc {
    requests: u64,
    errors: u64,
    not_found: u64,
    latency: Vec<u64>,
    seen: bool,
}

impl Acc {
    fn new(bounds: usize) -> Self {
        Acc {
            requests: 0,
            errors: 0,
            not_found: 0,
            latency: vec![0; bounds + 1],
            seen: false,
        }
    }

    /// Adds the delta between two consecutive samples; a route missing from either sample (added
    /// or removed by a reload) contributes nothing for that pair.
    fn add(&mut self, before: Option<&RouteCounters>, after: Option<&RouteCounters>) {
        let (Some(b), Some(a)) = (before, after) else {
            return;
        };
        self.seen = true;
        let total_b: u64 = b.by_class.iter().sum();
        let total_a: u64 = a.by_class.iter().sum();
        self.requests += delta(total_b, total_a);
        self.errors +=
            delta(b.by_class[4], a.by_class[4]) + delta(b.failed_after_head, a.failed_after_head);
        self.not_found += delta(b.not_found, a.not_found);
        if b.latency.len() == self.latency.len() && a.latency.len() == self.latency.len() {
            for (i, slot) in self.latency.iter_mut().enumerate() {
                *slot += delta(b.latency[i], a.latency[i]);
            }
        }
    }

    fn merge(&mut self, other: &Acc) {
        self.seen |= other.seen;
        self.requests += other.requests;
        self.errors += other.errors;
        self.not_found += other.not_found;
        for (s, o) in self.latency.iter_mut().zip(&other.latency) {
            *s += o;
        }
    }

    fn figures(&self, bounds: &[f64]) -> SideFigures {
        if !self.seen {
            return SideFigures::default();
        }
        let buckets = bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.latency.iter().map(|&c| c as f64))
            .collect();
        SideFigures {
            requests: Some(self.requests as f64),
            errors: Some(self.errors as f64),
            not_found: Some(self.not_found as f64),
            latency: Some(Histogram { buckets }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: &[(f64, f64)]) -> Histogram {
        Histogram {
            buckets: b.to_vec(),
        }
    }

    const INF: f64 = f64::INFINITY;

    #[test]
    fn quantile_interpolates_inside_the_bucket() {
        // 100 observations: 50 <= 0.1, 90 <= 0.5, 100 <= 1.
        let x = h(&[(0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (INF, 100.0)]);
        // p50: rank 50 -> end of the first bucket: 0 + 0.1 * 50/50.
        assert!((x.quantile(0.5).unwrap() - 0.1).abs() < 1e-12);
        // p95: rank 95 in (0.5, 1.0]: 0.5 + 0.5 * (95-90)/10 = 0.75.
        assert!((x.quantile(0.95).unwrap() - 0.75).abs() < 1e-12);
        // p25: rank 25 in the first bucket, which starts at 0: 0.05.
        assert!((x.quantile(0.25).unwrap() - 0.05).abs() < 1e-12);
    }

    #[test]
    fn quantile_in_the_inf_bucket_answers_the_highest_finite_bound() {
        let x = h(&[(0.1, 10.0), (0.5, 20.0), (INF, 100.0)]);
        assert_eq!(x.quantile(0.99), Some(0.5));
    }

    #[test]
    fn quantile_without_data_or_inf_bucket_is_none() {
        assert_eq!(h(&[(0.1, 0.0), (INF, 0.0)]).quantile(0.5), None);
        assert_eq!(h(&[(0.1, 3.0), (0.2, 4.0)]).quantile(0.5), None);
        assert_eq!(h(&[(INF, 4.0)]).quantile(0.5), None);
        assert_eq!(h(&[(0.1, 1.0), (INF, 1.0)]).quantile(1.5), None);
    }

    #[test]
    fn quantile_flattens_non_monotonic_counts() {
        // The 0.5 bucket dipped below the 0.1 bucket: treated as 50, so p50 stays in bucket 1.
        let x = h(&[(0.1, 50.0), (0.5, 40.0), (1.0, 100.0), (INF, 100.0)]);
        assert!((x.quantile(0.5).unwrap() - 0.1).abs() < 1e-12);
        // p75: rank 75 in (0.5, 1.0] with 50 below: 0.5 + 0.5 * 25/50.
        assert!((x.quantile(0.75).unwrap() - 0.75).abs() < 1e-12);
    }

    #[test]
    fn quantile_with_a_non_positive_first_bound_answers_it() {
        assert_eq!(
            h(&[(0.0, 5.0), (1.0, 10.0), (INF, 10.0)]).quantile(0.2),
            Some(0.0)
        );
    }

    const BOUNDS: &[f64] = &[0.1, 0.5];

    fn counters(ok: u64, e5: u64, nf: u64, lat: [u64; 3]) -> RouteCounters {
        RouteCounters {
            by_class: [0, ok, 0, nf, e5],
            not_found: nf,
            failed_after_head: 0,
            latency: lat.to_vec(),
        }
    }

    fn sample(at_s: u64, old: RouteCounters, new: RouteCounters) -> CounterSample {
        CounterSample {
            at_ms: at_s * 1000,
            old: [("home".to_string(), old)].into(),
            new: [("home".to_string(), new)].into(),
        }
    }

    fn figures(src: &LocalSource) -> WindowFigures {
        match src.figures() {
            Reading::Figures(f) => f,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn local_source_computes_window_deltas() {
        let mut src = LocalSource::new(BOUNDS, 60_000, 10_000);
        assert_eq!(
            figures(&src).overall.new.requests,
            None,
            "no samples: no data"
        );
        src.record(sample(
            0,
            counters(100, 0, 0, [90, 100, 100]),
            counters(10, 0, 0, [10, 10, 10]),
        ));
        assert_eq!(
            figures(&src).overall.new.requests,
            None,
            "one sample: no data"
        );
        src.record(sample(
            10,
            counters(190, 10, 0, [180, 200, 200]),
            counters(20, 5, 5, [10, 20, 30]),
        ));
        let f = figures(&src);
        assert_eq!(f.overall.old.requests, Some(100.0));
        assert_eq!(f.overall.old.errors, Some(10.0));
        assert_eq!(f.overall.new.requests, Some(20.0));
        assert_eq!(f.overall.new.errors, Some(5.0));
        assert_eq!(f.overall.new.not_found, Some(5.0));
        let lat = f.overall.new.latency.clone().unwrap();
        assert_eq!(lat.buckets, vec![(0.1, 0.0), (0.5, 10.0), (INF, 20.0)]);
        assert_eq!(f.routes["home"], f.overall);
    }

    #[test]
    fn local_source_forgets_samples_outside_the_window() {
        let mut src = LocalSource::new(BOUNDS, 20_000, 10_000);
        for (t, n) in [(0, 0), (10, 1000), (20, 1010), (30, 1020)] {
            src.record(sample(
                t,
                counters(n, 0, 0, [n, n, n]),
                counters(n, 0, 0, [n, n, n]),
            ));
        }
        // Window [10s, 30s]: base is the 10s sample, the burst before it is out.
        assert_eq!(figures(&src).overall.old.requests, Some(20.0));
        assert!(src.samples() <= 4);
    }

    #[test]
    fn local_source_handles_counter_resets() {
        let mut src = LocalSource::new(BOUNDS, 60_000, 10_000);
        src.record(sample(
            0,
            counters(500, 0, 0, [500, 500, 500]),
            counters(500, 0, 0, [0, 0, 500]),
        ));
        src.record(sample(
            10,
            counters(600, 0, 0, [600, 600, 600]),
            counters(600, 0, 0, [0, 0, 600]),
        ));
        // Restart: counters start over at 30.
        src.record(sample(
            20,
            counters(30, 0, 0, [30, 30, 30]),
            counters(30, 3, 0, [0, 0, 33]),
        ));
        let f = figures(&src);
        assert_eq!(f.overall.old.requests, Some(130.0));
        assert_eq!(f.overall.new.requests, Some(133.0));
        assert_eq!(f.overall.new.errors, Some(3.0));
        assert_eq!(f.overall.new.latency.unwrap().count(), 133.0);
    }

    #[test]
    fn local_source_ignores_samples_from_the_past_and_routes_added_later() {
        let mut src = LocalSource::new(BOUNDS, 60_000, 10_000);
        src.record(sample(
            10,
            counters(0, 0, 0, [0, 0, 0]),
            counters(0, 0, 0, [0, 0, 0]),
        ));
        src.record(sample(
            5,
            counters(99, 0, 0, [0, 0, 99]),
            counters(0, 0, 0, [0, 0, 0]),
        ));
        assert_eq!(src.samples(), 1);
        let mut later = sample(
            20,
            counters(10, 0, 0, [0, 0, 10]),
            counters(4, 0, 0, [0, 0, 4]),
        );
        later
            .new
            .insert("checkout".into(), counters(1000, 0, 0, [0, 0, 1000]));
        src.record(later);
        let f = figures(&src);
        assert_eq!(
            f.overall.new.requests,
            Some(4.0),
            "a route without a base adds nothing"
        );
        assert_eq!(f.routes["checkout"].new.requests, None);
    }
}
