//! Ramp on evidence: the automatic rollout of the share on new, judged new-vs-old, with automatic
//! rollback.
//!
//! - [`plan`]: the `[rollout]` section, validation with field paths, the plan fingerprint.
//! - [`measure`]: window figures per side and the [`measure::LocalSource`] over this process's
//!   counters; histogram quantiles.
//! - [`prometheus`]: the same figures from a Prometheus server's HTTP API (fleet-wide).
//! - [`gate`]: new judged against old (`max_vs_old`, `max_delta`, ceiling, minimum requests).
//! - [`engine`]: the state machine; pure, clock injected, answers with actions the caller applies.
//! - [`webhook`]: chat-style notifications off the rollout's path (bounded, drops and counts).
//! - [`metrics`]: the rollout's metric values for the caller to export.
//!
//! The engine never changes the share itself: the caller applies [`engine::Action::SetShare`]
//! through the same operator-state path as `cutover shift`.
//!
//! Layer: clients. May import its own layer and domain, policy, wire; never edge, control, server,
//! request, config, snapshot, observe.

pub mod engine;
pub mod gate;
mod http_client;
pub mod measure;
pub mod metrics;
pub mod plan;
pub mod prometheus;
pub mod webhook;

#[cfg(test)]
mod tests;
