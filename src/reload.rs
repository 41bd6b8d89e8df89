//! Live reload: a file change, SIGHUP or the admin API -> read -> overrides -> validate -> compile
//! -> one atomic swap.
//!
//! A change that fails validation is rejected whole and the running snapshot stays. Compiling
//! (file I/O, CSV parsing) runs on a blocking thread, and the retired snapshot is freed on one too
//! once the last request holding it finishes: freeing a million-row redirect table takes ~100 ms
//! and no request may pay for it.
//!
//! Admin API changes ([`Reloader::change`]) are runtime overrides laid over the config text in
//! force and compiled by the same path; see [`crate::config::runtime`] for when the file wins.
//!
//! Layer: control. May import its own layer and server, request, config, snapshot, observe,
//! clients, domain, policy, wire; never edge.

// fleet: shared operator state applied through the same compile-and-swap.
pub mod fleet;
// redirect_probation: the "share reached 100%" mark, kept with the operator state (issue 16).
mod probation;
mod startup;
pub use startup::{load_startup, Startup};
mod tls;
mod watch;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{
    build, content_hash, CompileInput, ConfigError, Problem, RuntimeOverrides, Source, StateFile,
};
use crate::metrics::{Metrics, TlsMetrics};
use crate::state::{SharedSnapshot, Snapshot};
use crate::tls::TlsListener;

/// How many reload attempts `/admin/history` keeps.
pub const HISTORY: usize = 256;
/// How soon a changed file is picked up, as the README and `docs/https.md` promise ("within
/// about 250 ms").
const PICKED_UP_WITHIN_MS: u64 = 250;
/// Quiet time after the last relevant file event before reloading (editors write in steps).
/// Four fifths of the promise, so the debounce can never take all of it; the rest is the reload
/// itself (tests/control_reload.rs checks the mechanism).
const DEBOUNCE: Duration = Duration::from_millis(PICKED_UP_WITHIN_MS * 4 / 5);
/// A file that keeps changing is reloaded at least this often anyway.
const DEBOUNCE_MAX: Duration = Duration::from_secs(1);

/// The result of one reload attempt, for status pages, history and logs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReloadOutcome {
    /// Unix seconds (with fraction) when it finished.
    pub at: f64,
    /// [`Self::at`] as RFC 3339 UTC, for people; filled in when the outcome is recorded.
    #[serde(default)]
    pub at_rfc3339: String,
    /// What asked for it (`file`, `signal`, `admin`, `admin-split`, `admin-evacuate`).
    pub trigger: String,
    /// The generation in force after it.
    pub generation: u64,
    /// Whether it went live.
    pub applied: bool,
    /// The share on the split's `to` side in force after it, in percent.
    pub new_share: f64,
    /// Whether admin overrides are in force after it.
    pub overrides: bool,
    /// The config file changed, so earlier admin overrides were dropped (the file wins).
    #[serde(default)]
    pub overrides_cleared: bool,
    /// The full error text when rejected.
    pub error: Option<String>,
}

/// A runtime change asked through the admin API.
#[derive(Debug, Clone)]
pub enum Change {
    /// Share on the split's `to` side, basis points.
    Share(u16),
    /// Release pins to this storefront issued at or before this unix second.
    Evacuate(String, u64),
}

impl Change {
    fn trigger(&self) -> &'static str {
        match self {
            Change::Share(_) => "admin-split",
            Change::Evacuate(..) => "admin-evacuate",
        }
    }
}

/// Why an admin change was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// No storefront by that name.
    #[error("no storefront named `{0}`")]
    UnknownStorefront(String),
    /// The config with the change does not compile (nothing changed).
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// A change that went live.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Its generation.
    pub generation: u64,
    /// `None` when the state file was written; the error otherwise (the change is live but will
    /// not survive a restart).
    pub persist_error: Option<String>,
}

/// Mutable state of reloads, behind the one lock that serialises them.
struct Control {
    /// The config text the running snapshot was compiled from: admin changes compile against
    /// it, never against a file an editor is halfway through saving.
    applied: Option<Source>,
    /// Overrides in force.
    overrides: Option<StateFile>,
}

#[derive(Default)]
struct Public {
    last: Option<ReloadOutcome>,
    history: VecDeque<ReloadOutcome>,
    state_error: Option<String>,
    file_share_bp: Option<u16>,
    /// The operator state laid over the file to build the snapshot in force (kept beside the
    /// snapshot, not in it: the request path has no use for it).
    operator_state: Option<Arc<StateFile>>,
}

/// The share the file itself says (without overrides), for status pages.
fn file_share(source: &Source) -> Option<u16> {
    let raw = source.parse().ok()?;
    raw.split?.get_ref().new_share.get_ref().0.ok()
}

