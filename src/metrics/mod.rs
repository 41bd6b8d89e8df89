//! Prometheus metrics that put the old and the new storefront side by side.
//!
//! One [`Metrics`] per process owns the registry and every process-wide series. The request path never
//! touches it: each compiled config snapshot asks [`Metrics::handles`] once for a [`RequestMetrics`]
//! holding every label combination that snapshot can produce. Label values come only from
//! configuration (storefront and route names, redirect table names) and fixed enums, so cardinality is
//! bounded by the config, never by what clients send.
//!
//! Every combination is created at 0 when resolved. That is what lets dashboard queries and alerts
//! like "5xx ratio of new vs old" return a series from the first scrape instead of staying empty until
//! the first error happens.
//!
//! Layer: observe. May import its own layer and clients, domain, policy, wire; never edge, control,
//! server, request, config, snapshot.

mod names;
mod request;
// rollout: the local source's counter reader and the rollout's series.
mod rollout;
// shadow: the shadow and fallback counters, read at scrape time.
pub mod shadow;
// The `no-metrics` benchmark baseline records nothing, so these cannot hold there.
#[cfg(all(test, not(feature = "no-metrics")))]
mod tests;
mod tls;
// inventory: the URL inventory's gauges.
mod inventory;
pub use inventory::{InventoryMetrics, INVENTORY_ALL_TABLES};
// pool: the storefront pools' counters, read at scrape time.
pub mod pool;
mod process;
pub use process::ConnectionGuard;
// shoppers: where shoppers are (distinct counts over the last 10 minutes).
mod recent_distinct;
pub mod shoppers;

pub use names::*;
pub use request::{InFlightGuard, Reason, RequestMetrics, StorefrontTotals, UpstreamErrorKind};
pub use tls::TlsMetrics;
// rollout:
pub use rollout::RolloutMetrics;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use request::{Handles, REDIRECT_STATUSES, STATUS_CLASSES};

/// Content type of [`Metrics::encode`]'s output, for the admin listener.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Failure to build the metric set. Only a programming error (bad name, duplicate registration) can
/// cause it, which the unit tests catch.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A metric could not be registered.
    #[error("registering metric {name}: {source}")]
    Register {
        /// The metric.
        name: &'static str,
        /// What the OS or library said.
        source: prometheus::Error,
    },
    /// Encoding failed.
    #[error("encoding metrics as Prometheus text: {0}")]
    Encode(#[source] prometheus::Error),
}

/// The listener whose connection cap made room (`listener` on `cutover_connections_evicted_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictedAt {
    /// The shopper listeners (`limits.max_connections`).
    Shopper,
    /// The admin listener's own cap.
    Admin,
}

impl EvictedAt {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictedAt::Shopper => "shopper",
            EvictedAt::Admin => "admin",
        }
    }
}

/// The process-wide metric set. Create once with [`Metrics::new`] and share the `Arc`.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    ttfb: HistogramVec,
    upstream_errors: IntCounterVec,
    in_flight: IntGaugeVec,
    assigned: IntCounterVec,
    redirects: IntCounterVec,
    redirect_misses: IntCounter,
    // rollout:
    not_found: IntCounterVec,
    redirect_entries: IntGaugeVec,
    redirect_generation: IntGaugeVec,
    connections_open: IntGauge,
    connections_accepted: IntCounter,
    connections_rejected: IntCounter,
    connections_evicted: IntCounterVec,
    front_requests: IntCounter,
    share: Gauge,
    redirect_probation_ends: IntGauge,
    split_side: IntGaugeVec,
    reloads_applied: IntCounter,
    reloads_rejected: IntCounter,
    reload_successful: IntGauge,
    reload_timestamp: Gauge,
    generation: IntGauge,
    access_log_dropped: IntCounter,
    access_log_write_errors: IntCounter,
    build_info: IntGaugeVec,
    /// Label values currently exported, so [`Metrics::retain`] can drop names a reload removed.
    /// Touched only on the reload path.
    known: Mutex<Known>,
    // shoppers:
    census: Arc<shoppers::ShopperCensus>,
}

