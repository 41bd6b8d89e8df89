//! The rollout in a fleet: exactly one replica drives it, and its progress lives in the fleet's
//! document (`control::fleet::rollout`), not in a local file.
//!
//! - The replica that holds the fleet's leadership evaluates; every evaluation's state (step,
//!   hold start, verdicts, failures) and the share it sets go to etcd in one compare-and-swap
//!   write, refused unless this replica still leads at that moment. Losing the leadership
//!   cancels an evaluation in flight and stops the driving at once.
//! - Every replica keeps its engine a copy of the document's rollout (rebuilt whenever the
//!   document's value changes), so followers report the leader's rollout and a new leader
//!   continues the same step with the same hold start instead of starting the plan again.
//! - Followers keep sampling their own counters, so a replica that takes over has a window of
//!   figures at once.
//! - An operator command on any replica runs against the document's state and is written with
//!   the same check (retried when an evaluation wrote in between).

use std::sync::Arc;

use serde_json::Value;

use super::{now_ms, sample, Command, CommandAnswer, Driver, DriverError};
use crate::control::fleet::rollout::{OverrideEdit, RolloutWriteError, SharedRollout};
use crate::control::fleet::FleetRuntime;
use crate::rollout::engine::{Action, Engine, RolloutState};

/// Times a command is re-run on a fresh copy when another write landed in between.
const COMMAND_ATTEMPTS: usize = 3;
/// How long a command that lost a race waits for the winning write to reach this replica.
const RACE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The driver's fleet side.
pub(super) struct FleetSide {
    pub(super) runtime: Arc<FleetRuntime>,
    /// The document's rollout value the engine was last built from or wrote (`None`: none).
    synced: Option<Value>,
    /// The engine must be rebuilt from the document on the next tick (an evaluation was cut
    /// short, or a write failed after the engine moved).
    stale: bool,
    /// Whether this replica drove the rollout at the last tick.
    leading: bool,
    /// When this replica last sampled its counters while following.
    sampled_ms: u64,
}

impl FleetSide {
    pub(super) fn new(runtime: Arc<FleetRuntime>) -> Self {
        FleetSide {
            runtime,
            synced: None,
            stale: true,
            leading: false,
            sampled_ms: 0,
        }
    }

    /// Whether this replica drives the rollout (for the view).
    pub(super) fn leading(&self) -> bool {
        self.leading
    }
}

/// Resolves when the leadership changes; never without a fleet (or once the election ended).
pub(super) async fn leadership_changed(rx: &mut Option<tokio::sync::watch::Receiver<bool>>) {
    if let Some(r) = rx.as_mut() {
        if r.changed().await.is_ok() {
            return;
        }
    }
    *rx = None;
    std::future::pending::<()>().await;
}

impl Driver {
    /// The state a new engine starts from in a fleet: the document's.
    pub(super) fn saved_in_fleet(&mut self) -> Option<RolloutState> {
        let f = self.fleet.as_mut()?;
        let value = f.runtime.rollout_value();
        f.synced.clone_from(&value);
        f.stale = false;
        match serde_json::from_value::<SharedRollout>(value?) {
            Ok(shared) => Some(shared.state),
            Err(e) => {
                let why = format!(
                    "the fleet's rollout state is unreadable ({e}): the rollout starts idle here"
                );
                tracing::warn!("{why}");
                self.dropped = Some(why);
                None
            }
        }
    }

    /// Rebuilds the engine from the document when its rollout changed since (or when forced).
    fn sync_from_fleet(&mut self) {
        let Some(f) = self.fleet.as_mut() else { return };
        let value = f.runtime.rollout_value();
        if !f.stale && value == f.synced {
            return;
        }
        f.stale = false;
        f.synced.clone_from(&value);
        let Some(run) = self.run.as_mut() else { return };
        let plan = run.engine.plan().clone();
        let (engine, dropped) = match value.map(serde_json::from_value::<SharedRollout>) {
            None => (Engine::new(plan), None),
            Some(Err(e)) => (
                Engine::new(plan),
                Some(format!(
                    "the fleet's rollout state is unreadable ({e}): the rollout is idle here"
                )),
            ),
            Some(Ok(shared)) => {
                let r = Engine::restore(plan, shared.state);
                (r.engine, r.dropped)
            }
        };
        if dropped.is_some() && dropped != self.dropped {
            tracing::warn!("{}", dropped.as_deref().unwrap_or_default());
        }
        if dropped.is_some() {
            self.dropped = dropped;
        }
        run.engine = engine;
        self.metrics_fresh = true;
    }

