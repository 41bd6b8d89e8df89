//! Replica registration: `<prefix>/members/<id>` = [`MemberInfo`] under a lease, so a replica
//! that dies disappears from `cutover status --fleet` one lease TTL later.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::connectivity::unix_ms;
use super::etcd::{EtcdClient, EtcdError};
use super::store::backoff;

/// What a replica says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// The replica's id (`[fleet] id`).
    pub id: String,
    /// Where operators reach it (admin address).
    pub address: String,
    /// cutover version it runs.
    pub version: String,
    /// Generation of the fleet state it has applied (0: none yet).
    pub generation: u64,
    /// Unix milliseconds of its last refresh (every third of the lease TTL).
    pub last_seen_unix_ms: u64,
}

/// How a member's applied state compares with the fleet's current generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "lag", rename_all = "snake_case")]
pub enum Lag {
    /// Applied the current generation.
    UpToDate,
    /// Applied an older generation (still catching up, or stuck).
    Behind {
        /// Generations missing.
        by: u64,
    },
    /// Claims a generation the store does not have yet (the store was reset, or this reader's
    /// view is older): differs, worth a look.
    Ahead {
        /// Generations ahead.
        by: u64,
    },
}

/// A member and its lag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberStatus {
    /// What it registered.
    #[serde(flatten)]
    pub info: MemberInfo,
    /// Compared with the current generation.
    #[serde(flatten)]
    pub lag: Lag,
}

impl MemberStatus {
    /// True when the replica has not applied exactly the current generation.
    pub fn is_flagged(&self) -> bool {
        self.lag != Lag::UpToDate
    }
}

/// Every registered member, by id, with parse failures skipped (and logged).
pub async fn list_members(client: &EtcdClient, prefix: &str) -> Result<Vec<MemberInfo>, EtcdError> {
    let (kvs, _) = client.get_prefix(&super::key(prefix, "members/")).await?;
    let mut members = Vec::with_capacity(kvs.len());
    for kv in kvs {
        match serde_json::from_slice::<MemberInfo>(&kv.value) {
            Ok(m) => members.push(m),
            Err(e) => {
                tracing::warn!(key = %String::from_utf8_lossy(&kv.key), error = %e, "fleet member record is not readable; skipped")
            }
        }
    }
    Ok(members)
}

/// Flags each member against `current_generation` (the store's).
pub fn flag_lagging(members: Vec<MemberInfo>, current_generation: u64) -> Vec<MemberStatus> {
    members
        .into_iter()
        .map(|info| {
            let lag = match info.generation.cmp(&current_generation) {
                std::cmp::Ordering::Equal => Lag::UpToDate,
                std::cmp::Ordering::Less => Lag::Behind {
                    by: current_generation - info.generation,
                },
                std::cmp::Ordering::Greater => Lag::Ahead {
                    by: info.generation - current_generation,
                },
            };
            MemberStatus { info, lag }
        })
        .collect()
}

/// This replica's registration, kept alive by a background task until dropped or
/// [`Registration::deregister`]ed.
#[derive(Debug)]
pub struct Registration {
    applied: watch::Sender<u64>,
    lease: Arc<AtomicI64>,
    task: JoinHandle<()>,
    client: EtcdClient,
}

impl Registration {
    /// Registers `info` under `<prefix>/members/<info.id>` with a lease of `ttl`, re-registering
    /// after the lease is lost (etcd was unreachable longer than the TTL).
    pub fn spawn(client: EtcdClient, prefix: &str, info: MemberInfo, ttl: Duration) -> Self {
        let (applied, rx) = watch::channel(info.generation);
        let lease = Arc::new(AtomicI64::new(0));
        let key = super::key(prefix, &format!("members/{}", info.id));
        let task = tokio::spawn(keep_registered(
            client.clone(),
            key,
            info,
            ttl,
            rx,
            lease.clone(),
        ));
        Registration {
            applied,
            lease,
            task,
            client,
        }
    }

    /// Records the generation this replica has now applied; published at once.
    pub fn set_applied(&self, generation: u64) {
        self.applied.send_replace(generation);
    }

    /// The current lease id (0 before the first grant).
    pub fn lease_id(&self) -> i64 {
        self.lease.load(Ordering::Relaxed)
    }

    /// Stops the keep-alive and removes the registration now (on a clean shutdown).
    pub async fn deregister(self) -> Result<(), EtcdError> {
        self.task.abort();
        match self.lease_id() {
            0 => Ok(()),
            id => self.client.lease_revoke(id).await,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn keep_registered(
    client: EtcdClient,
    key: Vec<u8>,
    mut info: MemberInfo,
    ttl: Duration,
    mut applied: watch::Receiver<u64>,
    lease_slot: Arc<AtomicI64>,
) {
    let mut backoff = backoff();
    let tick = ttl / 3;
    loop {
        let lease = match client.lease_grant(ttl).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "fleet membership: cannot get a lease");
                backoff.wait().await;
                continue;
            }
        };
        lease_slot.store(lease.id, Ordering::Relaxed);
        loop {
            info.generation = *applied.borrow_and_update();
            info.last_seen_unix_ms = unix_ms();
            let record = serde_json::to_vec(&info).expect("member info serializes");
            match client.put(&key, &record, Some(lease.id)).await {
                Ok(_) => backoff.reset(),
                Err(EtcdError::Server { ref message, .. })
                    if message.contains("lease not found") =>
                {
                    break
                }
                Err(e) => tracing::warn!(error = %e, "fleet membership: refresh failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                changed = applied.changed() => if changed.is_err() { return },
            }
            match client.lease_keep_alive(lease.id).await {
                Ok(_) => {}
                Err(EtcdError::LeaseExpired { .. }) => break,
                Err(e) => tracing::warn!(error = %e, "fleet membership: keep-alive failed"),
            }
        }
        tracing::info!(id = %info.id, "fleet membership: lease lost; registering again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, generation: u64) -> MemberInfo {
        MemberInfo {
            id: id.into(),
            address: "10.0.0.1:9090".into(),
            version: "0.1.0".into(),
            generation,
            last_seen_unix_ms: 1,
        }
    }

    #[test]
    fn members_behind_or_ahead_are_flagged() {
        let flagged = flag_lagging(vec![member("a", 5), member("b", 3), member("c", 7)], 5);
        assert_eq!(flagged[0].lag, Lag::UpToDate);
        assert!(!flagged[0].is_flagged());
        assert_eq!(flagged[1].lag, Lag::Behind { by: 2 });
        assert_eq!(flagged[2].lag, Lag::Ahead { by: 2 });
        assert!(flagged[1].is_flagged() && flagged[2].is_flagged());
        let json = serde_json::to_value(&flagged[1]).unwrap();
        assert_eq!(json["lag"], "behind");
        assert_eq!(json["by"], 2);
        assert_eq!(json["id"], "b");
    }
}
