//! The `[rollout]` section: what the operator writes (raw, serde) and the checked [`Plan`] the
//! engine runs.
//!
//! Validation is pure and reports every problem at once, each with its field path
//! (`rollout.gates.p99.routes.checkout.max_vs_old`), so one edit fixes a whole file. The plan's
//! [`Plan::fingerprint`] is what persisted rollout state is tied to: a rollout that was judged by
//! one plan must not silently continue under another.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::values::{HumanDuration, Share};

mod raw;
pub use raw::*;

/// One problem in the `[rollout]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanProblem {
    /// Field path, e.g. `rollout.steps[2]`.
    pub field: String,
    /// What is wrong and what is expected.
    pub problem: String,
}

impl fmt::Display for PlanProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

/// Every problem found in the `[rollout]` section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid [rollout] section: {}", join(.0))]
pub struct PlanErrors(pub Vec<PlanProblem>);

fn join(problems: &[PlanProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A checked rollout plan. Durations in milliseconds so the engine's clock is one integer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Shares on new in basis points, strictly increasing, each > 0.
    pub steps_bp: Vec<u16>,
    /// Minimum hold per step.
    pub min_hold_ms: u64,
    /// Evaluation interval.
    pub interval_ms: u64,
    /// Evaluation window.
    pub window_ms: u64,
    /// Minimum requests per side.
    pub min_requests: u64,
    /// Consecutive failed evaluations before the action.
    pub failure_limit: u32,
    /// The action.
    pub action: FailureAction,
    /// Enforce or advise.
    pub mode: Mode,
    /// Source failing this long pauses the rollout.
    pub inconclusive_timeout_ms: u64,
    /// Gates in a fixed order (error_ratio, not_found_ratio, p95, p99).
    pub gates: Vec<GateSpec>,
    /// The source.
    pub source: Source,
    /// Webhook; not part of the fingerprint (changing where news goes does not change the rollout).
    #[serde(skip)]
    pub webhook: Option<Webhook>,
}

/// The checked failure action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureAction {
    /// Share to 0.
    Rollback {
        /// Also evacuate shoppers pinned to new.
        evacuate_new: bool,
    },
    /// Stop at the current step.
    Pause,
}

/// What a gate measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// errors / requests.
    ErrorRatio,
    /// 404s / requests.
    NotFoundRatio,
    /// 95th percentile latency, seconds.
    P95,
    /// 99th percentile latency, seconds.
    P99,
}

impl Measure {
    /// Every measure, in gate order.
    pub const ALL: [Measure; 4] = [
        Measure::ErrorRatio,
        Measure::NotFoundRatio,
        Measure::P95,
        Measure::P99,
    ];

    /// Config key and metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::ErrorRatio => "error_ratio",
            Measure::NotFoundRatio => "not_found_ratio",
            Measure::P95 => "p95",
            Measure::P99 => "p99",
        }
    }
}

/// Checked limits (`None` = no such bound).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Limits {
    /// Relative bound factor.
    pub max_vs_old: Option<f64>,
    /// Additive tolerance.
    pub max_delta: Option<f64>,
    /// Absolute ceiling.
    pub max: Option<f64>,
}

/// One checked gate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateSpec {
    /// What it measures.
    pub measure: Measure,
    /// Limits on all traffic.
    pub limits: Limits,
    /// Limits per named route (inherited fields filled in).
    pub routes: BTreeMap<String, Limits>,
}

/// The checked source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Source {
    /// Local counters.
    Local,
    /// Prometheus HTTP API.
    Prometheus {
        /// Base URL without trailing slash.
        url: String,
        /// Per-query timeout.
        timeout_ms: u64,
        /// Overrides.
        queries: QueryOverrides,
    },
}

/// The checked webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Target URL.
    pub url: http::Uri,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub retries: u32,
}

/// Default per-query Prometheus timeout.
pub const DEFAULT_PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(5);
/// Default webhook per-attempt timeout.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Default webhook retries.
pub const DEFAULT_WEBHOOK_RETRIES: u32 = 3;

struct Problems(Vec<PlanProblem>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, problem: impl Into<String>) {
        self.0.push(PlanProblem {
            field: field.into(),
            problem: problem.into(),
        });
    }

    fn positive(&mut self, field: &str, d: HumanDuration) -> u64 {
        if d.0.is_zero() {
            self.add(field, "must be longer than 0");
        }
        d.0.as_millis().min(u128::from(u64::MAX)) as u64
    }
}

