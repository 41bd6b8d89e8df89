//! The config the redirect-table suites run: two storefronts where a header picks the side, so
//! a test can ask either one for the same path and see which table answered.

use std::net::SocketAddr;

use super::KEY;

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
    format!(
        r#"[[listener]]
address = "127.0.0.1:0"

[admin]
address = "127.0.0.1:0"

[storefront.old]
upstream = "http://{old}"

[storefront.new]
upstream = "http://{new}"

[split]
from = "old"
to = "new"
new_share = {new_share}

[cohort]
key = "{KEY}"

[override]
enabled = true
token = "staff-token"

[headers]
storefront_response_header = true

[[route]]
name = "side-old"
header = {{ name = "x-side", value = "old" }}
to = "old"

[[route]]
name = "side-new"
header = {{ name = "x-side", value = "new" }}
to = "new"

{extra}
"#
    )
}
