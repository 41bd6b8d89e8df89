//! The console's short memory: per-storefront requests/s, error ratio, 404 ratio and p95 latency
//! over the last minutes, so the page has charts on a laptop with no Prometheus in the room.
//!
//! A background task reads the counters the proxy already keeps for `/metrics` (the same
//! handles the rollout's local source reads, [`crate::metrics::RequestMetrics::route_counters`])
//! every [`INTERVAL`], turns the difference from the previous read into one [`Point`], and keeps
//! the last [`CAPACITY`] of them in a ring. The request path does nothing new: it increments the
//! atomics it always did, and this task sums them every few seconds.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::metrics::{self, LATENCY_BUCKETS};
use crate::rollout::measure::{Histogram, RouteCounters};
use crate::state::{SharedSnapshot, Snapshot};

/// Time between two reads of the counters.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// Points kept: ten minutes at [`INTERVAL`].
pub const CAPACITY: usize = 300;

/// Cumulative counters of one storefront, all routes summed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Responses, any status.
    pub requests: u64,
    /// 5xx responses.
    pub errors: u64,
    /// 404 responses.
    pub not_found: u64,
    /// Cumulative duration histogram counts per bound of [`LATENCY_BUCKETS`], then the total.
    pub latency: Vec<u64>,
}

impl Totals {
    /// Sums a storefront's per-route counters.
    pub fn from_routes(routes: &BTreeMap<String, RouteCounters>) -> Self {
        let mut t = Totals {
            latency: vec![0; LATENCY_BUCKETS.len() + 1],
            ..Totals::default()
        };
        for c in routes.values() {
            t.requests += c.by_class.iter().sum::<u64>();
            t.errors += c.by_class[4] + c.failed_after_head;
            t.not_found += c.not_found;
            for (sum, n) in t.latency.iter_mut().zip(&c.latency) {
                *sum += n;
            }
        }
        t
    }
}

/// One storefront over one interval.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Side {
    /// Storefront name (from the config).
    pub storefront: String,
    /// Requests answered per second (`cutover_requests_total`).
    pub requests_per_second: f64,
    /// 5xx per request (`cutover_requests_total{status_class="5xx"}`); `None` without requests.
    pub error_ratio: Option<f64>,
    /// 404 per request (`cutover_not_found_total`); `None` without requests.
    pub not_found_ratio: Option<f64>,
    /// 95th percentile of `cutover_request_duration_seconds`, as `histogram_quantile` computes
    /// it from the buckets; `None` without requests.
    pub p95_seconds: Option<f64>,
}

/// One interval of every storefront.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Point {
    /// Unix milliseconds at the end of the interval.
    pub at_ms: u64,
    /// Share on the split's `to` storefront then, percent (`cutover_split_new_share_ratio`).
    pub new_share: f64,
    /// Each storefront, in config order.
    pub storefronts: Vec<Side>,
}

/// What `GET /admin/timeseries` answers.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// Seconds between points.
    pub interval_seconds: f64,
    /// Most points kept.
    pub capacity: usize,
    /// The Prometheus series each figure is derived from, so the page can name them.
    pub metrics: BTreeMap<&'static str, &'static str>,
    /// Oldest first.
    pub points: Vec<Point>,
}

/// Counter difference; a decrease is a restart of the counter, so the new value is the delta.
fn delta(before: u64, after: u64) -> u64 {
    after.checked_sub(before).unwrap_or(after)
}

/// The figures of one storefront between two reads `seconds` apart.
pub fn side(storefront: &str, before: &Totals, after: &Totals, seconds: f64) -> Side {
    let requests = delta(before.requests, after.requests);
    let ratio = |n: u64| (requests > 0).then(|| n as f64 / requests as f64);
    let buckets: Vec<(f64, f64)> = LATENCY_BUCKETS
        .iter()
        .copied()
        .chain(std::iter::once(f64::INFINITY))
        .enumerate()
        .map(|(i, bound)| {
            let b = before.latency.get(i).copied().unwrap_or(0);
            let a = after.latency.get(i).copied().unwrap_or(0);
            (bound, delta(b, a) as f64)
        })
        .collect();
    Side {
        storefront: storefront.to_string(),
        requests_per_second: if seconds > 0.0 {
            requests as f64 / seconds
        } else {
            0.0
        },
        error_ratio: ratio(delta(before.errors, after.errors)),
        not_found_ratio: ratio(delta(before.not_found, after.not_found)),
        p95_seconds: Histogram { buckets }.quantile(0.95),
    }
}

/// The ring of points and the last read it is computed from.
pub struct Sampler {
    points: Mutex<VecDeque<Point>>,
    capacity: usize,
}

