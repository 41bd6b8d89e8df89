//! The rollout's metric values, as plain numbers for the lead to export (names here, beside the
//! values, until they join `metrics::names`).
//!
//! Label values are fixed enums (phase, side, result) or come from config (gate and route names),
//! so cardinality is bounded by the plan.

use super::engine::{Engine, Phase};
use super::gate::GateResult;

/// Current step, 1-based; 0 when idle or rolled back.
pub const ROLLOUT_STEP: &str = "cutover_rollout_step";
/// 1 for the current phase, 0 for the others, by `state`.
pub const ROLLOUT_STATE: &str = "cutover_rollout_state";
/// Last measured value of each gate, by `gate` and `side` (`old`, `new`, `limit`).
pub const ROLLOUT_GATE_VALUE: &str = "cutover_rollout_gate_value";
/// Verdicts given, by `gate` and `result` (`pass`, `fail`, `insufficient`).
pub const ROLLOUT_VERDICTS_TOTAL: &str = "cutover_rollout_verdicts_total";
/// Evaluations the source could not answer.
pub const ROLLOUT_SOURCE_INCONCLUSIVE_TOTAL: &str = "cutover_rollout_source_inconclusive_total";
/// Label: gate name (`p99`, `error_ratio/checkout`).
pub const LABEL_GATE: &str = "gate";
/// Label: `old`, `new` or `limit`.
pub const LABEL_SIDE: &str = "side";
/// Label: phase.
pub const LABEL_STATE: &str = "state";
/// Label: verdict result.
pub const LABEL_RESULT: &str = "result";

/// A snapshot of every rollout metric value.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutMetricValues {
    /// `cutover_rollout_step`.
    pub step: i64,
    /// `cutover_rollout_state{state}`: every phase with 0 or 1.
    pub state: Vec<(&'static str, i64)>,
    /// `cutover_rollout_gate_value{gate,side}` from the last evaluation (missing values left out).
    pub gate_values: Vec<(String, &'static str, f64)>,
    /// `cutover_rollout_verdicts_total{gate,result}`.
    pub verdicts_total: Vec<(String, &'static str, u64)>,
    /// `cutover_rollout_source_inconclusive_total` (since the rollout started).
    pub source_inconclusive_total: u64,
    /// `cutover_rollout_step_started_timestamp_seconds`: when the current step began (0: none).
    pub step_started_seconds: f64,
}

impl Engine {
    /// Every metric value now. Cheap; call it when the lead's collector runs or after each tick.
    pub fn metric_values(&self) -> RolloutMetricValues {
        let s = self.state();
        let step = match s.phase {
            Phase::Idle | Phase::RolledBack => 0,
            _ => i64::try_from(s.step + 1).unwrap_or(i64::MAX),
        };
        let state = Phase::ALL
            .iter()
            .map(|p| (p.as_str(), i64::from(*p == s.phase)))
            .collect();
        let mut gate_values = Vec::new();
        for v in &s.last_verdicts {
            for (side, value) in [("old", v.old), ("new", v.new), ("limit", v.limit)] {
                if let Some(value) = value.filter(|x| x.is_finite()) {
                    gate_values.push((v.gate.clone(), side, value));
                }
            }
        }
        let mut verdicts_total = Vec::new();
        for gate in self.gate_names() {
            for r in GateResult::ALL {
                let n = self
                    .verdicts_total()
                    .get(&(gate.clone(), r))
                    .copied()
                    .unwrap_or(0);
                verdicts_total.push((gate.clone(), r.as_str(), n));
            }
        }
        let step_started_seconds = if step > 0 {
            s.step_since_ms as f64 / 1000.0
        } else {
            0.0
        };
        RolloutMetricValues {
            step_started_seconds,
            step,
            state,
            gate_values,
            verdicts_total,
            source_inconclusive_total: s.inconclusive_evaluations,
        }
    }

    /// Every gate name the plan can produce (so verdict counters exist at 0 from the start).
    pub fn gate_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for g in &self.plan().gates {
            out.push(g.measure.as_str().to_string());
            for route in g.routes.keys() {
                out.push(format!("{}/{route}", g.measure.as_str()));
            }
        }
        out
    }
}