impl RolloutConfig {
    /// Checks the section. `known_routes`, when given, are the route names of the config: a
    /// per-route gate naming any other route is an error (it would never be evaluated).
    pub fn validate(&self, known_routes: Option<&[&str]>) -> Result<Plan, PlanErrors> {
        let mut p = Problems(Vec::new());
        let steps_bp = check_steps(&self.steps, &mut p);
        let min_hold_ms = self.min_hold.0.as_millis().min(u128::from(u64::MAX)) as u64;
        let interval_ms = p.positive("rollout.interval", self.interval);
        let window_ms = p.positive("rollout.window", self.window);
        let inconclusive_timeout_ms =
            p.positive("rollout.inconclusive_timeout", self.inconclusive_timeout);
        if self.min_requests == 0 {
            p.add(
                "rollout.min_requests",
                "must be at least 1 (a verdict on no traffic means nothing)",
            );
        }
        if self.failure_limit == 0 {
            p.add("rollout.failure_limit", "must be at least 1");
        }
        let action = match self.action {
            ActionKind::Rollback => FailureAction::Rollback {
                evacuate_new: self.evacuate_new,
            },
            ActionKind::Pause => {
                if self.evacuate_new {
                    p.add(
                        "rollout.evacuate_new",
                        "only applies with action = \"rollback\"",
                    );
                }
                FailureAction::Pause
            }
        };
        let gates = check_gates(&self.gates, known_routes, &mut p);
        let source = check_source(&self.source, &mut p);
        let webhook = self.webhook.as_ref().and_then(|w| check_webhook(w, &mut p));
        if !p.0.is_empty() {
            return Err(PlanErrors(p.0));
        }
        Ok(Plan {
            steps_bp,
            min_hold_ms,
            interval_ms,
            window_ms,
            min_requests: self.min_requests,
            failure_limit: self.failure_limit,
            action,
            mode: self.mode,
            inconclusive_timeout_ms,
            gates,
            source,
            webhook,
        })
    }
}

fn check_steps(steps: &[Share], p: &mut Problems) -> Vec<u16> {
    if steps.is_empty() {
        p.add(
            "rollout.steps",
            "needs at least one step (e.g. [1, 5, 25, 50, 100])",
        );
    }
    let mut out = Vec::with_capacity(steps.len());
    let mut previous: Option<u16> = None;
    for (i, s) in steps.iter().enumerate() {
        let field = format!("rollout.steps[{i}]");
        match s.0 {
            Err(e) => p.add(field, e.to_string()),
            Ok(0) => p.add(field, "a step must put some share on new (above 0%)"),
            Ok(bp) => {
                if let Some(prev) = previous {
                    if bp <= prev {
                        p.add(
                            field,
                            format!(
                                "{} is not above the previous step {}: steps must strictly increase",
                                percent(bp),
                                percent(prev)
                            ),
                        );
                    }
                }
                previous = Some(bp);
                out.push(bp);
            }
        }
    }
    out
}

/// `2500` -> `"25%"`, `1` -> `"0.01%"`.
pub fn percent(bp: u16) -> String {
    if bp.is_multiple_of(100) {
        format!("{}%", bp / 100)
    } else {
        let text = format!("{}.{:02}", bp / 100, bp % 100);
        format!("{}%", text.trim_end_matches('0'))
    }
}

fn check_number(p: &mut Problems, field: &str, v: Option<f64>, what: &str, min_exclusive: bool) {
    if let Some(v) = v {
        let bad = !v.is_finite() || v < 0.0 || (min_exclusive && v == 0.0);
        if bad {
            p.add(field, format!("{v} is not {what}"));
        }
    }
}

fn check_limits(
    p: &mut Problems,
    base: &str,
    max_vs_old: Option<f64>,
    max_delta: Option<f64>,
    max: Option<f64>,
) {
    check_number(
        p,
        &format!("{base}.max_vs_old"),
        max_vs_old,
        "a factor above 0 (e.g. 1.5)",
        true,
    );
    check_number(
        p,
        &format!("{base}.max_delta"),
        max_delta,
        "a tolerance of 0 or more",
        false,
    );
    check_number(
        p,
        &format!("{base}.max"),
        max,
        "a ceiling of 0 or more",
        false,
    );
}

