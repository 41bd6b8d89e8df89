//! The rollout driver: runs the `[rollout]` engine against the live proxy.
//!
//! One task owns the engine (an actor: operator commands arrive on a channel, so commands and
//! evaluations are serialised without a lock held across an await). Every second it follows the
//! plan in force (a reload that changes the plan drops the state with a message), and when an
//! evaluation is due it samples the source, ticks the engine, applies the actions through
//! [`Reloader::change`] (the very path of `cutover shift`, so stickiness and monotonicity hold),
//! saves the state beside the state file, exports the metrics and notifies the webhook.
//!
//! With `[fleet]` (see `fleet.rs` here) only the fleet's leader evaluates, the state and the
//! step's share live in the fleet's document instead of the file, and every replica follows it.

pub mod api;
mod check;
// fleet: one replica drives, the progress lives in the fleet's document.
mod fleet;
pub mod persist;
mod view;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use crate::control::fleet::Slot;
use crate::metrics::{Metrics, RolloutMetrics, LATENCY_BUCKETS};
use crate::reload::{Change, Reloader};
use crate::rollout::engine::{Action, CommandError, Engine, Phase, RolloutState};
use crate::rollout::measure::{CounterSample, LocalSource, Reading};
use crate::rollout::plan::{Mode, Plan, Source};
use crate::rollout::prometheus::PrometheusSource;
use crate::rollout::webhook::Notifier;
use crate::state::Snapshot;
pub use check::{check_summary, effective_queries};
pub use view::{CommandAnswer, RolloutView};

/// How often the driver wakes up to follow the plan and check whether an evaluation is due.
pub const POLL: Duration = Duration::from_secs(1);
/// Webhook events queued before new ones are dropped (and counted).
const WEBHOOK_QUEUE: usize = 64;

/// An operator command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `start`.
    Start,
    /// `pause`.
    Pause,
    /// `resume`.
    Resume,
    /// `promote`.
    Promote,
    /// `abort`.
    Abort,
}

impl Command {
    /// The command's name (also its admin path segment).
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Start => "start",
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Promote => "promote",
            Command::Abort => "abort",
        }
    }
}

