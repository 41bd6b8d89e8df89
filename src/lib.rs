//! cutover: a reverse proxy for zero-downtime e-commerce platform migrations.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod metrics;
