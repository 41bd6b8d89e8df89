//! cutover: a reverse proxy that takes an online store through a platform migration with zero
//! downtime.
//!
//! Data flows one way:
//!
//! ```text
//! config file (TOML) --config::raw--> raw structs (+ admin overrides) --config::compile-->
//!     state::Snapshot --reload (file watch, SIGHUP, admin API)--> ArcSwap<Snapshot>
//!     --proxy (per request)--> routing::decide --> local answer | upstream (storefront)
//! ```
//!
//! Modules, one concern each:
//! - [`config`]: raw structs, values, validation and compilation with file:line errors.
//! - [`state`]: the immutable [`state::Snapshot`] and its shared handle.
//! - [`routing`]: the pure routing decision (rules, split, pins, override), reading headers
//!   through [`request_headers`] (hyper's map, or the raw head the HTTP/1 [`front`] parsed).
//! - [`cohort`]: the signed cohort cookie, buckets and pins.
//! - [`force`]: staff override (`?cutover=new`).
//! - [`proxy`]: the hyper service; [`response`]: response bodies and per-request bookkeeping.
//! - [`headers`]: hop-by-hop and forwarding headers. [`body`]: streaming bodies with idle bounds.
//!   [`scan`]: splitting request text at ASCII delimiters without `CharSearcher` overhead.
//! - [`outgoing`]: the headers cutover sets on a request to a storefront, written with the
//!   shopper's rather than inserted into them.
//! - [`upstream`]: storefront clients (the HTTP/1.1 pool and its inline client [`upstream::h1`],
//!   hyper-util for h2) and error classification.
//! - [`server`]: listeners, connection cap, protocol limits, graceful drain. [`front`]: HTTP/1
//!   connections start there, where redirects are answered from the raw head; anything else is
//!   handed to hyper. [`timer`]: hyper's
//!   timer with lazily re-armed deadlines; [`drain`]: closing
//!   connections at request boundaries.
//! - [`reload`]: file watch, SIGHUP and admin changes -> compile -> swap; history.
//!   [`background`]: the low-priority thread reloads compile on.
//! - [`control`]: the admin API (status, split, evacuate, reload, upgrade); [`health`]: last
//!   success/error per storefront.
//! - [`handover`]: passing the listening sockets to a successor process (upgrade, systemd).
//! - [`redirects`]: the migration's redirect table: CSV, validation, O(1) lookup, missed URLs.
//! - [`tls`]: HTTPS listeners (SNI, reload, checks) and storefront TLS.
//! - [`metrics`]: every metric, pre-resolved handles. [`access_log`]: JSON lines off the request path.
//! - [`admin`]: the operator listener (/metrics, /healthz, /readyz, routes of [`control`]).
//! - [`app`]: wiring for `serve` and `demo`. [`demo`]: the built-in demo storefronts.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access_log;
pub mod admin;
pub mod app;
pub mod background;
pub mod body;
pub mod cohort;
pub mod config;
pub mod control;
pub mod demo;
pub mod drain;
pub mod force;
pub mod front;
#[doc(hidden)]
pub mod fuzzing;
pub mod handover;
pub mod headers;
pub mod health;
pub mod inventory;
pub mod metrics;
pub mod outgoing;
pub mod proxy;
pub mod redirects;
pub mod reload;
pub mod request_headers;
pub mod response;
pub mod routing;
pub mod scan;
pub mod server;
pub mod state;
pub mod timer;
pub mod tls;
pub mod upstream;
pub(crate) mod wire;
