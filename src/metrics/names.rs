//! Every metric and label name cutover exports, in one place.
//!
//! Dashboards and alert rules (`deploy/`) are written against these strings: renaming one is a breaking
//! change for every team that watches a cutover, so they live here and nowhere else. Conventions follow
//! Prometheus' naming guide: one `cutover_` prefix, base units (seconds, ratio), `_total` on counters.

/// Requests answered, by storefront, route, status class and routing reason.
pub const REQUESTS_TOTAL: &str = "cutover_requests_total";
/// Time from the request head arriving to the last response byte handed to the client.
pub const REQUEST_DURATION_SECONDS: &str = "cutover_request_duration_seconds";
/// Time from sending the request upstream to the upstream's response head arriving.
pub const UPSTREAM_TTFB_SECONDS: &str = "cutover_upstream_time_to_first_byte_seconds";
/// Upstream failures by storefront and kind (connect, timeout, reset, protocol, tls).
pub const UPSTREAM_ERRORS_TOTAL: &str = "cutover_upstream_errors_total";
/// Requests currently being served, by storefront.
pub const REQUESTS_IN_FLIGHT: &str = "cutover_requests_in_flight";
/// Shoppers newly assigned to a storefront (first visit or expired cohort cookie).
pub const SHOPPERS_ASSIGNED_TOTAL: &str = "cutover_shoppers_assigned_total";
// shoppers: where shoppers are, estimated over the last 10 minutes (src/metrics/shoppers.rs).
/// Distinct returning shoppers the split sent to a storefront in the last 10 minutes (estimate).
pub const SHOPPERS_SEEN_RECENT: &str = "cutover_shoppers_seen_10m";
/// Of those, shoppers held there by a pin.
pub const SHOPPERS_PINNED_RECENT: &str = "cutover_shoppers_pinned_10m";
/// Of those, shoppers pinned there while the share would send them to the other side.
pub const SHOPPERS_PINNED_AGAINST_SHARE_RECENT: &str = "cutover_shoppers_pinned_against_share_10m";

/// Open client (downstream) connections.
pub const CLIENT_CONNECTIONS_OPEN: &str = "cutover_client_connections_open";
/// Client connections accepted.
pub const CLIENT_CONNECTIONS_ACCEPTED_TOTAL: &str = "cutover_client_connections_accepted_total";
/// Client connections refused because the connection cap was reached.
pub const CLIENT_CONNECTIONS_REJECTED_TOTAL: &str = "cutover_client_connections_rejected_total";
/// Idle connections closed to make room for a new one at a listener's connection cap.
pub const CONNECTIONS_EVICTED_TOTAL: &str = "cutover_connections_evicted_total";
/// Requests answered by the HTTP/1 front (redirects and forwards), not by hyper's server.
pub const HTTP1_FRONT_REQUESTS_TOTAL: &str = "cutover_http1_front_requests_total";

/// Configured share of split traffic sent to the new storefront, 0..1.
pub const SPLIT_NEW_SHARE_RATIO: &str = "cutover_split_new_share_ratio";
/// Which storefront is on which side of the split (value always 1): dashboards and alerts join on it
/// so they never hard-code storefront names.
pub const SPLIT_SIDE_INFO: &str = "cutover_split_side_info";

/// Redirects answered from the redirect table, by status.
pub const REDIRECTS_SERVED_TOTAL: &str = "cutover_redirects_served_total";
/// Requests with no redirect entry that the new storefront answered with 404.
pub const REDIRECT_MISSES_TOTAL: &str = "cutover_redirect_misses_total";
/// Entries in each loaded redirect table.
pub const REDIRECT_TABLE_ENTRIES: &str = "cutover_redirect_table_entries";
/// Generation of each loaded redirect table (bumps on every successful load).
pub const REDIRECT_TABLE_GENERATION: &str = "cutover_redirect_table_generation";
/// Unix time the redirect probation ends (permanent redirects carry `max-age` until then); 0
/// while the share is below 100%. A past value: probation over, served as written.
pub const REDIRECT_PROBATION_ENDS_TIMESTAMP_SECONDS: &str =
    "cutover_redirect_probation_ends_timestamp_seconds";

/// Config loads by result (applied, rejected); the startup load counts as applied.
pub const CONFIG_RELOADS_TOTAL: &str = "cutover_config_reloads_total";
/// 1 when the last load attempt went live, 0 when it was rejected (the old config still serves).
pub const CONFIG_LAST_RELOAD_SUCCESSFUL: &str = "cutover_config_last_reload_successful";
/// Unix time of the last config that went live.
pub const CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS: &str =
    "cutover_config_last_reload_success_timestamp_seconds";
/// Generation of the config serving requests.
pub const CONFIG_GENERATION: &str = "cutover_config_generation";

/// Access log lines dropped because the writer fell behind (the request was never blocked).
pub const ACCESS_LOG_DROPPED_TOTAL: &str = "cutover_access_log_dropped_total";
/// Access log batches that failed to write (disk full, closed pipe).
pub const ACCESS_LOG_WRITE_ERRORS_TOTAL: &str = "cutover_access_log_write_errors_total";

/// Constant 1 with the running version as a label.
pub const BUILD_INFO: &str = "cutover_build_info";

