//! The configuration file exactly as written: serde structs with `deny_unknown_fields`, so a typo in
//! a field name is an error with a line number instead of a silently ignored setting.
//!
//! Nothing here is validated beyond its TOML type; `compile` turns these into a `Snapshot`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::values::{ByteSize, HumanDuration, OneOrMany, Share};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[[listener]]`: where shoppers connect. At least one.
    #[serde(default, rename = "listener")]
    pub listeners: Vec<Spanned<RawListener>>,
    /// `[admin]`: the operator's listener (metrics, health, admin API).
    #[serde(default)]
    pub admin: RawAdmin,
    /// `[limits]`: protections against slow or oversized clients.
    #[serde(default)]
    pub limits: RawLimits,
    /// `[storefront.NAME]`: the upstream stores.
    #[serde(default, rename = "storefront")]
    pub storefronts: BTreeMap<Spanned<String>, Spanned<RawStorefront>>,
    /// `[split]`: the gradual shift from one storefront to the other.
    pub split: Option<Spanned<RawSplit>>,
    /// `[cohort]`: how shoppers are assigned and kept on one storefront.
    #[serde(default)]
    pub cohort: RawCohort,
    /// `[override]`: staff forcing a storefront.
    #[serde(default, rename = "override")]
    pub overrides: RawOverride,
    /// `[headers]`: what cutover adds to requests and responses.
    #[serde(default)]
    pub headers: RawHeaders,
    /// `[[redirects]]`: the migration's redirect tables, checked in order.
    #[serde(default)]
    pub redirects: Vec<crate::redirects::TableConfig>,
    /// `[redirect_misses]`: the top-K of URLs that had no redirect and 404'd on the new storefront.
    #[serde(default)]
    pub redirect_misses: RawMisses,
    /// `[redirect_probation]`: how long after 100% permanent redirects stay revocable.
    #[serde(default)]
    pub redirect_probation: crate::redirects::probation::ProbationConfig,
    /// `[access_log]`: one JSON line per request, off the request path.
    #[serde(default)]
    pub access_log: crate::access_log::AccessLogConfig,
    /// `[[route]]`: ordered rules; the first match wins, no match means `split`.
    #[serde(default, rename = "route")]
    pub routes: Vec<Spanned<RawRoute>>,
    // fleet:
    /// `[fleet]`: operator state shared by replicas through etcd; absent: the local state file.
    #[serde(default)]
    pub fleet: Option<Spanned<super::fleet::FleetConfig>>,
    // rollout: `[rollout]`, the automatic ramp of the share judged new-vs-old (docs/rollout.md).
    /// `[rollout]`: the automatic ramp of the share on new, judged new-vs-old.
    #[serde(default)]
    pub rollout: Option<Spanned<crate::rollout::plan::RolloutConfig>>,
    // inventory: `[inventory]`, old-store URLs from live traffic and the plan's coverage of them
    // (issue 17). Absent: off, behaviour unchanged.
    /// `[inventory]`: which old-store URLs carry traffic, and whether the plan covers them.
    #[serde(default)]
    pub inventory: Option<Spanned<crate::inventory::InventoryConfig>>,
    // shadow: the shadow comparison and the 404 fallback (issue 18).
    /// `[shadow]`: copy a sample of requests to both storefronts and compare the answers.
    pub shadow: Option<Spanned<crate::shadow::ShadowConfig>>,
    /// `[fallback]`: which statuses from new make cutover ask old (routes opt in).
    pub fallback: Option<Spanned<crate::shadow::FallbackConfig>>,
}

/// One `[[listener]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    /// Optional label used in logs.
    pub name: Option<String>,
    /// `IP:port` to bind.
    pub address: Spanned<String>,
    /// Makes this an HTTPS listener: certificates by SNI, HSTS, optional HTTP->HTTPS redirect.
    pub tls: Option<Spanned<crate::tls::ListenerTlsConfig>>,
}

/// `[admin]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `IP:port`; default `127.0.0.1:9901`. Set to `"off"` to disable.
    pub address: Option<Spanned<String>>,
    /// Bearer token for admin mutations. Required when `address` is not loopback.
    pub token: Option<Spanned<String>>,
    /// File holding the token (for Kubernetes secrets); re-read on reload.
    pub token_file: Option<Spanned<String>>,
    /// Environment variable holding the token.
    pub token_env: Option<Spanned<String>>,
    /// Where runtime changes made through the admin API are kept; default `<config>.state.json`.
    pub state_file: Option<Spanned<String>>,
}

