//! Raw TLS options as written in the config file.
//!
//! These structs only describe what the operator wrote; nothing here touches
//! the disk. `listener.rs` turns them into live certificates and `check`
//! reports what is wrong with them, so `cutover check` and a reload agree.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// TLS for one HTTPS listener.
///
/// ```toml
/// [listener.tls]
/// default = "www"            # label of the certificate for unknown / missing SNI
/// min_version = "1.2"        # or "1.3"
/// redirect_http = "0.0.0.0:80"
/// hsts = { max_age = 31536000, include_subdomains = true }
///
/// [[listener.tls.certificates]]
/// label = "www"
/// cert = "certs/www.pem"     # full chain, leaf first
/// key = "certs/www.key"      # omit when the key sits in the cert file
/// names = ["www.shop.example", "shop.example"]  # omit to use the cert's DNS SANs
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsConfig {
    /// Certificates chosen by SNI; at least one.
    pub certificates: Vec<CertificateConfig>,
    /// Label of the certificate served when the client sends no SNI or a
    /// name no certificate claims. The first certificate when absent.
    #[serde(default)]
    pub default: Option<String>,
    /// Oldest protocol version accepted. TLS 1.0/1.1 are never offered.
    #[serde(default)]
    pub min_version: MinVersion,
    /// `Strict-Transport-Security` for the core to add to HTTPS responses.
    #[serde(default)]
    pub hsts: Option<HstsConfig>,
    /// Address of a plain-HTTP listener that only answers 308 to the same
    /// host, path and query over HTTPS. Served by the core, not by this module.
    #[serde(default)]
    pub redirect_http: Option<SocketAddr>,
}

/// One certificate chain and its key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// Name used in logs, the expiry metric and `default`. Defaults to the
    /// first of `names`, else the cert path as written.
    #[serde(default)]
    pub label: Option<String>,
    /// PEM file with the leaf certificate first, then intermediates.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC). When absent the key
    /// is read from the `cert` file (a combined PEM, as some ACME clients write).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// SNI names this certificate answers for: exact (`www.shop.example`)
    /// or one-label wildcards (`*.shop.example`). When absent, the
    /// certificate's DNS subjectAltNames are used.
    #[serde(default)]
    pub names: Option<Vec<String>>,
}

impl CertificateConfig {
    /// The label shown in logs and metrics. Stable across reloads because it
    /// comes from the config, never from the certificate's contents.
    pub fn label(&self) -> String {
        if let Some(label) = &self.label {
            return label.clone();
        }
        if let Some(first) = self.names.as_ref().and_then(|n| n.first()) {
            return first.clone();
        }
        self.cert.display().to_string()
    }

    /// Cert path resolved against the config directory.
    pub fn cert_path(&self, base_dir: &Path) -> PathBuf {
        resolve(base_dir, &self.cert)
    }

    /// Key path resolved against the config directory (the cert file when
    /// no separate key is configured).
    pub fn key_path(&self, base_dir: &Path) -> PathBuf {
        resolve(base_dir, self.key.as_ref().unwrap_or(&self.cert))
    }
}

/// Oldest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum MinVersion {
    /// TLS 1.2 and 1.3: what shoppers' older phones and payment-provider
    /// callbacks still need.
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    Tls13,
}

impl MinVersion {
    pub(crate) fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static BOTH: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static ONLY_13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            MinVersion::Tls12 => &BOTH,
            MinVersion::Tls13 => &ONLY_13,
        }
    }
}

/// HTTP Strict Transport Security. `max_age` has no default on purpose: a
/// long HSTS age pins browsers to HTTPS for that long, which an operator
/// should choose knowingly in the middle of a migration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HstsConfig {
    /// Seconds browsers remember to use HTTPS only.
    pub max_age: u64,
    /// Adds `includeSubDomains`.
    #[serde(default)]
    pub include_subdomains: bool,
    /// Adds `preload`; only meaningful with `include_subdomains` and a
    /// max_age of at least a year, which `check` enforces.
    #[serde(default)]
    pub preload: bool,
}

impl HstsConfig {
    /// The `Strict-Transport-Security` header value; computed once by the core.
    pub fn header_value(&self) -> String {
        let mut v = format!("max-age={}", self.max_age);
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        v
    }

