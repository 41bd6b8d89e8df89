//! `[fleet]` wired into the running proxy: replicas share operator state through etcd.
//!
//! - Startup ([`FleetRuntime::start`], before `/readyz` turns ready): read the fleet's state
//!   within `start_timeout` and apply it over the config file; an empty fleet is seeded with this
//!   replica's overrides; no answer in time: serve from the state file and say so. After that
//!   `/readyz` stays ready whether or not etcd answers.
//! - Every replica watches the state key and applies each new value through the reloader's
//!   compile-and-swap ([`Reloader::apply_shared_state`]); a value that does not compile keeps
//!   the running snapshot and is not marked applied.
//! - Admin changes ([`FleetRuntime::change`]) are compare-and-swap writes based on the latest
//!   state seen; they are not applied locally but come back through the watcher, and the answer
//!   waits (bounded) until this replica applied them. A concurrent write is a 409, an
//!   unreachable etcd a 503: `cutover shift` fails instead of changing one replica.

pub mod answer;
pub mod document;
// redirect_probation: one probation start for the whole fleet (issue 16).
mod probation;
pub mod rollout;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use tokio::sync::watch;

use self::answer::{FleetAnswer, FleetSummary, ReplicaRow};
use self::document::FleetDocument;
use super::request::{error, json};
use crate::admin::AdminResponse;
use crate::config::fleet::FleetConfig;
use crate::fleet::metrics::FleetMetrics;
use crate::fleet::store::{ReadError, StateWatcher};
use crate::fleet::{
    election, members, Election, EtcdClient, EtcdError, FleetStore, Lag, MemberInfo, Registration,
    Versioned, WriteError,
};
use crate::reload::fleet::SharedApply;
use crate::reload::{Applied, Change, ChangeError, Reloader};

/// How long an admin change waits for this replica to apply what it wrote.
const APPLY_WAIT: Duration = Duration::from_secs(5);
/// How often the applier checks that the fleet's overrides are still in force (a config file
/// change drops local overrides; the fleet's state is then laid over the new file again).
const RECHECK: Duration = Duration::from_secs(1);

/// Bound on [`FleetRuntime::leave`].
const LEAVE_WAIT: Duration = Duration::from_secs(3);

/// A plain mutex held for a field access, never across an await.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Set once the fleet runtime has started; empty without `[fleet]`.
pub type Slot = Arc<OnceLock<Arc<FleetRuntime>>>;

/// Why `[fleet]` could not be started (the config passed `cutover check`, so this is rare:
/// a password file that vanished, TLS files unreadable).
#[derive(Debug, thiserror::Error)]
pub enum FleetStartError {
    /// A field is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::fleet::FleetProblem),
    /// The etcd client could not be built.
    #[error("[fleet] etcd client: {0}")]
    Client(#[from] EtcdError),
}

/// Why a change of the fleet's document did not happen (or is not applied here yet).
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// Someone else wrote since the state this change was based on.
    #[error("changed by another operator, re-read (`cutover status`) and retry: {0}")]
    Conflict(WriteError),
    /// etcd did not answer; nothing was written.
    #[error("the fleet store (etcd at {endpoints}) is unreachable: {reason}; nothing was changed on any replica. Retry when etcd answers (`cutover status` shows since when it is unreachable).")]
    Unreachable {
        /// The configured endpoints.
        endpoints: String,
        /// The last error.
        reason: String,
    },
    /// The stored state is not a state document.
    #[error("{0}")]
    Corrupt(String),
    /// Written, but this replica did not apply it within [`APPLY_WAIT`].
    #[error("written to the fleet store as generation {0}, but this replica has not applied it within 5s (its log says why); `cutover status --fleet` shows which replicas did")]
    NotAppliedHere(u64),
}

