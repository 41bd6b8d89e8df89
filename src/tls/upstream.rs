//! TLS towards storefronts (origins).
//!
//! One client config per storefront, because the trust (extra CA), the name
//! checked (SNI override) and the client certificate are per storefront.
//! The SNI override is applied by hyper-rustls' server-name resolver rather
//! than by rewriting the URL, so the core keeps connecting to the address in
//! the storefront URL and keeps choosing the `Host` header on its own.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::certs::{self, CertProblem, ProblemKind};
use super::config::{resolve, UpstreamTlsOptions};
use super::TlsError;

/// The rustls client config for one storefront: TLS 1.2+1.3, webpki roots
/// plus `ca_file`, optional client certificate, or no verification at all
/// when `insecure_skip_verify` is set. ALPN is left empty because
/// hyper-rustls sets it from the protocols enabled on the connector (and
/// refuses a config that has it already); set it yourself when using this
/// config without hyper-rustls.
pub fn upstream_client_config(
    opts: &UpstreamTlsOptions,
    base_dir: &Path,
) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(crate::tls::provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|source| TlsError::Rustls {
            context: "upstream protocol versions".into(),
            source,
        })?;
    let builder = if opts.insecure_skip_verify {
        tracing::warn!(
            ca_file = ?opts.ca_file,
            "insecure_skip_verify is set: this storefront's TLS certificate is NOT verified; \
             anyone on the path can impersonate it. Use ca_file instead."
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert::new(&provider)))
    } else {
        builder.with_root_certificates(root_store(opts, base_dir)?)
    };
    let config = match client_cert(opts, base_dir, &provider)? {
        Some(key) => builder.with_client_cert_resolver(Arc::new(FixedClientCert(key))),
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// A ready connector for hyper-util's legacy `Client`: `https://` with the
/// storefront's TLS config, `http://` passed through (so one connector serves
/// either kind of storefront URL), ALPN offering `h2` and `http/1.1` so the
/// pool uses h2 when the origin chooses it. `server_name` becomes both the
/// SNI sent and the name the certificate must match.
///
/// Takes `base_dir` (unlike a bare `(opts, timeout)`) because `ca_file` and
/// the client certificate paths are relative to the config file.
pub fn upstream_connector(
    opts: &UpstreamTlsOptions,
    base_dir: &Path,
    connect_timeout: Option<Duration>,
    http2: bool,
) -> Result<HttpsConnector<HttpConnector>, TlsError> {
    let tls = upstream_client_config(opts, base_dir)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(connect_timeout);
    http.set_nodelay(true);
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let builder = match &opts.server_name {
        Some(name) => {
            builder.with_server_name_resolver(FixedServerNameResolver::new(server_name(name)?))
        }
        None => builder,
    };
    let connector = if http2 {
        builder.enable_http1().enable_http2().wrap_connector(http)
    } else {
        builder.enable_http1().wrap_connector(http)
    };
    Ok(connector)
}

fn server_name(raw: &str) -> Result<ServerName<'static>, TlsError> {
    let trimmed = raw
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(raw);
    ServerName::try_from(trimmed.to_string()).map_err(|e| TlsError::ServerName {
        name: raw.to_string(),
        reason: e.to_string(),
    })
}

fn root_store(opts: &UpstreamTlsOptions, base_dir: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let Some(ca_file) = &opts.ca_file else {
        return Ok(roots);
    };
    let path = resolve(base_dir, ca_file);
    let bad = |p: CertProblem| TlsError::Certificates(vec![p]);
    let pem = certs::read_file(&path).map_err(bad)?;
    for (i, der) in certs::parse_certs(&path, &pem)
        .map_err(bad)?
        .into_iter()
        .enumerate()
    {
        roots.add(der).map_err(|e| {
            bad(CertProblem::error(
                ProblemKind::BadChain,
                &path,
                format!(
                    "CA certificate #{} is not usable as a trust anchor: {e}",
                    i + 1
                ),
            ))
        })?;
    }
    Ok(roots)
}

fn client_cert(
    opts: &UpstreamTlsOptions,
    base_dir: &Path,
    provider: &CryptoProvider,
) -> Result<Option<Arc<CertifiedKey>>, TlsError> {
    let cert = match (&opts.client_cert, &opts.client_key) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(TlsError::UpstreamOptions(
                "client_key is set but client_cert is not".into(),
            ))
        }
        (Some(cert), _) => resolve(base_dir, cert),
    };
    let key = opts
        .client_key
        .as_ref()
        .map_or_else(|| cert.clone(), |k| resolve(base_dir, k));
    let (pair, problems) = certs::load_pair(&cert, &key, provider, SystemTime::now());
    for w in problems.iter().filter(|p| !p.is_error()) {
        tracing::warn!(file = %w.file.display(), "upstream client certificate: {}", w.message);
    }
    match pair {
        Some(pair) => Ok(Some(pair.certified)),
        None => Err(TlsError::Certificates(
            problems.into_iter().filter(CertProblem::is_error).collect(),
        )),
    }
}

/// Presents the one configured client certificate to any origin that asks.
#[derive(Debug)]
struct FixedClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for FixedClientCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Accepts any certificate chain and name, but still checks the handshake
/// signature against the presented certificate, so the peer at least holds
/// the key of the certificate it shows.
///
/// It is what a storefront's `insecure_skip_verify` installs. Public so that tests and tools
/// that need to see whichever certificate a server presents (SNI default, rotation) use this
/// code rather than a copy of it.
#[derive(Debug)]
pub struct AcceptAnyServerCert {
    algs: WebPkiSupportedAlgorithms,
}

impl AcceptAnyServerCert {
    /// A verifier checking handshake signatures with `provider`'s algorithms.
    pub fn new(provider: &CryptoProvider) -> Self {
        AcceptAnyServerCert {
            algs: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A connector for cutover's own outbound calls to the public web (sitemaps, plan probes,
/// Prometheus, webhooks): `http://` and `https://` over rustls with the web's roots (webpki),
/// HTTP/1.1. Storefronts use [`upstream_connector`] instead, with their own CA settings.
pub fn public_https_connector() -> Result<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    rustls::Error,
> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(super::provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build())
}