fn check_gates(g: &GatesConfig, known: Option<&[&str]>, p: &mut Problems) -> Vec<GateSpec> {
    let mut out = Vec::new();
    let by_measure = [
        (Measure::ErrorRatio, &g.error_ratio),
        (Measure::NotFoundRatio, &g.not_found_ratio),
        (Measure::P95, &g.p95),
        (Measure::P99, &g.p99),
    ];
    for (measure, gate) in by_measure {
        let Some(gate) = gate else { continue };
        let base = format!("rollout.gates.{}", measure.as_str());
        if gate.max_vs_old.is_none() && gate.max_delta.is_none() && gate.max.is_none() {
            p.add(&base, "needs at least one of max_vs_old, max_delta, max");
        }
        check_limits(p, &base, gate.max_vs_old, gate.max_delta, gate.max);
        let limits = Limits {
            max_vs_old: gate.max_vs_old,
            max_delta: gate.max_delta,
            max: gate.max,
        };
        let mut routes = BTreeMap::new();
        for (name, r) in &gate.routes {
            let rbase = format!("{base}.routes.{name}");
            if name.is_empty() {
                p.add(&rbase, "route name is empty");
            } else if let Some(known) = known {
                if !known.contains(&name.as_str()) {
                    p.add(
                        &rbase,
                        format!(
                            "no route is named \"{name}\" (routes: {})",
                            known.join(", ")
                        ),
                    );
                }
            }
            check_limits(p, &rbase, r.max_vs_old, r.max_delta, r.max);
            routes.insert(
                name.clone(),
                Limits {
                    max_vs_old: r.max_vs_old.or(gate.max_vs_old),
                    max_delta: r.max_delta.or(gate.max_delta),
                    max: r.max.or(gate.max),
                },
            );
        }
        out.push(GateSpec {
            measure,
            limits,
            routes,
        });
    }
    if out.is_empty() {
        p.add(
            "rollout.gates",
            "needs at least one gate (error_ratio, not_found_ratio, p95, p99)",
        );
    }
    out
}

fn check_http_url(p: &mut Problems, field: &str, url: &str) -> Option<http::Uri> {
    match url.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http") | Some("https")) && u.host().is_some() => {
            Some(u)
        }
        Ok(_) => {
            p.add(
                field,
                format!("`{url}` is not an absolute http:// or https:// URL"),
            );
            None
        }
        Err(e) => {
            p.add(field, format!("`{url}` is not a URL: {e}"));
            None
        }
    }
}

fn check_source(s: &SourceConfig, p: &mut Problems) -> Source {
    if s.kind == SourceKind::Local {
        for (name, set) in [
            ("url", s.url.is_some()),
            ("timeout", s.timeout.is_some()),
            ("queries", s.queries.is_some()),
        ] {
            if set {
                p.add(
                    format!("rollout.source.{name}"),
                    "only applies with kind = \"prometheus\"",
                );
            }
        }
        return Source::Local;
    }
    let url = match &s.url {
        Some(url) => {
            check_http_url(p, "rollout.source.url", url);
            url.trim_end_matches('/').to_string()
        }
        None => {
            p.add(
                "rollout.source.url",
                "is required with kind = \"prometheus\" (e.g. \"http://127.0.0.1:9090\")",
            );
            String::new()
        }
    };
    let timeout = s.timeout.map_or(DEFAULT_PROMETHEUS_TIMEOUT, |t| t.0);
    if timeout.is_zero() {
        p.add("rollout.source.timeout", "must be longer than 0");
    }
    let queries = s.queries.clone().unwrap_or_default();
    for (name, q) in [
        ("requests", &queries.requests),
        ("errors", &queries.errors),
        ("not_found", &queries.not_found),
        ("latency_buckets", &queries.latency_buckets),
    ] {
        if q.as_deref().is_some_and(|q| q.trim().is_empty()) {
            p.add(
                format!("rollout.source.queries.{name}"),
                "is empty (remove it to use the default query)",
            );
        }
    }
    Source::Prometheus {
        url,
        timeout_ms: timeout.as_millis().min(u128::from(u64::MAX)) as u64,
        queries,
    }
}

fn check_webhook(w: &WebhookConfig, p: &mut Problems) -> Option<Webhook> {
    let url = check_http_url(p, "rollout.webhook.url", &w.url);
    let timeout = w.timeout.map_or(DEFAULT_WEBHOOK_TIMEOUT, |t| t.0);
    if timeout.is_zero() {
        p.add("rollout.webhook.timeout", "must be longer than 0");
    }
    Some(Webhook {
        url: url?,
        timeout,
        retries: w.retries.unwrap_or(DEFAULT_WEBHOOK_RETRIES),
    })
}

impl Plan {
    /// A stable 64-bit fingerprint of everything that decides how the rollout is judged and moved
    /// (steps, timings, gates, action, mode, source), as 16 hex digits. The webhook is left out:
    /// changing where news goes does not invalidate progress. SipHash-1-3 with fixed keys over the
    /// canonical JSON of the plan (routes in a `BTreeMap`, so the order is fixed).
    pub fn fingerprint(&self) -> String {
        use std::hash::Hasher;
        let json = serde_json::to_vec(self).expect("a plan serializes (plain data)");
        let mut h = siphasher::sip::SipHasher13::new_with_keys(0x0072_6f6c_6c6f_7574, 0x706c_616e);
        h.write(&json);
        format!("{:016x}", h.finish())
    }

    /// Share of step `i` in basis points.
    pub fn step_bp(&self, i: usize) -> Option<u16> {
        self.steps_bp.get(i).copied()
    }
}

#[cfg(test)]
mod tests;
