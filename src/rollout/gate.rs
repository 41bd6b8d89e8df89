//! Gate evaluation: new judged against old on the same window.
//!
//! A gate passes iff `new <= max(old * max_vs_old, old + max_delta)` and `new <= max`. The relative
//! bound is the point: "new has 2% errors" means nothing alone, "new has 3x old's error rate on the
//! same traffic" is a reason to stop; `max_delta` keeps a perfect old store (0 errors) from failing
//! new on its first error. Too few requests on either side gives `insufficient`: an idle night never
//! passes or fails a step on three requests.

use serde::{Deserialize, Serialize};

use super::measure::{PairFigures, SideFigures, WindowFigures};
use super::plan::{GateSpec, Limits, Measure};

/// Outcome of one gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateResult {
    /// Within limits.
    Pass,
    /// Outside limits.
    Fail,
    /// Not enough requests or no data on a side: neither pass nor fail.
    Insufficient,
}

impl GateResult {
    /// Every result (metric label order).
    pub const ALL: [GateResult; 3] = [GateResult::Pass, GateResult::Fail, GateResult::Insufficient];

    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            GateResult::Pass => "pass",
            GateResult::Fail => "fail",
            GateResult::Insufficient => "insufficient",
        }
    }
}

/// One gate's verdict with the values behind it, for status, webhook and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// `error_ratio`, or `error_ratio/checkout` for a per-route gate (route names come from config).
    pub gate: String,
    /// The outcome.
    pub result: GateResult,
    /// Old's value, when measured.
    pub old: Option<f64>,
    /// New's value, when measured.
    pub new: Option<f64>,
    /// The largest value new could have had to pass (min of relative bound and ceiling).
    pub limit: Option<f64>,
    /// Requests on old in the window.
    pub old_requests: f64,
    /// Requests on new in the window.
    pub new_requests: f64,
}

/// The bound new must stay under, given old's value; `None` when no limit applies (cannot happen
/// for a validated gate).
pub fn bound(limits: &Limits, old: f64) -> Option<f64> {
    let relative = match (limits.max_vs_old, limits.max_delta) {
        (None, None) => None,
        (r, d) => Some(
            r.map_or(f64::NEG_INFINITY, |r| old * r)
                .max(d.map_or(f64::NEG_INFINITY, |d| old + d)),
        ),
    };
    match (relative, limits.max) {
        (Some(r), Some(m)) => Some(r.min(m)),
        (Some(r), None) => Some(r),
        (None, m) => m,
    }
}

/// Compares one measure of new with old.
pub fn judge(
    gate: String,
    measure: Measure,
    limits: &Limits,
    pair: &PairFigures,
    min_requests: u64,
) -> Verdict {
    let old_requests = pair.old.requests.unwrap_or(0.0);
    let new_requests = pair.new.requests.unwrap_or(0.0);
    let old = value(measure, &pair.old);
    let new = value(measure, &pair.new);
    let min = min_requests as f64;
    let enough =
        pair.old.requests.is_some_and(|r| r >= min) && pair.new.requests.is_some_and(|r| r >= min);
    let (result, limit) = match (enough, old, new) {
        (true, Some(o), Some(n)) => {
            let limit = bound(limits, o);
            match limit {
                Some(l) if n <= l => (GateResult::Pass, limit),
                Some(_) => (GateResult::Fail, limit),
                None => (GateResult::Insufficient, None),
            }
        }
        _ => (GateResult::Insufficient, old.and_then(|o| bound(limits, o))),
    };
    Verdict {
        gate,
        result,
        old,
        new,
        limit,
        old_requests,
        new_requests,
    }
}

fn ratio(part: Option<f64>, requests: Option<f64>) -> Option<f64> {
    match (part, requests) {
        (Some(p), Some(r)) if r > 0.0 => Some(p / r),
        _ => None,
    }
}