/// Serialises reloads of one config file into one snapshot handle.
pub struct Reloader {
    path: PathBuf,
    state: SharedSnapshot,
    metrics: Arc<Metrics>,
    serial: tokio::sync::Mutex<Control>,
    public: Mutex<Public>,
    /// HTTPS listeners whose certificates follow the config.
    tls: Mutex<TlsState>,
}

/// HTTPS listeners by listener index, and their metrics.
type TlsState = (Vec<(usize, Arc<TlsListener>)>, Option<TlsMetrics>);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn unix_now_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn share_percent(bp: u16) -> f64 {
    f64::from(bp) / 100.0
}

/// Compiles and sets the probation mark: `mark` is the one before this build (the running
/// snapshot's, the state file's or the fleet's), the snapshot carries the one after it.
fn compile_text(
    source: &Source,
    overrides: Option<&StateFile>,
    generation: u64,
    previous: Option<&Snapshot>,
    metrics: &Metrics,
    mark: Option<u64>,
) -> Result<Snapshot, ConfigError> {
    let mut snap = build(
        overrides.map(|o| &o.overrides),
        CompileInput {
            source,
            generation,
            previous,
            metrics,
        },
    )?;
    probation::set_mark(&mut snap, mark, unix_now());
    Ok(snap)
}

