//! The immutable snapshot every request reads, and the one `ArcSwap` that holds it.
//!
//! All live state sits under one swap so a request sees one consistent generation: routes, share,
//! storefronts and redirect tables from the same reload, never a mix.
//!
//! Layer: snapshot. May import its own layer and observe, clients, domain, policy, wire; never
//! edge, control, server, request, config.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue};

use crate::access_log::{AccessLog, AccessLogConfig};
use crate::metrics::RequestMetrics;
use crate::routing::{self, StorefrontId};
use crate::upstream::health::Health;
use crate::upstream::Upstream;

// shadow: the mirror and the fallback, reached by the request path through the snapshot.
pub mod shadow;

/// The shared handle: requests `load()`, reloads `store()`.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

/// One configured storefront.
#[derive(Debug)]
pub struct Storefront {
    /// Name from the config (`old`, `new`, ...).
    pub name: String,
    /// The name, ready to put in a header.
    pub name_header: HeaderValue,
    /// Connection pool and settings; shared with the next snapshot when unchanged so reloads
    /// keep warm connections.
    pub upstream: Arc<Upstream>,
    /// Last success and last error, for `/admin/status`; carried across reloads by name.
    pub health: Arc<Health>,
}

/// A loaded redirect table and what it was loaded from, so an unchanged file is not re-read.
#[derive(Debug)]
pub struct RedirectSource {
    /// The table's settings.
    pub config: crate::redirects::TableConfig,
    /// The CSV file, resolved.
    pub path: PathBuf,
    /// Size and modification time when loaded.
    pub stamp: Option<(u64, SystemTime)>,
    /// Generation of the snapshot that loaded it.
    pub generation: u64,
    /// The table.
    pub table: Arc<crate::redirects::RedirectTable>,
}

/// A data-plane listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// Label for logs.
    pub name: String,
    /// Bound address.
    pub address: SocketAddr,
    /// HTTPS settings; `None` for plain HTTP.
    pub tls: Option<crate::tls::ListenerTlsConfig>,
    /// `Strict-Transport-Security` value for responses on this listener.
    pub hsts: Option<HeaderValue>,
}

/// Protections against slow or oversized clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Whole request head must arrive within this (slowloris).
    pub header_read_timeout: Duration,
    /// Request head size beyond which the client gets 431.
    pub max_header_bytes: usize,
    /// Header count beyond which the client gets 431.
    pub max_headers: usize,
    /// URI length beyond which the client gets 414.
    pub max_uri_length: usize,
    /// A request body that sends nothing for this long is cut.
    pub body_idle_timeout: Duration,
    /// Open client connections beyond which new ones get a fast 503.
    pub max_connections: usize,
    /// Open connections one client address may hold (0: no limit, for connections from
    /// trusted proxies).
    pub max_connections_per_client: usize,
    /// Grace period for in-flight requests on shutdown.
    pub drain_timeout: Duration,
    /// Time between SIGTERM (readiness off) and closing the listeners.
    pub drain_delay: Duration,
    /// h2 streams per client connection.
    pub h2_max_concurrent_streams: u32,
    /// Plain HTTP/1.1 requests answered by cutover's own HTTP/1 layer (`fast_path`); `false`:
    /// hyper's server takes every connection from its first byte.
    pub http1_front: bool,
}

impl Limits {
    /// The limits the HTTP/1 head parser enforces.
    pub fn head(&self) -> crate::http1::HeadLimits {
        crate::http1::HeadLimits {
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_uri_length: 8 * 1024,
            body_idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_connections_per_client: 256,
            drain_timeout: Duration::from_secs(30),
            drain_delay: Duration::ZERO,
            h2_max_concurrent_streams: 100,
            http1_front: true,
        }
    }
}

/// What cutover adds to requests and responses.
#[derive(Debug, Clone)]
pub struct HeaderPolicy {
    /// `x-cutover-storefront` on responses.
    pub storefront_response: bool,
    /// `x-cutover-storefront` and `x-cutover-reason` on upstream requests.
    pub decision_upstream: bool,
    /// `Via: 1.1 cutover` both ways.
    pub via: bool,
    /// Keep incoming `X-Forwarded-Proto`/`-Host`.
    pub trust_forwarded: bool,
    /// Request id header.
    pub request_id: HeaderName,
}

/// Everything a request needs, compiled once per reload.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one with every applied reload.
    pub generation: u64,
    /// The config file it came from.
    pub source: PathBuf,
    /// Other files it was built from (secrets, CA bundles, redirect tables), for the watcher.
    pub files: Vec<PathBuf>,
    /// When it was built.
    pub loaded_at: SystemTime,
    /// Data-plane listeners (changes need a restart).
    pub listeners: Vec<ListenerSpec>,
    /// Admin listener, if enabled.
    pub admin: Option<SocketAddr>,
    /// Bearer token for admin mutations (re-read on reload, so a rotated secret applies).
    pub admin_token: Option<String>,
    /// Where admin API changes are kept.
    pub state_file: PathBuf,
    /// The generation as a header value (`x-cutover-generation` to storefronts).
    pub generation_header: HeaderValue,
    /// What produced this snapshot: `startup`, `file`, `signal`, `admin`, `admin-split`...
    pub trigger: &'static str,
    /// Limits.
    pub limits: Limits,
    /// Storefronts by id.
    pub storefronts: Vec<Storefront>,
    /// What routing decides by: routes, the shift, cohort cookie, staff override, evacuations.
    pub routing: routing::Table,
    /// Header policy.
    pub headers: HeaderPolicy,
    /// Redirect tables, consulted in order.
    pub redirects: Vec<RedirectSource>,
    /// Top-K size and per-host flag for missed redirects (read at start).
    pub misses: (usize, bool),
    /// `[redirect_probation]` and when it started (set by the reloader, `None` below 100%).
    pub redirect_probation: crate::redirects::probation::RedirectProbation,
    /// Metric handles for every label combination this snapshot can produce.
    pub metrics: RequestMetrics,
    /// Access log settings.
    pub access_log_config: AccessLogConfig,
    /// Access log writer (shared with the next snapshot while its settings are unchanged).
    pub access_log: AccessLog,
    // rollout: the checked `[rollout]` plan, read by the rollout driver (control::rollout).
    /// The checked `[rollout]` plan, if the file has one.
    pub rollout: Option<std::sync::Arc<crate::rollout::plan::Plan>>,
    // inventory: one instance per process, carried from snapshot to snapshot (counts survive
    // reloads); recording happens only while `inventory_config` is `Some` (section on).
    /// The URL inventory, once `[inventory]` has been enabled; read by the request path.
    pub inventory: Option<Arc<crate::inventory::Inventory>>,
    /// `[inventory]` when enabled, its `file` resolved against the config's directory.
    pub inventory_config: Option<crate::inventory::InventoryConfig>,
    // shadow: `[shadow]` and `[fallback]` (issue 18); `None` without the sections.
    /// The shadow mirror, kept across reloads while its settings are unchanged.
    pub shadow: Option<Arc<shadow::ShadowPlane>>,
    /// The 404 fallback, when any route opts in.
    pub fallback: Option<shadow::FallbackPlane>,
    /// The server's runtime, carried from snapshot to snapshot: reloads compile on background
    /// threads outside it, and a mirror started by a reload must run its tasks in it.
    pub shadow_runtime: Option<tokio::runtime::Handle>,
}

impl Snapshot {
    /// Storefront id by name. Linear: there are a handful of storefronts.
    pub fn storefront_id(&self, name: &str) -> Option<StorefrontId> {
        self.routing.storefront_id(name)
    }
}
