//! Key-value calls: range (one key or a prefix), put, compare-and-swap transactions, delete.

use serde_json::{json, Value};

use super::b64::{decode, encode};
use super::error::show_key;
use super::{int, EtcdClient, EtcdError};

/// One key as etcd stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    /// The key.
    pub key: Vec<u8>,
    /// The value (empty in delete events).
    pub value: Vec<u8>,
    /// Revision of the key's creation; 0 for "does not exist".
    pub create_revision: i64,
    /// Revision of the key's last change: what compare-and-swap compares.
    pub mod_revision: i64,
    /// Number of changes since creation.
    pub version: i64,
    /// Lease attached to the key (0: none).
    pub lease: i64,
}

/// Result of a compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOutcome {
    /// The comparison held and the write happened at this revision.
    Written {
        /// The cluster revision of the write (= the key's new `mod_revision`).
        revision: i64,
    },
    /// Someone else changed the key first; this is what it holds now (`None`: absent).
    Conflict {
        /// The key's current content.
        current: Option<Kv>,
        /// The cluster revision the comparison was made at.
        revision: i64,
    },
}

impl Kv {
    pub(crate) fn from_json(v: &Value, endpoint: &str, op: &'static str) -> Result<Kv, EtcdError> {
        let field = |name: &str| -> Result<Vec<u8>, EtcdError> {
            match v[name].as_str() {
                None => Ok(Vec::new()),
                Some(s) => decode(s).map_err(|reason| EtcdError::Decode {
                    endpoint: endpoint.to_string(),
                    op,
                    key: v["key"].as_str().unwrap_or("?").to_string(),
                    reason: format!("{name}: {reason}"),
                }),
            }
        };
        Ok(Kv {
            key: field("key")?,
            value: field("value")?,
            create_revision: int(&v["create_revision"]),
            mod_revision: int(&v["mod_revision"]),
            version: int(&v["version"]),
            lease: int(&v["lease"]),
        })
    }
}

/// The first key after every key starting with `prefix` (etcd's `range_end` for a prefix).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // all keys
}

fn kvs(body: &Value, endpoint: &str, op: &'static str) -> Result<Vec<Kv>, EtcdError> {
    match body["kvs"].as_array() {
        None => Ok(Vec::new()),
        Some(list) => list
            .iter()
            .map(|k| Kv::from_json(k, endpoint, op))
            .collect(),
    }
}

/// The cluster revision in an answer's header.
pub(crate) fn header_revision(body: &Value) -> i64 {
    int(&body["header"]["revision"])
}

fn lease_field(lease: Option<i64>) -> Value {
    match lease {
        Some(id) => Value::String(id.to_string()),
        None => Value::String("0".into()),
    }
}

impl EtcdClient {
    /// The key, or `None` when absent, and the cluster revision the read was made at.
    pub async fn get(&self, key: &[u8]) -> Result<(Option<Kv>, i64), EtcdError> {
        let body = json!({"key": encode(key)});
        let a = self.call_answer("range", key, "/kv/range", &body).await?;
        let mut found = kvs(&a.body, &a.endpoint, "range")?;
        Ok((found.pop(), header_revision(&a.body)))
    }

    /// Every key starting with `prefix`, sorted by key, and the revision of the read: a watch
    /// from `revision + 1` then misses nothing.
    pub async fn get_prefix(&self, prefix: &[u8]) -> Result<(Vec<Kv>, i64), EtcdError> {
        let body = json!({
            "key": encode(prefix),
            "range_end": encode(&prefix_end(prefix)),
            "sort_order": "ASCEND",
            "sort_target": "KEY",
        });
        let a = self
            .call_answer("range", prefix, "/kv/range", &body)
            .await?;
        Ok((
            kvs(&a.body, &a.endpoint, "range")?,
            header_revision(&a.body),
        ))
    }

    /// Unconditional write; returns the revision of the write.
    pub async fn put(
        &self,
        key: &[u8],
        value: &[u8],
        lease: Option<i64>,
    ) -> Result<i64, EtcdError> {
        let body = json!({"key": encode(key), "value": encode(value), "lease": lease_field(lease)});
        let a = self.call_answer("put", key, "/kv/put", &body).await?;
        Ok(header_revision(&a.body))
    }

    /// Writes `value` only if the key's `mod_revision` is still `expected`; `expected == 0`
    /// means "only if the key does not exist" (`create_revision == 0`). On conflict the current
    /// content comes back from the same transaction, so the caller can show or merge it.
    pub async fn put_if(
        &self,
        key: &[u8],
        value: &[u8],
        expected: i64,
        lease: Option<i64>,
    ) -> Result<TxnOutcome, EtcdError> {
        let k = encode(key);
        let compare = if expected == 0 {
            json!({"target": "CREATE", "key": k, "result": "EQUAL", "create_revision": "0"})
        } else {
            json!({"target": "MOD", "key": k, "result": "EQUAL", "mod_revision": expected.to_string()})
        };
        let body = json!({
            "compare": [compare],
            "success": [{"request_put": {"key": k, "value": encode(value), "lease": lease_field(lease)}}],
            "failure": [{"request_range": {"key": k}}],
        });
        self.txn(key, &body).await
    }

    /// Deletes the key only if its `mod_revision` is still `expected` (a leader resigning must
    /// not delete a successor's key).
    pub async fn delete_if(&self, key: &[u8], expected: i64) -> Result<TxnOutcome, EtcdError> {
        let k = encode(key);
        let body = json!({
            "compare": [{"target": "MOD", "key": k, "result": "EQUAL", "mod_revision": expected.to_string()}],
            "success": [{"request_delete_range": {"key": k}}],
            "failure": [{"request_range": {"key": k}}],
        });
        self.txn(key, &body).await
    }

    async fn txn(&self, key: &[u8], body: &Value) -> Result<TxnOutcome, EtcdError> {
        let a = self.call_answer("txn", key, "/kv/txn", body).await?;
        let revision = header_revision(&a.body);
        if a.body["succeeded"].as_bool().unwrap_or(false) {
            return Ok(TxnOutcome::Written { revision });
        }
        let range = &a.body["responses"][0]["response_range"];
        let current = kvs(range, &a.endpoint, "txn")?.pop();
        if a.body["responses"].as_array().is_none() {
            return Err(EtcdError::Decode {
                endpoint: a.endpoint,
                op: "txn",
                key: show_key(key),
                reason: "failed transaction without its range answer".into(),
            });
        }
        Ok(TxnOutcome::Conflict { current, revision })
    }

    /// Deletes the key; returns how many keys were deleted (0 or 1).
    pub async fn delete(&self, key: &[u8]) -> Result<i64, EtcdError> {
        let body = json!({"key": encode(key)});
        let a = self
            .call_answer("delete", key, "/kv/deleterange", &body)
            .await?;
        Ok(int(&a.body["deleted"]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn kv_decodes_the_gateway_shape_and_names_bad_fields() {
        let v = json!({"key": "Zm9v", "create_revision": "5", "mod_revision": "7", "version": "2", "value": "eA=="});
        let kv = Kv::from_json(&v, "http://e:1", "range").unwrap();
        assert_eq!(
            (kv.key.as_slice(), kv.value.as_slice()),
            (&b"foo"[..], &b"x"[..])
        );
        assert_eq!(
            (kv.create_revision, kv.mod_revision, kv.version, kv.lease),
            (5, 7, 2, 0)
        );
        let bad = json!({"key": "Zm9v", "value": "!!"});
        let err = Kv::from_json(&bad, "http://e:1", "range").unwrap_err();
        assert!(err.to_string().contains("value"), "{err}");
    }
}
