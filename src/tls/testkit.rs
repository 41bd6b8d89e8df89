//! Throwaway certificates for tests: a CA and leaf certificates made by rcgen, written to temp
//! dirs the way certificate tools write them.
//!
//! Public (but hidden from the docs) so the unit tests, the end-to-end tests in `tests/` and the
//! examples share one generator instead of three copies. Not for production use: every
//! function panics when rcgen or the file system fails, which is what a test wants.
//!
//! RSA keys cannot be generated with rcgen on the ring backend, so one RSA
//! and one P-384 key, generated once for these tests with openssl, live in
//! `testdata/` in both PKCS#8 and the legacy (PKCS#1 / SEC1) encodings.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::{client::TlsStream, TlsConnector};

const RSA_PKCS8: &str = include_str!("testdata/rsa-pkcs8.pem");
const RSA_PKCS1: &str = include_str!("testdata/rsa-pkcs1.pem");
const P384_PKCS8: &str = include_str!("testdata/ec384-pkcs8.pem");
const P384_SEC1: &str = include_str!("testdata/ec384-sec1.pem");

/// The key type (and on-disk encoding) of a generated leaf.
#[derive(Debug, Clone, Copy)]
pub enum KeyKind {
    /// ECDSA P-256, PKCS#8.
    P256,
    /// Ed25519, PKCS#8.
    Ed25519,
    /// RSA 2048, PKCS#8.
    RsaPkcs8,
    /// RSA 2048, legacy PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    RsaPkcs1,
    /// ECDSA P-384, PKCS#8.
    P384Pkcs8,
    /// ECDSA P-384, legacy SEC1 (`BEGIN EC PRIVATE KEY`).
    P384Sec1,
}

/// How long a generated certificate is valid, relative to now.
#[derive(Debug, Clone, Copy)]
pub enum Validity {
    /// From yesterday for a year.
    Normal,
    /// Ended yesterday.
    Expired,
    /// Starts tomorrow.
    NotYetValid,
    /// From yesterday, ending in this many days.
    ExpiresInDays(u64),
}

/// rcgen wants `time::OffsetDateTime`; it is reached as rcgen's epoch plus a
/// std `Duration`, so the tests need no date crate of their own.
fn apply_validity(params: &mut CertificateParams, v: Validity) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let day = Duration::from_secs(86_400);
    let (from, to) = match v {
        Validity::Normal => (now - day, now + 365 * day),
        Validity::Expired => (now - 30 * day, now - day),
        Validity::NotYetValid => (now + day, now + 30 * day),
        Validity::ExpiresInDays(d) => (now - day, now + day * d as u32),
    };
    params.not_before = epoch + from;
    params.not_after = epoch + to;
}

fn key_for(kind: KeyKind) -> (KeyPair, String) {
    let (pkcs8, on_disk) = match kind {
        KeyKind::P256 => {
            let k = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let pem = k.serialize_pem();
            return (k, pem);
        }
        KeyKind::Ed25519 => {
            let k = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
            let pem = k.serialize_pem();
            return (k, pem);
        }
        KeyKind::RsaPkcs8 => (RSA_PKCS8, RSA_PKCS8),
        KeyKind::RsaPkcs1 => (RSA_PKCS8, RSA_PKCS1),
        KeyKind::P384Pkcs8 => (P384_PKCS8, P384_PKCS8),
        KeyKind::P384Sec1 => (P384_PKCS8, P384_SEC1),
    };
    (KeyPair::from_pem(pkcs8).unwrap(), on_disk.to_string())
}

/// A throwaway certificate authority.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate.
    pub der: CertificateDer<'static>,
    /// The CA certificate, PEM.
    pub pem: String,
}

impl TestCa {
    /// A new CA named `cn`.
    pub fn new(cn: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        apply_validity(&mut params, Validity::Normal);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            issuer: Issuer::new(params, key),
            der: cert.der().clone(),
            pem: cert.pem(),
        }
    }

    /// A P-256 leaf for `names` (DNS SANs), valid for a year.
    pub fn leaf(&self, names: &[&str]) -> TestLeaf {
        self.leaf_with(names, KeyKind::P256, Validity::Normal)
    }

    /// A P-256 leaf for `names` with the given validity.
    pub fn leaf_valid(&self, names: &[&str], validity: Validity) -> TestLeaf {
        self.leaf_with(names, KeyKind::P256, validity)
    }

    /// A leaf for `names` with the given key type and validity.
    pub fn leaf_with(&self, names: &[&str], kind: KeyKind, validity: Validity) -> TestLeaf {
        let (key, key_pem) = key_for(kind);
        let params = leaf_params(names, validity);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        TestLeaf {
            der: cert.der().clone(),
            chain_pem: format!("{}{}", cert.pem(), self.pem),
            key_pem,
        }
    }

    /// Writes the CA certificate to `dir/file` and returns the path.
    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, &self.pem).unwrap();
        path
    }

    /// A root store trusting only this CA.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        roots
    }
}

fn leaf_params(names: &[&str], validity: Validity) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    if let Some(first) = names.first() {
        params.distinguished_name.push(DnType::CommonName, *first);
    }
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    apply_validity(&mut params, validity);
    params
}

/// A self-signed leaf (no CA), as a careless origin would serve.
pub fn self_signed_leaf(names: &[&str]) -> TestLeaf {
    let (key, key_pem) = key_for(KeyKind::P256);
    let cert = leaf_params(names, Validity::Normal)
        .self_signed(&key)
        .unwrap();
    TestLeaf {
        der: cert.der().clone(),
        chain_pem: cert.pem(),
        key_pem,
    }
}

/// A leaf certificate chain (leaf then CA) and its key, PEM.
#[derive(Clone)]
pub struct TestLeaf {
    /// The leaf certificate, to compare with what a server presents.
    pub der: CertificateDer<'static>,
    /// Leaf + issuing CA.
    pub chain_pem: String,
    /// The private key, in the encoding of its [`KeyKind`].
    pub key_pem: String,
}

impl TestLeaf {
    /// Writes `<name>.crt` (leaf + CA) and `<name>.key`.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.chain_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }

    /// Replaces `<name>.crt` and `<name>.key` the way certbot-style tools do: each is written
    /// to a temporary file beside it and renamed over the old one, key first, then the chain.
    pub fn rotate_into(&self, dir: &Path, name: &str) {
        replace_atomically(&dir.join(format!("{name}.key")), self.key_pem.as_bytes());
        replace_atomically(&dir.join(format!("{name}.crt")), self.chain_pem.as_bytes());
    }
}

/// Writes `bytes` to a temporary file next to `path`, then renames it over `path`.
fn replace_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-rotate");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A client that verifies the server against `roots`, offering `alpn`, without session
/// resumption.
pub fn client_config(roots: RootCertStore, alpn: &[&[u8]]) -> ClientConfig {
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(crate::tls::provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Resumed sessions report the certificate of the original handshake;
    // the tests want to see what a full handshake presents.
    cfg.resumption = rustls::client::Resumption::disabled();
    cfg
}

/// Connects and completes a TLS handshake, sending `sni` as the server name.
pub async fn handshake(
    addr: SocketAddr,
    sni: &str,
    cfg: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    TlsConnector::from(cfg).connect(name, tcp).await
}

/// The leaf certificate the server presented.
pub fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}
