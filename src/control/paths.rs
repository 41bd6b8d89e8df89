//! The admin API's paths, named once: the route table ([`super::routes`]) registers them and the
//! CLI calls them, so the two cannot drift apart.

/// `GET`: the running state as JSON.
pub const STATUS: &str = "/admin/status";
/// `GET`: the recent reloads and changes.
pub const HISTORY: &str = "/admin/history";
/// `PUT`: set the share on the split's `to` storefront.
pub const SPLIT: &str = "/admin/split";
/// `POST`: release every pin on a storefront.
pub const EVACUATE: &str = "/admin/evacuate/{storefront}";
/// `POST`: re-read the config file now.
pub const RELOAD: &str = "/admin/reload";
/// `POST`: hand the listeners to a new process.
pub const UPGRADE: &str = "/admin/upgrade";

/// [`EVACUATE`] for one storefront.
pub fn evacuate(storefront: &str) -> String {
    EVACUATE.replace("{storefront}", storefront)
}

// inventory:
/// `GET`: the URL inventory (`?format=csv`, `?limit=N`).
pub const INVENTORY: &str = "/inventory";
/// `GET`: coverage of the inventory by the plan in force (`?format=csv`).
pub const INVENTORY_COVERAGE: &str = "/inventory/coverage";
/// `POST`: import a sitemap into the running inventory.
pub const INVENTORY_IMPORT_SITEMAP: &str = "/inventory/import-sitemap";