/// `[limits]`. Defaults follow nginx and hyper where they set a convention.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// The whole request head must arrive within this (slowloris guard); default 10s.
    pub header_read_timeout: Option<Spanned<HumanDuration>>,
    /// Request head size beyond which the client gets 431; default 64KiB, minimum 8KiB.
    pub max_header_bytes: Option<Spanned<ByteSize>>,
    /// Header count beyond which the client gets 431; default 100 (hyper, HAProxy).
    pub max_headers: Option<Spanned<u32>>,
    /// URI length beyond which the client gets 414; default 8192.
    pub max_uri_length: Option<Spanned<u32>>,
    /// A request body silent for this long is cut; default 60s.
    pub body_idle_timeout: Option<Spanned<HumanDuration>>,
    /// Open client connections beyond which an idle keep-alive one is closed to make room, else
    /// new ones get a fast 503; default 10000.
    pub max_connections: Option<Spanned<u32>>,
    /// Open connections one client address may hold; default 256. Exempt when
    /// `trust_forwarded` is set (the peers are then the operator's own proxies).
    pub max_connections_per_client: Option<Spanned<u32>>,
    /// Grace period for in-flight requests on SIGTERM; default 30s.
    pub drain_timeout: Option<Spanned<HumanDuration>>,
    /// After SIGTERM, keep accepting this long with `/readyz` false so load balancers notice
    /// first (what a Kubernetes `preStop: sleep` does); default 0.
    pub drain_delay: Option<Spanned<HumanDuration>>,
    /// HTTP/2 streams per client connection; default 100.
    pub h2_max_concurrent_streams: Option<Spanned<u32>>,
    /// Whether cutover's own HTTP/1 layer answers plain HTTP/1.1 requests (redirects and
    /// bodyless GET/HEAD forwards); default true. `false` gives every connection to hyper's
    /// server: the same answers, at more CPU per request, for the operator who must rule it out.
    pub http1_front: Option<Spanned<bool>>,
}

pub use crate::upstream::{HostHeader, UpstreamProtocol};

/// `[storefront.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorefront {
    /// `http://host:port` or `https://host:port`.
    pub upstream: Spanned<String>,
    /// `client` (default) or `upstream`.
    pub host_header: Option<HostHeader>,
    /// `auto` (default), `http1` or `h2c`.
    pub protocol: Option<UpstreamProtocol>,
    /// TCP+TLS connect bound; default 3s. Beyond it: 504.
    pub connect_timeout: Option<Spanned<HumanDuration>>,
    /// Bound on waiting for response headers; default 30s. Beyond it: 504.
    pub response_header_timeout: Option<Spanned<HumanDuration>>,
    /// A response body silent for this long is aborted; default 60s.
    pub read_timeout: Option<Spanned<HumanDuration>>,
    /// Idle pooled connections are closed after this; default 90s.
    pub idle_timeout: Option<Spanned<HumanDuration>>,
    /// Hard cap on idle connections kept to this storefront; unset: `pool_idle_ceiling`.
    pub pool_max_idle: Option<Spanned<u32>>,
    /// Most idle connections the adaptive pool keeps (file descriptors); default 1024.
    pub pool_idle_ceiling: Option<Spanned<u32>>,
    /// Idle connections follow the peak of requests in flight over this window; default 60s.
    pub pool_peak_window: Option<Spanned<HumanDuration>>,
    /// TLS to an https storefront: extra CA, SNI override, client certificate.
    pub tls: Option<Spanned<crate::tls::UpstreamTlsOptions>>,
    /// Pins issued before this moment (unix seconds) are released: the operator's evacuation.
    pub evacuated_at: Option<Spanned<u64>>,
}

/// `[split]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSplit {
    /// Storefront shoppers leave; default `old`.
    pub from: Option<Spanned<String>>,
    /// Storefront shoppers move to; default `new`.
    pub to: Option<Spanned<String>>,
    /// Share of shoppers on `to`, in percent: `12.5`, `"12.5%"`; 0.01% granularity.
    pub new_share: Spanned<Share>,
}

