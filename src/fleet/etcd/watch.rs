//! Watching a key or prefix from a revision, as the gateway's streaming answer: one JSON object
//! per line (`{"result": {...events...}}`).
//!
//! A [`Watch`] remembers the revision after the last event it returned. When the stream breaks
//! (etcd restarted, endpoint lost), the next [`Watch::next`] opens a new stream from that
//! revision on whichever endpoint answers, so no change is missed as long as etcd has not
//! compacted the history in between (then [`EtcdError::Compacted`]: re-read and watch again).

use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::b64::encode;
use super::error::show_key;
use super::kv::{header_revision, prefix_end};
use super::{int, EtcdClient, EtcdError, Kv};

/// A stream line longer than this is refused rather than buffered without bound.
const MAX_LINE: usize = 16 << 20;

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Created or changed.
    Put,
    /// Deleted (or its lease expired).
    Delete,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the change (for a delete: key and `mod_revision` only).
    pub kv: Kv,
}

/// A resumable watch; see the module doc.
pub struct Watch {
    client: EtcdClient,
    key: Vec<u8>,
    range_end: Option<Vec<u8>>,
    next_revision: i64,
    stream: Option<Stream>,
}

struct Stream {
    endpoint: String,
    body: Incoming,
    buf: Vec<u8>,
}

impl EtcdClient {
    /// Watches every key under `prefix`, starting at `from_revision` (inclusive; use the
    /// revision of a read plus one to continue after it).
    pub fn watch_prefix(&self, prefix: &[u8], from_revision: i64) -> Watch {
        Watch {
            client: self.clone(),
            key: prefix.to_vec(),
            range_end: Some(prefix_end(prefix)),
            next_revision: from_revision,
            stream: None,
        }
    }

    /// Watches one key, starting at `from_revision`.
    pub fn watch_key(&self, key: &[u8], from_revision: i64) -> Watch {
        Watch {
            client: self.clone(),
            key: key.to_vec(),
            range_end: None,
            next_revision: from_revision,
            stream: None,
        }
    }
}

impl Watch {
    /// The revision the watch resumes from: one past the last event returned.
    pub fn next_revision(&self) -> i64 {
        self.next_revision
    }

    /// Waits for the next non-empty batch of events. An error drops the stream; calling `next`
    /// again reconnects from [`Watch::next_revision`] (pace the retries yourself).
    pub async fn next(&mut self) -> Result<Vec<WatchEvent>, EtcdError> {
        loop {
            if self.stream.is_none() {
                self.open().await?;
            }
            let line = match self.read_line().await {
                Ok(line) => line,
                Err(e) => {
                    self.stream = None;
                    return Err(e);
                }
            };
            match self.handle(&line) {
                Ok(events) if events.is_empty() => continue,
                Ok(events) => return Ok(events),
                Err(e) => {
                    self.stream = None;
                    return Err(e);
                }
            }
        }
    }

    async fn open(&mut self) -> Result<(), EtcdError> {
        let mut create = json!({
            "key": encode(&self.key),
            "start_revision": self.next_revision.to_string(),
            "progress_notify": true,
        });
        if let Some(end) = &self.range_end {
            create["range_end"] = Value::String(encode(end));
        }
        let body = json!({"create_request": create});
        let (endpoint, body) = self
            .client
            .open_stream("watch", &self.key, "/watch", &body)
            .await?;
        self.stream = Some(Stream {
            endpoint,
            body,
            buf: Vec::new(),
        });
        Ok(())
    }

    async fn read_line(&mut self) -> Result<Vec<u8>, EtcdError> {
        let key = show_key(&self.key);
        let s = self.stream.as_mut().expect("opened before reading");
        loop {
            if let Some(pos) = s.buf.iter().position(|&b| b == b'\n') {
                let rest = s.buf.split_off(pos + 1);
                let mut line = std::mem::replace(&mut s.buf, rest);
                line.pop();
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                return Ok(line);
            }
            if s.buf.len() > MAX_LINE {
                return Err(EtcdError::Decode {
                    endpoint: s.endpoint.clone(),
                    op: "watch",
                    key,
                    reason: format!("a watch message exceeds {MAX_LINE} bytes"),
                });
            }
            let broken = |reason: String| EtcdError::Transport {
                endpoint: s.endpoint.clone(),
                op: "watch",
                key: key.clone(),
                reason,
            };
            match s.body.frame().await {
                None => return Err(broken("the server closed the watch stream".into())),
                Some(Err(e)) => return Err(broken(format!("watch stream broke: {e}"))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        s.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    fn handle(&mut self, line: &[u8]) -> Result<Vec<WatchEvent>, EtcdError> {
        let endpoint = self
            .stream
            .as_ref()
            .map(|s| s.endpoint.clone())
            .unwrap_or_default();
        let decode = |reason: String| EtcdError::Decode {
            endpoint: endpoint.clone(),
            op: "watch",
            key: show_key(&self.key),
            reason,
        };
        let v: Value = serde_json::from_slice(line)
            .map_err(|e| decode(format!("watch message is not JSON: {e}")))?;
        if let Some(err) = v.get("error") {
            return Err(EtcdError::Server {
                endpoint: endpoint.clone(),
                op: "watch",
                key: show_key(&self.key),
                status: 200,
                code: int(&err["code"]),
                message: err["message"].as_str().unwrap_or("no message").to_string(),
            });
        }
        let r = &v["result"];
        if r["canceled"].as_bool().unwrap_or(false) {
            let compact_revision = int(&r["compact_revision"]);
            if compact_revision > 0 {
                return Err(EtcdError::Compacted {
                    endpoint,
                    key: show_key(&self.key),
                    from: self.next_revision,
                    compact_revision,
                });
            }
            return Err(EtcdError::Server {
                endpoint: endpoint.clone(),
                op: "watch",
                key: show_key(&self.key),
                status: 200,
                code: -1,
                message: format!(
                    "watch canceled: {}",
                    r["cancel_reason"].as_str().unwrap_or("no reason given")
                ),
            });
        }
        let mut events = Vec::new();
        for e in r["events"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let kind = match e["type"].as_str() {
                None | Some("PUT") => EventKind::Put,
                Some("DELETE") => EventKind::Delete,
                Some(other) => return Err(decode(format!("unknown event type `{other}`"))),
            };
            let kv = Kv::from_json(&e["kv"], &endpoint, "watch")?;
            self.next_revision = self.next_revision.max(kv.mod_revision + 1);
            events.push(WatchEvent { kind, kv });
        }
        let progress = events.is_empty() && !r["created"].as_bool().unwrap_or(false);
        if progress {
            // A progress notification: everything up to the header revision was delivered.
            self.next_revision = self.next_revision.max(header_revision(r) + 1);
        }
        Ok(events)
    }
}
