//! cutover: a reverse proxy that takes an online store through a platform migration with zero
//! downtime.
//!
//! This page is the map. Data flows one way:
//!
//! ```text
//! config files (TOML, CSV, PEM) --config: raw -> validate -> build--> state::Snapshot
//!     --reload (file watch, SIGHUP, admin API; operator state laid over the file)--> ArcSwap
//!     --fast_path / proxy, per request--> routing::decide(&routing::Table, &RequestView)
//!     --> redirect answer | forward to a storefront (upstream) --> record (metrics, access log)
//! ```
//!
//! # Layers
//! Each module may import only modules of its own layer or of the layers below it, and no two
//! modules may import each other, directly or through others. `tests/architecture.rs` reads
//! `src/` and this table, and fails on a dependency that points up or closes a cycle.
//!
//! <!-- layers: the test parses the block below; top layer first -->
//! ```text
//! edge      app demo fuzzing
//! control   control reload admin fleet
//! server    server drain handover
//! request   fast_path proxy response
//! config    config
//! snapshot  state
//! observe   metrics access_log
//! clients   upstream shadow rollout
//! domain    routing redirects inventory
//! policy    headers
//! wire      http1 tls body timer background values retry error_text web_client
//! ```
//!
//! What each owns (and so where a change goes):
//! - wire: [`http1`] head parsing and writing, and the smuggling defences (its doc is where to
//!   read them); [`tls`] rustls for shoppers and storefronts; [`body`] streaming bodies with idle
//!   bounds; [`timer`] hyper's timer; [`background`] low-priority threads for reload work;
//!   [`retry`] the one backoff policy of background calls; [`values`] the config's human
//!   values (durations, sizes, shares) and human times; [`error_text`] an error and its causes
//!   on one line; `web_client` the one client of the checks that ask a URL on the web (sitemaps,
//!   coverage probes, the plan's target check).
//! - policy: [`headers`] what is added, stripped and forwarded between shopper and storefront.
//! - domain, pure libraries with their tests beside them: [`routing`] (rules, the split, the
//!   cohort cookie, pins, the staff override: `decide(&Table, &RequestView)`), [`redirects`]
//!   (the plan: CSV, validation, O(1) lookup, missed URLs), [`inventory`] (old-store URLs from
//!   live traffic and sitemaps, bounded; coverage verdicts). A new rule kind touches `routing`
//!   and `config::raw` only.
//! - clients: [`upstream`] pooled storefront clients, the one retry rule, error classes, health;
//!   [`shadow`] mirrored copies compared as a migration needs (off the shopper's path) and the
//!   404 fallback's policy; [`rollout`] the automatic ramp as a library (plan, gates, engine,
//!   Prometheus source, webhook); `control::rollout` drives it against the live proxy.
//! - observe: [`metrics`] every metric, handles resolved at build time; [`access_log`].
//! - snapshot: [`state`] the immutable [`state::Snapshot`] and its `ArcSwap` handle.
//! - config: [`config`] raw serde structs -> validation with file:line:column -> build.
//! - request: [`fast_path`] HTTP/1 connections start there and redirects are answered from the
//!   raw head; [`proxy`] the hyper service (decide, answer, forward); [`response`] what goes
//!   back and the one place a request is counted and logged.
//! - server: [`server`] listeners, limits, accept loop; [`drain`]; [`handover`] sockets to a
//!   successor process.
//! - control: [`reload`] file/SIGHUP/admin change -> compile -> swap, operator state;
//!   [`control`] the admin API and the drivers of the features (rollout, fleet, inventory,
//!   shadow); [`admin`] the admin listener and its route table; [`fleet`] the etcd store shared by
//!   replicas (state, members, election).
//! - edge: [`app`] wiring for `serve` and `demo`; [`demo`]; `fuzzing` (checks behind the fuzz
//!   targets; like `tls::testkit`, only in the `testkit` feature that tests, benches and `fuzz/`
//!   turn on, never in the served library). `main.rs` and its `cli` are the only places that use `anyhow`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access_log;
pub mod admin;
pub mod app;
pub mod background;
pub mod body;
pub mod config;
pub mod control;
pub mod demo;
pub mod drain;
pub mod error_text;
pub mod fast_path;
pub mod fleet;
#[cfg(any(test, feature = "testkit"))]
pub mod fuzzing;
pub mod handover;
pub mod headers;
pub mod http1;
pub mod inventory;
pub mod metrics;
pub mod proxy;
pub mod redirects;
pub mod reload;
pub mod response;
pub mod retry;
pub mod rollout;
pub mod routing;
pub mod server;
pub mod shadow;
pub mod state;
pub mod timer;
pub mod tls;
pub mod upstream;
pub mod values;
mod web_client;
