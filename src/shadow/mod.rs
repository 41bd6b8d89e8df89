//! Shadow comparison and 404 fallback (issue 18): proving the new storefront with real traffic
//! before shoppers see it.
//!
//! - [`html`]: the SEO signals of a page, read from a streamed body up to a limit.
//! - [`compare`]: one observation per storefront, and the mismatches between them.
//! - [`report`]: mismatches aggregated by kind and route in bounded memory; JSON and CSV.
//! - [`mirror`]: [`mirror::Shadow`], which copies sampled requests off the shopper's path.
//! - [`counters`]: plain atomics behind the shadow and fallback metrics.
//! - [`fallback`]: the pure policy for asking old when new answers 404, and its top URLs.
//! - [`config`]: the `[shadow]` and `[fallback]` sections.
//!
//! Layer: clients. May import its own layer and domain, policy, wire; never edge, control, server,
//! request, config, snapshot, observe.

pub mod compare;
pub mod config;
pub mod counters;
pub mod entities;
pub mod fallback;
mod fetch;
pub mod html;
pub mod mirror;
pub mod report;
pub mod topk;
pub mod url;

pub use compare::{MismatchKind, ShadowResult};
pub use config::{FallbackConfig, ShadowConfig, ShadowSettings, Storefront};
pub use mirror::{MapUrl, OfferRequest, Offered, Shadow, Targets};
