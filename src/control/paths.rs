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
// fleet:
/// `GET`: every replica of the fleet and the state generation it applied.
pub const FLEET: &str = "/admin/fleet";
/// `POST`: hand the listeners to a new process.
pub const UPGRADE: &str = "/admin/upgrade";

// rollout: the automatic ramp (control::rollout).
/// `GET`: the rollout's state, plan, last verdicts and next evaluation.
pub const ROLLOUT: &str = "/admin/rollout";
/// `POST`: start the rollout at step one.
pub const ROLLOUT_START: &str = "/admin/rollout/start";
/// `POST`: pause the rollout at its step.
pub const ROLLOUT_PAUSE: &str = "/admin/rollout/pause";
/// `POST`: resume a paused rollout.
pub const ROLLOUT_RESUME: &str = "/admin/rollout/resume";
/// `POST`: move to the next step now.
pub const ROLLOUT_PROMOTE: &str = "/admin/rollout/promote";
/// `POST`: stop the rollout (share to 0 in enforce mode).
pub const ROLLOUT_ABORT: &str = "/admin/rollout/abort";

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
// shadow: the shadow report and the fallback's top URLs (issue 18).
/// `GET`: the shadow comparison report (JSON; `?format=csv` for CSV).
pub const SHADOW: &str = "/shadow";
/// `POST`: clear the shadow report (the counters keep counting).
pub const SHADOW_CLEAR: &str = "/shadow/clear";
/// `GET`: the 404 fallback's outcomes and the URLs old served because new lacked them.
pub const FALLBACK: &str = "/fallback";
// console: the page on the admin listener (control::console).
/// `GET`: the cutover console (HTML).
pub const CONSOLE: &str = "/";
/// `GET`: the console's script.
pub const CONSOLE_JS: &str = "/console.js";
/// `GET`: the console's style sheet.
pub const CONSOLE_CSS: &str = "/console.css";
/// `GET`: per-storefront requests/s, error and 404 ratios and p95 of the last minutes (JSON).
pub const TIMESERIES: &str = "/admin/timeseries";
