//! What the admin API says about the fleet: a summary line for `cutover status`, and the replica
//! list of `GET /admin/fleet` (`cutover status --fleet`). Built by the server, parsed by the CLI.

use std::fmt;

use serde::{Deserialize, Serialize};

/// This replica's view of the fleet, part of `GET /admin/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetSummary {
    /// This replica's id.
    pub id: String,
    /// The fleet's key prefix.
    pub prefix: String,
    /// The last etcd call reached the cluster.
    pub connected: bool,
    /// Unix milliseconds since `connected` has its current value (0: no call finished yet).
    pub since_unix_ms: u64,
    /// The last error that made etcd unreachable.
    pub last_error: Option<String>,
    /// This replica leads the fleet.
    pub leader: bool,
    /// The replica that leads the fleet and so drives the rollout, as this replica knows it.
    #[serde(default)]
    pub leader_id: Option<String>,
    /// Generation of the fleet state applied here (0: none; serving the state file).
    pub applied_generation: u64,
    /// How startup went when it did not apply the fleet's state (timeout, unreadable record).
    pub startup_note: Option<String>,
}

/// One replica in `GET /admin/fleet`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaRow {
    /// Its id.
    pub id: String,
    /// Where operators reach it.
    pub address: String,
    /// cutover version.
    pub version: String,
    /// Fleet state generation it has applied.
    pub generation: u64,
    /// Unix milliseconds of its last refresh.
    pub last_seen_unix_ms: u64,
    /// `up_to_date`, `behind by N`, `ahead by N`.
    pub lag: String,
    /// Not on the current generation.
    pub flagged: bool,
    /// It leads the fleet.
    pub leader: bool,
}

/// `GET /admin/fleet`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetAnswer {
    /// The fleet's key prefix.
    pub prefix: String,
    /// The current generation in the store (0: never written).
    pub generation: u64,
    /// The leader's id, if any: the replica that drives the rollout.
    pub leader: Option<String>,
    /// Where the fleet's rollout is, from the shared document (`None`: no rollout written).
    #[serde(default)]
    pub rollout: Option<String>,
    /// Every registered replica, by id.
    pub replicas: Vec<ReplicaRow>,
}

fn ago_ms(at_ms: u64) -> String {
    let now = crate::fleet::connectivity::unix_ms();
    super::super::status::ago(now.saturating_sub(at_ms) / 1000)
}

impl fmt::Display for FleetSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let store = if self.connected {
            "fleet store connected".to_string()
        } else if self.since_unix_ms == 0 {
            "fleet store not reached yet".to_string()
        } else {
            format!(
                "fleet store UNREACHABLE since {} ago ({})",
                ago_ms(self.since_unix_ms),
                self.last_error.as_deref().unwrap_or("no error recorded")
            )
        };
        writeln!(
            f,
            "fleet       {store}; replica {} in {}, state generation {}{}",
            self.id,
            self.prefix,
            self.applied_generation,
            if self.leader { ", leader" } else { "" }
        )?;
        let leads = match (&self.leader_id, self.leader) {
            (_, true) => "this replica".to_string(),
            (Some(id), false) => id.clone(),
            (None, false) => "no replica (election in progress or etcd unreachable)".into(),
        };
        writeln!(f, "            rollout driven by {leads}")?;
        if let Some(n) = &self.startup_note {
            writeln!(f, "            startup: {n}")?;
        }
        Ok(())
    }
}

impl fmt::Display for FleetAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "fleet {}: state generation {}, leader {} (drives the rollout)",
            self.prefix,
            self.generation,
            self.leader.as_deref().unwrap_or("none")
        )?;
        if let Some(r) = &self.rollout {
            writeln!(f, "rollout: {r}")?;
        }
        writeln!(
            f,
            "{:<24} {:<22} {:<10} {:>10}  {:<10} lag",
            "replica", "address", "version", "generation", "seen"
        )?;
        for r in &self.replicas {
            writeln!(
                f,
                "{:<24} {:<22} {:<10} {:>10}  {:<10} {}{}{}",
                r.id,
                r.address,
                r.version,
                r.generation,
                format!("{} ago", ago_ms(r.last_seen_unix_ms)),
                r.lag,
                if r.flagged { "  <- LAGGING" } else { "" },
                if r.leader { "  (leader)" } else { "" }
            )?;
        }
        let lagging = self.replicas.iter().filter(|r| r.flagged).count();
        if lagging > 0 {
            writeln!(
                f,
                "{lagging} replica(s) not on generation {}: they serve older operator state",
                self.generation
            )?;
        }
        Ok(())
    }
}