impl Reloader {
    /// A reloader for `path` feeding `state`. Unlike [`Reloader::from_startup`], it has no
    /// startup load to continue from: the first admin change compiles against the file as it is
    /// on disk.
    pub fn new(path: PathBuf, state: SharedSnapshot, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Reloader {
            path,
            state,
            metrics,
            serial: tokio::sync::Mutex::new(Control {
                applied: None,
                overrides: None,
            }),
            public: Mutex::new(Public::default()),
            tls: Mutex::new((Vec::new(), None)),
        })
    }

    /// A reloader continuing from a startup load; its snapshot becomes the first in force.
    pub fn from_startup(path: PathBuf, metrics: Arc<Metrics>, startup: Startup) -> Arc<Self> {
        let file_share_bp = file_share(&startup.source);
        let operator_state = startup.overrides.clone().map(Arc::new);
        let me = Arc::new(Reloader {
            path,
            state: Arc::new(arc_swap::ArcSwap::from_pointee(startup.snapshot)),
            metrics,
            serial: tokio::sync::Mutex::new(Control {
                applied: Some(startup.source),
                overrides: startup.overrides,
            }),
            public: Mutex::new(Public {
                state_error: startup.state_note,
                file_share_bp,
                operator_state,
                ..Public::default()
            }),
            tls: Mutex::new((Vec::new(), None)),
        });
        let snap = me.state.load();
        me.record(ReloadOutcome {
            at: unix_now_f64(),
            at_rfc3339: String::new(),
            trigger: "startup".into(),
            generation: snap.generation,
            applied: true,
            new_share: share_percent(snap.routing.split.share_bp),
            overrides: me.operator_state().is_some(),
            overrides_cleared: false,
            error: None,
        });
        me
    }

    /// The config file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The snapshot handle.
    pub fn state(&self) -> &SharedSnapshot {
        &self.state
    }

    fn public(&self) -> std::sync::MutexGuard<'_, Public> {
        self.public.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recent outcome.
    pub fn last(&self) -> Option<ReloadOutcome> {
        self.public().last.clone()
    }

    /// The most recent [`HISTORY`] outcomes, oldest first.
    pub fn history(&self) -> Vec<ReloadOutcome> {
        self.public().history.iter().cloned().collect()
    }

    /// The share the config file itself says, without admin overrides.
    pub fn file_share_bp(&self) -> Option<u16> {
        self.public().file_share_bp
    }

    /// The operator state (admin changes) laid over the file in the snapshot in force.
    pub fn operator_state(&self) -> Option<Arc<StateFile>> {
        self.public().operator_state.clone()
    }

    /// The last problem with the state file (unreadable, stale, unwritable), if any.
    pub fn state_error(&self) -> Option<String> {
        self.public().state_error.clone()
    }

    fn record(&self, mut outcome: ReloadOutcome) {
        outcome.at_rfc3339 = crate::values::time::rfc3339_secs(outcome.at as u64);
        let mut p = self.public();
        if p.history.len() == HISTORY {
            p.history.pop_front();
        }
        p.history.push_back(outcome.clone());
        p.last = Some(outcome);
    }

    fn reject(&self, trigger: &'static str, e: &ConfigError) {
        let current = self.state.load();
        self.metrics.reload(false, current.generation);
        tracing::error!(trigger, error = %e, "configuration rejected; keeping generation {}", current.generation);
        self.record(ReloadOutcome {
            at: unix_now_f64(),
            at_rfc3339: String::new(),
            trigger: trigger.into(),
            generation: current.generation,
            applied: false,
            new_share: share_percent(current.routing.split.share_bp),
            overrides: self.operator_state().is_some(),
            overrides_cleared: false,
            error: Some(e.to_string()),
        });
    }

    fn install(
        &self,
        mut snap: Snapshot,
        operator_state: Option<StateFile>,
        trigger: &'static str,
        cleared: bool,
    ) -> u64 {
        let operator_state = operator_state.map(Arc::new);
        let has_operator_state = operator_state.is_some();
        let previous = self.state.load_full();
        if snap.listeners != previous.listeners || snap.admin != previous.admin {
            tracing::warn!("listener or admin addresses changed: they take effect on restart only");
        }
        snap.trigger = trigger;
        let generation = snap.generation;
        tracing::info!(
            generation,
            trigger,
            share_bp = snap.routing.split.share_bp,
            overrides = has_operator_state,
            "configuration applied"
        );
        let outcome = ReloadOutcome {
            at: unix_now_f64(),
            at_rfc3339: String::new(),
            trigger: trigger.into(),
            generation,
            applied: true,
            new_share: share_percent(snap.routing.split.share_bp),
            overrides: has_operator_state,
            overrides_cleared: cleared,
            error: None,
        };
        let snap = Arc::new(snap);
        self.public().operator_state = operator_state;
        let old = self.state.swap(Arc::clone(&snap));
        // After the swap: a scrape that sees the new generation sees it serving.
        publish(&self.metrics, &snap);
        self.spawn_tls_reload(Arc::clone(&previous), snap);
        drop(previous);
        retire(old);
        self.record(outcome);
        generation
    }

    /// Compiles `source` with the operator state `state` laid over it, off the runtime's
    /// threads, and persists that state and the probation mark beside the config (neither: the
    /// state file is removed). `mark`: the fleet's, else the running snapshot's is kept.
    /// The one path of operator changes, local or from the fleet.
    async fn compile_and_persist(
        &self,
        source: &Source,
        state: Option<StateFile>,
        generation: u64,
        previous: &Arc<Snapshot>,
        mark: Option<u64>,
    ) -> Result<(Snapshot, Result<(), crate::config::runtime::StateError>), ConfigError> {
        let metrics = Arc::clone(&self.metrics);
        let prev = Arc::clone(previous);
        let src = source.clone();
        let mark = mark.or(previous.redirect_probation.started_at);
        crate::background::run("reload", move || {
            let snap = compile_text(
                &src,
                state.as_ref(),
                generation,
                Some(&prev),
                &metrics,
                mark,
            )?;
            let persisted = probation::save(&snap, state, &src);
            Ok::<_, ConfigError>((snap, persisted))
        })
        .await
        .unwrap_or_else(|join| Err(self.failed_task(join)))
    }

    fn failed_task(&self, join: impl std::fmt::Display) -> ConfigError {
        ConfigError::Invalid(vec![Problem {
            file: self.path.clone(),
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("reload task failed: {join}"),
        }])
    }

    /// Reloads the file now. On success returns the new generation; on failure the old snapshot
    /// stays. When the file's bytes differ from those admin overrides were made on, the file wins:
    /// the overrides are dropped (and their state file removed) once the new file is live.
    pub async fn reload(&self, trigger: &'static str) -> Result<u64, ConfigError> {
        let mut ctl = self.serial.lock().await;
        let previous = self.state.load_full();
        let generation = previous.generation + 1;
        let path = self.path.clone();
        let overrides = ctl.overrides.clone();
        let metrics = Arc::clone(&self.metrics);
        let prev = Arc::clone(&previous);
        let compiled = crate::background::run("reload", move || {
            let source = Source::read(&path)?;
            let hash = content_hash(&source.text);
            let (apply, cleared) = match overrides {
                Some(o) if o.config_hash == hash => (Some(o), false),
                Some(_) => (None, true),
                None => (None, false),
            };
            let mark = prev.redirect_probation.started_at;
            let snap = compile_text(
                &source,
                apply.as_ref(),
                generation,
                Some(&prev),
                &metrics,
                mark,
            )?;
            // The overrides' file goes when the file changed, the probation mark stays
            // (`probation::save`); a mark that moved is saved too.
            let saved = (cleared || snap.redirect_probation.started_at != mark)
                .then(|| probation::save(&snap, apply.clone(), &source));
            Ok::<_, ConfigError>((source, snap, apply, cleared, saved))
        })
        .await
        .unwrap_or_else(|join| Err(self.failed_task(join)));
        drop(previous);
        match compiled {
            Ok((source, snap, applied_state, cleared, saved)) => {
                if cleared {
                    tracing::info!(
                        "{} changed: admin overrides dropped, the file is in force",
                        self.path.display()
                    );
                    ctl.overrides = None;
                }
                if let Some(Err(e)) = saved {
                    tracing::warn!(error = %e, "cannot update the state file");
                    self.public().state_error = Some(e.to_string());
                }
                self.public().file_share_bp = file_share(&source);
                ctl.applied = Some(source);
                Ok(self.install(snap, applied_state, trigger, cleared))
            }
            Err(e) => {
                self.reject(trigger, &e);
                // Certificate problems fail the config load (so the whole reload is refused and
                // reload_tls never runs): count them as rejected certificate reloads here, or
                // cutover_tls_reloads_total{result="rejected"} would never move for a bad pair.
                let tls_problem = e
                    .problems()
                    .iter()
                    .any(|p| p.field.starts_with("listener[") && p.field.ends_with(".tls"));
                if tls_problem {
                    if let Some(m) = self.tls.lock().ok().and_then(|t| t.1.clone()) {
                        m.reloaded(false);
                    }
                }
                Err(e)
            }
        }
    }

    /// Applies an admin change as an override on top of the config text in force, through the
    /// same compile as a file change, and saves it in the state file.
    pub async fn change(&self, change: Change) -> Result<Applied, ChangeError> {
        let trigger = change.trigger();
        let mut ctl = self.serial.lock().await;
        let previous = self.state.load_full();
        if let Change::Evacuate(name, _) = &change {
            if previous.storefront_id(name).is_none() {
                return Err(ChangeError::UnknownStorefront(name.clone()));
            }
        }
        let generation = previous.generation + 1;
        let source = match &ctl.applied {
            Some(s) => s.clone(),
            None => {
                let path = self.path.clone();
                tokio::task::spawn_blocking(move || Source::read(&path))
                    .await
                    .unwrap_or_else(|join| Err(self.failed_task(join)))?
            }
        };
        let hash = content_hash(&source.text);
        let now = unix_now();
        let mut state = match &ctl.overrides {
            Some(o) if o.config_hash == hash => o.clone(),
            _ => StateFile {
                format: 1,
                config: self.path.display().to_string(),
                config_hash: hash,
                since: now,
                updated_at: now,
                overrides: RuntimeOverrides::default(),
                full_share_since: None,
            },
        };
        state.updated_at = now;
        match &change {
            Change::Share(bp) => state.overrides.new_share_bp = Some(*bp),
            Change::Evacuate(name, at) => {
                state.overrides.evacuated_at.insert(name.clone(), *at);
            }
        }
        let compiled = self
            .compile_and_persist(&source, Some(state.clone()), generation, &previous, None)
            .await;
        drop(previous);
        let (snap, persisted) = match compiled {
            Ok(x) => x,
            Err(e) => {
                self.reject(trigger, &e);
                return Err(e.into());
            }
        };
        let persist_error = persisted.err().map(|e| {
            tracing::error!(error = %e, "admin change applied but not saved: it will not survive a restart");
            e.to_string()
        });
        self.public().state_error = persist_error.clone();
        ctl.applied = Some(source);
        ctl.overrides = Some(state.clone());
        let generation = self.install(snap, Some(state), trigger, false);
        Ok(Applied {
            generation,
            persist_error,
        })
    }
}