/// The previous read: when, and each storefront's totals by name (names, not ids, so a reload
/// that reorders storefronts does not mix their figures).
#[derive(Default)]
pub struct LastRead {
    at_ms: u64,
    totals: BTreeMap<String, Totals>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Sampler {
    /// An empty ring of at most `capacity` points.
    pub fn new(capacity: usize) -> Self {
        Sampler {
            points: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
        }
    }

    /// Starts the sampler task on `state`; it stops once the returned handle (held by the admin
    /// routes) is dropped.
    pub fn spawn(state: SharedSnapshot) -> Arc<Sampler> {
        let sampler = Arc::new(Sampler::new(CAPACITY));
        let weak: Weak<Sampler> = Arc::downgrade(&sampler);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last = LastRead::default();
            loop {
                tick.tick().await;
                let Some(sampler) = weak.upgrade() else { break };
                sampler.record(&state.load(), unix_ms(), &mut last);
            }
        });
        sampler
    }

    /// Reads `snap`'s counters at `now_ms` and adds a point against `last` (the first read only
    /// sets the base).
    pub fn record(&self, snap: &Snapshot, now_ms: u64, last: &mut LastRead) {
        let mut totals = BTreeMap::new();
        for (id, sf) in snap.storefronts.iter().enumerate() {
            totals.insert(
                sf.name.clone(),
                Totals::from_routes(&snap.metrics.route_counters(id)),
            );
        }
        if last.at_ms > 0 && now_ms > last.at_ms {
            let seconds = (now_ms - last.at_ms) as f64 / 1000.0;
            let storefronts = snap
                .storefronts
                .iter()
                .map(|sf| {
                    let after = &totals[&sf.name];
                    let before = last.totals.get(&sf.name).cloned().unwrap_or_default();
                    side(&sf.name, &before, after, seconds)
                })
                .collect();
            self.push(Point {
                at_ms: now_ms,
                new_share: f64::from(snap.routing.split.share_bp) / 100.0,
                storefronts,
            });
        }
        *last = LastRead {
            at_ms: now_ms,
            totals,
        };
    }

    fn push(&self, point: Point) {
        let mut points = self.points.lock().unwrap_or_else(|e| e.into_inner());
        if points.len() >= self.capacity {
            points.pop_front();
        }
        points.push_back(point);
    }

    /// Every point kept, oldest first, with the metric names.
    pub fn series(&self) -> Series {
        let points = self.points.lock().unwrap_or_else(|e| e.into_inner());
        Series {
            interval_seconds: INTERVAL.as_secs_f64(),
            capacity: self.capacity,
            metrics: BTreeMap::from([
                ("requests_per_second", metrics::REQUESTS_TOTAL),
                ("error_ratio", metrics::REQUESTS_TOTAL),
                ("not_found_ratio", metrics::NOT_FOUND_TOTAL),
                ("p95_seconds", metrics::REQUEST_DURATION_SECONDS),
                ("new_share", metrics::SPLIT_NEW_SHARE_RATIO),
            ]),
            points: points.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(requests: u64, errors: u64, not_found: u64, fast: u64) -> Totals {
        // `fast` requests in the first bucket, the rest past every finite bound.
        let mut latency = vec![fast; LATENCY_BUCKETS.len()];
        latency.push(requests);
        Totals {
            requests,
            errors,
            not_found,
            latency,
        }
    }

    #[test]
    fn a_side_is_the_difference_of_two_reads() {
        let before = totals(100, 1, 2, 100);
        let after = totals(300, 21, 42, 280);
        let s = side("new", &before, &after, 2.0);
        assert_eq!(s.requests_per_second, 100.0);
        assert_eq!(s.error_ratio, Some(0.1));
        assert_eq!(s.not_found_ratio, Some(0.2));
        // 180 of 200 in the first bucket: p95 lies past it, in +Inf -> the highest finite bound.
        assert_eq!(s.p95_seconds, LATENCY_BUCKETS.last().copied());
    }

    #[test]
    fn no_requests_means_no_ratio_not_zero() {
        let t = totals(5, 0, 0, 5);
        let s = side("old", &t, &t, 2.0);
        assert_eq!(s.requests_per_second, 0.0);
        assert_eq!(
            (s.error_ratio, s.not_found_ratio, s.p95_seconds),
            (None, None, None)
        );
    }

    #[test]
    fn a_counter_that_went_back_counts_from_zero() {
        let s = side("old", &totals(500, 0, 0, 500), &totals(10, 0, 0, 10), 1.0);
        assert_eq!(s.requests_per_second, 10.0);
    }

    #[test]
    fn the_ring_keeps_the_newest_points_only() {
        let s = Sampler::new(3);
        for at_ms in 1..=5 {
            s.push(Point {
                at_ms,
                new_share: 0.0,
                storefronts: Vec::new(),
            });
        }
        let at: Vec<u64> = s.series().points.iter().map(|p| p.at_ms).collect();
        assert_eq!(at, [3, 4, 5]);
    }
}
