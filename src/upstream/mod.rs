//! Pooled clients to the storefronts, and the classification of what goes wrong talking to them.
//!
//! A client (and its warm connection pool) is kept across reloads as long as the storefront's
//! connection settings are unchanged, so changing the share a hundred times an hour never costs
//! a cold connection.
//!
//! Storefronts that are always HTTP/1.1 (`protocol = "http1"`, or `auto` with an `http://`
//! upstream, where there is no ALPN to pick h2) use cutover's own [`pool`]: far cheaper per
//! request. Those that may speak h2 (`auto` over `https://`, `h2c`) keep hyper-util's client,
//! which multiplexes h2 streams. The choice is made once, when the [`Upstream`] is built.
//!
//! How many idle connections are kept: the own pool follows the recent peak of requests in
//! flight, within `pool_max_idle` ([`sizing`]). hyper-util's pool cannot be resized while it
//! runs (its idle cap is fixed at build time), so there the cap itself is the limit and its
//! idle timer closes what `idle_timeout` says is unused; for h2 this matters little, as one
//! connection carries every concurrent stream.
//!
//! Layer: clients. May import its own layer and domain, policy, wire; never edge, control, server,
//! request, config, snapshot, observe.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{BoxError, UpstreamBody};
use crate::headers::outgoing::Outgoing;
use crate::tls::UpstreamTlsOptions;

pub mod h1;
pub mod health;
pub mod pool;
pub mod retry;
pub mod sizing;

pub use pool::{Pool, ResponseBody};
pub use retry::Retry;

/// How the `Host` header reaches a storefront.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostHeader {
    /// The shopper's `Host` (what nginx does with `proxy_set_header Host $host`).
    Client,
    /// The upstream URL's authority (nginx's default `$proxy_host`; what SaaS origins often need).
    Upstream,
}

/// Protocol spoken to a storefront.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1, and h2 when an https origin offers it through ALPN.
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// h2 with prior knowledge over plain TCP.
    H2c,
}

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
    /// The most idle connections kept to this storefront (`pool_max_idle`, or else
    /// `pool_idle_ceiling`); the own pool keeps fewer when the recent peak was lower.
    pub pool_max_idle: usize,
    /// The window over which the own pool's peak of requests in flight is taken.
    pub pool_peak_window: Duration,
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
    transport: Transport,
}

