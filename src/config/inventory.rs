//! `[inventory]`: checked with the section's line, and the process's one [`Inventory`] carried
//! from the previous snapshot so a reload never resets the counts.
//!
//! The inventory is created at start only (its file, persister and gauges start with the
//! process): `capacity`, `per_host`, `crawler_user_agents`, `file` and `persist_interval`, and
//! turning the section on, take effect at the next restart, like `[redirect_misses]`. A reload
//! may turn recording off (and on again: the same counts go on).

use std::sync::Arc;

use super::check::Check;
use super::raw::RawConfig;
use crate::inventory::{Inventory, InventoryConfig};
use crate::state::Snapshot;

/// Validates the section, every problem at the section's line; the section in force (`None`
/// when absent or `enabled = false`), its file made relative to the config's directory.
pub(super) fn check(c: &mut Check<'_>, raw: &RawConfig) -> Option<InventoryConfig> {
    let section = raw.inventory.as_ref()?;
    let problems = section.get_ref().validate();
    let ok = problems.is_empty();
    for p in problems {
        c.at(section, p.field, p.message);
    }
    let mut cfg = section.get_ref().clone();
    if !ok || !cfg.enabled {
        return None;
    }
    cfg.file = cfg.file_path(&c.src.base_dir());
    Some(cfg)
}

/// The inventory to carry (the previous snapshot's, or a new one at start) and the section in
/// force.
pub(super) fn instance(
    checked: Option<InventoryConfig>,
    raw: &RawConfig,
    previous: Option<&Snapshot>,
) -> (Option<Arc<Inventory>>, Option<InventoryConfig>) {
    let carried = previous.and_then(|p| p.inventory.clone());
    let Some(cfg) = checked else {
        return (carried, None);
    };
    let inventory = match (carried, previous) {
        (Some(inv), _) => inv,
        (None, None) => Arc::new(Inventory::from_config(&cfg, raw.redirects.first())),
        (None, Some(_)) => {
            tracing::warn!("[inventory] was off at start: it takes effect at the next restart");
            return (None, None);
        }
    };
    (Some(inventory), Some(cfg))
}
