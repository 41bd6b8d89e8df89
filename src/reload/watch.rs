//! Reload triggers: SIGHUP and file changes. The parent directories are watched, not the files,
//! so editors' atomic renames and Kubernetes ConfigMap `..data` symlink swaps are seen.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{Reloader, DEBOUNCE, DEBOUNCE_MAX};
use crate::config::content_hash;
use crate::state::Snapshot;

impl Reloader {
    /// Reloads on SIGHUP and whenever the config file or a file it names changes, until the
    /// process ends. Editors' atomic renames and Kubernetes ConfigMap symlink swaps are seen
    /// because the parent directories are watched, not the files.
    ///
    /// The SIGHUP handler and the directory watches are in place when this returns (so a change
    /// made right after startup is not missed), and a change made between the startup load and
    /// the watches is caught by comparing the file with the text in force.
    pub fn spawn_watchers(self: &Arc<Self>) {
        #[cfg(unix)]
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(mut hup) => {
                let me = Arc::clone(self);
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        let _ = me.reload("signal").await;
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP"),
        }
        let (tx, rx) = mpsc::unbounded_channel::<notify::Event>();
        let watcher =
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
        let mut watch = Watch {
            watcher,
            files: BTreeSet::new(),
            dirs: BTreeSet::new(),
        };
        watch.update(self.watched());
        let me = Arc::clone(self);
        tokio::spawn(async move {
            me.catch_up().await;
            me.watch_files(watch, rx).await
        });
    }

    /// Reloads when the file on disk is not the text in force (changed before the watch began).
    async fn catch_up(&self) {
        let applied = {
            let ctl = self.serial.lock().await;
            ctl.applied.as_ref().map(|s| content_hash(&s.text))
        };
        let path = self.path.clone();
        let now = tokio::task::spawn_blocking(move || {
            std::fs::read_to_string(&path)
                .ok()
                .map(|t| content_hash(&t))
        })
        .await
        .ok()
        .flatten();
        if applied.is_some() && now.is_some() && applied != now {
            let _ = self.reload("file").await;
        }
    }

    fn watched(&self) -> BTreeSet<PathBuf> {
        let snap = self.state.load();
        std::iter::once(self.path.clone())
            .chain(snap_files(&snap))
            .map(|p| absolute(&p))
            .collect()
    }

    async fn watch_files(
        self: Arc<Self>,
        mut watch: Watch,
        mut rx: mpsc::UnboundedReceiver<notify::Event>,
    ) {
        loop {
            watch.update(self.watched());
            let Some(first) = rx.recv().await else { return };
            if !relevant(&first, &watch.files) {
                continue;
            }
            // Debounce: editors write in several steps; wait for a quiet moment. Only relevant
            // events extend the wait (an access log in the same directory must not postpone a
            // reload forever), and a file that never settles is reloaded after DEBOUNCE_MAX.
            let started = Instant::now();
            let mut deadline = started + DEBOUNCE;
            loop {
                match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                    Ok(Some(ev)) => {
                        if relevant(&ev, &watch.files) {
                            deadline = (Instant::now() + DEBOUNCE).min(started + DEBOUNCE_MAX);
                        }
                    }
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let _ = self.reload("file").await;
        }
    }
}

/// The directory watches for the config and the files it names.
struct Watch {
    watcher: notify::RecommendedWatcher,
    files: BTreeSet<PathBuf>,
    dirs: BTreeSet<PathBuf>,
}

impl Watch {
    fn update(&mut self, now_files: BTreeSet<PathBuf>) {
        if now_files == self.files {
            return;
        }
        let now_dirs: BTreeSet<PathBuf> = now_files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        for d in self.dirs.difference(&now_dirs) {
            let _ = self.watcher.unwatch(d);
        }
        for d in now_dirs.difference(&self.dirs) {
            if let Err(e) = self.watcher.watch(d, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %d.display(), error = %e, "cannot watch directory");
            }
        }
        self.files = now_files;
        self.dirs = now_dirs;
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
