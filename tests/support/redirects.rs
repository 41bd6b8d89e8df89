//! The config the redirect-table suites run: two storefronts where a header picks the side, so
//! a test can ask either one for the same path and see which table answered.

use std::net::SocketAddr;

use super::proxy::ConfigSpec;

/// One redirect table, `plan`, read from `plan.csv` beside the config, every option at its
/// default: the `extra` of [`config`] for suites that need a single table.
pub const PLAN_TABLE: &str = r#"
[[redirects]]
name = "plan"
file = "plan.csv"
"#;

/// A config with two storefronts, `new_share` percent on `new`, listener and admin on port 0,
/// and header routes so a test picks the side: `x-side: old` -> old, `x-side: new` -> new.
/// `extra` (more `[[route]]` or `[[redirects]]` tables) is appended.
pub fn config(old: SocketAddr, new: SocketAddr, new_share: f64, extra: &str) -> String {
    spec(old, new, new_share).tail(extra).render()
}

/// [`config`] as a spec, for a suite that sets more (limits, headers) before rendering.
pub fn spec(old: SocketAddr, new: SocketAddr, new_share: f64) -> ConfigSpec {
    ConfigSpec::new(
        &format!("http://{old}"),
        &format!("http://{new}"),
        new_share,
    )
    .admin_on_loopback()
    .overrides("enabled = true\ntoken = \"staff-token\"")
    .tail(
        r#"[[route]]
name = "side-old"
header = { name = "x-side", value = "old" }
to = "old"

[[route]]
name = "side-new"
header = { name = "x-side", value = "new" }
to = "new"
"#,
    )
}