/// One side's value of a measure; `None` when not measured.
pub fn value(measure: Measure, side: &SideFigures) -> Option<f64> {
    match measure {
        Measure::ErrorRatio => ratio(side.errors, side.requests),
        Measure::NotFoundRatio => ratio(side.not_found, side.requests),
        Measure::P95 => side.latency.as_ref().and_then(|h| h.quantile(0.95)),
        Measure::P99 => side.latency.as_ref().and_then(|h| h.quantile(0.99)),
    }
}

/// Every gate of the plan over the figures: overall, then each named route. A per-route gate with
/// no figures for its route is `insufficient`.
pub fn judge_all(gates: &[GateSpec], figures: &WindowFigures, min_requests: u64) -> Vec<Verdict> {
    let empty = PairFigures::default();
    let mut out = Vec::new();
    for g in gates {
        let name = g.measure.as_str();
        out.push(judge(
            name.to_string(),
            g.measure,
            &g.limits,
            &figures.overall,
            min_requests,
        ));
        for (route, limits) in &g.routes {
            let pair = figures.routes.get(route).unwrap_or(&empty);
            out.push(judge(
                format!("{name}/{route}"),
                g.measure,
                limits,
                pair,
                min_requests,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::measure::Histogram;

    fn limits(r: Option<f64>, d: Option<f64>, m: Option<f64>) -> Limits {
        Limits {
            max_vs_old: r,
            max_delta: d,
            max: m,
        }
    }

    fn side(requests: f64, errors: f64) -> SideFigures {
        SideFigures {
            requests: Some(requests),
            errors: Some(errors),
            not_found: Some(0.0),
            latency: None,
        }
    }

    fn pair(old: SideFigures, new: SideFigures) -> PairFigures {
        PairFigures { old, new }
    }

    fn err(l: &Limits, old: (f64, f64), new: (f64, f64)) -> Verdict {
        judge(
            "error_ratio".into(),
            Measure::ErrorRatio,
            l,
            &pair(side(old.0, old.1), side(new.0, new.1)),
            100,
        )
    }

    #[test]
    fn relative_bound_takes_the_larger_of_factor_and_delta() {
        let l = limits(Some(2.0), Some(0.01), None);
        // old 5% -> bound max(10%, 6%) = 10%.
        assert!((bound(&l, 0.05).unwrap() - 0.10).abs() < 1e-12);
        // old 0% -> bound max(0, 1%) = 1%: a perfect old does not fail new on one error.
        assert!((bound(&l, 0.0).unwrap() - 0.01).abs() < 1e-12);
        assert_eq!(
            err(&l, (1000.0, 0.0), (1000.0, 10.0)).result,
            GateResult::Pass
        );
        assert_eq!(
            err(&l, (1000.0, 0.0), (1000.0, 11.0)).result,
            GateResult::Fail
        );
        assert_eq!(
            err(&l, (1000.0, 50.0), (1000.0, 100.0)).result,
            GateResult::Pass
        );
        assert_eq!(
            err(&l, (1000.0, 50.0), (1000.0, 101.0)).result,
            GateResult::Fail
        );
    }

    #[test]
    fn ceiling_applies_whatever_old_does() {
        let l = limits(Some(2.0), None, Some(0.05));
        // old 4% would allow 8%, the ceiling says 5%.
        let v = err(&l, (1000.0, 40.0), (1000.0, 60.0));
        assert_eq!(v.result, GateResult::Fail);
        assert_eq!(v.limit, Some(0.05));
        let only_max = limits(None, None, Some(0.05));
        assert_eq!(
            err(&only_max, (1000.0, 900.0), (1000.0, 50.0)).result,
            GateResult::Pass
        );
        assert_eq!(
            err(&only_max, (1000.0, 0.0), (1000.0, 51.0)).result,
            GateResult::Fail
        );
    }

    #[test]
    fn factor_alone_fails_new_against_a_perfect_old() {
        let l = limits(Some(2.0), None, None);
        assert_eq!(
            err(&l, (1000.0, 0.0), (1000.0, 1.0)).result,
            GateResult::Fail
        );
        assert_eq!(
            err(&l, (1000.0, 0.0), (1000.0, 0.0)).result,
            GateResult::Pass
        );
    }

    #[test]
    fn too_few_requests_on_either_side_is_insufficient_and_keeps_values() {
        let l = limits(Some(2.0), Some(0.0), None);
        let v = err(&l, (99.0, 0.0), (1000.0, 900.0));
        assert_eq!(v.result, GateResult::Insufficient);
        assert_eq!(v.old, Some(0.0));
        assert_eq!(v.new, Some(0.9));
        assert_eq!((v.old_requests, v.new_requests), (99.0, 1000.0));
        assert_eq!(
            err(&l, (1000.0, 0.0), (99.0, 99.0)).result,
            GateResult::Insufficient
        );
    }

    #[test]
    fn no_data_is_insufficient_not_zero() {
        let l = limits(Some(2.0), Some(0.01), None);
        let mut new = side(1000.0, 0.0);
        new.errors = None;
        let v = judge(
            "e".into(),
            Measure::ErrorRatio,
            &l,
            &pair(side(1000.0, 0.0), new),
            1,
        );
        assert_eq!(v.result, GateResult::Insufficient);
        assert_eq!(v.new, None);
        let v = judge(
            "e".into(),
            Measure::ErrorRatio,
            &l,
            &pair(SideFigures::default(), side(1000.0, 0.0)),
            1,
        );
        assert_eq!(v.result, GateResult::Insufficient);
    }

    #[test]
    fn latency_gates_compare_quantiles() {
        let inf = f64::INFINITY;
        let fast = Histogram {
            buckets: vec![(0.1, 990.0), (1.0, 1000.0), (inf, 1000.0)],
        };
        let slow = Histogram {
            buckets: vec![(0.1, 500.0), (1.0, 1000.0), (inf, 1000.0)],
        };
        let mk = |h: &Histogram| SideFigures {
            requests: Some(1000.0),
            errors: Some(0.0),
            not_found: Some(0.0),
            latency: Some(h.clone()),
        };
        let l = limits(Some(1.5), Some(0.05), None);
        let v = judge(
            "p99".into(),
            Measure::P99,
            &l,
            &pair(mk(&fast), mk(&slow)),
            100,
        );
        assert_eq!(v.result, GateResult::Fail, "{v:?}");
        // old p99 = 0.1 (rank 990 at the end of bucket 1); new p99 = 0.1 + 0.9 * 490/500.
        assert!((v.old.unwrap() - 0.1).abs() < 1e-9);
        assert!((v.new.unwrap() - (0.1 + 0.9 * 490.0 / 500.0)).abs() < 1e-9);
        let v = judge(
            "p99".into(),
            Measure::P99,
            &l,
            &pair(mk(&slow), mk(&fast)),
            100,
        );
        assert_eq!(v.result, GateResult::Pass);
    }

    #[test]
    fn judge_all_names_route_gates_and_treats_missing_routes_as_insufficient() {
        let gate = GateSpec {
            measure: Measure::NotFoundRatio,
            limits: limits(Some(2.0), Some(0.01), None),
            routes: [("checkout".to_string(), limits(Some(1.0), Some(0.0), None))].into(),
        };
        let mut figures = WindowFigures::default();
        let mut nf = side(1000.0, 0.0);
        nf.not_found = Some(5.0);
        figures.overall = pair(side(1000.0, 0.0), nf);
        let verdicts = judge_all(&[gate], &figures, 10);
        assert_eq!(verdicts.len(), 2);
        assert_eq!(verdicts[0].gate, "not_found_ratio");
        assert_eq!(verdicts[0].result, GateResult::Pass);
        assert_eq!(verdicts[1].gate, "not_found_ratio/checkout");
        assert_eq!(verdicts[1].result, GateResult::Insufficient);
    }
}