/// How requests reach the storefront.
enum Transport {
    /// hyper-util's client: storefronts that may speak h2. Boxed: it is a few hundred bytes.
    Legacy(Box<Client<HttpsConnector<HttpConnector>, UpstreamBody>>),
    /// cutover's HTTP/1.1 pool.
    Pool(Arc<Pool>),
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
        let pooled = uses_pool(&settings);
        let connector = crate::tls::upstream_connector(
            &settings.tls,
            &settings.base_dir,
            Some(settings.connect_timeout),
            settings.protocol == UpstreamProtocol::Auto && !pooled,
        )?;
        let transport = if pooled {
            let target = Uri::builder()
                .scheme(settings.scheme.clone())
                .authority(settings.authority.clone())
                .path_and_query("/")
                .build()
                .expect("scheme and authority make a URI");
            Transport::Pool(Arc::new(Pool::new(
                connector,
                target,
                settings.pool_max_idle,
                settings.idle_timeout,
                settings.pool_peak_window,
            )))
        } else {
            Transport::Legacy(Box::new(
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(settings.idle_timeout)
                    .pool_max_idle_per_host(settings.pool_max_idle)
                    .pool_timer(TokioTimer::new())
                    .timer(TokioTimer::new())
                    .http2_only(settings.protocol == UpstreamProtocol::H2c)
                    .build(connector),
            ))
        };
        let authority_header = HeaderValue::from_str(settings.authority.as_str())
            .expect("a parsed authority is a valid header value");
        Ok(Upstream {
            settings,
            authority_header,
            transport,
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

    /// The HTTP/1.1 pool, when this storefront uses it.
    pub fn pool(&self) -> Option<&Arc<Pool>> {
        match &self.transport {
            Transport::Pool(p) => Some(p),
            Transport::Legacy(_) => None,
        }
    }

    /// The request target for `pq`: origin form for the pool (hyper's connection-level client
    /// writes the URI as given), absolute for hyper-util's client (which needs the origin).
    pub fn request_uri(&self, pq: PathAndQuery) -> Uri {
        let mut parts = http::uri::Parts::default();
        if let Transport::Legacy(_) = self.transport {
            parts.scheme = Some(self.settings.scheme.clone());
            parts.authority = Some(self.settings.authority.clone());
        }
        parts.path_and_query = Some(pq);
        Uri::from_parts(parts).expect("a path, with or without an origin, makes a URI")
    }

    /// Sends a request (its URI from [`Upstream::request_uri`]), sending it again only as
    /// `retry` allows.
    pub async fn send(
        &self,
        mut req: Request<UpstreamBody>,
        outgoing: &Outgoing<'_>,
        retry: Retry,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        match &self.transport {
            Transport::Pool(pool) => {
                // hyper-util's client added a missing Host from the URI; so does this path.
                if outgoing.host.is_none() && !req.headers().contains_key(HOST) {
                    req.headers_mut()
                        .insert(HOST, self.authority_header.clone());
                }
                pool.send(req, outgoing, retry).await
            }
            // Boxed: hyper-util's futures are large, and this one would otherwise make every
            // proxied request's future (pooled ones included) kilobytes bigger.
            Transport::Legacy(client) => Box::pin(async move {
                outgoing.apply(req.headers_mut());
                // hyper-util's client consumes the request, so a retry needs a copy.
                let replay = retry.again().then(|| {
                    (
                        req.method().clone(),
                        req.uri().clone(),
                        req.headers().clone(),
                    )
                });
                let result = match (client.request(req).await, replay) {
                    (Err(e), Some((method, uri, headers))) if e.is_connect() => {
                        tracing::debug!(storefront = %self.settings.authority, error = %e, "connect failed; retrying once");
                        let mut again = Request::new(UpstreamBody::Empty);
                        *again.method_mut() = method;
                        *again.uri_mut() = uri;
                        *again.headers_mut() = headers;
                        client.request(again).await
                    }
                    (result, _) => result,
                };
                result
                    .map(|resp| resp.map(ResponseBody::unpooled))
                    .map_err(UpstreamError::Legacy)
            })
            .await,
        }
    }
}

/// Whether a storefront's connections are always HTTP/1.1, so [`Pool`] serves it.
pub fn uses_pool(settings: &UpstreamSettings) -> bool {
    match settings.protocol {
        UpstreamProtocol::Http1 => true,
        UpstreamProtocol::Auto => settings.scheme == Scheme::HTTP,
        UpstreamProtocol::H2c => false,
    }
}

/// A failed exchange with a storefront, from either client.
#[derive(Debug)]
pub enum UpstreamError {
    /// hyper-util's client.
    Legacy(hyper_util::client::legacy::Error),
    /// The pool could not connect (TCP, TLS, or the connect timeout): nothing was sent.
    Connect(BoxError),
    /// An upgrade request's connection (hyper's client) failed before the response head.
    Send(hyper::Error),
    /// The pool's connection failed while sending or waiting for the response head.
    H1(h1::H1Error),
}

impl UpstreamError {
    /// Whether nothing was sent because no connection could be made.
    pub fn is_connect(&self) -> bool {
        match self {
            UpstreamError::Legacy(e) => e.is_connect(),
            UpstreamError::Connect(_) => true,
            UpstreamError::Send(_) | UpstreamError::H1(_) => false,
        }
    }

    /// The underlying error (the wrapper adds nothing to the chain).
    fn inner(&self) -> &(dyn StdError + 'static) {
        match self {
            UpstreamError::Legacy(e) => e,
            UpstreamError::Connect(e) => &**e,
            UpstreamError::Send(e) => e,
            UpstreamError::H1(e) => e,
        }
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self.inner(), f)
    }
}

impl StdError for UpstreamError {
    // Transparent: the chain continues with the inner error's own source.
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner().source()
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
    /// The body stopped arriving for longer than `body_idle_timeout`, after the response head
    /// was sent on: the shopper's response is aborted, not completed.
    BodyTimeout,
    /// The body broke off (reset, closed short of its length, a cut chunk) after the response
    /// head was sent on: the shopper's response is aborted, not completed.
    BodyFailed,
}

impl UpstreamErrorKind {
    /// Every kind, in metric-index order.
    pub const ALL: [UpstreamErrorKind; 7] = [
        UpstreamErrorKind::Connect,
        UpstreamErrorKind::Timeout,
        UpstreamErrorKind::Reset,
        UpstreamErrorKind::Protocol,
        UpstreamErrorKind::Tls,
        UpstreamErrorKind::BodyTimeout,
        UpstreamErrorKind::BodyFailed,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Reset => "reset",
            UpstreamErrorKind::Protocol => "protocol",
            UpstreamErrorKind::Tls => "tls",
            UpstreamErrorKind::BodyTimeout => "body_timeout",
            UpstreamErrorKind::BodyFailed => "body_failed",
        }
    }

