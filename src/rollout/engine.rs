//! The rollout state machine: steps the share on new, judges each step by its gates, and rolls back
//! or pauses on evidence.
//!
//! The engine is pure: it is given the time (unix milliseconds) and the figures, and answers with
//! [`Action`]s. It never applies anything itself, so the share only ever moves through the same
//! operator-state path as `cutover shift` (stickiness and monotonicity hold during a rollout), and
//! tests drive it with a fake clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::gate::{judge_all, GateResult, Verdict};
use super::measure::Reading;
use super::plan::{percent, FailureAction, Mode, Plan};

mod answer;
pub use answer::{Action, Event, EventKind};

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not started (or stopped in advise mode).
    Idle,
    /// Stepping the share, enforce mode.
    Running,
    /// Stopped at a step until an operator resumes.
    Paused,
    /// Share back to 0 after failed gates or an abort.
    RolledBack,
    /// Past the last step.
    Completed,
    /// Evaluating in advise mode: reports what it would do, changes nothing.
    Advising,
}

impl Phase {
    /// Every phase, in metric label order.
    pub const ALL: [Phase; 6] = [
        Phase::Idle,
        Phase::Running,
        Phase::Paused,
        Phase::RolledBack,
        Phase::Completed,
        Phase::Advising,
    ];

    /// Metric label value and status text.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Running => "running",
            Phase::Paused => "paused",
            Phase::RolledBack => "rolled_back",
            Phase::Completed => "completed",
            Phase::Advising => "advising",
        }
    }

    fn evaluating(self) -> bool {
        matches!(self, Phase::Running | Phase::Advising)
    }
}

/// The rollout's operator state: persisted (state file or fleet store) and restored on start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutState {
    /// [`Plan::fingerprint`] of the plan this state belongs to.
    pub plan_fingerprint: String,
    /// Where the rollout is.
    pub phase: Phase,
    /// Index of the current step in the plan's steps.
    pub step: usize,
    /// When the current step began (unix ms).
    pub step_since_ms: u64,
    /// Failed evaluations in a row.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Since when the source has failed to answer, if it does now.
    #[serde(default)]
    pub inconclusive_since_ms: Option<u64>,
    /// Evaluations the source could not answer, since the rollout started.
    #[serde(default)]
    pub inconclusive_evaluations: u64,
    /// The source's last error, while it persists.
    #[serde(default)]
    pub last_inconclusive: Option<String>,
    /// When the next evaluation is due (unix ms), while evaluating.
    #[serde(default)]
    pub next_evaluation_ms: Option<u64>,
    /// When the last evaluation ran.
    #[serde(default)]
    pub last_evaluation_ms: Option<u64>,
    /// The last evaluation's verdicts with the measured values of both sides.
    #[serde(default)]
    pub last_verdicts: Vec<Verdict>,
    /// Why the rollout paused, rolled back or completed.
    #[serde(default)]
    pub reason: Option<String>,
}

/// An operator command that does not apply in the current phase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {command} the rollout: it is {phase} ({hint})")]
pub struct CommandError {
    /// `start`, `pause`, `resume`, `promote`, `abort`.
    pub command: &'static str,
    /// The phase it is in.
    pub phase: &'static str,
    /// What would work instead.
    pub hint: &'static str,
}

/// An engine built from persisted state, with the reason if that state was dropped.
#[derive(Debug)]
pub struct Restored {
    /// The engine (idle when the state was dropped).
    pub engine: Engine,
    /// Why the persisted state was dropped (log it, show it in status), if it was.
    pub dropped: Option<String>,
}

/// The state machine for one plan.
#[derive(Debug)]
pub struct Engine {
    plan: Plan,
    fingerprint: String,
    state: RolloutState,
    verdicts_total: BTreeMap<(String, GateResult), u64>,
}

impl Engine {
    /// An idle rollout of `plan`.
    pub fn new(plan: Plan) -> Self {
        let fingerprint = plan.fingerprint();
        let state = RolloutState {
            plan_fingerprint: fingerprint.clone(),
            phase: Phase::Idle,
            step: 0,
            step_since_ms: 0,
            consecutive_failures: 0,
            inconclusive_since_ms: None,
            inconclusive_evaluations: 0,
            last_inconclusive: None,
            next_evaluation_ms: None,
            last_evaluation_ms: None,
            last_verdicts: Vec::new(),
            reason: None,
        };
        Engine {
            plan,
            fingerprint,
            state,
            verdicts_total: BTreeMap::new(),
        }
    }

