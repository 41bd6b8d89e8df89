//! Test-only helpers: a throwaway CA and leaf certificates made by rcgen,
//! written to temp dirs, plus a tiny TLS echo server and client.
//!
//! RSA keys cannot be generated with rcgen on the ring backend, so one RSA
//! and one P-384 key, generated once for these tests with openssl, live in
//! `testdata/` in both PKCS#8 and the legacy (PKCS#1 / SEC1) encodings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{client::TlsStream, TlsAcceptor, TlsConnector};

const RSA_PKCS8: &str = include_str!("testdata/rsa-pkcs8.pem");
const RSA_PKCS1: &str = include_str!("testdata/rsa-pkcs1.pem");
const P384_PKCS8: &str = include_str!("testdata/ec384-pkcs8.pem");
const P384_SEC1: &str = include_str!("testdata/ec384-sec1.pem");

#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyKind {
    P256,
    Ed25519,
    RsaPkcs8,
    RsaPkcs1,
    P384Pkcs8,
    P384Sec1,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Validity {
    Normal,
    Expired,
    NotYetValid,
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

pub(crate) struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub der: CertificateDer<'static>,
    pub pem: String,
}

impl TestCa {
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

    pub fn leaf(&self, names: &[&str]) -> TestLeaf {
        self.leaf_with(names, KeyKind::P256, Validity::Normal)
    }

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

    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, &self.pem).unwrap();
        path
    }

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
pub(crate) fn self_signed_leaf(names: &[&str]) -> TestLeaf {
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

pub(crate) struct TestLeaf {
    pub der: CertificateDer<'static>,
    pub chain_pem: String,
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
}

pub(crate) fn client_config(roots: RootCertStore, alpn: &[&[u8]]) -> ClientConfig {
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
pub(crate) async fn handshake(
    addr: SocketAddr,
    sni: &str,
    cfg: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    TlsConnector::from(cfg).connect(name, tcp).await
}

/// The leaf certificate the server presented.
pub(crate) fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// Accepts TLS connections with whatever acceptor `make` returns at accept
/// time, and echoes bytes back. Failed handshakes are ignored: the clients
/// in the tests observe them.
pub(crate) async fn spawn_echo_server<F>(make: F) -> SocketAddr
where
    F: Fn() -> TlsAcceptor + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = make();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                loop {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if tls.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                            let _ = tls.flush().await;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Round-trips one message over an established connection.
pub(crate) async fn echo(stream: &mut TlsStream<TcpStream>, msg: &[u8]) -> std::io::Result<()> {
    stream.write_all(msg).await?;
    stream.flush().await?;
    let mut back = vec![0u8; msg.len()];
    stream.read_exact(&mut back).await?;
    assert_eq!(back, msg);
    Ok(())
}
