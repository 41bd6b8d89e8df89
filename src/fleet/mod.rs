//! One fleet, one decision: replicas share operator state through etcd (issue 20).
//!
//! - [`etcd`]: a small etcd v3 client over the JSON gateway (KV, CAS, leases, resumable watches).
//! - [`store`]: the operator state under `<prefix>/state`, written with compare-and-swap and
//!   watched by every replica.
//! - [`members`]: each replica registers `<prefix>/members/<id>` under a lease; lag flags.
//! - [`election`]: one leader per fleet through `<prefix>/leader` and a lease (runs the rollout).
//! - [`connectivity`]: reachable or not since when, for status, metrics and alerts.
//! - [`config`]: the `[fleet]` section.
//!
//! Self-contained: nothing here touches the snapshot; the caller applies what the store delivers
//! through the same compile-and-swap path as a local change.
//!
//! Layer: control. May import its own layer and server, request, config, snapshot, observe,
//! clients, domain, policy, wire; never edge.

pub mod config;
pub mod connectivity;
pub mod election;
pub mod etcd;
pub mod members;
pub mod metrics;
pub mod store;

pub use config::{FleetConfig, FleetProblem};
pub use connectivity::{Connectivity, ConnectivityStatus};
pub use election::Election;
pub use etcd::{EtcdClient, EtcdError, EtcdOptions};
pub use members::{Lag, MemberInfo, MemberStatus, Registration};
pub use store::{FleetStore, StateRecord, Versioned, WriteError};

/// `<prefix>/<name>` as bytes.
pub(crate) fn key(prefix: &str, name: &str) -> Vec<u8> {
    format!("{prefix}/{name}").into_bytes()
}