/// Exports what a newly applied snapshot says: generation, share, split sides, redirect tables;
/// forgets label values a reload removed.
///
/// Call it once the snapshot is live (labels of the retired one are dropped here). The reload is
/// counted last, so whoever sees the new generation also sees everything else it published.
pub fn publish(metrics: &Metrics, snap: &Snapshot) {
    metrics.set_share_bp(snap.routing.split.share_bp);
    metrics.set_redirect_probation_ends(snap.redirect_probation.ends_at());
    metrics.set_split_sides(
        &snap.storefronts[snap.routing.split.from].name,
        &snap.storefronts[snap.routing.split.to].name,
    );
    metrics.set_redirect_tables(
        snap.redirects
            .iter()
            .map(|r| (r.config.name.as_str(), r.table.len(), r.generation)),
    );
    metrics.retain(&snap.metrics);
    metrics.reload(true, snap.generation);
    // shadow: the mirror maps URLs in answers through the plan now in force.
    crate::state::shadow::publish_plan(snap);
}

/// Frees a retired snapshot on a low-priority thread once no request holds it any more. Its
/// redirect tables' memory is kept for the next reload a little while (`redirects::recycle`).
fn retire(mut old: Arc<Snapshot>) {
    tokio::spawn(async move {
        while Arc::strong_count(&old) > 1 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let free = move || {
            if let Some(snap) = Arc::get_mut(&mut old) {
                std::mem::take(&mut snap.redirects)
                    .into_iter()
                    .for_each(|r| crate::redirects::recycle::recycle(r.table));
            }
            drop(old)
        };
        if let Err(e) = crate::background::run("retire", free).await {
            tracing::warn!(error = %e, "freeing a retired configuration failed");
        }
    });
}
