//! The URL inventory: which old-store URLs carry traffic, and does each have a home on the new
//! store (issue 17).
//!
//! Flow: requests the old storefront answers (GET/HEAD, 2xx/3xx/410) -> [`Inventory::record`]
//! (bounded Space-Saving counters keyed like the redirect plan, [`KeyPolicy`]); sitemaps of the
//! old store -> [`sitemap::import`]; both persisted by [`persist`] / [`Persister`]. Coverage:
//! entries + a [`CoverageOracle`] (the plan and routes) -> one [`Verdict`] per URL ->
//! [`CoverageReport`] (CSV, JSON), and [`probe`] asks the new storefront for what the verdicts
//! promise.
//!
//! A pure domain library: it depends on `redirects` (the key policy) and `config::values`
//! only; wiring (request hook, admin routes, CLI, metrics) lives above it.
//!
//! Layer: domain. May import its own layer and policy, wire; never edge, control, server, request,
//! config, snapshot, observe, clients.

mod config;
mod coverage;
mod crawler;
mod entry;
mod error;
mod key;
pub mod persist;
mod persister;
pub mod probe;
mod shard;
pub mod sitemap;
mod store;

pub use config::{ConfigProblem, InventoryConfig, MAX_CAPACITY};
pub use coverage::{coverage_of_hits, CoverageOracle, CoverageReport, CoverageRow, Verdict};
pub use crawler::{default_crawler_user_agents, CrawlerMatcher};
pub use entry::{Entry, OnNew, Sources};
pub use error::{PersistError, ProbeError, SitemapError};
pub use key::{KeyPolicy, NoKey, MAX_KEY_BYTES};
pub use persist::{load_or_start_empty, Loaded};
pub use persister::{save_now, spawn_persister, PersistStatus, Persister};
pub use store::{eligible, unix_now, Inventory, Recorded, Stats, DEFAULT_CAPACITY};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_on_new;

impl Inventory {
    /// An inventory as `[inventory]` configures it, keyed like `table` (the plan's first
    /// table; `None`: a table's defaults).
    pub fn from_config(
        cfg: &InventoryConfig,
        table: Option<&crate::redirects::TableConfig>,
    ) -> Self {
        let policy = match table {
            Some(t) => KeyPolicy::from_table(t, cfg.per_host),
            None => KeyPolicy::from_table(
                &crate::redirects::TableConfig::with_defaults("inventory", "-"),
                cfg.per_host,
            ),
        };
        Inventory::new(
            cfg.capacity,
            policy,
            CrawlerMatcher::new(&cfg.crawler_user_agents),
        )
    }
}
