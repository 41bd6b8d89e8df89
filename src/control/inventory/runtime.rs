//! The inventory's life in a running process: the file loaded at start, the persister, the
//! final save on drain, and the gauges recomputed off the request path.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::oracle::SnapshotOracle;
use crate::inventory::{
    coverage_of_hits, load_or_start_empty, spawn_persister, Inventory, Loaded, PersistStatus,
    Persister,
};
use crate::metrics::{InventoryMetrics, Metrics, INVENTORY_ALL_TABLES};
use crate::state::{SharedSnapshot, Snapshot};

/// How often the gauges are recomputed without a reload (traffic moves coverage too).
const REFRESH_EVERY: Duration = Duration::from_secs(60);
/// How often the snapshot generation is compared, to recompute right after a reload.
const RELOAD_POLL: Duration = Duration::from_millis(500);

/// The inventory of a running proxy and what was done with its file.
pub struct InventoryRuntime {
    /// The one inventory of the process (the snapshots carry the same `Arc`).
    pub inventory: Arc<Inventory>,
    file: Option<PathBuf>,
    loaded: Loaded,
    status: Option<Arc<PersistStatus>>,
    persister: Mutex<Option<Persister>>,
    metrics: Option<InventoryMetrics>,
}

/// The file's side of `GET /inventory`.
#[derive(Debug, Serialize)]
pub struct FileStatus {
    /// Where it is persisted; `None`: memory only.
    pub file: Option<String>,
    /// What happened at start: `no_file`, `restored`, `started_empty`.
    pub load: &'static str,
    /// Entries restored at start.
    pub restored: usize,
    /// Entries of the file that did not fit.
    pub dropped: usize,
    /// Why the file was not loaded, when it was unusable.
    pub load_warning: Option<String>,
    /// Saves so far.
    pub saves: u64,
    /// Failed saves so far.
    pub save_failures: u64,
    /// The last save error, until a save succeeds.
    pub last_save_error: Option<String>,
}

impl InventoryRuntime {
    /// Starts the inventory of `snap` if it is on: loads its file (a bad one: empty, with a
    /// warning in the log, the load-failed gauge and [`FileStatus`]), starts the persister and
    /// the gauge refresher. `None` when `[inventory]` is off at start.
    pub async fn start(state: &SharedSnapshot, metrics: &Metrics) -> Option<Arc<Self>> {
        let snap = state.load_full();
        let (inventory, cfg) = (snap.inventory.clone()?, snap.inventory_config.clone()?);
        let loaded = match &cfg.file {
            None => Loaded::NoFile,
            Some(path) => {
                let (inv, path) = (Arc::clone(&inventory), path.clone());
                tokio::task::spawn_blocking(move || load_or_start_empty(&inv, &path))
                    .await
                    .unwrap_or_else(|e| Loaded::StartedEmpty(format!("loading failed: {e}")))
            }
        };
        match &loaded {
            Loaded::Restored { entries, dropped } => {
                tracing::info!(entries, dropped, "URL inventory restored")
            }
            Loaded::StartedEmpty(w) => tracing::warn!("URL inventory: {w}"),
            Loaded::NoFile => {}
        }
        let persister = cfg
            .file
            .clone()
            .map(|f| spawn_persister(Arc::clone(&inventory), f, cfg.persist_interval.0));
        let metrics = match InventoryMetrics::register(metrics.registry()) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!("inventory gauges not registered: {e}");
                None
            }
        };
        if let Some(m) = &metrics {
            m.set_load_failed(matches!(loaded, Loaded::StartedEmpty(_)));
        }
        let rt = Arc::new(InventoryRuntime {
            inventory,
            file: cfg.file.clone(),
            loaded,
            status: persister.as_ref().map(Persister::status),
            persister: Mutex::new(persister),
            metrics,
        });
        rt.spawn_refresher(Arc::clone(state));
        Some(rt)
    }

    /// What was done with the file.
    pub fn file_status(&self) -> FileStatus {
        let (load, restored, dropped, load_warning) = match &self.loaded {
            Loaded::NoFile => ("no_file", 0, 0, None),
            Loaded::Restored { entries, dropped } => ("restored", *entries, *dropped, None),
            Loaded::StartedEmpty(w) => ("started_empty", 0, 0, Some(w.clone())),
        };
        FileStatus {
            file: self.file.as_ref().map(|f| f.display().to_string()),
            load,
            restored,
            dropped,
            load_warning,
            saves: self.status.as_ref().map_or(0, |s| s.saves()),
            save_failures: self.status.as_ref().map_or(0, |s| s.failures()),
            last_save_error: self.status.as_ref().and_then(|s| s.last_error()),
        }
    }

    /// The final save, after the listeners stopped: the file then holds every counted hit.
    pub async fn drain(&self) {
        let persister = self
            .persister
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(p) = persister {
            match p.drain().await {
                Ok(n) => tracing::info!(entries = n, "URL inventory saved"),
                Err(e) => tracing::warn!("saving the URL inventory on drain: {e}"),
            }
        }
    }

    /// Recomputes the gauges right after each reload and every [`REFRESH_EVERY`], on the
    /// blocking pool (a coverage pass over 10^5 URLs is milliseconds of CPU, never the request
    /// path's).
    fn spawn_refresher(self: &Arc<Self>, state: SharedSnapshot) {
        let Some(metrics) = self.metrics.clone() else {
            return;
        };
        let inv = Arc::clone(&self.inventory);
        tokio::spawn(async move {
            let mut seen = None;
            let mut last = tokio::time::Instant::now();
            let mut poll = tokio::time::interval(RELOAD_POLL);
            loop {
                poll.tick().await;
                let snap = state.load_full();
                if seen == Some(snap.generation) && last.elapsed() < REFRESH_EVERY {
                    continue;
                }
                seen = Some(snap.generation);
                last = tokio::time::Instant::now();
                let (inv, metrics) = (Arc::clone(&inv), metrics.clone());
                let _ = tokio::task::spawn_blocking(move || refresh(&inv, &snap, &metrics)).await;
            }
        });
    }
}

/// Sets `cutover_inventory_urls` and `cutover_inventory_coverage_ratio{table}` from `snap`.
pub fn refresh(inv: &Inventory, snap: &Snapshot, metrics: &InventoryMetrics) {
    metrics.set_urls(inv.len());
    let entries = inv.entries();
    let none = HashSet::new();
    let mut ratios = vec![(
        INVENTORY_ALL_TABLES.to_string(),
        coverage_of_hits(&entries, &SnapshotOracle::whole_plan(snap, &none)),
    )];
    for (i, t) in snap.redirects.iter().enumerate() {
        let oracle = SnapshotOracle::one_table(snap, i, &none);
        ratios.push((t.config.name.clone(), coverage_of_hits(&entries, &oracle)));
    }
    metrics.set_coverage(&ratios);
}
