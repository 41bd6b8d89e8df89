//! The fleet's gauges: is the store reachable, does this replica lead, which state generation
//! it has applied. Registered in every process (so dashboards and the alert's join always find
//! the series); `cutover_fleet_configured` says whether `[fleet]` is in use at all.

use prometheus::{IntGauge, Registry};

/// 1 when `[fleet]` is configured.
pub const CONFIGURED: &str = "cutover_fleet_configured";
/// 1 while the last etcd call reached the cluster.
pub const STORE_CONNECTED: &str = "cutover_fleet_store_connected";
/// 1 while this replica holds the fleet leadership (runs the rollout).
pub const LEADER: &str = "cutover_fleet_leader";
/// Generation of the fleet operator state this replica has applied (0: none).
pub const STATE_GENERATION: &str = "cutover_fleet_state_generation";

/// The gauges, cheap to clone.
#[derive(Debug, Clone)]
pub struct FleetMetrics {
    /// `cutover_fleet_configured`.
    pub configured: IntGauge,
    /// `cutover_fleet_store_connected`.
    pub connected: IntGauge,
    /// `cutover_fleet_leader`.
    pub leader: IntGauge,
    /// `cutover_fleet_state_generation`.
    pub generation: IntGauge,
}

impl FleetMetrics {
    /// Registers the gauges in `registry`; call once per process.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(FleetMetrics {
            configured: gauge(
                CONFIGURED,
                "1 when [fleet] shares operator state through etcd",
            )?,
            connected: gauge(
                STORE_CONNECTED,
                "1 while the fleet store (etcd) answers this replica",
            )?,
            leader: gauge(LEADER, "1 while this replica leads the fleet")?,
            generation: gauge(
                STATE_GENERATION,
                "Generation of the fleet operator state applied by this replica",
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_once_and_exports_every_gauge() {
        let r = Registry::new();
        let m = FleetMetrics::register(&r).unwrap();
        m.generation.set(7);
        let names: Vec<String> = r.gather().iter().map(|f| f.name().to_string()).collect();
        for n in [CONFIGURED, STORE_CONNECTED, LEADER, STATE_GENERATION] {
            assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
        }
        assert!(FleetMetrics::register(&r).is_err(), "twice is a bug");
    }
}
