//! TLS for shoppers (HTTPS listeners) and for storefronts (upstream HTTPS).
//!
//! Always the aws-lc-rs provider ([`provider`]), passed explicitly: a process-wide default
//! provider would make behaviour depend on which crate installed one first. aws-lc-rs rather
//! than ring because a full handshake is dominated by the certificate's signature, and
//! aws-lc's RSA and ECDSA signing is the assembly-optimised code OpenSSL-class servers use:
//! with ring, a new shopper's handshake cost ~20% more CPU than nginx's (BENCHMARKS.md, TLS).
//!
//! # How the core wires this in
//! - **Listener**: `let tls = Arc::new(TlsListener::load(&cfg.tls, base_dir)?)`.
//!   In the accept loop, per TCP connection: `tls.acceptor().accept(tcp).await`,
//!   then serve the stream with hyper-util's auto builder (h2 if
//!   `stream.get_ref().1.alpn_protocol() == Some(b"h2")`, else HTTP/1.1; the
//!   auto builder also detects it). A failed handshake is logged at debug and
//!   counted, never fatal. HSTS: add `tls.hsts_header()` to HTTPS responses.
//! - **Reload**: watch `tls.files()`; on change (and on SIGHUP) call
//!   `tls.reload()` in `spawn_blocking`. `Ok(report)`: already logged at info
//!   when `report.changed` is non-empty. `Err(e)`: already logged at warn (it
//!   names every bad file); count it (`cutover_tls_reload_errors_total`); the
//!   previous certificates keep serving. Retry on the next file event: ACME
//!   clients write cert and key separately, so a reload in between sees a
//!   mismatch, is refused, and the following event succeeds. When the config file itself changed, call
//!   `tls.reconfigure(&new_cfg.tls, base_dir)` instead.
//! - **Metric**: on each scrape, for `(label, not_after)` in `tls.expiries()`,
//!   set `cutover_tls_certificate_expiry_seconds{certificate=label}` to
//!   `not_after - now` in seconds (negative once expired).
//! - **Upstream**: per storefront with an `https://` URL,
//!   `upstream_connector(&sf.tls, base_dir, Some(connect_timeout), http2)?` and
//!   `hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector)`;
//!   h2 is used when the origin picks it via ALPN. Map a request error with
//!   `is_tls_error(&err)` to a 502 with error kind `tls`.
//! - **check**: `cutover check` prints `tls::check(&cfg.tls, base_dir)`.
//!
//! Layer: wire. May import only its own layer; never edge, control, server, request, config,
//! snapshot, observe, clients, domain, policy.

mod certs;
mod config;
mod listener;
mod selfsigned;
mod sni;
mod upstream;

#[cfg(test)]
mod listener_tests;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
#[cfg(test)]
mod testutil;
#[cfg(test)]
mod upstream_tests;

use std::path::PathBuf;

pub use certs::{covers, CertProblem, ProblemKind, Severity, EXPIRY_WARNING};
pub use config::{
    CertificateConfig, HstsConfig, ListenerTlsConfig, MinVersion, UpstreamTlsOptions,
};
pub use listener::{check, CertSummary, ReloadReport, TlsListener};
pub use selfsigned::{generate_self_signed, SelfSigned};
pub use sni::SniResolver;
pub use upstream::{
    public_https_connector, upstream_client_config, upstream_connector, AcceptAnyServerCert,
};

/// The crypto provider of every TLS config cutover builds (listeners, storefronts, the probe of
/// `redirects check`): aws-lc-rs, with its default cipher suites and key exchange groups.
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// Errors of this module. Each one names the file or setting concerned.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Certificate, key or CA files that cannot be used (every one found).
    #[error("{}", join_problems(.0))]
    Certificates(Vec<CertProblem>),
    /// rustls refused a configuration.
    #[error("{context}: {source}")]
    Rustls {
        /// What was being built.
        context: String,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
    /// An upstream `server_name` that is neither a DNS name nor an IP.
    #[error("invalid upstream server_name {name:?}: {reason}")]
    ServerName {
        /// The name as configured.
        name: String,
        /// Why it is not usable.
        reason: String,
    },
    /// A client certificate without its key or the reverse.
    #[error("upstream TLS: {0}")]
    UpstreamOptions(String),
    /// Writing generated files (demo certificate).
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// rcgen could not make a certificate.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

fn join_problems(problems: &[CertProblem]) -> String {
    problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether an error (typically hyper-util's client error) was caused by TLS:
/// certificate verification, handshake failure or a TLS alert, as opposed to
/// a refused connection or a timeout. Walks `source()`, and also looks inside
/// `io::Error`s, whose `source()` skips the error they wrap.
pub fn is_tls_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<rustls::Error>() {
            return true;
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if is_tls_error(inner) {
                return true;
            }
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[derive(Debug, thiserror::Error)]
    #[error("request failed")]
    struct Outer(#[source] Box<dyn std::error::Error + Send + Sync>);

    #[test]
    fn finds_rustls_errors_through_io_and_sources() {
        let rustls_err = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        // hyper-rustls wraps tokio-rustls' io::Error in another io::Error.
        let io_in_io = io::Error::other(io::Error::new(io::ErrorKind::InvalidData, rustls_err));
        let outer = Outer(Box::new(io_in_io));
        assert!(is_tls_error(&outer));

        let refused = Outer(Box::new(io::Error::from(io::ErrorKind::ConnectionRefused)));
        assert!(!is_tls_error(&refused));
    }
}
