//! Live reload: a file change or SIGHUP -> read -> validate -> compile -> one atomic swap.
//!
//! A change that fails validation is rejected whole and the running snapshot stays. Compiling
//! (file I/O, CSV parsing) runs on a blocking thread, and the retired snapshot is freed on one too
//! once the last request holding it finishes: freeing a million-row redirect table takes ~100 ms
//! and no request may pay for it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::{load_file, ConfigError};
use crate::metrics::Metrics;
use crate::state::{SharedSnapshot, Snapshot};

/// The result of the most recent reload attempt, for status pages and logs.
#[derive(Debug, Clone)]
pub struct ReloadOutcome {
    /// When it happened.
    pub at: SystemTime,
    /// What asked for it (`file`, `signal`, `admin`).
    pub trigger: &'static str,
    /// The generation now in force after it.
    pub generation: u64,
    /// `None` when applied; the full error text when rejected.
    pub error: Option<String>,
}

/// Serialises reloads of one config file into one snapshot handle.
pub struct Reloader {
    path: PathBuf,
    state: SharedSnapshot,
    metrics: Arc<Metrics>,
    serial: tokio::sync::Mutex<()>,
    last: Mutex<Option<ReloadOutcome>>,
}

impl Reloader {
    /// A reloader for `path` feeding `state`.
    pub fn new(path: PathBuf, state: SharedSnapshot, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Reloader {
            path,
            state,
            metrics,
            serial: tokio::sync::Mutex::new(()),
            last: Mutex::new(None),
        })
    }

    /// The config file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The most recent outcome.
    pub fn last(&self) -> Option<ReloadOutcome> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    /// Reloads now. On success returns the new generation; on failure the old snapshot stays.
    pub async fn reload(&self, trigger: &'static str) -> Result<u64, ConfigError> {
        let _one_at_a_time = self.serial.lock().await;
        let previous = self.state.load_full();
        let generation = previous.generation + 1;
        let path = self.path.clone();
        let prev = Arc::clone(&previous);
        let metrics = Arc::clone(&self.metrics);
        let compiled = tokio::task::spawn_blocking(move || {
            load_file(&path, generation, Some(&prev), &metrics)
        })
        .await
        .unwrap_or_else(|join| {
            Err(ConfigError::Invalid(vec![crate::config::Problem {
                file: self.path.clone(),
                line: 0,
                column: 0,
                field: String::new(),
                message: format!("reload task failed: {join}"),
            }]))
        });
        let outcome = match compiled {
            Ok((_, snap)) => {
                if snap.listeners != previous.listeners || snap.admin != previous.admin {
                    tracing::warn!(
                        "listener or admin addresses changed: they take effect on restart only"
                    );
                }
                tracing::info!(
                    generation,
                    trigger,
                    share_bp = snap.split.share_bp,
                    "configuration applied"
                );
                let snap = Arc::new(snap);
                let old = self.state.swap(Arc::clone(&snap));
                publish(&self.metrics, &snap);
                drop(snap);
                drop(previous);
                retire(old);
                Ok(generation)
            }
            Err(e) => {
                self.metrics.reload(false, previous.generation);
                tracing::error!(trigger, error = %e, "configuration rejected; keeping generation {}", previous.generation);
                Err(e)
            }
        };
        if let Ok(mut last) = self.last.lock() {
            *last = Some(ReloadOutcome {
                at: SystemTime::now(),
                trigger,
                generation: self.state.load().generation,
                error: outcome.as_ref().err().map(|e| e.to_string()),
            });
        }
        outcome
    }

    /// Reloads on SIGHUP and whenever the config file or a file it names changes, until the
    /// process ends. Editors' atomic renames and Kubernetes ConfigMap symlink swaps are seen
    /// because the parent directories are watched, not the files.
    pub fn spawn_watchers(self: &Arc<Self>) {
        #[cfg(unix)]
        {
            let me = Arc::clone(self);
            tokio::spawn(async move {
                let Ok(mut hup) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                else {
                    tracing::warn!("cannot listen for SIGHUP");
                    return;
                };
                while hup.recv().await.is_some() {
                    let _ = me.reload("signal").await;
                }
            });
        }
        let me = Arc::clone(self);
        tokio::spawn(async move { me.watch_files().await });
    }

    fn watched(&self) -> BTreeSet<PathBuf> {
        let snap = self.state.load();
        std::iter::once(self.path.clone())
            .chain(snap_files(&snap))
            .map(|p| absolute(&p))
            .collect()
    }

    async fn watch_files(self: Arc<Self>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<notify::Event>();
        let mut watcher =
            match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(ev) = res {
                    let _ = tx.send(ev);
                }
            }) {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "file watching unavailable; reload with SIGHUP");
                    return;
                }
            };
        let mut files = BTreeSet::new();
        let mut dirs = BTreeSet::new();
        loop {
            let now_files = self.watched();
            if now_files != files {
                let now_dirs: BTreeSet<PathBuf> = now_files
                    .iter()
                    .filter_map(|f| f.parent().map(Path::to_path_buf))
                    .collect();
                for d in dirs.difference(&now_dirs) {
                    let _ = watcher.unwatch(d);
                }
                for d in now_dirs.difference(&dirs) {
                    if let Err(e) = watcher.watch(d, RecursiveMode::NonRecursive) {
                        tracing::warn!(dir = %d.display(), error = %e, "cannot watch directory");
                    }
                }
                files = now_files;
                dirs = now_dirs;
            }
            let Some(first) = rx.recv().await else { return };
            if !relevant(&first, &files) {
                continue;
            }
            // Debounce: editors write in several steps; wait for a quiet moment.
            loop {
                match tokio::time::timeout(Duration::from_millis(250), rx.recv()).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let _ = self.reload("file").await;
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// Files a snapshot was built from besides the config itself.
fn snap_files(snap: &Snapshot) -> Vec<PathBuf> {
    snap.files.clone()
}

fn relevant(ev: &notify::Event, files: &BTreeSet<PathBuf>) -> bool {
    if matches!(ev.kind, notify::EventKind::Access(_)) {
        return false;
    }
    ev.paths.iter().any(|p| {
        files.contains(p)
            // Kubernetes ConfigMaps swap a `..data` symlink in the same directory.
            || p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".."))
                && files.iter().any(|f| f.parent() == p.parent())
    })
}

/// Exports what a newly applied snapshot says: generation, share, split sides, redirect tables;
/// forgets label values a reload removed.
///
/// Call it once the snapshot is live (labels of the retired one are dropped here). The reload is
/// counted last, so whoever sees the new generation also sees everything else it published.
pub fn publish(metrics: &Metrics, snap: &Snapshot) {
    metrics.set_share_bp(snap.split.share_bp);
    metrics.set_split_sides(
        &snap.storefronts[snap.split.from].name,
        &snap.storefronts[snap.split.to].name,
    );
    metrics.set_redirect_tables(
        snap.redirects
            .iter()
            .map(|r| (r.config.name.as_str(), r.table.len(), r.generation)),
    );
    metrics.retain(&snap.metrics);
    metrics.reload(true, snap.generation);
}

/// Frees a retired snapshot on a blocking thread once no request holds it any more.
fn retire(old: Arc<Snapshot>) {
    tokio::spawn(async move {
        while Arc::strong_count(&old) > 1 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = tokio::task::spawn_blocking(move || drop(old)).await;
    });
}