    /// Resumes persisted state exactly where it was (same step, same hold start: never step one
    /// again, never a jump), or drops it with a message when it belongs to another plan.
    pub fn restore(plan: Plan, saved: RolloutState) -> Restored {
        let mut engine = Engine::new(plan);
        let where_ = describe(&saved);
        if saved.plan_fingerprint != engine.fingerprint {
            let dropped = format!(
                "rollout state dropped: the [rollout] plan changed since it was saved (plan {} -> {}); \
                 the rollout was {where_}; the share stays where it is until `cutover rollout start`",
                saved.plan_fingerprint, engine.fingerprint
            );
            return Restored {
                engine,
                dropped: Some(dropped),
            };
        }
        if saved.step >= engine.plan.steps_bp.len() {
            let dropped = format!(
                "rollout state dropped: it names step {} but the plan has {} steps",
                saved.step + 1,
                engine.plan.steps_bp.len()
            );
            return Restored {
                engine,
                dropped: Some(dropped),
            };
        }
        engine.state = saved;
        Restored {
            engine,
            dropped: None,
        }
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The state (persist it after every call that returned actions or changed it).
    pub fn state(&self) -> &RolloutState {
        &self.state
    }

    /// The share the current step puts on new (basis points); 0 when idle or rolled back.
    pub fn step_share_bp(&self) -> u16 {
        match self.state.phase {
            Phase::Idle | Phase::RolledBack => 0,
            _ => self.plan.step_bp(self.state.step).unwrap_or(0),
        }
    }

    /// Whether [`Engine::tick`] would evaluate at `now_ms` (fetch figures only then).
    pub fn due(&self, now_ms: u64) -> bool {
        self.state.phase.evaluating() && self.state.next_evaluation_ms.is_some_and(|t| now_ms >= t)
    }

    /// Cumulative verdict counts per (gate, result), for `cutover_rollout_verdicts_total`.
    pub fn verdicts_total(&self) -> &BTreeMap<(String, GateResult), u64> {
        &self.verdicts_total
    }

    fn advise(&self) -> bool {
        self.plan.mode == Mode::Advise
    }

    fn evaluating_phase(&self) -> Phase {
        if self.advise() {
            Phase::Advising
        } else {
            Phase::Running
        }
    }

    fn event(&self, kind: EventKind, message: String, verdicts: Vec<Verdict>) -> Action {
        Action::Notify(Event {
            kind,
            step: self.state.step + 1,
            steps: self.plan.steps_bp.len(),
            share_bp: self.step_share_bp(),
            advise: self.advise(),
            message,
            verdicts,
        })
    }

    fn step_text(&self) -> String {
        format!(
            "step {}/{} ({})",
            self.state.step + 1,
            self.plan.steps_bp.len(),
            percent(self.plan.step_bp(self.state.step).unwrap_or(0))
        )
    }

    fn reset_evaluation(&mut self, now_ms: u64) {
        self.state.consecutive_failures = 0;
        self.state.inconclusive_since_ms = None;
        self.state.last_inconclusive = None;
        self.state.next_evaluation_ms = Some(now_ms.saturating_add(self.plan.interval_ms));
    }

    fn refuse(&self, command: &'static str, hint: &'static str) -> CommandError {
        CommandError {
            command,
            phase: self.state.phase.as_str(),
            hint,
        }
    }

    /// Starts at step one (from idle, rolled back or completed).
    pub fn start(&mut self, now_ms: u64) -> Result<Vec<Action>, CommandError> {
        if !matches!(
            self.state.phase,
            Phase::Idle | Phase::RolledBack | Phase::Completed
        ) {
            return Err(self.refuse("start", "abort it first to start over"));
        }
        self.state.phase = self.evaluating_phase();
        self.state.step = 0;
        self.state.step_since_ms = now_ms;
        self.state.inconclusive_evaluations = 0;
        self.state.last_verdicts.clear();
        self.state.last_evaluation_ms = None;
        self.state.reason = None;
        self.reset_evaluation(now_ms);
        let mut out = Vec::new();
        if !self.advise() {
            out.push(Action::SetShare(self.plan.steps_bp[0]));
        }
        let what = if self.advise() { "advising" } else { "started" };
        out.push(self.event(
            EventKind::Started,
            format!("rollout {what} at {}", self.step_text()),
            Vec::new(),
        ));
        Ok(out)
    }

    /// Stops at the current step until resumed.
    pub fn pause(&mut self, _now_ms: u64) -> Result<Vec<Action>, CommandError> {
        if !self.state.phase.evaluating() {
            return Err(self.refuse("pause", "only a running or advising rollout pauses"));
        }
        let reason = format!("paused by an operator at {}", self.step_text());
        Ok(vec![self.enter_pause(
            reason,
            EventKind::Paused,
            Vec::new(),
        )])
    }

    fn enter_pause(&mut self, reason: String, kind: EventKind, verdicts: Vec<Verdict>) -> Action {
        self.state.phase = Phase::Paused;
        self.state.next_evaluation_ms = None;
        self.state.reason = Some(reason.clone());
        self.event(kind, reason, verdicts)
    }

    /// Continues a paused rollout at the same step (failure and source counts start over).
    pub fn resume(&mut self, now_ms: u64) -> Result<Vec<Action>, CommandError> {
        if self.state.phase != Phase::Paused {
            return Err(self.refuse("resume", "only a paused rollout resumes"));
        }
        self.state.phase = self.evaluating_phase();
        self.state.reason = None;
        self.reset_evaluation(now_ms);
        Ok(vec![self.event(
            EventKind::Resumed,
            format!("rollout resumed at {}", self.step_text()),
            Vec::new(),
        )])
    }

    /// Moves to the next step now, without waiting for gates or the hold (completes past the last).
    pub fn promote(&mut self, now_ms: u64) -> Result<Vec<Action>, CommandError> {
        if !matches!(
            self.state.phase,
            Phase::Running | Phase::Advising | Phase::Paused
        ) {
            return Err(self.refuse("promote", "start the rollout first"));
        }
        self.state.phase = self.evaluating_phase();
        self.state.reason = None;
        Ok(self.advance(now_ms, EventKind::Promoted, Vec::new()))
    }

    /// Stops the rollout: share to 0 in enforce mode (rolled back), idle in advise mode.
    pub fn abort(&mut self, _now_ms: u64) -> Result<Vec<Action>, CommandError> {
        if !matches!(
            self.state.phase,
            Phase::Running | Phase::Advising | Phase::Paused
        ) {
            return Err(self.refuse("abort", "nothing is in progress"));
        }
        let reason = format!("aborted by an operator at {}", self.step_text());
        self.state.next_evaluation_ms = None;
        self.state.reason = Some(reason.clone());
        if self.advise() {
            self.state.phase = Phase::Idle;
            return Ok(vec![self.event(EventKind::Aborted, reason, Vec::new())]);
        }
        self.state.phase = Phase::RolledBack;
        let evacuate_new = matches!(
            self.plan.action,
            FailureAction::Rollback { evacuate_new: true }
        );
        Ok(vec![
            Action::Rollback { evacuate_new },
            self.event(EventKind::Aborted, reason, Vec::new()),
        ])
    }

    fn advance(&mut self, now_ms: u64, kind: EventKind, verdicts: Vec<Verdict>) -> Vec<Action> {
        let advise = self.advise();
        let kind = if advise && kind == EventKind::Advanced {
            EventKind::WouldAdvance
        } else {
            kind
        };
        let mut out = Vec::new();
        if self.state.step + 1 >= self.plan.steps_bp.len() {
            let reason = if advise {
                format!("rollout would complete at {}", self.step_text())
            } else {
                format!("rollout completed at {}", self.step_text())
            };
            self.state.phase = Phase::Completed;
            self.state.next_evaluation_ms = None;
            self.state.reason = Some(reason.clone());
            let kind = if kind == EventKind::Promoted {
                kind
            } else if advise {
                EventKind::WouldAdvance
            } else {
                EventKind::Completed
            };
            out.push(self.event(kind, reason, verdicts));
            return out;
        }
        self.state.step += 1;
        self.state.step_since_ms = now_ms;
        self.reset_evaluation(now_ms);
        if !advise {
            out.push(Action::SetShare(self.plan.steps_bp[self.state.step]));
        }
        let verb = match (&kind, advise) {
            (EventKind::Promoted, _) => "promoted to",
            (_, true) => "would advance to",
            _ => "advanced to",
        };
        out.push(self.event(
            kind,
            format!("rollout {verb} {}", self.step_text()),
            verdicts,
        ));
        out
    }

    /// Evaluates when due: `reading` is the source's answer for the window ending now. Returns the
    /// actions to apply (none when not due or nothing changes).
    ///
    /// Any failed gate counts one failed evaluation; `failure_limit` in a row act. Every gate passing
    /// resets the count and advances once the step has been held `min_hold`. Otherwise (a gate
    /// `insufficient`) the step holds and the count is left as it is, so a quiet spell neither
    /// advances nor forgives. An inconclusive source holds too, and pauses the rollout once it has
    /// been silent for `inconclusive_timeout`.
    pub fn tick(&mut self, now_ms: u64, reading: &Reading) -> Vec<Action> {
        if !self.due(now_ms) {
            return Vec::new();
        }
        self.state.next_evaluation_ms = Some(now_ms.saturating_add(self.plan.interval_ms));
        self.state.last_evaluation_ms = Some(now_ms);
        match reading {
            Reading::Inconclusive(why) => self.inconclusive(now_ms, why),
            Reading::Figures(figures) => {
                self.state.inconclusive_since_ms = None;
                self.state.last_inconclusive = None;
                let verdicts = judge_all(&self.plan.gates, figures, self.plan.min_requests);
                for v in &verdicts {
                    *self
                        .verdicts_total
                        .entry((v.gate.clone(), v.result))
                        .or_insert(0) += 1;
                }
                self.state.last_verdicts = verdicts.clone();
                if verdicts.iter().any(|v| v.result == GateResult::Fail) {
                    self.failed(verdicts)
                } else if verdicts
                    .iter()
                    .any(|v| v.result == GateResult::Insufficient)
                {
                    Vec::new()
                } else {
                    self.state.consecutive_failures = 0;
                    let held = now_ms.saturating_sub(self.state.step_since_ms);
                    if held >= self.plan.min_hold_ms {
                        self.advance(now_ms, EventKind::Advanced, verdicts)
                    } else {
                        Vec::new()
                    }
                }
            }
        }
    }

    fn inconclusive(&mut self, now_ms: u64, why: &str) -> Vec<Action> {
        self.state.inconclusive_evaluations += 1;
        self.state.last_inconclusive = Some(why.to_string());
        let since = *self.state.inconclusive_since_ms.get_or_insert(now_ms);
        if now_ms.saturating_sub(since) < self.plan.inconclusive_timeout_ms {
            return Vec::new();
        }
        let reason = format!(
            "the source has not answered for {}s ({why}); held at {}",
            (now_ms - since) / 1000,
            self.step_text()
        );
        if self.advise() {
            self.state.inconclusive_since_ms = None;
            return vec![self.event(EventKind::WouldPause, reason, Vec::new())];
        }
        let notify = self.enter_pause(reason.clone(), EventKind::Paused, Vec::new());
        vec![Action::Pause(reason), notify]
    }

    fn failed(&mut self, verdicts: Vec<Verdict>) -> Vec<Action> {
        self.state.consecutive_failures += 1;
        if self.state.consecutive_failures < self.plan.failure_limit {
            return Vec::new();
        }
        let failing: Vec<String> = verdicts
            .iter()
            .filter(|v| v.result == GateResult::Fail)
            .map(|v| {
                format!(
                    "{} new {} vs old {} (limit {})",
                    v.gate,
                    fmt_value(v.new),
                    fmt_value(v.old),
                    fmt_value(v.limit)
                )
            })
            .collect();
        let why = format!(
            "{} failed evaluations in a row at {}: {}",
            self.state.consecutive_failures,
            self.step_text(),
            failing.join(", ")
        );
        if self.advise() {
            self.state.consecutive_failures = 0;
            let kind = match self.plan.action {
                FailureAction::Rollback { .. } => EventKind::WouldRollBack,
                FailureAction::Pause => EventKind::WouldPause,
            };
            return vec![self.event(kind, format!("would act: {why}"), verdicts)];
        }
        match self.plan.action {
            FailureAction::Rollback { evacuate_new } => {
                let reason = format!("rolled back: {why}");
                self.state.phase = Phase::RolledBack;
                self.state.next_evaluation_ms = None;
                self.state.reason = Some(reason.clone());
                vec![
                    Action::Rollback { evacuate_new },
                    self.event(EventKind::RolledBack, reason, verdicts),
                ]
            }
            FailureAction::Pause => {
                let reason = format!("paused: {why}");
                let notify = self.enter_pause(reason.clone(), EventKind::Paused, verdicts);
                vec![Action::Pause(reason), notify]
            }
        }
    }
}

fn fmt_value(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"))
}

/// Where a saved state was, by step number only: its shares belong to a plan that may be gone.
fn describe(state: &RolloutState) -> String {
    format!("{} at step {}", state.phase.as_str(), state.step + 1)
}
