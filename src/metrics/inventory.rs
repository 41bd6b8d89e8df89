//! Gauges of the URL inventory: how many URLs it keeps and how much of their traffic the plan
//! covers. Registered in the process registry when the inventory is on at start; set off the
//! request path (the control layer recomputes them on reload and periodically).

use prometheus::{GaugeVec, IntGauge, Opts, Registry};

use super::names::{label, INVENTORY_COVERAGE_RATIO, INVENTORY_LOAD_FAILED, INVENTORY_URLS};
use super::{reg, MetricsError};

/// The `table` label value of the whole plan's coverage (every table, and the routes).
pub const INVENTORY_ALL_TABLES: &str = "(all)";

/// Inventory gauges.
#[derive(Clone)]
pub struct InventoryMetrics {
    urls: IntGauge,
    coverage: GaugeVec,
    load_failed: IntGauge,
}

impl InventoryMetrics {
    /// Registers the gauges; call once per process.
    pub fn register(r: &Registry) -> Result<Self, MetricsError> {
        Ok(InventoryMetrics {
            urls: reg(
                r,
                INVENTORY_URLS,
                IntGauge::new(INVENTORY_URLS, "URLs the old-store inventory keeps now."),
            )?,
            coverage: reg(
                r,
                INVENTORY_COVERAGE_RATIO,
                GaugeVec::new(
                    Opts::new(
                        INVENTORY_COVERAGE_RATIO,
                        "Share of inventoried old-store hits with a home after the switch, by redirect table ((all): the whole plan).",
                    ),
                    &[label::TABLE],
                ),
            )?,
            load_failed: reg(
                r,
                INVENTORY_LOAD_FAILED,
                IntGauge::new(
                    INVENTORY_LOAD_FAILED,
                    "1 when the inventory file was unusable at start (the inventory started empty).",
                ),
            )?,
        })
    }

    /// URLs kept now.
    pub fn set_urls(&self, n: usize) {
        self.urls.set(n as i64);
    }

    /// Replaces every coverage series: `(table, ratio)`; a table without hits has no series (no
    /// data is not zero coverage), and a table gone from the plan loses its series.
    pub fn set_coverage(&self, ratios: &[(String, Option<f64>)]) {
        self.coverage.reset();
        for (table, r) in ratios {
            if let Some(r) = r {
                self.coverage.with_label_values(&[table]).set(*r);
            }
        }
    }

    /// Whether the file at start was unusable.
    pub fn set_load_failed(&self, failed: bool) {
        self.load_failed.set(i64::from(failed));
    }
}