    /// nginx/Envoy convention: timeouts are 504, everything else the storefront did wrong is 502.
    pub fn status(self) -> http::StatusCode {
        match self {
            UpstreamErrorKind::Timeout | UpstreamErrorKind::BodyTimeout => {
                http::StatusCode::GATEWAY_TIMEOUT
            }
            _ => http::StatusCode::BAD_GATEWAY,
        }
    }
}

fn chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |e: &&'a (dyn StdError + 'static)| (*e).source())
}

/// Sorts a client error into a kind; the same kinds whichever client failed.
pub fn classify(err: &UpstreamError) -> UpstreamErrorKind {
    let dyn_err = err.inner();
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
    if let UpstreamError::H1(e) = err {
        match e {
            h1::H1Error::Closed => return UpstreamErrorKind::Reset,
            h1::H1Error::Parse(_) | h1::H1Error::Invalid(_) | h1::H1Error::TooLarge => {
                return UpstreamErrorKind::Protocol
            }
            // Socket errors fall through to the io kinds below; a shopper's body failure is
            // sorted out by the proxy before it gets here.
            h1::H1Error::Write(_) | h1::H1Error::Read(_) | h1::H1Error::Body(_) => {}
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use UpstreamProtocol::{Auto, H2c, Http1};

    #[test]
    fn error_kind_label_order_matches_declaration() {
        // Metric handles are indexed by `kind as usize`; ALL must list kinds in that order.
        for (i, k) in UpstreamErrorKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "{}", k.as_str());
        }
    }

    fn settings(scheme: &str, protocol: UpstreamProtocol) -> UpstreamSettings {
        UpstreamSettings {
            scheme: scheme.parse().unwrap(),
            authority: Authority::from_static("127.0.0.1:9"),
            host_header: HostHeader::Client,
            protocol,
            connect_timeout: Duration::from_secs(1),
            response_header_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            pool_max_idle: 4,
            pool_peak_window: Duration::from_secs(60),
            tls: UpstreamTlsOptions::default(),
            base_dir: PathBuf::from("."),
        }
    }

    #[test]
    fn only_storefronts_that_are_always_http1_use_the_pool() {
        assert!(uses_pool(&settings("http", Auto)));
        assert!(uses_pool(&settings("http", Http1)));
        assert!(uses_pool(&settings("https", Http1)));
        assert!(!uses_pool(&settings("https", Auto)), "ALPN may pick h2");
        assert!(!uses_pool(&settings("http", H2c)));
    }

    #[tokio::test]
    async fn the_pool_sends_origin_form_and_hyper_util_absolute_form() {
        let pooled = Upstream::build(settings("http", Auto)).unwrap();
        assert!(pooled.pool().is_some());
        let pq = PathAndQuery::from_static("/a?b=1");
        assert_eq!(pooled.request_uri(pq.clone()).to_string(), "/a?b=1");
        let legacy = Upstream::build(settings("https", Auto)).unwrap();
        assert!(legacy.pool().is_none());
        assert_eq!(
            legacy.request_uri(pq).to_string(),
            "https://127.0.0.1:9/a?b=1"
        );
    }

    #[tokio::test]
    async fn a_refused_connect_is_a_connect_error_and_502() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let mut s = settings("http", Http1);
        s.authority = addr.to_string().parse().unwrap();
        let up = Upstream::build(s).unwrap();
        let outgoing = Outgoing {
            hop: crate::headers::Hop {
                client: std::net::Ipv4Addr::LOCALHOST.into(),
                proto: "http",
                host: None,
            },
            trust_forwarded: false,
            via: None,
            host: None,
            remove: [&crate::routing::staff_override::TOKEN_HEADER_NAME; 2],
            set: [None; 4],
        };
        let err = up
            .send(
                Request::new(UpstreamBody::Empty),
                &outgoing,
                Retry::OnceIfUnsent,
            )
            .await
            .expect_err("nothing listens");
        assert!(err.is_connect());
        assert_eq!(classify(&err), UpstreamErrorKind::Connect);
        assert_eq!(classify(&err).status(), http::StatusCode::BAD_GATEWAY);
    }
}