// rollout: the rollout's series (src/metrics/rollout.rs, deploy/prometheus/alerts.yml).
/// Current rollout step, 1-based; 0 when idle or rolled back.
pub const ROLLOUT_STEP: &str = "cutover_rollout_step";
/// 1 for the rollout's current state (idle, running, paused, rolled_back, completed, advising).
pub const ROLLOUT_STATE: &str = "cutover_rollout_state";
/// Last measured value of each rollout gate, by `gate` and `side` (`old`, `new`, `limit`).
pub const ROLLOUT_GATE_VALUE: &str = "cutover_rollout_gate_value";
/// Rollout gate verdicts, by `gate` and `result` (`pass`, `fail`, `insufficient`).
pub const ROLLOUT_VERDICTS_TOTAL: &str = "cutover_rollout_verdicts_total";
/// 404 answers by storefront and route: the rollout's 404-ratio gate (`cutover_requests_total`
/// has only the status class).
pub const NOT_FOUND_TOTAL: &str = "cutover_not_found_total";
/// Rollout evaluations the source (local counters, Prometheus) could not answer.
pub const ROLLOUT_SOURCE_INCONCLUSIVE_TOTAL: &str = "cutover_rollout_source_inconclusive_total";
/// Unix seconds when the rollout's current step began (0: no step): step annotations.
pub const ROLLOUT_STEP_STARTED: &str = "cutover_rollout_step_started_timestamp_seconds";

/// Label names. Values come only from configuration or fixed enums, never from client input.
pub mod label {
    /// Storefront name.
    pub const STOREFRONT: &str = "storefront";
    /// Route name.
    pub const ROUTE: &str = "route";
    /// `1xx`..`5xx`.
    pub const STATUS_CLASS: &str = "status_class";
    /// Routing reason.
    pub const REASON: &str = "reason";
    /// Upstream error kind.
    pub const KIND: &str = "kind";
    /// HTTP status code.
    pub const STATUS: &str = "status";
    /// `applied` or `rejected`.
    pub const RESULT: &str = "result";
    /// `from` or `to` side of the split.
    pub const SIDE: &str = "side";
    /// Redirect table name.
    pub const TABLE: &str = "table";
    /// Crate version.
    pub const VERSION: &str = "version";
    /// `shopper` (the proxy's listeners) or `admin`.
    pub const LISTENER: &str = "listener";
}

/// Histogram buckets in seconds for web pages: a cached page in a few ms, a cold product page in
/// hundreds of ms, a checkout call up to seconds; the upstream timeout sits near the top.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0,
];

/// Seconds until each served certificate expires (negative once expired), by certificate label.
pub const TLS_CERTIFICATE_EXPIRY_SECONDS: &str = "cutover_tls_certificate_expiry_seconds";
/// TLS handshakes with clients that failed (bad SNI, protocol, timeout).
pub const TLS_HANDSHAKE_ERRORS_TOTAL: &str = "cutover_tls_handshake_errors_total";
/// Certificate reloads by result (applied, rejected); a rejected one keeps the old certificate.
pub const TLS_RELOADS_TOTAL: &str = "cutover_tls_reloads_total";
/// Label of a configured certificate.
pub const CERTIFICATE_LABEL: &str = "certificate";

// inventory: the URL inventory (issue 17).
/// URLs the old-store inventory keeps now (bounded by `[inventory] capacity`).
pub const INVENTORY_URLS: &str = "cutover_inventory_urls";
/// Share of inventoried old-store hits the plan covers, by redirect table (`(all)`: the whole
/// plan and the routes together); recomputed on reload and every minute.
pub const INVENTORY_COVERAGE_RATIO: &str = "cutover_inventory_coverage_ratio";
/// 1 when the inventory file was unusable at start and the inventory started empty.
pub const INVENTORY_LOAD_FAILED: &str = "cutover_inventory_load_failed";
// shadow: the shadow comparison and the 404 fallback (issue 18).
/// Shadow comparisons by result (match, mismatch, error, dropped).
pub const SHADOW_REQUESTS_TOTAL: &str = "cutover_shadow_requests_total";
/// Shadow mismatches by kind (status, missing_on_new, redirect, canonical, title, ...).
pub const SHADOW_MISMATCHES_TOTAL: &str = "cutover_shadow_mismatches_total";
/// 404 fallback outcomes by result (served, still_404, old_error, not_eligible).
pub const FALLBACK_TOTAL: &str = "cutover_fallback_total";
// pool: the storefront connection pools (issue 22).
/// Connections opened to each storefront (cutover's own HTTP/1.1 pool).
pub const UPSTREAM_CONNECTIONS_OPENED_TOTAL: &str = "cutover_upstream_connections_opened_total";
/// Storefront responses by the connection they came on (`reused` or `new`): the reused ratio.
pub const UPSTREAM_REQUESTS_BY_CONNECTION_TOTAL: &str =
    "cutover_upstream_requests_by_connection_total";
/// Idle connections each storefront's pool keeps now.
pub const UPSTREAM_IDLE_CONNECTIONS: &str = "cutover_upstream_idle_connections";
/// Idle connections each pool would keep now: the recent peak in flight, within the cap.
pub const UPSTREAM_IDLE_TARGET: &str = "cutover_upstream_idle_target";
/// Label: `reused` or `new`.
pub const CONNECTION_LABEL: &str = "connection";
