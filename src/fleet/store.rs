//! The fleet's operator state: one key, `<prefix>/state`, holding
//! `{"generation": N, "state": <the state file's content>}`.
//!
//! Writes are compare-and-swap on the key's `mod_revision`: an operator's change is based on the
//! state it saw, and if another replica wrote in between the write fails with
//! [`WriteError::Conflict`] (carrying what is there now) instead of silently overwriting it.
//! `generation` counts accepted writes, so `status --fleet` can say which replica lags.
//!
//! Every replica runs [`FleetStore::watch`]: the current state, then every change, on a
//! `tokio::sync::watch` channel. Each value is the whole state, so a slow applier that only sees
//! the newest one has lost nothing.

use crate::retry::Backoff;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::connectivity::ConnectivityStatus;
use super::etcd::{EtcdClient, EtcdError, EventKind, Kv, TxnOutcome};

/// What the state key holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateRecord {
    /// Number of writes accepted since the key was created (1 for the first).
    pub generation: u64,
    /// The operator state, as the state file holds it; opaque here.
    pub state: Value,
}

/// A record and the etcd revision it was written at (the value to pass to the next write).
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    /// The record.
    pub record: StateRecord,
    /// The key's `mod_revision`.
    pub revision: i64,
}

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Someone else wrote since `expected`; nothing was changed.
    #[error("fleet state `{key}` was changed by another writer since revision {expected} (now {}); nothing was written: re-read and retry", describe(.current))]
    Conflict {
        /// The state key.
        key: String,
        /// The revision the write was based on.
        expected: i64,
        /// What the key holds now (`None`: absent).
        current: Option<Versioned>,
    },
    /// etcd could not be reached or refused; nothing is known to be written.
    #[error("writing fleet state: {0}")]
    Etcd(#[from] EtcdError),
    /// The key holds something that is not a state record.
    #[error(transparent)]
    Corrupt(#[from] CorruptState),
}

/// Why the current state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// One attempt failed.
    #[error("reading fleet state: {0}")]
    Etcd(#[from] EtcdError),
    /// No attempt succeeded within the bound; the caller serves from the state file.
    #[error("fleet state `{key}` not read within {after:?}; last error: {last_error}")]
    Timeout {
        /// The state key.
        key: String,
        /// The bound.
        after: Duration,
        /// The last attempt's error.
        last_error: String,
    },
    /// The key holds something that is not a state record.
    #[error(transparent)]
    Corrupt(#[from] CorruptState),
}

/// The state key holds bytes that are not a `{"generation", "state"}` JSON record.
#[derive(Debug, thiserror::Error)]
#[error("fleet state `{key}` at revision {revision} is not a cutover state record: {reason}")]
pub struct CorruptState {
    /// The state key.
    pub key: String,
    /// Its revision.
    pub revision: i64,
    /// The JSON error.
    pub reason: String,
}

fn describe(current: &Option<Versioned>) -> String {
    match current {
        Some(v) => format!(
            "revision {}, generation {}",
            v.revision, v.record.generation
        ),
        None => "absent".into(),
    }
}

/// The operator-state store of one fleet.
#[derive(Debug)]
pub struct FleetStore {
    client: EtcdClient,
    key: Vec<u8>,
    key_text: String,
    /// Last record seen (read, written or watched): supplies the generation for the next write.
    last: Mutex<Option<Versioned>>,
}

impl FleetStore {
    /// The store under `prefix` (e.g. `/cutover/shop`).
    pub fn new(client: EtcdClient, prefix: &str) -> Self {
        let key = super::key(prefix, "state");
        FleetStore {
            key_text: String::from_utf8_lossy(&key).into_owned(),
            key,
            client,
            last: Mutex::new(None),
        }
    }

    /// The etcd client (shared with members and election).
    pub fn client(&self) -> &EtcdClient {
        &self.client
    }

    /// The state key, for messages.
    pub fn key(&self) -> &str {
        &self.key_text
    }

    /// Connected or unreachable since when, and the last error: for status and metrics.
    pub fn connectivity(&self) -> ConnectivityStatus {
        self.client.connectivity().status()
    }

    fn decode(&self, kv: &Kv) -> Result<Versioned, CorruptState> {
        let record: StateRecord = serde_json::from_slice(&kv.value).map_err(|e| CorruptState {
            key: self.key_text.clone(),
            revision: kv.mod_revision,
            reason: e.to_string(),
        })?;
        Ok(Versioned {
            record,
            revision: kv.mod_revision,
        })
    }

    fn remember(&self, v: &Option<Versioned>) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let newer = match (&*last, v) {
            (Some(old), Some(new)) => new.revision >= old.revision,
            _ => true,
        };
        if newer {
            last.clone_from(v);
        }
    }

    /// One read: the state (`None`: never written) and the cluster revision of the read.
    pub async fn read(&self) -> Result<(Option<Versioned>, i64), ReadError> {
        let (kv, revision) = self.client.get(&self.key).await?;
        let v = kv.map(|kv| self.decode(&kv)).transpose()?;
        self.remember(&v);
        Ok((v, revision))
    }

    /// The startup read: retried until it succeeds or `within` has passed. On
    /// [`ReadError::Timeout`] the caller serves from the state file and says so.
    pub async fn read_current(&self, within: Duration) -> Result<Option<Versioned>, ReadError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut last_error = String::from("no attempt finished");
        let mut pause = Duration::from_millis(50);
        loop {
            match tokio::time::timeout_at(deadline, self.read()).await {
                Ok(Ok((v, _))) => return Ok(v),
                Ok(Err(ReadError::Corrupt(c))) => return Err(ReadError::Corrupt(c)),
                Ok(Err(e)) => last_error = e.to_string(),
                Err(_) => {}
            }
            if tokio::time::Instant::now() + pause >= deadline {
                return Err(ReadError::Timeout {
                    key: self.key_text.clone(),
                    after: within,
                    last_error,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Writes `state` if the key is still at `expected_revision` (0: only if never written).
    /// Returns the new record with its revision and generation.
    pub async fn write_state(
        &self,
        expected_revision: i64,
        state: Value,
    ) -> Result<Versioned, WriteError> {
        let generation = self.next_generation(expected_revision).await?;
        let record = StateRecord { generation, state };
        let bytes = serde_json::to_vec(&record).expect("a JSON value serializes");
        match self
            .client
            .put_if(&self.key, &bytes, expected_revision, None)
            .await?
        {
            TxnOutcome::Written { revision } => {
                let v = Versioned { record, revision };
                self.remember(&Some(v.clone()));
                Ok(v)
            }
            // Our own write, landed by an attempt whose answer was lost (see EtcdClient::call).
            TxnOutcome::Conflict {
                current: Some(kv), ..
            } if kv.value == bytes => {
                let v = Versioned {
                    record,
                    revision: kv.mod_revision,
                };
                self.remember(&Some(v.clone()));
                Ok(v)
            }
            TxnOutcome::Conflict { current, .. } => {
                let current = current.map(|kv| self.decode(&kv)).transpose()?;
                self.remember(&current);
                Err(self.conflict(expected_revision, current))
            }
        }
    }

    fn conflict(&self, expected: i64, current: Option<Versioned>) -> WriteError {
        WriteError::Conflict {
            key: self.key_text.clone(),
            expected,
            current,
        }
    }

    /// The generation a write based on `expected` gets: one past the record at that revision.
    async fn next_generation(&self, expected: i64) -> Result<u64, WriteError> {
        if expected == 0 {
            return Ok(1);
        }
        let cached = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(v) = cached.filter(|v| v.revision == expected) {
            return Ok(v.record.generation + 1);
        }
        let (current, _) = self.read().await.map_err(|e| match e {
            ReadError::Etcd(e) => WriteError::Etcd(e),
            ReadError::Corrupt(c) => WriteError::Corrupt(c),
            ReadError::Timeout { .. } => unreachable!("read() has no deadline of its own"),
        })?;
        match current {
            Some(v) if v.revision == expected => Ok(v.record.generation + 1),
            other => Err(self.conflict(expected, other)),
        }
    }

    /// Starts the watcher: the channel holds the current state (once read) and then every
    /// change; `None` while unknown or after the key was deleted. Reconnects by itself, resuming
    /// from the last revision seen; dropping the [`StateWatcher`] stops it.
    pub fn watch(self: &Arc<Self>) -> StateWatcher {
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(watch_loop(Arc::clone(self), tx));
        StateWatcher { rx, task }
    }
}

/// A running watcher; see [`FleetStore::watch`].
#[derive(Debug)]
pub struct StateWatcher {
    rx: watch::Receiver<Option<Versioned>>,
    task: JoinHandle<()>,
}

impl StateWatcher {
    /// A receiver of the state; `changed().await` wakes on each new value.
    pub fn subscribe(&self) -> watch::Receiver<Option<Versioned>> {
        self.rx.clone()
    }
}

impl Drop for StateWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The fleet's pauses between failed etcd attempts: 100 ms doubling to 2 s.
pub(crate) fn backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(2))
}

async fn watch_loop(store: Arc<FleetStore>, tx: watch::Sender<Option<Versioned>>) {
    let mut backoff = backoff();
    loop {
        // (Re)start from a read: at the start, and when etcd compacted the history we needed.
        let revision = match store.read().await {
            Ok((v, revision)) => {
                publish(&tx, v);
                revision
            }
            Err(e) => {
                tracing::warn!(error = %e, "fleet state: read failed; serving the last applied state");
                backoff.wait().await;
                continue;
            }
        };
        backoff.reset();
        let mut watch = store.client.watch_key(&store.key, revision + 1);
        loop {
            match watch.next().await {
                Ok(events) => {
                    backoff.reset();
                    let Some(last) = events.last() else { continue };
                    match last.kind {
                        EventKind::Delete => publish(&tx, None),
                        EventKind::Put => match store.decode(&last.kv) {
                            Ok(v) => {
                                store.remember(&Some(v.clone()));
                                publish(&tx, Some(v));
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "fleet state: ignoring a change that is not a state record; keeping the last applied state")
                            }
                        },
                    }
                }
                Err(EtcdError::Compacted { .. }) => break,
                Err(e) => {
                    tracing::warn!(error = %e, resume_from = watch.next_revision(), "fleet state: watch interrupted; serving the last applied state");
                    backoff.wait().await;
                }
            }
        }
    }
}

/// Sends `v` unless the channel already holds the same or a newer revision.
fn publish(tx: &watch::Sender<Option<Versioned>>, v: Option<Versioned>) {
    tx.send_if_modified(|held| {
        let newer = match (&*held, &v) {
            (Some(old), Some(new)) => new.revision > old.revision,
            (None, None) => false,
            _ => true,
        };
        if newer {
            *held = v;
        }
        newer
    });
}