#[derive(Default)]
struct Known {
    storefronts: BTreeSet<String>,
    pairs: BTreeSet<(String, String)>,
    split: Option<(String, String)>,
    build_version: Option<String>,
    tables: BTreeSet<String>,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    name: &'static str,
    c: C,
) -> Result<C, MetricsError> {
    registry
        .register(Box::new(c.clone()))
        .map_err(|source| MetricsError::Register { name, source })?;
    Ok(c)
}

/// [`register`] for a metric whose definition may have failed: what the metric modules call
/// with `IntGauge::new(..)` and the like, so each failure names its metric.
pub(super) fn reg<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    name: &'static str,
    c: Result<C, prometheus::Error>,
) -> Result<C, MetricsError> {
    register(registry, name, c.map_err(err(name))?)
}

/// The error of metric `name`'s definition or registration.
pub(super) fn err(name: &'static str) -> impl Fn(prometheus::Error) -> MetricsError {
    move |source| MetricsError::Register { name, source }
}

macro_rules! reg {
    ($registry:expr, $ty:ty, $name:expr, $help:expr) => {
        register(
            $registry,
            $name,
            <$ty>::with_opts(Opts::new($name, $help)).map_err(|source| MetricsError::Register {
                name: $name,
                source,
            })?,
        )?
    };
    ($registry:expr, $ty:ty, $name:expr, $help:expr, $labels:expr) => {
        register(
            $registry,
            $name,
            <$ty>::new(Opts::new($name, $help), $labels).map_err(|source| {
                MetricsError::Register {
                    name: $name,
                    source,
                }
            })?,
        )?
    };
}

fn histogram(
    registry: &Registry,
    name: &'static str,
    help: &str,
) -> Result<HistogramVec, MetricsError> {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    let h = HistogramVec::new(opts, &[label::STOREFRONT, label::ROUTE])
        .map_err(|source| MetricsError::Register { name, source })?;
    register(registry, name, h)
}

