//! Leader election: the replica that creates `<prefix>/leader` (create-if-absent) under its own
//! lease leads until the lease ends. The others watch the key and campaign again when it is
//! deleted (resignation, or the leader's lease expired because it died or lost etcd).
//!
//! A leader steps down as soon as it cannot prove its lease is alive: etcd says the lease is
//! gone, or no keep-alive succeeded for the TTL minus one request timeout. So two replicas never
//! both believe they lead for longer than the clock skew between them.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::etcd::{EtcdClient, EtcdError, EventKind, TxnOutcome};
use super::store::backoff;
use crate::retry::Backoff;

/// A running candidacy; see the module doc. Dropping it stops campaigning without resigning
/// (like a crash: the lease expires after its TTL).
#[derive(Debug)]
pub struct Election {
    leading: Arc<AtomicBool>,
    changes: watch::Receiver<bool>,
    lease: Arc<AtomicI64>,
    /// Who holds the leader key, as this candidate last learned it (its own id while leading).
    holder: Arc<Mutex<Option<String>>>,
    task: JoinHandle<()>,
    client: EtcdClient,
}

impl Election {
    /// Starts campaigning for `<prefix>/leader` as `id` with leases of `ttl`.
    pub fn spawn(client: EtcdClient, prefix: &str, id: &str, ttl: Duration) -> Self {
        let leading = Arc::new(AtomicBool::new(false));
        let lease = Arc::new(AtomicI64::new(0));
        let (tx, changes) = watch::channel(false);
        let holder = Arc::new(Mutex::new(None));
        let candidate = Candidate {
            holder: holder.clone(),
            client: client.clone(),
            key: super::key(prefix, "leader"),
            id: id.to_string(),
            ttl,
            leading: leading.clone(),
            lease: lease.clone(),
            tx,
        };
        Election {
            leading,
            changes,
            lease,
            holder,
            task: tokio::spawn(candidate.run()),
            client,
        }
    }

    /// Cheap check for the rollout engine: this replica leads right now.
    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// Wakes on every change of leadership (true: became leader, false: stepped down).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.changes.clone()
    }

    /// The id of the leader as last learned (its own id while leading; `None` while the key is
    /// vacant or unknown). Learned from the campaign, so it costs no etcd call: for status.
    pub fn leader(&self) -> Option<String> {
        self.holder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The lease backing the leadership while leading (0 otherwise).
    pub fn lease_id(&self) -> i64 {
        if self.is_leader() {
            self.lease.load(Ordering::Acquire)
        } else {
            0
        }
    }

    /// Stops campaigning and, when leading, gives the leadership up at once (revokes the
    /// lease, deleting the key) so another replica takes over without waiting for the TTL.
    pub async fn resign(self) -> Result<(), EtcdError> {
        self.task.abort();
        let lease = self.lease.swap(0, Ordering::AcqRel);
        self.leading.store(false, Ordering::Release);
        if lease != 0 {
            self.client.lease_revoke(lease).await?;
        }
        Ok(())
    }
}

impl Drop for Election {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The id of the current leader, if any.
pub async fn current_leader(
    client: &EtcdClient,
    prefix: &str,
) -> Result<Option<String>, EtcdError> {
    let (kv, _) = client.get(&super::key(prefix, "leader")).await?;
    Ok(kv.map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
}

struct Candidate {
    client: EtcdClient,
    holder: Arc<Mutex<Option<String>>>,
    key: Vec<u8>,
    id: String,
    ttl: Duration,
    leading: Arc<AtomicBool>,
    lease: Arc<AtomicI64>,
    tx: watch::Sender<bool>,
}

impl Candidate {
    fn set_holder(&self, holder: Option<String>) {
        *self.holder.lock().unwrap_or_else(|p| p.into_inner()) = holder;
    }

    fn set_leading(&self, leading: bool) {
        self.set_holder(leading.then(|| self.id.clone()));
        self.leading.store(leading, Ordering::Release);
        self.tx.send_replace(leading);
        tracing::info!(id = %self.id, leading, "fleet leadership changed");
    }

    async fn run(self) {
        let mut backoff = backoff();
        loop {
            let lease = match self.client.lease_grant(self.ttl).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "fleet election: cannot get a lease");
                    backoff.wait().await;
                    continue;
                }
            };
            self.lease.store(lease.id, Ordering::Release);
            let outcome = self
                .client
                .put_if(&self.key, self.id.as_bytes(), 0, Some(lease.id))
                .await;
            match outcome {
                Ok(TxnOutcome::Written { .. }) => {
                    backoff.reset();
                    self.set_leading(true);
                    self.hold(lease.id, lease.ttl).await;
                    self.set_leading(false);
                    self.lease.store(0, Ordering::Release);
                    let _ = self.client.lease_revoke(lease.id).await;
                }
                Ok(TxnOutcome::Conflict { current, revision }) => {
                    self.set_holder(
                        current
                            .as_ref()
                            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()),
                    );
                    let _ = self.client.lease_revoke(lease.id).await;
                    self.lease.store(0, Ordering::Release);
                    backoff.reset();
                    if current.is_some() {
                        self.wait_for_vacancy(revision + 1, &mut backoff).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "fleet election: campaign failed");
                    let _ = self.client.lease_revoke(lease.id).await;
                    self.lease.store(0, Ordering::Release);
                    backoff.wait().await;
                }
            }
        }
    }

    /// Keeps the lease alive while it provably is; returns when leadership must end.
    async fn hold(&self, lease: i64, ttl: Duration) {
        let margin = self.client.timeout();
        let mut confirmed = Instant::now();
        loop {
            tokio::time::sleep(ttl / 3).await;
            match self.client.lease_keep_alive(lease).await {
                Ok(_) => confirmed = Instant::now(),
                Err(EtcdError::LeaseExpired { .. }) => {
                    tracing::warn!(id = %self.id, "fleet election: our lease ended; stepping down");
                    return;
                }
                Err(e) => {
                    if confirmed.elapsed() + margin >= ttl {
                        tracing::warn!(id = %self.id, error = %e, "fleet election: lease unconfirmed for its TTL; stepping down");
                        return;
                    }
                }
            }
        }
    }

    /// Waits for the leader key to be deleted (or the watch to fail: then campaign again).
    async fn wait_for_vacancy(&self, from: i64, backoff: &mut Backoff) {
        let mut watch = self.client.watch_key(&self.key, from);
        loop {
            match watch.next().await {
                Ok(events) => {
                    if events.iter().any(|e| e.kind == EventKind::Delete) {
                        self.set_holder(None);
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "fleet election: watch of the leader key failed");
                    backoff.wait().await;
                    return;
                }
            }
        }
    }
}
