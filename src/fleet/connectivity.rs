//! Whether this replica can reach etcd, for `cutover status`, a metric and an alert.
//!
//! Every etcd call the client makes reports here, so the status reflects the latest attempt of
//! any part of the fleet code (the state watcher, the member keep-alive, the election) without a
//! separate probe. A plain mutex: held for a few field writes, never across an await.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Shared record of the last success and failure talking to etcd.
#[derive(Debug, Default)]
pub struct Connectivity {
    inner: Mutex<ConnectivityStatus>,
}

/// A copy of the connectivity record, ready to show or serialize.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConnectivityStatus {
    /// `true` after a successful call, `false` after a call that could not reach any endpoint.
    /// Starts `false`: nothing is known until the first call.
    pub connected: bool,
    /// Unix milliseconds of the change to the current `connected` value (0: never changed).
    pub since_unix_ms: u64,
    /// Unix milliseconds of the last successful call (0: never).
    pub last_success_unix_ms: u64,
    /// The last error that made etcd unreachable, kept after recovery for the operator.
    pub last_error: Option<String>,
}

impl Connectivity {
    /// Records a call that reached etcd (whatever etcd answered).
    pub fn record_success(&self) {
        let now = unix_ms();
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if !s.connected {
            s.connected = true;
            s.since_unix_ms = now;
        }
        s.last_success_unix_ms = now;
    }

    /// Records a call that could not reach any endpoint.
    pub fn record_failure(&self, error: &str) {
        let now = unix_ms();
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if s.connected || s.since_unix_ms == 0 {
            s.connected = false;
            s.since_unix_ms = now;
        }
        s.last_error = Some(error.to_string());
    }

    /// The current record.
    pub fn status(&self) -> ConnectivityStatus {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Cheap check for metrics: last call reached etcd.
    pub fn is_connected(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .connected
    }
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_keeps_the_first_moment_and_success_clears_it() {
        let c = Connectivity::default();
        assert!(!c.is_connected());
        c.record_success();
        let up = c.status();
        assert!(up.connected && up.since_unix_ms > 0 && up.last_error.is_none());
        c.record_failure("etcd http://127.0.0.1:1: refused");
        let down = c.status();
        assert!(!down.connected);
        c.record_failure("again");
        let still = c.status();
        assert_eq!(
            still.since_unix_ms, down.since_unix_ms,
            "unreachable since the first failure"
        );
        assert_eq!(still.last_error.as_deref(), Some("again"));
        c.record_success();
        let back = c.status();
        assert!(back.connected);
        assert_eq!(
            back.last_error.as_deref(),
            Some("again"),
            "kept for the operator"
        );
    }
}
