//! What the process reports about itself, beside the per-request series: config loads and the
//! share in force, client connections, the redirect tables, the access log's own counters, and
//! the exposition the admin listener serves.

use std::sync::Arc;

use prometheus::{IntCounter, Registry, TextEncoder};

use super::{saturating_i64, unix_now, EvictedAt, Metrics, MetricsError};

impl Metrics {
    /// Records a config load. `applied`: it went live with `generation`; otherwise it was rejected
    /// and the previous config keeps serving. Call it for the startup load too.
    pub fn reload(&self, applied: bool, generation: u64) {
        if applied {
            self.reloads_applied.inc();
            self.reload_successful.set(1);
            self.reload_timestamp.set(unix_now());
            self.generation.set(saturating_i64(generation));
        } else {
            self.reloads_rejected.inc();
            self.reload_successful.set(0);
        }
    }

    /// Sets when the redirect probation ends (`None`: not started, exported as 0).
    pub fn set_redirect_probation_ends(&self, at: Option<u64>) {
        self.redirect_probation_ends
            .set(at.map_or(0, |t| i64::try_from(t).unwrap_or(i64::MAX)));
    }

    /// Sets the configured share of split traffic on the new side, in basis points (0..=10000).
    pub fn set_share_bp(&self, bp: u16) {
        self.share.set(f64::from(bp.min(10_000)) / 10_000.0);
    }

    /// Names the storefronts on each side of the split, exported as
    /// `cutover_split_side_info{side="old"|"new", storefront=...} 1`. Dashboards and alerts join on it
    /// to compare "new vs old" without knowing the storefronts' names.
    pub fn set_split_sides(&self, old: &str, new: &str) {
        let mut known = self.known();
        if known
            .split
            .as_ref()
            .is_some_and(|(o, n)| o == old && n == new)
        {
            return;
        }
        if let Some((o, n)) = known.split.take() {
            let _ = self.split_side.remove_label_values(&["old", &o]);
            let _ = self.split_side.remove_label_values(&["new", &n]);
        }
        self.split_side.with_label_values(&["old", old]).set(1);
        self.split_side.with_label_values(&["new", new]).set(1);
        known.split = Some((old.to_string(), new.to_string()));
    }

    /// Counts an accepted client connection; prefer [`Metrics::client_connection`] for a guard.
    pub fn client_connection_opened(&self) {
        self.connections_accepted.inc();
        self.connections_open.inc();
    }

    /// Counts a client connection closing.
    pub fn client_connection_closed(&self) {
        self.connections_open.dec();
    }

    /// Counts an accepted connection and returns a guard that counts it closed when dropped.
    pub fn client_connection(self: &Arc<Self>) -> ConnectionGuard {
        self.client_connection_opened();
        ConnectionGuard(self.clone())
    }

    /// Counts a connection refused because the connection cap was reached.
    pub fn connection_rejected(&self) {
        self.connections_rejected.inc();
    }

    /// Counts `n` requests answered by the HTTP/1 front (`fast_path`).
    pub fn front_answered(&self, n: usize) {
        self.front_requests.inc_by(n as u64);
    }

    /// Counts an idle connection closed to make room for a new one at `listener`'s cap.
    pub fn connection_evicted(&self, listener: EvictedAt) {
        self.connections_evicted
            .with_label_values(&[listener.as_str()])
            .inc();
    }

    /// Replaces the version in `cutover_build_info`.
    pub fn set_build_info(&self, version: &str) {
        let mut known = self.known();
        if let Some(old) = known.build_version.take() {
            let _ = self.build_info.remove_label_values(&[&old]);
        }
        self.build_info.with_label_values(&[version]).set(1);
        known.build_version = Some(version.to_string());
    }

    /// Records a redirect table load: its entry count and generation.
    pub fn set_redirect_table(&self, table: &str, entries: usize, generation: u64) {
        self.redirect_entries
            .with_label_values(&[table])
            .set(saturating_i64(entries as u64));
        self.redirect_generation
            .with_label_values(&[table])
            .set(saturating_i64(generation));
        self.known().tables.insert(table.to_string());
    }

    /// Stops exporting a redirect table that was removed from the config.
    pub fn remove_redirect_table(&self, table: &str) {
        let _ = self.redirect_entries.remove_label_values(&[table]);
        let _ = self.redirect_generation.remove_label_values(&[table]);
        self.known().tables.remove(table);
    }

    /// Exports exactly `tables` (name, entries, generation): the redirect tables of the snapshot
    /// that just went live. Tables a reload removed stop being exported.
    pub fn set_redirect_tables<'a>(&self, tables: impl IntoIterator<Item = (&'a str, usize, u64)>) {
        let tables: Vec<_> = tables.into_iter().collect();
        let gone: Vec<String> = self
            .known()
            .tables
            .iter()
            .filter(|t| !tables.iter().any(|(name, _, _)| name == t))
            .cloned()
            .collect();
        for t in &gone {
            self.remove_redirect_table(t);
        }
        for (name, entries, generation) in tables {
            self.set_redirect_table(name, entries, generation);
        }
    }

    /// Counter the access log bumps when its buffer is full.
    pub fn access_log_dropped(&self) -> IntCounter {
        self.access_log_dropped.clone()
    }

    /// Counter the access log bumps when a write fails.
    pub fn access_log_write_errors(&self) -> IntCounter {
        self.access_log_write_errors.clone()
    }

    /// The registry, for tests and for collectors a later module adds (e.g. TLS certificate expiry).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Appends the Prometheus text exposition of every metric to `out`.
    pub fn encode_into(&self, out: &mut String) -> Result<(), MetricsError> {
        TextEncoder::new()
            .encode_utf8(&self.registry.gather(), out)
            .map_err(MetricsError::Encode)
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(64 * 1024);
        if let Err(e) = self.encode_into(&mut out) {
            tracing::error!(error = %e, "encoding metrics");
        }
        out
    }
}

/// Counts a client connection open until dropped.
pub struct ConnectionGuard(Arc<Metrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.client_connection_closed();
    }
}
