//! What went wrong talking to etcd, always naming the endpoint and the key involved so an
//! operator reading `cutover status` or a log line knows which server and which piece of state.

use std::time::Duration;

/// An etcd call failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The call did not finish within the request timeout.
    #[error("etcd {endpoint}: {op} `{key}` timed out after {after:?}")]
    Timeout {
        /// Base URL of the server.
        endpoint: String,
        /// What was being done (`range`, `put`, `txn`, `watch`, ...).
        op: &'static str,
        /// The key (or prefix) concerned, lossy UTF-8.
        key: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// No connection, or the connection broke before an answer arrived.
    #[error("etcd {endpoint}: {op} `{key}`: cannot reach the server: {reason}")]
    Transport {
        /// Base URL of the server.
        endpoint: String,
        /// What was being done.
        op: &'static str,
        /// The key concerned.
        key: String,
        /// The underlying error, as text.
        reason: String,
    },
    /// The server answered with a gRPC error (bad request, permission denied, lease not found...).
    #[error("etcd {endpoint}: {op} `{key}` refused: {message} (gRPC code {code}, HTTP {status})")]
    Server {
        /// Base URL of the server.
        endpoint: String,
        /// What was being done.
        op: &'static str,
        /// The key concerned.
        key: String,
        /// HTTP status of the gateway's answer.
        status: u16,
        /// gRPC status code (3 invalid argument, 7 permission denied, 14 unavailable...).
        code: i64,
        /// The server's message.
        message: String,
    },
    /// The answer was not what the etcd v3 gateway sends.
    #[error("etcd {endpoint}: {op} `{key}`: unexpected answer: {reason}")]
    Decode {
        /// Base URL of the server.
        endpoint: String,
        /// What was being done.
        op: &'static str,
        /// The key concerned.
        key: String,
        /// What did not fit.
        reason: String,
    },
    /// Every endpoint failed; each attempt's error is listed.
    #[error("no etcd endpoint answered {op} `{key}`: {}", join(.attempts))]
    Unreachable {
        /// What was being done.
        op: &'static str,
        /// The key concerned.
        key: String,
        /// One error per endpoint tried, in order.
        attempts: Vec<EtcdError>,
    },
    /// A lease kept alive by us no longer exists (expired while we could not reach etcd, or revoked).
    #[error("etcd {endpoint}: lease {id:x} has expired or was revoked")]
    LeaseExpired {
        /// Base URL of the server that said so.
        endpoint: String,
        /// The lease.
        id: i64,
    },
    /// A watch asked for history etcd has compacted away; re-read the state and watch from there.
    #[error("etcd {endpoint}: watch of `{key}` from revision {from} impossible: compacted up to revision {compact_revision}")]
    Compacted {
        /// Base URL of the server.
        endpoint: String,
        /// The watched key or prefix.
        key: String,
        /// The revision the watch asked to start from.
        from: i64,
        /// Oldest revision still available.
        compact_revision: i64,
    },
    /// The client options are unusable (bad endpoint URL, unreadable TLS file...).
    #[error("etcd client options: {0}")]
    Options(String),
}

fn join(errors: &[EtcdError]) -> String {
    let parts: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    parts.join("; ")
}

impl EtcdError {
    /// True when the error means "etcd could not be reached" rather than "etcd said no": the
    /// case where a replica keeps serving its last applied state and reports the store unreachable.
    pub fn is_unreachable(&self) -> bool {
        match self {
            EtcdError::Timeout { .. } | EtcdError::Transport { .. } => true,
            EtcdError::Server { code, .. } => *code == GRPC_UNAVAILABLE,
            EtcdError::Unreachable { .. } => true,
            _ => false,
        }
    }
}

/// gRPC `UNAVAILABLE`: the member has no leader or is shutting down; another endpoint may answer.
pub(crate) const GRPC_UNAVAILABLE: i64 = 14;
/// gRPC `UNAUTHENTICATED`: the auth token expired; authenticate again.
pub(crate) const GRPC_UNAUTHENTICATED: i64 = 16;

/// Keys and prefixes are bytes in etcd; cutover's are UTF-8, so show them as text.
pub(crate) fn show_key(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}
