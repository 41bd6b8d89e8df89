//! The `[rollout]` section as written: serde structs, checked into a [`super::Plan`] by
//! `RolloutConfig::validate`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::values::{HumanDuration, Share};

/// The `[rollout]` section as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    /// Shares on new, in percent, strictly increasing (`[1, 5, 25, 50, 100]`).
    pub steps: Vec<Share>,
    /// Minimum time at each step before it may advance.
    pub min_hold: HumanDuration,
    /// Time between evaluations.
    pub interval: HumanDuration,
    /// Window each evaluation looks back over.
    pub window: HumanDuration,
    /// Requests each side needs in the window before a gate gives a verdict.
    pub min_requests: u64,
    /// Consecutive failed evaluations that trigger the action.
    pub failure_limit: u32,
    /// What a failed rollout does: `rollback` (share to 0) or `pause`.
    #[serde(default)]
    pub action: ActionKind,
    /// With `action = "rollback"`: also evacuate the shoppers pinned to new.
    #[serde(default)]
    pub evacuate_new: bool,
    /// `enforce` acts; `advise` only reports what it would do.
    #[serde(default)]
    pub mode: Mode,
    /// How long the source may fail to answer before the rollout pauses.
    pub inconclusive_timeout: HumanDuration,
    /// Gates comparing new with old.
    #[serde(default)]
    pub gates: GatesConfig,
    /// Where the figures come from.
    #[serde(default)]
    pub source: SourceConfig,
    /// Optional chat-style notification target.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
}

/// The action taken after `failure_limit` consecutive failed evaluations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Share to 0 (optionally evacuating pins on new).
    #[default]
    Rollback,
    /// Stop at the current step until an operator resumes.
    Pause,
}

/// Whether the engine acts or only advises.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Changes the share and rolls back.
    #[default]
    Enforce,
    /// Evaluates and reports what it would do; changes nothing (Argo Rollouts' dry run).
    Advise,
}

/// The gates, each optional; at least one must be set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatesConfig {
    /// 5xx (and failures not visible in the status) per request.
    pub error_ratio: Option<GateConfig>,
    /// 404 per request: a migration's typical failure.
    pub not_found_ratio: Option<GateConfig>,
    /// 95th percentile of the request duration, seconds.
    pub p95: Option<GateConfig>,
    /// 99th percentile of the request duration, seconds.
    pub p99: Option<GateConfig>,
}

/// Limits of one gate (ratios for ratio gates, seconds for latency gates).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// New may be at most this multiple of old.
    pub max_vs_old: Option<f64>,
    /// ...or at most this much above old, whichever is larger: a perfect old store does not fail new
    /// on one error.
    pub max_delta: Option<f64>,
    /// Absolute ceiling for new, whatever old does.
    pub max: Option<f64>,
    /// Tighter or looser limits for named routes (unset fields inherit the gate's).
    #[serde(default)]
    pub routes: BTreeMap<String, RouteLimits>,
}

/// Per-route limits; each unset field inherits the gate's value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteLimits {
    /// See [`GateConfig::max_vs_old`].
    pub max_vs_old: Option<f64>,
    /// See [`GateConfig::max_delta`].
    pub max_delta: Option<f64>,
    /// See [`GateConfig::max`].
    pub max: Option<f64>,
}

/// Where figures come from (`[rollout.source]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `local` (default) or `prometheus`.
    #[serde(default)]
    pub kind: SourceKind,
    /// Prometheus base URL, e.g. `http://127.0.0.1:9090` (prometheus only).
    pub url: Option<String>,
    /// Per-query timeout (prometheus only, default 5s).
    pub timeout: Option<HumanDuration>,
    /// Overrides of the default queries (prometheus only).
    pub queries: Option<QueryOverrides>,
}

/// The kind of source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// This process's own counters (one instance).
    #[default]
    Local,
    /// A Prometheus server's HTTP API (fleet-wide figures).
    Prometheus,
}

/// PromQL overrides. `$window` becomes the window (`300s`), `$storefronts` a regex matching the
/// old and new storefront names. Results must keep the `storefront` label (and `route` for
/// per-route gates; `le` for latency).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueryOverrides {
    /// Requests in the window.
    pub requests: Option<String>,
    /// Errors in the window.
    pub errors: Option<String>,
    /// 404 answers in the window.
    pub not_found: Option<String>,
    /// Latency histogram bucket increases in the window.
    pub latency_buckets: Option<String>,
}

/// Notification target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL receiving a JSON POST.
    pub url: String,
    /// Per-attempt timeout (default 5s).
    pub timeout: Option<HumanDuration>,
    /// Retries after a failed attempt (default 3).
    pub retries: Option<u32>,
}
