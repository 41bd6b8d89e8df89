//! The rollout's side of the metrics: a cheap reader of the request counters for the rollout's
//! local source, and the rollout's own series in the process registry.
//!
//! The reader runs once per evaluation (seconds apart), never per request: it sums a few hundred
//! atomics and copies each histogram's buckets.

use std::collections::BTreeMap;

use prometheus::core::Metric as _;
use prometheus::{
    Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use super::names::{
    ROLLOUT_GATE_VALUE, ROLLOUT_SOURCE_INCONCLUSIVE_TOTAL, ROLLOUT_STATE, ROLLOUT_STEP,
    ROLLOUT_STEP_STARTED, ROLLOUT_VERDICTS_TOTAL,
};
use super::request::{RequestMetrics, STATUS_CLASSES};
use super::{err, MetricsError, Reason};
use crate::rollout::measure::RouteCounters;
use crate::rollout::metrics::RolloutMetricValues;

impl RequestMetrics {
    /// Cumulative counters of storefront `sf`, per route name: requests by status class and the
    /// 404s, and the duration histogram's cumulative bucket counts (then the total). Failures
    /// after the head are not counted by the request path yet, so they stay 0.
    pub fn route_counters(&self, sf: usize) -> BTreeMap<String, RouteCounters> {
        let h = self.handles();
        let mut out = BTreeMap::new();
        if sf >= h.storefronts.len() {
            return out;
        }
        let routes = h.routes.len();
        let per_pair = STATUS_CLASSES.len() * Reason::ALL.len();
        for (r, name) in h.routes.iter().enumerate() {
            let pair = sf * routes + r;
            let mut c = RouteCounters::default();
            for (i, counter) in h.requests[pair * per_pair..(pair + 1) * per_pair]
                .iter()
                .enumerate()
            {
                c.by_class[i / Reason::ALL.len()] += counter.get();
            }
            c.not_found = h.not_found[pair].get();
            let m = h.duration[pair].metric();
            let hist = m.get_histogram();
            c.latency = hist
                .get_bucket()
                .iter()
                .map(|b| b.cumulative_count())
                .collect();
            c.latency.push(hist.get_sample_count());
            out.insert(name.to_string(), c);
        }
        out
    }
}

/// The rollout's series: `cutover_rollout_step`, `_state{state}`, `_gate_value{gate,side}`,
/// `_verdicts_total{gate,result}`, `_source_inconclusive_total`.
pub struct RolloutMetrics {
    step: IntGauge,
    step_started: Gauge,
    state: IntGaugeVec,
    gate_value: GaugeVec,
    verdicts: IntCounterVec,
    inconclusive: IntCounter,
    /// Engine counts already exported, so a new engine (plan changed, restart) adds from 0.
    seen: std::sync::Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    verdicts: BTreeMap<(String, &'static str), u64>,
    inconclusive: u64,
    gates: Vec<(String, &'static str)>,
}

impl RolloutMetrics {
    /// Registers the series in `registry` (the process's, [`super::Metrics::registry`]).
    pub fn register(registry: &Registry) -> Result<Self, MetricsError> {
        let step = IntGauge::with_opts(Opts::new(
            ROLLOUT_STEP,
            "Current rollout step, 1-based; 0 when idle or rolled back.",
        ))
        .map_err(err(ROLLOUT_STEP))?;
        let step_started = Gauge::with_opts(Opts::new(
            ROLLOUT_STEP_STARTED,
            "Unix time the rollout's current step began; 0 when idle or rolled back.",
        ))
        .map_err(err(ROLLOUT_STEP_STARTED))?;
        let state = IntGaugeVec::new(
            Opts::new(
                ROLLOUT_STATE,
                "1 for the rollout's current state, 0 for the others.",
            ),
            &["state"],
        )
        .map_err(err(ROLLOUT_STATE))?;
        let gate_value = GaugeVec::new(
            Opts::new(
                ROLLOUT_GATE_VALUE,
                "Last measured value of each rollout gate, by side (old, new, limit).",
            ),
            &["gate", "side"],
        )
        .map_err(err(ROLLOUT_GATE_VALUE))?;
        let verdicts = IntCounterVec::new(
            Opts::new(
                ROLLOUT_VERDICTS_TOTAL,
                "Rollout gate verdicts, by gate and result (pass, fail, insufficient).",
            ),
            &["gate", "result"],
        )
        .map_err(err(ROLLOUT_VERDICTS_TOTAL))?;
        let inconclusive = IntCounter::with_opts(Opts::new(
            ROLLOUT_SOURCE_INCONCLUSIVE_TOTAL,
            "Rollout evaluations the source could not answer.",
        ))
        .map_err(err(ROLLOUT_SOURCE_INCONCLUSIVE_TOTAL))?;
        for (name, c) in [
            (
                ROLLOUT_STEP,
                Box::new(step.clone()) as Box<dyn prometheus::core::Collector>,
            ),
            (ROLLOUT_STEP_STARTED, Box::new(step_started.clone())),
            (ROLLOUT_STATE, Box::new(state.clone())),
            (ROLLOUT_GATE_VALUE, Box::new(gate_value.clone())),
            (ROLLOUT_VERDICTS_TOTAL, Box::new(verdicts.clone())),
            (
                ROLLOUT_SOURCE_INCONCLUSIVE_TOTAL,
                Box::new(inconclusive.clone()),
            ),
        ] {
            registry.register(c).map_err(err(name))?;
        }
        Ok(RolloutMetrics {
            step,
            step_started,
            state,
            gate_value,
            verdicts,
            inconclusive,
            seen: std::sync::Mutex::default(),
        })
    }

    /// Exports the engine's values. `fresh`: the engine was just (re)built, its counts start at 0.
    pub fn publish(&self, v: &RolloutMetricValues, fresh: bool) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if fresh {
            seen.verdicts.clear();
            seen.inconclusive = 0;
        }
        self.step.set(v.step);
        self.step_started.set(v.step_started_seconds);
        for (state, on) in &v.state {
            self.state.with_label_values(&[state]).set(*on);
        }
        for (gate, side) in std::mem::take(&mut seen.gates) {
            if !v
                .gate_values
                .iter()
                .any(|(g, s, _)| *g == gate && *s == side)
            {
                let _ = self.gate_value.remove_label_values(&[&gate, side]);
            }
        }
        for (gate, side, value) in &v.gate_values {
            self.gate_value
                .with_label_values(&[gate.as_str(), side])
                .set(*value);
            seen.gates.push((gate.clone(), side));
        }
        for (gate, result, n) in &v.verdicts_total {
            let before = seen
                .verdicts
                .insert((gate.clone(), result), *n)
                .unwrap_or(0);
            let counter = self.verdicts.with_label_values(&[gate.as_str(), result]);
            counter.inc_by(n.checked_sub(before).unwrap_or(*n));
        }
        let n = v.source_inconclusive_total;
        let added = n.checked_sub(seen.inconclusive).unwrap_or(n);
        seen.inconclusive = n;
        self.inconclusive.inc_by(added);
    }
}

#[cfg(all(test, not(feature = "no-metrics")))]
mod tests {
    use std::time::Duration;

    use http::StatusCode;

    use super::super::{Metrics, LATENCY_BUCKETS};
    use super::*;
    use crate::routing::Reason;

    #[test]
    fn route_counters_read_classes_404s_and_buckets_per_route() {
        let m = Metrics::try_new().unwrap();
        let h = m.handles(&["old", "new"], &["checkout", "default"]);
        let fast = Duration::from_millis(1);
        h.record(1, 0, Reason::Split, StatusCode::OK, None, fast);
        h.record(1, 0, Reason::Split, StatusCode::NOT_FOUND, None, fast);
        h.record(
            1,
            0,
            Reason::Split,
            StatusCode::BAD_GATEWAY,
            None,
            Duration::from_secs(100),
        );
        h.record(0, 1, Reason::Split, StatusCode::OK, None, fast);
        let new = h.route_counters(1);
        let checkout = &new["checkout"];
        assert_eq!(checkout.by_class, [0, 1, 0, 1, 1]);
        assert_eq!(checkout.not_found, 1);
        assert_eq!(checkout.latency.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(*checkout.latency.last().unwrap(), 3, "the total comes last");
        assert_eq!(
            checkout.latency[LATENCY_BUCKETS.len() - 1],
            2,
            "100 s is past every bound"
        );
        assert_eq!(new["default"].by_class, [0; 5]);
        assert_eq!(h.route_counters(0)["default"].by_class, [0, 1, 0, 0, 0]);
        assert!(
            h.route_counters(7).is_empty(),
            "an unknown storefront has no routes"
        );
    }

    #[test]
    fn rollout_series_register_once_and_count_on_from_a_new_engine() {
        let m = Metrics::try_new().unwrap();
        let r = RolloutMetrics::register(m.registry()).unwrap();
        assert!(
            RolloutMetrics::register(m.registry()).is_err(),
            "a second registration is refused, not silently duplicated"
        );
        let mut v = RolloutMetricValues {
            step: 2,
            state: vec![("running", 1), ("paused", 0)],
            gate_values: vec![("p99".into(), "new", 0.5)],
            verdicts_total: vec![("p99".into(), "pass", 3)],
            source_inconclusive_total: 1,
            step_started_seconds: 1_764_330_000.5,
        };
        r.publish(&v, true);
        v.verdicts_total = vec![("p99".into(), "pass", 1)];
        v.gate_values.clear();
        r.publish(&v, true);
        let text = m.encode();
        assert!(
            text.contains("cutover_rollout_verdicts_total{gate=\"p99\",result=\"pass\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("cutover_rollout_source_inconclusive_total 2"),
            "{text}"
        );
        assert!(
            !text.contains("cutover_rollout_gate_value{"),
            "stale gate values go: {text}"
        );
        assert!(text.contains("cutover_rollout_step 2"), "{text}");
        assert!(
            text.contains("cutover_rollout_step_started_timestamp_seconds 1764330000.5"),
            "{text}"
        );
    }
}