    /// Why this HSTS setting would be refused by browsers' preload lists.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        const YEAR: u64 = 365 * 24 * 3600;
        if self.preload && (!self.include_subdomains || self.max_age < YEAR) {
            return Some("hsts.preload needs include_subdomains = true and max_age >= 31536000");
        }
        None
    }
}

/// TLS towards one storefront (origin).
///
/// ```toml
/// [storefront.new.tls]
/// ca_file = "certs/private-ca.pem"     # trusted in addition to the webpki roots
/// server_name = "shop.platform.example" # SNI + name verified, instead of the URL host
/// client_cert = "certs/proxy-client.pem"
/// client_key = "certs/proxy-client.key"
/// insecure_skip_verify = false
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTlsOptions {
    /// Extra trusted CA certificates (PEM), e.g. a private CA in front of a
    /// staging storefront.
    pub ca_file: Option<PathBuf>,
    /// Name sent as SNI and checked against the origin's certificate, when
    /// the storefront URL points at an IP or a different host name.
    pub server_name: Option<String>,
    /// Client certificate chain for origins that require mTLS.
    pub client_cert: Option<PathBuf>,
    /// Key for `client_cert`; read from `client_cert` when absent.
    pub client_key: Option<PathBuf>,
    /// Accept any origin certificate. Only for throwaway test origins; logged
    /// as a warning every time a client is built with it.
    pub insecure_skip_verify: bool,
}

/// Relative paths in the config are relative to the config file's directory,
/// so a config directory can be moved as a whole.
pub(crate) fn resolve(base_dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_listener_config() {
        let cfg: ListenerTlsConfig = toml::from_str(
            r#"
            default = "www"
            min_version = "1.3"
            redirect_http = "0.0.0.0:80"
            hsts = { max_age = 600, include_subdomains = true }
            [[certificates]]
            label = "www"
            cert = "a.pem"
            key = "a.key"
            names = ["www.shop.example"]
            [[certificates]]
            cert = "/abs/b.pem"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.min_version, MinVersion::Tls13);
        assert_eq!(cfg.certificates[0].label(), "www");
        assert_eq!(cfg.certificates[1].label(), "/abs/b.pem");
        let base = Path::new("/etc/cutover");
        assert_eq!(
            cfg.certificates[0].key_path(base),
            Path::new("/etc/cutover/a.key")
        );
        assert_eq!(cfg.certificates[1].key_path(base), Path::new("/abs/b.pem"));
        assert_eq!(
            cfg.hsts.unwrap().header_value(),
            "max-age=600; includeSubDomains"
        );
    }

    #[test]
    fn defaults_and_unknown_fields() {
        let cfg: ListenerTlsConfig = toml::from_str("[[certificates]]\ncert = \"a.pem\"").unwrap();
        assert_eq!(cfg.min_version, MinVersion::Tls12);
        assert!(cfg.default.is_none() && cfg.hsts.is_none());
        assert!(toml::from_str::<ListenerTlsConfig>(
            "min_versoin = \"1.2\"\n[[certificates]]\ncert = \"a.pem\""
        )
        .is_err());
        assert!(toml::from_str::<ListenerTlsConfig>(
            "min_version = \"1.1\"\n[[certificates]]\ncert = \"a.pem\""
        )
        .is_err());
        let up: UpstreamTlsOptions = toml::from_str("ca_file = \"ca.pem\"").unwrap();
        assert_eq!(up.ca_file.as_deref(), Some(Path::new("ca.pem")));
        assert!(!up.insecure_skip_verify);
        assert!(toml::from_str::<UpstreamTlsOptions>("insecure = true").is_err());
    }

    #[test]
    fn hsts_preload_needs_subdomains_and_a_year() {
        let h = HstsConfig {
            max_age: 600,
            include_subdomains: true,
            preload: true,
        };
        assert!(h.problem().is_some());
        let h = HstsConfig {
            max_age: 31_536_000,
            include_subdomains: true,
            preload: true,
        };
        assert!(h.problem().is_none());
        assert_eq!(
            h.header_value(),
            "max-age=31536000; includeSubDomains; preload"
        );
    }
}
