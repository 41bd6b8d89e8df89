//! Leases: a TTL etcd counts down unless kept alive. Keys attached to a lease vanish with it,
//! which is what makes member registrations and the leader key disappear when a replica dies.

use std::time::Duration;

use serde_json::json;

use super::error::show_key;
use super::{int, EtcdClient, EtcdError};

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// etcd's lease id.
    pub id: i64,
    /// The TTL etcd granted (may be larger than asked: etcd has a minimum).
    pub ttl: Duration,
}

fn lease_key(id: i64) -> Vec<u8> {
    format!("lease {id:x}").into_bytes()
}

impl EtcdClient {
    /// Grants a lease of `ttl` (whole seconds, at least 1).
    pub async fn lease_grant(&self, ttl: Duration) -> Result<Lease, EtcdError> {
        let secs = ttl.as_secs().max(1);
        let a = self
            .call_answer(
                "lease grant",
                b"",
                "/lease/grant",
                &json!({"TTL": secs.to_string()}),
            )
            .await?;
        let id = int(&a.body["ID"]);
        if id == 0 {
            return Err(EtcdError::Decode {
                endpoint: a.endpoint,
                op: "lease grant",
                key: String::new(),
                reason: format!("no lease id in {}", a.body),
            });
        }
        let granted = int(&a.body["TTL"]).max(1) as u64;
        Ok(Lease {
            id,
            ttl: Duration::from_secs(granted),
        })
    }

    /// One keep-alive round trip; returns the TTL etcd reset the lease to, or
    /// [`EtcdError::LeaseExpired`] when the lease is gone.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<Duration, EtcdError> {
        let key = lease_key(id);
        let a = self
            .call_answer(
                "lease keep-alive",
                &key,
                "/lease/keepalive",
                &json!({"ID": id.to_string()}),
            )
            .await?;
        // A streaming call: one `{"result": ...}` (or `{"error": ...}`) per request sent.
        if let Some(err) = a.body.get("error") {
            return Err(EtcdError::Server {
                endpoint: a.endpoint,
                op: "lease keep-alive",
                key: show_key(&key),
                status: 200,
                code: int(&err["code"]),
                message: err["message"].as_str().unwrap_or("no message").to_string(),
            });
        }
        let ttl = int(&a.body["result"]["TTL"]);
        if ttl <= 0 {
            return Err(EtcdError::LeaseExpired {
                endpoint: a.endpoint,
                id,
            });
        }
        Ok(Duration::from_secs(ttl as u64))
    }

    /// Revokes the lease now (deleting its keys). Revoking a lease that is gone is not an error.
    pub async fn lease_revoke(&self, id: i64) -> Result<(), EtcdError> {
        let key = lease_key(id);
        match self
            .call_answer(
                "lease revoke",
                &key,
                "/lease/revoke",
                &json!({"ID": id.to_string()}),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(EtcdError::Server { message, .. }) if message.contains("lease not found") => Ok(()),
            Err(e) => Err(e),
        }
    }
}
