//! cutover: a reverse proxy for zero-downtime e-commerce platform migrations.
#![forbid(unsafe_code)]
pub mod redirects;