/// `[cohort]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCohort {
    /// Cohort cookie name; default `cutover_cohort`.
    pub cookie: Option<Spanned<String>>,
    /// Cohort cookie lifetime; default 30d.
    pub max_age: Option<Spanned<HumanDuration>>,
    /// Existing session cookie whose keyed hash gives the bucket of shoppers without a cohort cookie.
    pub session_cookie: Option<Spanned<String>>,
    /// Secret that signs cohort cookies and keys the session hash; the same on every replica.
    pub key: Option<Spanned<String>>,
    /// File holding `key` (for Kubernetes secrets); re-read on reload.
    pub key_file: Option<Spanned<String>>,
    /// Environment variable holding `key`.
    pub key_env: Option<Spanned<String>>,
    // cohort key rotation:
    /// Older keys still accepted on incoming cookies (which are re-signed with `key`); for
    /// rotating the key across a fleet without re-bucketing shoppers.
    pub previous_keys: Option<Spanned<Vec<String>>>,
    /// Hold each shopper on the storefront the split first gave them; default false.
    pub pinning: Option<bool>,
    /// How long a split pin holds, sliding while the shopper returns; default 2h.
    pub pin_ttl: Option<Spanned<HumanDuration>>,
}

/// `[override]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOverride {
    /// Whether staff overrides are honoured; default true.
    pub enabled: Option<bool>,
    /// Query parameter; default `cutover`.
    pub query_param: Option<Spanned<String>>,
    /// Request header; default `x-cutover-force`.
    pub header: Option<Spanned<String>>,
    /// When set, overrides also need this token (`x-cutover-token` header or `cutover_token` parameter).
    pub token: Option<Spanned<String>>,
    /// File holding the token.
    pub token_file: Option<Spanned<String>>,
    /// Environment variable holding the token.
    pub token_env: Option<Spanned<String>>,
    /// How long an override pin holds; default 12h.
    pub ttl: Option<Spanned<HumanDuration>>,
}

/// `[redirect_misses]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMisses {
    /// How many distinct URLs the heavy-hitters sketch keeps; default 1000. Applies at start.
    pub top_k: Option<Spanned<u32>>,
    /// Keep the host as part of each URL (for multi-host stores); default false.
    pub per_host: Option<bool>,
}

/// `[headers]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaders {
    /// Add `x-cutover-storefront` to responses.
    pub storefront_response_header: Option<bool>,
    /// Tell the storefront which side it is and why (`x-cutover-storefront`, `x-cutover-reason`).
    pub decision_upstream_header: Option<bool>,
    /// Append `Via: 1.1 cutover`.
    pub via: Option<bool>,
    /// Keep an incoming `X-Forwarded-Proto`/`-Host` (only behind a trusted load balancer).
    pub trust_forwarded: Option<bool>,
    /// Header carrying the request id, kept from the client when well-formed.
    pub request_id: Option<Spanned<String>>,
}

/// A header or cookie condition: presence, or an exact value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNameValue {
    /// Name used in logs and metric labels.
    pub name: Spanned<String>,
    /// Exact value; absent means presence is enough.
    pub value: Option<String>,
}

/// One `[[route]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Name used in logs and metric labels.
    pub name: Option<Spanned<String>>,
    /// A storefront name, or `split`.
    pub to: Spanned<String>,
    /// Exact host or `*.example.com`.
    pub host: Option<Spanned<String>>,
    /// Path prefix on segment boundaries: `/blog` matches `/blog/x`, not `/blogger`.
    pub path_prefix: Option<Spanned<String>>,
    /// Exact path.
    pub path: Option<Spanned<String>>,
    /// A method or a list of them.
    pub method: Option<Spanned<OneOrMany<String>>>,
    /// Request header; default `x-cutover-force`.
    pub header: Option<RawNameValue>,
    /// Cohort cookie name; default `cutover_cohort`.
    pub cookie: Option<RawNameValue>,
    // shadow: per-route opt-in to the 404 fallback.
    /// When new answers a `[fallback]` status to a GET/HEAD, serve old's answer instead.
    pub fallback: Option<Spanned<bool>>,
}