    /// One poll in a fleet: follow the document; drive when leading.
    pub(super) async fn fleet_tick(&mut self) {
        self.sync_from_fleet();
        let Some(f) = self.fleet.as_mut() else { return };
        let leading = f.runtime.is_leader();
        let changed = std::mem::replace(&mut f.leading, leading) != leading;
        if let (true, Some(run)) = (changed, self.run.as_ref()) {
            let step = run.engine.state().step + 1;
            if leading {
                tracing::info!(
                    step,
                    "this replica leads the fleet: it drives the rollout from the fleet's state"
                );
            } else {
                tracing::warn!(step, "this replica no longer leads the fleet: it stopped driving the rollout and follows the leader's");
            }
        }
        if !leading {
            self.sample_while_following();
            return;
        }
        let runtime = Arc::clone(&f.runtime);
        let mut leadership = runtime.leadership();
        let cut_short = tokio::select! {
            () = self.fleet_evaluate() => false,
            _ = leadership.wait_for(|l| !*l) => true,
        };
        if cut_short {
            // The engine may have moved without the write: rebuild it from the document.
            if let Some(f) = self.fleet.as_mut() {
                f.stale = true;
            }
            if !runtime.is_leader() {
                tracing::warn!(
                    "leadership lost during an evaluation: stopped driving; nothing more written"
                );
            }
        }
    }

    fn sample_while_following(&mut self) {
        let now = now_ms();
        let (Some(f), Some(run)) = (self.fleet.as_mut(), self.run.as_mut()) else {
            return;
        };
        let Some(local) = run.local.as_mut() else {
            return;
        };
        if now.saturating_sub(f.sampled_ms) >= run.engine.plan().interval_ms {
            f.sampled_ms = now;
            local.record(sample(&self.reloader.state().load()));
        }
    }

    async fn fleet_evaluate(&mut self) {
        let Some(actions) = self.due_evaluation().await else {
            return;
        };
        if let Err(e) = self.commit(actions, true).await {
            tracing::warn!(error = %e, "rollout evaluation not recorded; the next one decides again");
        }
    }

    /// A command in a fleet: run against the document's state, written with the same check.
    pub(super) async fn fleet_command(
        &mut self,
        command: Command,
    ) -> Result<CommandAnswer, DriverError> {
        let mut last = RolloutWriteError::Moved;
        for _ in 0..COMMAND_ATTEMPTS {
            let seen = self
                .fleet
                .as_ref()
                .map_or(0, |f| f.runtime.latest_revision());
            self.sync_from_fleet();
            let actions = self.engine_command(command)?;
            match self.commit(actions, false).await {
                Ok(messages) => return Ok(self.answer(command, messages)),
                Err(e) if e.lost_race() => {
                    // Decide again on what the other writer wrote, once it has arrived here.
                    if let Some(f) = &self.fleet {
                        f.runtime.wait_newer_than(seen, RACE_WAIT).await;
                    }
                    last = e;
                }
                Err(e) => return Err(DriverError::Fleet(e)),
            }
        }
        Err(DriverError::Fleet(last))
    }

    /// Writes the engine's state with the actions' share changes; on success notifies and
    /// returns the events' messages. On failure the engine is rebuilt from the document.
    async fn commit(
        &mut self,
        actions: Vec<Action>,
        leader_only: bool,
    ) -> Result<Vec<String>, RolloutWriteError> {
        let (Some(f), Some(run)) = (self.fleet.as_ref(), self.run.as_ref()) else {
            return Ok(Vec::new());
        };
        let mut edit = OverrideEdit::default();
        for a in &actions {
            match a {
                Action::SetShare(bp) => edit.share_bp = Some(*bp),
                Action::Rollback { evacuate_new } => {
                    edit.share_bp = Some(0);
                    if *evacuate_new {
                        edit.evacuate = Some((run.new.clone(), now_ms() / 1000));
                    }
                }
                Action::Pause(_) | Action::Notify(_) => {}
            }
        }
        let runtime = Arc::clone(&f.runtime);
        let written = runtime
            .write_rollout(f.synced.as_ref(), run.engine.state(), edit, leader_only)
            .await;
        let Some(f) = self.fleet.as_mut() else {
            return Ok(Vec::new());
        };
        match written {
            Ok(value) => {
                f.synced = Some(value);
                self.apply_error = None;
                // Only the events remain: the share went with the state.
                let events = actions
                    .into_iter()
                    .filter(|a| matches!(a, Action::Pause(_) | Action::Notify(_)))
                    .collect();
                Ok(self.apply(events).await)
            }
            Err(e) => {
                // The engine moved without the write: back to the document's state now, so
                // what is shown and what the next decision starts from is the fleet's.
                f.stale = true;
                self.sync_from_fleet();
                let shown =
                    leader_only && !e.lost_race() && !matches!(e, RolloutWriteError::NotLeader);
                if shown {
                    // A command's failure goes back to the operator who sent it.
                    self.apply_error = Some(format!("evaluation not recorded: {e}"));
                }
                Err(e)
            }
        }
    }
}