impl Metrics {
    /// Builds the metric set with the crate version as `cutover_build_info`.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::try_new().expect("metric definitions are valid (unit-tested)"))
    }

    /// Like [`Metrics::new`], returning the registration error instead of panicking.
    pub fn try_new() -> Result<Self, MetricsError> {
        use label::*;
        let r = Registry::new();
        let reloads: IntCounterVec = reg!(
            &r,
            IntCounterVec,
            CONFIG_RELOADS_TOTAL,
            "Config loads by result; the startup load counts as applied.",
            &[RESULT]
        );
        let m = Metrics {
            requests: reg!(
                &r,
                IntCounterVec,
                REQUESTS_TOTAL,
                "Requests answered, by storefront, route, status class and routing reason.",
                &[STOREFRONT, ROUTE, STATUS_CLASS, REASON]
            ),
            duration: histogram(
                &r,
                REQUEST_DURATION_SECONDS,
                "Time from request head received to last response byte sent.",
            )?,
            ttfb: histogram(
                &r,
                UPSTREAM_TTFB_SECONDS,
                "Time from request sent upstream to the upstream response head.",
            )?,
            upstream_errors: reg!(
                &r,
                IntCounterVec,
                UPSTREAM_ERRORS_TOTAL,
                "Failed exchanges with a storefront, by kind.",
                &[STOREFRONT, KIND]
            ),
            in_flight: reg!(
                &r,
                IntGaugeVec,
                REQUESTS_IN_FLIGHT,
                "Requests being served, by storefront.",
                &[STOREFRONT]
            ),
            assigned: reg!(
                &r,
                IntCounterVec,
                SHOPPERS_ASSIGNED_TOTAL,
                "Shoppers newly assigned to a storefront.",
                &[STOREFRONT]
            ),
            redirects: reg!(
                &r,
                IntCounterVec,
                REDIRECTS_SERVED_TOTAL,
                "Redirects answered from the redirect tables, by status.",
                &[STATUS]
            ),
            redirect_misses: reg!(
                &r,
                IntCounter,
                REDIRECT_MISSES_TOTAL,
                "Requests with no redirect entry that the new storefront answered with 404."
            ),
            // rollout:
            not_found: reg!(
                &r,
                IntCounterVec,
                NOT_FOUND_TOTAL,
                "404 answers, by storefront and route (the rollout's 404-ratio gate).",
                &[STOREFRONT, ROUTE]
            ),
            redirect_entries: reg!(
                &r,
                IntGaugeVec,
                REDIRECT_TABLE_ENTRIES,
                "Entries in each loaded redirect table.",
                &[TABLE]
            ),
            redirect_generation: reg!(
                &r,
                IntGaugeVec,
                REDIRECT_TABLE_GENERATION,
                "Generation of each loaded redirect table.",
                &[TABLE]
            ),
            connections_open: reg!(
                &r,
                IntGauge,
                CLIENT_CONNECTIONS_OPEN,
                "Open client connections."
            ),
            connections_accepted: reg!(
                &r,
                IntCounter,
                CLIENT_CONNECTIONS_ACCEPTED_TOTAL,
                "Client connections accepted."
            ),
            connections_rejected: reg!(
                &r,
                IntCounter,
                CLIENT_CONNECTIONS_REJECTED_TOTAL,
                "Client connections refused at the connection cap."
            ),
            connections_evicted: reg!(
                &r,
                IntCounterVec,
                CONNECTIONS_EVICTED_TOTAL,
                "Idle connections closed to make room at a listener's connection cap.",
                &[LISTENER]
            ),
            front_requests: reg!(
                &r,
                IntCounter,
                HTTP1_FRONT_REQUESTS_TOTAL,
                "Requests answered by cutover's own HTTP/1 layer (redirects and forwards); the rest go through hyper's server."
            ),
            share: reg!(
                &r,
                Gauge,
                SPLIT_NEW_SHARE_RATIO,
                "Configured share of split traffic sent to the new storefront (0..1)."
            ),
            redirect_probation_ends: reg!(
                &r,
                IntGauge,
                REDIRECT_PROBATION_ENDS_TIMESTAMP_SECONDS,
                "Unix time the redirect probation ends (0: share below 100%)."
            ),
            split_side: reg!(
                &r,
                IntGaugeVec,
                SPLIT_SIDE_INFO,
                "Storefront on each side of the split (always 1).",
                &[SIDE, STOREFRONT]
            ),
            reloads_applied: reloads.with_label_values(&["applied"]),
            reloads_rejected: reloads.with_label_values(&["rejected"]),
            reload_successful: reg!(
                &r,
                IntGauge,
                CONFIG_LAST_RELOAD_SUCCESSFUL,
                "1 if the last config load went live, 0 if it was rejected."
            ),
            reload_timestamp: reg!(
                &r,
                Gauge,
                CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS,
                "Unix time of the last config that went live."
            ),
            generation: reg!(
                &r,
                IntGauge,
                CONFIG_GENERATION,
                "Generation of the active config."
            ),
            access_log_dropped: reg!(
                &r,
                IntCounter,
                ACCESS_LOG_DROPPED_TOTAL,
                "Access log lines dropped because the writer fell behind."
            ),
            access_log_write_errors: reg!(
                &r,
                IntCounter,
                ACCESS_LOG_WRITE_ERRORS_TOTAL,
                "Access log batches that failed to write."
            ),
            build_info: reg!(
                &r,
                IntGaugeVec,
                BUILD_INFO,
                "Always 1; the version label says what is running.",
                &[VERSION]
            ),
            registry: r,
            known: Mutex::default(),
            census: Arc::default(),
        };
        shoppers::register(&m.registry, Arc::clone(&m.census))?;
        for status in REDIRECT_STATUSES {
            m.redirects.with_label_values(&[status]);
        }
        for at in [EvictedAt::Shopper, EvictedAt::Admin] {
            m.connections_evicted.with_label_values(&[at.as_str()]);
        }
        m.set_build_info(env!("CARGO_PKG_VERSION"));
        Ok(m)
    }

    fn known(&self) -> MutexGuard<'_, Known> {
        // A panic while holding this lock leaves only label bookkeeping half-updated; keep going.
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves every label combination for one config snapshot: storefront names (index =
    /// storefront id) and route names (index = route id, including the fallthrough default route).
    /// Call once per compile, never per request. Combinations are created at 0; names already seen
    /// keep their counts, so counters run on across reloads.
    pub fn handles(&self, storefronts: &[&str], routes: &[&str]) -> RequestMetrics {
        let (ns, nr) = (storefronts.len(), routes.len());
        let mut requests = Vec::with_capacity(ns * nr * STATUS_CLASSES.len() * Reason::ALL.len());
        let mut duration = Vec::with_capacity(ns * nr);
        let mut ttfb = Vec::with_capacity(ns * nr);
        // rollout:
        let mut not_found = Vec::with_capacity(ns * nr);
        for sf in storefronts {
            for route in routes {
                for class in STATUS_CLASSES {
                    for reason in Reason::ALL {
                        requests.push(self.requests.with_label_values(&[
                            sf,
                            route,
                            class,
                            reason.as_str(),
                        ]));
                    }
                }
                duration.push(self.duration.with_label_values(&[sf, route]));
                ttfb.push(self.ttfb.with_label_values(&[sf, route]));
                not_found.push(self.not_found.with_label_values(&[sf, route]));
            }
        }
        let upstream_errors = storefronts
            .iter()
            .flat_map(|sf| {
                UpstreamErrorKind::ALL
                    .iter()
                    .map(move |k| self.upstream_errors.with_label_values(&[sf, k.as_str()]))
            })
            .collect();
        let in_flight = storefronts
            .iter()
            .map(|sf| self.in_flight.with_label_values(&[sf]))
            .collect();
        let assigned = storefronts
            .iter()
            .map(|sf| self.assigned.with_label_values(&[sf]))
            .collect();
        let redirects = REDIRECT_STATUSES
            .iter()
            .map(|s| self.redirects.with_label_values(&[s]))
            .collect();

        let mut known = self.known();
        known
            .storefronts
            .extend(storefronts.iter().map(|s| s.to_string()));
        for sf in storefronts {
            for route in routes {
                known.pairs.insert((sf.to_string(), route.to_string()));
            }
        }
        RequestMetrics::from_handles(Handles {
            storefronts: storefronts.iter().map(|s| Arc::from(*s)).collect(),
            routes: routes.iter().map(|s| Arc::from(*s)).collect(),
            requests: requests.into_boxed_slice(),
            duration: duration.into_boxed_slice(),
            ttfb: ttfb.into_boxed_slice(),
            in_flight,
            upstream_errors,
            assigned,
            redirects,
            redirect_misses: self.redirect_misses.clone(),
            not_found: not_found.into_boxed_slice(),
            shoppers: self.census.resolve(storefronts),
        })
    }

    /// Stops exporting storefront and route names that `live` (the handles of the snapshot that just
    /// went live) no longer has, so a renamed route does not linger on the dashboard as a flat line.
    /// Optional; call after the swap, from the same task that calls [`Metrics::handles`], because a
    /// snapshot compiled concurrently with names being pruned would record into detached series.
    pub fn retain(&self, live: &RequestMetrics) {
        let h = live.handles();
        let keep_sf: BTreeSet<&str> = h.storefronts.iter().map(|s| &**s).collect();
        let keep_route: BTreeSet<&str> = h.routes.iter().map(|s| &**s).collect();
        self.census.retain(&keep_sf);
        let mut known = self.known();
        let stale_pairs: Vec<(String, String)> = known
            .pairs
            .iter()
            .filter(|(sf, r)| !keep_sf.contains(sf.as_str()) || !keep_route.contains(r.as_str()))
            .cloned()
            .collect();
        for (sf, route) in &stale_pairs {
            for class in STATUS_CLASSES {
                for reason in Reason::ALL {
                    let _ = self
                        .requests
                        .remove_label_values(&[sf, route, class, reason.as_str()]);
                }
            }
            let _ = self.duration.remove_label_values(&[sf, route]);
            let _ = self.ttfb.remove_label_values(&[sf, route]);
            let _ = self.not_found.remove_label_values(&[sf, route]);
            known.pairs.remove(&(sf.clone(), route.clone()));
        }
        let stale_sf: Vec<String> = known
            .storefronts
            .iter()
            .filter(|s| !keep_sf.contains(s.as_str()))
            .cloned()
            .collect();
        for sf in &stale_sf {
            for kind in UpstreamErrorKind::ALL {
                let _ = self
                    .upstream_errors
                    .remove_label_values(&[sf, kind.as_str()]);
            }
            let _ = self.in_flight.remove_label_values(&[sf]);
            let _ = self.assigned.remove_label_values(&[sf]);
            known.storefronts.remove(sf);
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