/// Why a command was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The config has no `[rollout]` section.
    #[error("the configuration has no [rollout] section: add one (docs/rollout.md) and reload")]
    NoPlan,
    /// The command does not apply now.
    #[error(transparent)]
    Refused(#[from] CommandError),
    /// The driver task is gone (process shutting down).
    #[error("the rollout driver is not running")]
    Gone,
    /// In a fleet: the command could not be written to the fleet's document.
    #[error("{0}")]
    Fleet(#[from] crate::control::fleet::rollout::RolloutWriteError),
}

type Reply = oneshot::Sender<Result<CommandAnswer, DriverError>>;

/// The handle admin handlers keep: sends commands, reads the last published view.
#[derive(Clone)]
pub struct Rollout {
    tx: mpsc::Sender<(Command, Reply)>,
    view: Arc<Mutex<Arc<RolloutView>>>,
}

impl Rollout {
    /// Starts the driver task for `reloader`'s snapshots. It idles while the config has no
    /// `[rollout]`; the rollout's series join `metrics`' registry when a plan first appears, so
    /// a config without the section exports exactly what it did before.
    pub fn spawn(reloader: Arc<Reloader>, metrics: Arc<Metrics>) -> Rollout {
        Self::spawn_in_fleet(reloader, metrics, Slot::default(), async {})
    }

    /// [`Rollout::spawn`] for a process that may be in a fleet: the driver waits for
    /// `fleet_started` (the `[fleet]` runtime is in `fleet`, or there is none), then with a
    /// fleet drives only while this replica leads and keeps its progress in the fleet's
    /// document; commands sent before then wait.
    pub fn spawn_in_fleet(
        reloader: Arc<Reloader>,
        metrics: Arc<Metrics>,
        fleet: Slot,
        fleet_started: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Rollout {
        let (tx, rx) = mpsc::channel(16);
        let view = Arc::new(Mutex::new(Arc::new(RolloutView::default())));
        let driver = Driver {
            reloader,
            registry: metrics,
            metrics: None,
            view: Arc::clone(&view),
            run: None,
            state_path: None,
            saved: None,
            dropped: None,
            apply_error: None,
            metrics_fresh: false,
            generation: 0,
            fleet: None,
        };
        tokio::spawn(async move {
            fleet_started.await;
            let mut driver = driver;
            driver.fleet = fleet.get().map(|rt| fleet::FleetSide::new(Arc::clone(rt)));
            driver.run(rx).await;
        });
        Rollout { tx, view }
    }

    /// Carries out an operator command and answers with the state after it.
    pub async fn command(&self, command: Command) -> Result<CommandAnswer, DriverError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((command, reply))
            .await
            .map_err(|_| DriverError::Gone)?;
        answer.await.map_err(|_| DriverError::Gone)?
    }

    /// The state as last published (after every evaluation and command).
    pub fn view(&self) -> Arc<RolloutView> {
        Arc::clone(&self.view.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// What runs one plan.
struct Run {
    engine: Engine,
    local: Option<LocalSource>,
    prometheus: Option<PrometheusSource>,
    notifier: Option<Notifier>,
    /// Name of the split's `to` storefront (evacuated on a rollback with `evacuate_new`).
    new: String,
}

struct Driver {
    reloader: Arc<Reloader>,
    /// The process's metrics, whose registry the rollout's series join.
    registry: Arc<Metrics>,
    /// The rollout's series, once a plan appeared.
    metrics: Option<RolloutMetrics>,
    view: Arc<Mutex<Arc<RolloutView>>>,
    run: Option<Run>,
    state_path: Option<PathBuf>,
    /// The state as last written, so unchanged state is not rewritten every second.
    saved: Option<RolloutState>,
    /// Why saved state was dropped, shown in status until the next start.
    dropped: Option<String>,
    /// The last failure applying an action or saving the state.
    apply_error: Option<String>,
    /// The engine was just built: its metric counts start again at 0.
    metrics_fresh: bool,
    /// The snapshot generation last followed.
    generation: u64,
    /// With `[fleet]`: the fleet runtime and what was last read from or written to it.
    fleet: Option<fleet::FleetSide>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(u128::from(u64::MAX)) as u64)
}

impl Driver {
    async fn run(mut self, mut rx: mpsc::Receiver<(Command, Reply)>) {
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // fleet: a change of leadership is acted on at once, not at the next poll.
        let mut leadership = self.fleet.as_ref().map(|f| f.runtime.leadership());
        loop {
            tokio::select! {
                () = fleet::leadership_changed(&mut leadership) => poll.reset_immediately(),
                msg = rx.recv() => {
                    let Some((command, reply)) = msg else { return };
                    self.follow_plan().await;
                    let answer = if self.fleet.is_some() {
                        self.fleet_command(command).await
                    } else {
                        self.command(command).await
                    };
                    // Saved and visible before the operator hears back: a status read or a
                    // restart right after the answer sees the command's effect.
                    self.persist().await;
                    self.publish();
                    let _ = reply.send(answer);
                }
                _ = poll.tick() => {
                    self.follow_plan().await;
                    if self.fleet.is_some() {
                        self.fleet_tick().await;
                    } else {
                        self.evaluate().await;
                    }
                    self.persist().await;
                    self.publish();
                }
            }
        }
    }

    /// Follows the plan in force: builds the run when a plan appears, restores (or drops) the
    /// state when the plan changes, stops when the section is removed.
    async fn follow_plan(&mut self) {
        let snap = self.reloader.state().load_full();
        self.state_path = Some(persist::rollout_state_path(&snap.state_file));
        let Some(plan) = snap.rollout.clone() else {
            if self.run.take().is_some() {
                tracing::warn!(
                    "[rollout] removed from the configuration: the rollout stops where it is"
                );
            }
            return;
        };
        let same = self.run.as_ref().is_some_and(|r| r.engine.plan() == &*plan);
        let new_generation =
            std::mem::replace(&mut self.generation, snap.generation) != snap.generation;
        if same {
            // A file edit drops the admin overrides (the file wins), the step's share with them:
            // the rollout, which outlives edits that leave its plan alone, puts it back. A manual
            // `cutover shift` is an override and is left alone.
            if new_generation && self.reloader.operator_state().is_none() {
                self.reconcile_share(&snap).await;
            }
            return;
        }
        let (saved, first) = match self.run.take() {
            Some(run) => (Some(run.engine.state().clone()), false),
            None => (self.read_saved().await, true),
        };
        let engine = match saved {
            Some(saved) => {
                let restored = Engine::restore((*plan).clone(), saved);
                if let Some(why) = &restored.dropped {
                    tracing::warn!("{why}");
                    self.dropped = Some(why.clone());
                }
                restored.engine
            }
            None => Engine::new((*plan).clone()),
        };
        if self.metrics.is_none() {
            match RolloutMetrics::register(self.registry.registry()) {
                Ok(m) => self.metrics = Some(m),
                Err(e) => tracing::error!(error = %e, "rollout metrics not exported"),
            }
        }
        let run = self.build_run(&snap, &plan, engine);
        let phase = run.engine.state().phase;
        tracing::info!(
            phase = phase.as_str(),
            step = run.engine.state().step + 1,
            "rollout plan in force"
        );
        self.run = Some(run);
        self.metrics_fresh = true;
        if first {
            self.reconcile_share(&snap).await;
        }
    }

    async fn read_saved(&mut self) -> Option<RolloutState> {
        if self.fleet.is_some() {
            return self.saved_in_fleet();
        }
        let path = self.state_path.clone()?;
        match tokio::task::spawn_blocking(move || persist::read(&path)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::warn!("{e}");
                self.dropped = Some(e.to_string());
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the rollout state failed");
                None
            }
        }
    }

    fn build_run(&mut self, snap: &Snapshot, plan: &Plan, engine: Engine) -> Run {
        let split = &snap.routing.split;
        let old = snap.storefronts[split.from].name.clone();
        let new = snap.storefronts[split.to].name.clone();
        let mut local = None;
        let mut prometheus = None;
        match &plan.source {
            Source::Local => {
                let mut l = LocalSource::new(LATENCY_BUCKETS, plan.window_ms, plan.interval_ms);
                l.record(sample(snap));
                local = Some(l);
            }
            Source::Prometheus { .. } => match PrometheusSource::from_plan(plan, &old, &new) {
                Ok(p) => prometheus = Some(p),
                Err(e) => {
                    tracing::error!(error = %e, "rollout: cannot build the Prometheus source");
                    self.apply_error = Some(e.to_string());
                }
            },
        }
        let notifier = plan
            .webhook
            .clone()
            .and_then(|w| match Notifier::spawn(w, WEBHOOK_QUEUE) {
                Ok((n, _task)) => Some(n),
                Err(e) => {
                    tracing::error!(error = %e, "rollout: webhook disabled");
                    None
                }
            });
        Run {
            engine,
            local,
            prometheus,
            notifier,
            new,
        }
    }

    /// The share must be the step's while a rollout holds one: the admin override that keeps it is
    /// dropped when the config file changes (while running, or while the process was down).
    async fn reconcile_share(&mut self, snap: &Snapshot) {
        // In a fleet the share and the step are one document: nothing to put back.
        let (Some(run), None) = (&self.run, &self.fleet) else {
            return;
        };
        let s = run.engine.state();
        let holds_share = matches!(s.phase, Phase::Running | Phase::Paused | Phase::Completed);
        if run.engine.plan().mode == Mode::Advise || !holds_share {
            return;
        }
        let want = run.engine.step_share_bp();
        if snap.routing.split.share_bp != want {
            tracing::warn!(
                share_bp = snap.routing.split.share_bp,
                step_bp = want,
                "rollout resumed: setting the share back to its step's"
            );
            self.apply(vec![Action::SetShare(want)]).await;
        }
    }

    async fn evaluate(&mut self) {
        if let Some(actions) = self.due_evaluation().await {
            self.apply(actions).await;
        }
    }

    /// When an evaluation is due: reads the source and returns what the engine decides on it
    /// (applied locally, or committed to the fleet's document by its leader).
    async fn due_evaluation(&mut self) -> Option<Vec<Action>> {
        let now = now_ms();
        if !self.run.as_ref().is_some_and(|r| r.engine.due(now)) {
            return None;
        }
        let reading = self.read_source().await;
        let now = now_ms().max(now);
        let run = self.run.as_mut()?;
        Some(run.engine.tick(now, &reading))
    }

    /// The source's figures for the window ending now.
    async fn read_source(&mut self) -> Reading {
        let Some(run) = self.run.as_mut() else {
            return Reading::Inconclusive("no plan".into());
        };
        if let Some(local) = run.local.as_mut() {
            let snap = self.reloader.state().load();
            local.record(sample(&snap));
            local.figures()
        } else if let Some(p) = &run.prometheus {
            p.read().await
        } else {
            Reading::Inconclusive(
                self.apply_error
                    .clone()
                    .unwrap_or_else(|| "no source".into()),
            )
        }
    }

    async fn command(&mut self, command: Command) -> Result<CommandAnswer, DriverError> {
        let actions = self.engine_command(command)?;
        let messages = self.apply(actions).await;
        Ok(self.answer(command, messages))
    }

    fn answer(&self, command: Command, messages: Vec<String>) -> CommandAnswer {
        CommandAnswer {
            command: command.as_str().to_string(),
            messages,
            rollout: self.build_view(),
        }
    }

    /// Runs `command` on the engine; returns the actions to apply.
    fn engine_command(&mut self, command: Command) -> Result<Vec<Action>, DriverError> {
        let now = now_ms();
        let run = self.run.as_mut().ok_or(DriverError::NoPlan)?;
        let actions = match command {
            Command::Start => run.engine.start(now),
            Command::Pause => run.engine.pause(now),
            Command::Resume => run.engine.resume(now),
            Command::Promote => run.engine.promote(now),
            Command::Abort => run.engine.abort(now),
        }?;
        if command == Command::Start {
            self.dropped = None;
        }
        if matches!(command, Command::Start | Command::Resume | Command::Promote) {
            // A base sample now, so the first evaluation has a window to look at.
            if let Some(local) = run.local.as_mut() {
                let snap = self.reloader.state().load();
                local.record(sample(&snap));
            }
        }
        Ok(actions)
    }

    /// Applies the engine's actions; returns the events' messages.
    async fn apply(&mut self, actions: Vec<Action>) -> Vec<String> {
        let mut messages = Vec::new();
        for action in actions {
            match action {
                Action::SetShare(bp) => self.change(Change::Share(bp)).await,
                Action::Rollback { evacuate_new } => {
                    self.change(Change::Share(0)).await;
                    if evacuate_new {
                        if let Some(name) = self.run.as_ref().map(|r| r.new.clone()) {
                            let at = now_ms() / 1000;
                            self.change(Change::Evacuate(name, at)).await;
                        }
                    }
                }
                Action::Pause(reason) => tracing::warn!("rollout paused: {reason}"),
                Action::Notify(event) => {
                    tracing::info!(
                        event = event.kind.as_str(),
                        step = event.step,
                        advise = event.advise,
                        "rollout: {}",
                        event.message
                    );
                    messages.push(event.message.clone());
                    if let Some(n) = self.run.as_ref().and_then(|r| r.notifier.as_ref()) {
                        n.notify(event);
                    }
                }
            }
        }
        messages
    }

    async fn change(&mut self, change: Change) {
        let what = format!("{change:?}");
        match self.reloader.change(change).await {
            Ok(applied) => {
                if let Some(e) = applied.persist_error {
                    self.apply_error = Some(format!("{what} applied but not saved: {e}"));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "rollout: {what} was not applied");
                self.apply_error = Some(format!("{what} was not applied: {e}"));
            }
        }
    }

    async fn persist(&mut self) {
        // In a fleet the state lives in the fleet's document.
        if self.fleet.is_some() {
            return;
        }
        let (Some(run), Some(path)) = (&self.run, &self.state_path) else {
            return;
        };
        let state = run.engine.state().clone();
        if self.saved.as_ref() == Some(&state) {
            return;
        }
        let path = path.clone();
        let to_write = state.clone();
        match tokio::task::spawn_blocking(move || persist::write(&path, &to_write)).await {
            Ok(Ok(())) => self.saved = Some(state),
            Ok(Err(e)) => {
                tracing::error!("{e}: the rollout will not resume after a restart");
                self.apply_error = Some(e.to_string());
            }
            Err(e) => tracing::error!(error = %e, "saving the rollout state failed"),
        }
    }

    fn build_view(&self) -> RolloutView {
        let snap = self.reloader.state().load();
        let mut v = view::build(
            self.run.as_ref().map(|r| &r.engine),
            &snap,
            self.dropped.clone(),
            self.apply_error.clone(),
            self.run
                .as_ref()
                .and_then(|r| r.notifier.as_ref())
                .map(Notifier::stats),
        );
        v.fleet = self.fleet.as_ref().map(|f| view::FleetDriver {
            replica: f.runtime.id().to_string(),
            leader: f.runtime.leader_id(),
            driving: f.leading(),
        });
        v
    }

    fn publish(&mut self) {
        if let (Some(run), Some(m)) = (&self.run, &self.metrics) {
            m.publish(
                &run.engine.metric_values(),
                std::mem::take(&mut self.metrics_fresh),
            );
        }
        let view = Arc::new(self.build_view());
        *self.view.lock().unwrap_or_else(|e| e.into_inner()) = view;
    }
}

/// The request counters of both sides now.
fn sample(snap: &Snapshot) -> CounterSample {
    CounterSample {
        at_ms: now_ms(),
        old: snap.metrics.route_counters(snap.routing.split.from),
        new: snap.metrics.route_counters(snap.routing.split.to),
    }
}
