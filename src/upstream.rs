//! Pooled clients to the storefronts, and the classification of what goes wrong talking to them.
//!
//! A client (and its warm connection pool) is kept across reloads as long as the storefront's
//! connection settings are unchanged, so changing the share a hundred times an hour never costs
//! a cold connection.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::HeaderValue;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::UpstreamBody;
use crate::config::raw::{HostHeader, UpstreamProtocol};
use crate::tls::UpstreamTlsOptions;

/// Everything that shapes a storefront's connections; equal settings share one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host:port`.
    pub authority: Authority,
    /// Which Host the storefront sees.
    pub host_header: HostHeader,
    /// Protocol choice.
    pub protocol: UpstreamProtocol,
    /// TCP (and TLS) connect bound.
    pub connect_timeout: Duration,
    /// Bound on waiting for response headers (504 beyond).
    pub response_header_timeout: Duration,
    /// Response body silence bound.
    pub read_timeout: Duration,
    /// Idle pooled connections are closed after this.
    pub idle_timeout: Duration,
    /// Idle connections kept per storefront.
    pub pool_max_idle: usize,
    /// TLS options (extra CA, SNI, client certificate).
    pub tls: UpstreamTlsOptions,
    /// Directory relative TLS paths resolve against.
    pub base_dir: PathBuf,
}

/// A storefront's client.
pub struct Upstream {
    /// The settings it was built from.
    pub settings: UpstreamSettings,
    /// The upstream authority as a Host header value (for `host_header = "upstream"`).
    pub authority_header: HeaderValue,
    client: Client<HttpsConnector<HttpConnector>, UpstreamBody>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("settings", &self.settings)
            .finish()
    }
}

/// Why an upstream client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamBuildError {
    /// A CA, client certificate or key file is unusable, or rustls refused the settings.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

impl Upstream {
    /// Builds a client; reads the CA file, so call it off the request path.
    pub fn build(settings: UpstreamSettings) -> Result<Self, UpstreamBuildError> {
        let connector = crate::tls::upstream_connector(
            &settings.tls,
            &settings.base_dir,
            Some(settings.connect_timeout),
            settings.protocol == UpstreamProtocol::Auto,
        )?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(settings.idle_timeout)
            .pool_max_idle_per_host(settings.pool_max_idle)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_only(settings.protocol == UpstreamProtocol::H2c)
            .build(connector);
        let authority_header = HeaderValue::from_str(settings.authority.as_str())
            .expect("a parsed authority is a valid header value");
        Ok(Upstream {
            settings,
            authority_header,
            client,
        })
    }

    /// Reuses `previous` when nothing about the connections changed.
    pub fn reuse_or_build(
        settings: UpstreamSettings,
        previous: Option<&Arc<Upstream>>,
    ) -> Result<Arc<Self>, UpstreamBuildError> {
        match previous {
            Some(p) if p.settings == settings => Ok(Arc::clone(p)),
            _ => Upstream::build(settings).map(Arc::new),
        }
    }

    /// The client.
    pub fn client(&self) -> &Client<HttpsConnector<HttpConnector>, UpstreamBody> {
        &self.client
    }
}

/// What went wrong with a storefront, as a metric label and a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamErrorKind {
    /// Refused, unreachable, DNS: nothing was sent.
    Connect,
    /// Connect or response-header timeout.
    Timeout,
    /// Connection closed or reset before the response headers.
    Reset,
    /// The storefront spoke something that is not HTTP.
    Protocol,
    /// The storefront's certificate did not verify, or the handshake failed.
    Tls,
}

impl UpstreamErrorKind {
    /// Every kind, in metric-index order.
    pub const ALL: [UpstreamErrorKind; 5] = [
        UpstreamErrorKind::Connect,
        UpstreamErrorKind::Timeout,
        UpstreamErrorKind::Reset,
        UpstreamErrorKind::Protocol,
        UpstreamErrorKind::Tls,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Reset => "reset",
            UpstreamErrorKind::Protocol => "protocol",
            UpstreamErrorKind::Tls => "tls",
        }
    }

    /// nginx/Envoy convention: timeouts are 504, everything else the storefront did wrong is 502.
    pub fn status(self) -> http::StatusCode {
        match self {
            UpstreamErrorKind::Timeout => http::StatusCode::GATEWAY_TIMEOUT,
            _ => http::StatusCode::BAD_GATEWAY,
        }
    }
}

fn chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |e: &&'a (dyn StdError + 'static)| (*e).source())
}

/// Sorts a client error into a kind.
pub fn classify(err: &hyper_util::client::legacy::Error) -> UpstreamErrorKind {
    let dyn_err: &(dyn StdError + 'static) = err;
    // hyper-rustls nests the rustls error inside io::Errors whose source() skips it; the TLS
    // module's walk looks inside them.
    if crate::tls::is_tls_error(dyn_err) {
        return UpstreamErrorKind::Tls;
    }
    let io_kind =
        chain(dyn_err).find_map(|e| e.downcast_ref::<std::io::Error>().map(|io| io.kind()));
    if err.is_connect() {
        return match io_kind {
            Some(std::io::ErrorKind::TimedOut) => UpstreamErrorKind::Timeout,
            _ => UpstreamErrorKind::Connect,
        };
    }
    if let Some(h) = chain(dyn_err).find_map(|e| e.downcast_ref::<hyper::Error>()) {
        if h.is_timeout() {
            return UpstreamErrorKind::Timeout;
        }
        if h.is_parse() || h.is_parse_status() {
            return UpstreamErrorKind::Protocol;
        }
        if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
            return UpstreamErrorKind::Reset;
        }
    }
    match io_kind {
        Some(
            std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::UnexpectedEof,
        ) => UpstreamErrorKind::Reset,
        Some(std::io::ErrorKind::TimedOut) => UpstreamErrorKind::Timeout,
        _ => UpstreamErrorKind::Protocol,
    }
}