impl UpdateError {
    /// The admin API status for it.
    pub fn status(&self) -> StatusCode {
        match self {
            UpdateError::Conflict(_) => StatusCode::CONFLICT,
            UpdateError::Unreachable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            UpdateError::Corrupt(_) => StatusCode::INTERNAL_SERVER_ERROR,
            UpdateError::NotAppliedHere(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

/// The running fleet wiring of this replica.
pub struct FleetRuntime {
    id: String,
    prefix: String,
    store: Arc<FleetStore>,
    reloader: Arc<Reloader>,
    metrics: FleetMetrics,
    /// Latest state the watcher delivered.
    latest: watch::Receiver<Option<Versioned>>,
    /// Latest state applied here.
    applied: watch::Sender<Option<Versioned>>,
    /// `None` once [`FleetRuntime::leave`] deregistered (draining).
    registration: std::sync::Mutex<Option<Registration>>,
    /// `None` once [`FleetRuntime::leave`] resigned (draining).
    election: std::sync::Mutex<Option<Election>>,
    /// One admin write at a time from this replica (others are caught by compare-and-swap).
    writes: tokio::sync::Mutex<()>,
    startup_note: Option<String>,
    _watcher: StateWatcher,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Lays `v` over the config file through the reloader. `Err` says why it is not applied.
async fn apply_to(reloader: &Reloader, v: &Versioned, trigger: &'static str) -> Result<(), String> {
    let generation = v.record.generation;
    let doc = FleetDocument::from_value(&v.record.state, generation).map_err(|e| e.to_string())?;
    match reloader
        .apply_shared_state(doc.overrides, doc.full_share_since, trigger)
        .await
    {
        Ok(done) => {
            let local = match done {
                SharedApply::Applied(g) | SharedApply::Unchanged(g) => g,
            };
            tracing::info!(
                fleet_generation = generation,
                revision = v.revision,
                generation = local,
                changed = matches!(done, SharedApply::Applied(_)),
                "fleet state applied"
            );
            Ok(())
        }
        Err(e) => Err(format!(
            "fleet state generation {generation} does not compile here; keeping the running configuration: {e}"
        )),
    }
}

impl FleetRuntime {
    /// Connects, reads (or seeds) the fleet's state and applies it, then starts the watcher,
    /// the member registration and the election. Returns once the startup read is settled,
    /// which is at most `start_timeout` plus one compile.
    pub async fn start(
        reloader: Arc<Reloader>,
        cfg: &FleetConfig,
        base_dir: &Path,
        admin: Option<SocketAddr>,
        metrics: FleetMetrics,
    ) -> Result<Arc<FleetRuntime>, FleetStartError> {
        let id = cfg
            .replica_id()
            .map_err(|message| crate::config::fleet::FleetProblem {
                field: "id".into(),
                message,
            })?;
        let client = EtcdClient::new(crate::fleet::config::client_options(cfg, base_dir)?)?;
        let store = Arc::new(FleetStore::new(client.clone(), &cfg.prefix));
        metrics.configured.set(1);
        let (applied, startup_note) = startup(&reloader, &store, &id, cfg.start_timeout.0).await;
        metrics
            .generation
            .set(applied.as_ref().map_or(0, |v| v.record.generation) as i64);
        metrics
            .connected
            .set(i64::from(client.connectivity().is_connected()));
        let info = MemberInfo {
            id: id.clone(),
            address: cfg
                .address
                .clone()
                .or_else(|| admin.map(|a| a.to_string()))
                .unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION").into(),
            generation: applied.as_ref().map_or(0, |v| v.record.generation),
            last_seen_unix_ms: 0,
        };
        let ttl = cfg.lease_ttl.0;
        let registration = Registration::spawn(client.clone(), &cfg.prefix, info, ttl);
        let election = Election::spawn(client.clone(), &cfg.prefix, &id, ttl);
        let watcher = store.watch();
        let runtime = Arc::new(FleetRuntime {
            id,
            prefix: cfg.prefix.clone(),
            latest: watcher.subscribe(),
            applied: watch::channel(applied).0,
            store,
            reloader,
            metrics,
            registration: std::sync::Mutex::new(Some(registration)),
            election: std::sync::Mutex::new(Some(election)),
            writes: tokio::sync::Mutex::new(()),
            startup_note,
            _watcher: watcher,
        });
        tokio::spawn(apply_loop(Arc::downgrade(&runtime), runtime.latest.clone()));
        tokio::spawn(gauge_loop(Arc::downgrade(&runtime)));
        Ok(runtime)
    }

    /// Whether this replica leads the fleet (the rollout runs only there).
    pub fn is_leader(&self) -> bool {
        lock(&self.election)
            .as_ref()
            .is_some_and(Election::is_leader)
    }

    /// Wakes on every leadership change.
    pub fn leadership(&self) -> watch::Receiver<bool> {
        match lock(&self.election).as_ref() {
            Some(e) => e.subscribe(),
            None => watch::channel(false).1,
        }
    }

    /// Leaves the fleet when draining: gives up the leadership at once (another replica takes
    /// over the rollout without waiting for the lease TTL) and removes the member record.
    /// Bounded; an unreachable etcd just lets the leases expire.
    pub async fn leave(&self) {
        let election = lock(&self.election).take();
        let registration = lock(&self.registration).take();
        let left = async {
            if let Some(e) = election {
                if let Err(e) = e.resign().await {
                    tracing::warn!(error = %e, "fleet: resigning the leadership failed; it ends with its lease");
                }
            }
            if let Some(r) = registration {
                if let Err(e) = r.deregister().await {
                    tracing::warn!(error = %e, "fleet: deregistering failed; the record ends with its lease");
                }
            }
        };
        if tokio::time::timeout(LEAVE_WAIT, left).await.is_err() {
            tracing::warn!(
                "fleet: leaving took longer than {LEAVE_WAIT:?}; the leases will expire"
            );
        }
        tracing::info!(id = %self.id, "fleet: left (draining)");
    }

    /// Applies `v` here, once; marks it applied when it compiled.
    async fn apply(&self, v: &Versioned) -> bool {
        match apply_to(&self.reloader, v, "fleet").await {
            Ok(()) => {
                let generation = v.record.generation;
                self.applied.send_replace(Some(v.clone()));
                if let Some(r) = lock(&self.registration).as_ref() {
                    r.set_applied(generation);
                }
                self.metrics.generation.set(generation as i64);
                true
            }
            Err(e) => {
                tracing::error!(revision = v.revision, "{e}");
                false
            }
        }
    }

    /// For `GET /admin/status`.
    pub fn summary(&self) -> FleetSummary {
        let c = self.store.connectivity();
        FleetSummary {
            id: self.id.clone(),
            prefix: self.prefix.clone(),
            connected: c.connected,
            since_unix_ms: c.since_unix_ms,
            last_error: c.last_error,
            leader: self.is_leader(),
            leader_id: self.leader_id(),
            applied_generation: self
                .applied
                .borrow()
                .as_ref()
                .map_or(0, |v| v.record.generation),
            startup_note: self.startup_note.clone(),
        }
    }

    fn unreachable(&self, e: &dyn std::fmt::Display) -> UpdateError {
        UpdateError::Unreachable {
            endpoints: self.store.client().endpoints().join(", "),
            reason: e.to_string(),
        }
    }

    /// The fleet's document as last delivered by the watcher (`None`: not read yet). The
    /// rollout reads its own state from [`FleetDocument::other`].
    pub fn document(&self) -> Option<FleetDocument> {
        let latest = self.latest.borrow().clone()?;
        FleetDocument::from_value(&latest.record.state, latest.record.generation).ok()
    }

    /// Wakes on every state the watcher delivers (the whole record; decode its `state` with
    /// [`FleetDocument::from_value`]): for followers of the rollout's state.
    pub fn subscribe(&self) -> watch::Receiver<Option<Versioned>> {
        self.latest.clone()
    }

    /// Changes the fleet's document: `edit` gets the latest state seen, the result is written
    /// with compare-and-swap on its revision, and the call returns once this replica applied it.
    /// For admin changes; the rollout writes through [`FleetRuntime::write_rollout`].
    pub async fn update<T>(
        &self,
        edit: impl FnOnce(&mut FleetDocument) -> T,
    ) -> Result<(T, Versioned), UpdateError> {
        self.update_always(edit).await
    }

    /// An admin change for the whole fleet through [`FleetRuntime::update`]. `Err` is the
    /// answer to send (409 another operator changed it, 503 etcd unreachable, 504 not applied
    /// here in time).
    pub async fn change(
        &self,
        change: Change,
    ) -> Result<Result<Applied, ChangeError>, AdminResponse> {
        if let Change::Evacuate(name, _) = &change {
            if self.reloader.state().load().storefront_id(name).is_none() {
                return Ok(Err(ChangeError::UnknownStorefront(name.clone())));
            }
        }
        let edit = |doc: &mut FleetDocument| match change {
            Change::Share(bp) => probation::write_share(doc, bp),
            Change::Evacuate(name, at) => {
                doc.overrides.evacuated_at.insert(name, at);
            }
        };
        match self.update(edit).await {
            Ok(_) => Ok(Ok(Applied {
                generation: self.reloader.state().load().generation,
                persist_error: None,
            })),
            Err(e) => Err(error(e.status(), e.to_string())),
        }
    }

    /// `GET /admin/fleet`: every registered replica with its lag, read from etcd now.
    pub async fn replicas(&self) -> AdminResponse {
        let client = self.store.client();
        let read = async {
            let (state, _) = self.store.read().await.map_err(|e| match e {
                ReadError::Etcd(e) => e.to_string(),
                other => other.to_string(),
            })?;
            let list = members::list_members(client, &self.prefix)
                .await
                .map_err(|e| e.to_string())?;
            let leader = election::current_leader(client, &self.prefix)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((state, list, leader))
        };
        let (state, list, leader) = match read.await {
            Ok(x) => x,
            Err(e) => {
                let e = self.unreachable(&e);
                return error(e.status(), e.to_string());
            }
        };
        let rollout = state.as_ref().and_then(rollout::summary);
        let generation = state.map_or(0, |v| v.record.generation);
        let mut replicas: Vec<ReplicaRow> = members::flag_lagging(list, generation)
            .into_iter()
            .map(|m| ReplicaRow {
                flagged: m.is_flagged(),
                lag: match m.lag {
                    Lag::UpToDate => "up_to_date".into(),
                    Lag::Behind { by } => format!("behind by {by}"),
                    Lag::Ahead { by } => format!("ahead by {by}"),
                },
                leader: leader.as_deref() == Some(m.info.id.as_str()),
                id: m.info.id,
                address: m.info.address,
                version: m.info.version,
                generation: m.info.generation,
                last_seen_unix_ms: m.info.last_seen_unix_ms,
            })
            .collect();
        replicas.sort_by(|a, b| a.id.cmp(&b.id));
        json(
            StatusCode::OK,
            &FleetAnswer {
                prefix: self.prefix.clone(),
                generation,
                leader,
                rollout,
                replicas,
            },
        )
    }
}

/// The startup read: the fleet's state applied, or the fleet seeded with ours, or (no answer in
/// time) the state file kept. Returns what was applied and, when it was not, why.
async fn startup(
    reloader: &Reloader,
    store: &FleetStore,
    id: &str,
    within: Duration,
) -> (Option<Versioned>, Option<String>) {
    let found = match store.read_current(within).await {
        Ok(Some(v)) => v,
        Ok(None) => {
            let doc = FleetDocument::new(reloader.overrides_in_force().await, id, unix_now());
            match store.write_state(0, doc.to_value()).await {
                Ok(v) => {
                    tracing::info!(
                        key = store.key(),
                        "fleet state seeded from this replica's state"
                    );
                    v
                }
                // Another replica seeded first: theirs wins.
                Err(WriteError::Conflict {
                    current: Some(theirs),
                    ..
                }) => theirs,
                Err(e) => {
                    let note =
                        format!("seeding the fleet state failed ({e}); serving the state file");
                    tracing::warn!("{note}");
                    return (None, Some(note));
                }
            }
        }
        Err(e) => {
            let note = format!("{e}; serving the state file until the fleet store answers");
            tracing::warn!("{note}");
            return (None, Some(note));
        }
    };
    match apply_to(reloader, &found, "fleet-startup").await {
        Ok(()) => (Some(found), None),
        Err(e) => {
            tracing::error!("{e}");
            (None, Some(e))
        }
    }
}

/// Applies each state the watcher delivers; once a second also re-lays the fleet's overrides
/// when a config file change dropped them. A value that did not compile is retried only when
/// the configuration in force changed since (a fixed file may make it compile).
async fn apply_loop(runtime: Weak<FleetRuntime>, mut latest: watch::Receiver<Option<Versioned>>) {
    let mut tick = tokio::time::interval(RECHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // (revision, snapshot generation) of the last attempt that failed.
    let mut failed: Option<(i64, u64)> = None;
    loop {
        tokio::select! {
            changed = latest.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
        }
        let Some(rt) = runtime.upgrade() else { return };
        let Some(v) = latest.borrow_and_update().clone() else {
            continue;
        };
        let local_generation = rt.reloader.state().load().generation;
        if failed == Some((v.revision, local_generation)) {
            continue;
        }
        let applied_revision = rt.applied.borrow().as_ref().map(|a| a.revision);
        if applied_revision == Some(v.revision) {
            // Still in force? A file change drops local overrides (the file wins locally).
            let Ok(doc) = FleetDocument::from_value(&v.record.state, v.record.generation) else {
                continue;
            };
            if rt.reloader.overrides_in_force().await == doc.overrides {
                probation::settle(&rt, &doc, v.revision);
                continue;
            }
            tracing::info!("the config file changed: laying the fleet state over it again");
        }
        if rt.apply(&v).await {
            failed = None;
            if let Ok(doc) = FleetDocument::from_value(&v.record.state, v.record.generation) {
                probation::settle(&rt, &doc, v.revision);
            }
        } else {
            failed = Some((v.revision, rt.reloader.state().load().generation));
        }
    }
}

/// Keeps the connectivity and leadership gauges current.
async fn gauge_loop(runtime: Weak<FleetRuntime>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let Some(rt) = runtime.upgrade() else { return };
        rt.metrics
            .connected
            .set(i64::from(rt.store.client().connectivity().is_connected()));
        rt.metrics.leader.set(i64::from(rt.is_leader()));
    }
}

/// `GET /admin/fleet`, or 404 saying how to enable it.
pub async fn replicas(slot: &Slot) -> AdminResponse {
    match slot.get() {
        Some(f) => f.replicas().await,
        None => error(
            StatusCode::NOT_FOUND,
            "this replica has no [fleet] section: its operator state is its own state file",
        ),
    }
}
