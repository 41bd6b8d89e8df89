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

// shadow: the shadow report and the fallback's top URLs (issue 18).
/// `GET`: the shadow comparison report (JSON; `?format=csv` for CSV).
pub const SHADOW: &str = "/shadow";
/// `POST`: clear the shadow report (the counters keep counting).
pub const SHADOW_CLEAR: &str = "/shadow/clear";
/// `GET`: the 404 fallback's outcomes and the URLs old served because new lacked them.
pub const FALLBACK: &str = "/fallback";
