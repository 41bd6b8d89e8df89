//! What `GET /admin/rollout` answers and `cutover rollout status` prints.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::rollout::engine::{Engine, RolloutState};
use crate::rollout::gate::Verdict;
use crate::rollout::plan::{percent, Mode};
use crate::rollout::webhook::WebhookCounts;
use crate::state::Snapshot;

/// The rollout as the operator sees it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RolloutView {
    /// Whether the config has a `[rollout]` section.
    pub configured: bool,
    /// `enforce` or `advise`.
    #[serde(default)]
    pub mode: String,
    /// The plan's steps, percent on new.
    #[serde(default)]
    pub steps: Vec<f64>,
    /// Evaluation interval, seconds.
    #[serde(default)]
    pub interval_seconds: f64,
    /// Consecutive failed evaluations that act.
    #[serde(default)]
    pub failure_limit: u32,
    /// The plan's fingerprint.
    #[serde(default)]
    pub plan_fingerprint: String,
    /// The engine's state (phase, step, since, verdicts, next evaluation, reason).
    #[serde(default)]
    pub state: Option<RolloutState>,
    /// The share the current step puts on new, percent.
    #[serde(default)]
    pub step_share: f64,
    /// The share in force now, percent.
    #[serde(default)]
    pub share_now: f64,
    /// Why a saved rollout was dropped (plan changed, unreadable), until the next start.
    #[serde(default)]
    pub dropped: Option<String>,
    /// The last failure applying a change or saving the state.
    #[serde(default)]
    pub error: Option<String>,
    /// Webhook deliveries, when a webhook is configured.
    #[serde(default)]
    pub webhook: Option<WebhookView>,
    /// With `[fleet]`: which replica drives the rollout (the state shown is the fleet's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetDriver>,
}

/// Who drives a fleet's rollout.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FleetDriver {
    /// This replica's id.
    pub replica: String,
    /// The fleet's leader, which drives the rollout, as this replica knows it.
    pub leader: Option<String>,
    /// This replica drives it now.
    pub driving: bool,
}

/// Webhook counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WebhookView {
    /// Delivered.
    pub sent: u64,
    /// Given up after retries.
    pub failed: u64,
    /// Retries.
    pub retries: u64,
    /// Dropped (queue full).
    pub dropped: u64,
}

/// Answer to a `POST /admin/rollout/{command}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandAnswer {
    /// The command carried out.
    pub command: String,
    /// What happened, one sentence per event.
    pub messages: Vec<String>,
    /// The rollout after it.
    pub rollout: RolloutView,
}

pub(super) fn build(
    engine: Option<&Engine>,
    snap: &Snapshot,
    dropped: Option<String>,
    error: Option<String>,
    webhook: Option<WebhookCounts>,
) -> RolloutView {
    let share_now = f64::from(snap.routing.split.share_bp) / 100.0;
    let Some(engine) = engine else {
        return RolloutView {
            share_now,
            dropped,
            error,
            ..RolloutView::default()
        };
    };
    let plan = engine.plan();
    RolloutView {
        configured: true,
        mode: match plan.mode {
            Mode::Advise => "advise",
            Mode::Enforce => "enforce",
        }
        .into(),
        steps: plan
            .steps_bp
            .iter()
            .map(|b| f64::from(*b) / 100.0)
            .collect(),
        interval_seconds: plan.interval_ms as f64 / 1000.0,
        failure_limit: plan.failure_limit,
        plan_fingerprint: plan.fingerprint(),
        state: Some(engine.state().clone()),
        step_share: f64::from(engine.step_share_bp()) / 100.0,
        share_now,
        dropped,
        error,
        webhook: webhook.map(|w| WebhookView {
            sent: w.sent,
            failed: w.failed,
            retries: w.retries,
            dropped: w.dropped,
        }),
        fleet: None,
    }
}

fn value(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.4}"))
}

fn verdict_line(f: &mut fmt::Formatter<'_>, v: &Verdict) -> fmt::Result {
    writeln!(
        f,
        "  {:<24} {:<12} new {} vs old {} (limit {}; requests new {} old {})",
        v.gate,
        v.result.as_str(),
        value(v.new),
        value(v.old),
        value(v.limit),
        v.new_requests,
        v.old_requests
    )
}

fn unix_ms_text(ms: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if ms >= now {
        format!("in {:.1}s", (ms - now) as f64 / 1000.0)
    } else {
        format!("{:.1}s ago", (now - ms) as f64 / 1000.0)
    }
}

impl fmt::Display for RolloutView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.configured {
            writeln!(f, "rollout: not configured (no [rollout] section)")?;
        }
        if let Some(s) = &self.state {
            let steps: Vec<String> = self.steps.iter().map(|p| format!("{p}%")).collect();
            writeln!(
                f,
                "rollout: {} ({} mode), step {}/{} ({}), share on new now {:.2}%",
                s.phase.as_str(),
                self.mode,
                s.step + 1,
                self.steps.len(),
                percent((self.step_share * 100.0).round() as u16),
                self.share_now
            )?;
            writeln!(
                f,
                "plan: {} every {}s",
                steps.join(" -> "),
                self.interval_seconds
            )?;
            if s.step_since_ms > 0 {
                writeln!(f, "step since: {}", unix_ms_text(s.step_since_ms))?;
            }
            match s.next_evaluation_ms {
                Some(t) => writeln!(f, "next evaluation: {}", unix_ms_text(t))?,
                None => writeln!(f, "next evaluation: none (not evaluating)")?,
            }
            writeln!(
                f,
                "failed evaluations in a row: {}/{}",
                s.consecutive_failures, self.failure_limit
            )?;
            if let Some(r) = &s.reason {
                writeln!(f, "reason: {r}")?;
            }
            if let Some(i) = &s.last_inconclusive {
                writeln!(f, "source not answering: {i}")?;
            }
            if !s.last_verdicts.is_empty() {
                writeln!(f, "last verdicts:")?;
                for v in &s.last_verdicts {
                    verdict_line(f, v)?;
                }
            }
        }
        if let Some(fl) = &self.fleet {
            let who = match (&fl.leader, fl.driving) {
                (_, true) => format!("this replica ({})", fl.replica),
                (Some(l), false) => format!("{l}; this replica ({}) follows it", fl.replica),
                (None, false) => format!(
                    "no replica right now (leader election in progress); this is {}",
                    fl.replica
                ),
            };
            writeln!(f, "driven by: {who}")?;
        }
        if let Some(d) = &self.dropped {
            writeln!(f, "note: {d}")?;
        }
        if let Some(e) = &self.error {
            writeln!(f, "error: {e}")?;
        }
        if let Some(w) = &self.webhook {
            writeln!(
                f,
                "webhook: {} sent, {} failed, {} retries, {} dropped",
                w.sent, w.failed, w.retries, w.dropped
            )?;
        }
        Ok(())
    }
}
