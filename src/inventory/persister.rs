//! The background task that saves the inventory every `persist_interval`, and the final save
//! on drain. Saving runs on the blocking pool: the file I/O never touches a runtime thread.

use super::error::PersistError;
use super::persist::save;
use super::store::Inventory;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the persister has done, for the admin API and logs.
#[derive(Debug, Default)]
pub struct PersistStatus {
    saves: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl PersistStatus {
    /// Successful saves so far.
    pub fn saves(&self) -> u64 {
        self.saves.load(Ordering::Relaxed)
    }

    /// Failed saves so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The last failure's message, cleared by a later success.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn note(&self, r: &Result<usize, PersistError>) {
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        match r {
            Ok(_) => {
                self.saves.fetch_add(1, Ordering::Relaxed);
                *last = None;
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                *last = Some(e.to_string());
            }
        }
    }
}

/// Saves `inv` to `path` on the blocking pool; returns how many entries were written.
pub async fn save_now(inv: Arc<Inventory>, path: PathBuf) -> Result<usize, PersistError> {
    let file = path.display().to_string();
    tokio::task::spawn_blocking(move || save(&inv, &path))
        .await
        .unwrap_or_else(|e| {
            Err(PersistError::Io {
                file,
                action: "saving",
                reason: format!("the save task failed: {e}"),
            })
        })
}

/// Handle of the running persister.
pub struct Persister {
    inv: Arc<Inventory>,
    path: PathBuf,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    status: Arc<PersistStatus>,
}

/// Starts the task: a save every `every` (the first one `every` after start). Failures are
/// logged and counted in [`PersistStatus`]; the task goes on (a full disk may clear up).
pub fn spawn_persister(inv: Arc<Inventory>, path: PathBuf, every: Duration) -> Persister {
    let (stop, mut stopped) = watch::channel(false);
    let status = Arc::new(PersistStatus::default());
    let (task_inv, task_path, task_status) = (inv.clone(), path.clone(), status.clone());
    let task = tokio::spawn(async move {
        let every = every.max(Duration::from_millis(10));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopped.changed() => return,
            }
            let r = save_now(task_inv.clone(), task_path.clone()).await;
            if let Err(e) = &r {
                tracing::warn!(file = %task_path.display(), "saving the URL inventory: {e}");
            }
            task_status.note(&r);
        }
    });
    Persister {
        inv,
        path,
        stop,
        task,
        status,
    }
}

impl Persister {
    /// What the task has done so far.
    pub fn status(&self) -> Arc<PersistStatus> {
        self.status.clone()
    }

    /// A save now, outside the schedule (the admin API's "save", or before an upgrade).
    pub async fn save_now(&self) -> Result<usize, PersistError> {
        let r = save_now(self.inv.clone(), self.path.clone()).await;
        self.status.note(&r);
        r
    }

    /// Stops the task (waiting for a save in progress) and saves one last time: call it when
    /// the proxy drains, after the listeners stopped accepting, so the file holds every hit.
    pub async fn drain(self) -> Result<usize, PersistError> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let r = save_now(self.inv.clone(), self.path.clone()).await;
        self.status.note(&r);
        r
    }
}
