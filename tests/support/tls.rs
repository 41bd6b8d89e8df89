//! Test certificates made with rcgen (a CA, leaves with chosen names and validity), TLS
//! clients that report the presented certificate and the negotiated protocol, and HTTPS
//! storefronts: a recording one (h2 and http/1.1) and one whose next connections fail in the
//! handshake, which makes the retry rule observable without guessing at refused ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::stores::RecordingStore;
use super::upstream::{bind_local, serve_auto, serve_h1, spawn_accept, Backend};
use super::wait::SLOW_WAIT;

use cutover::tls::testkit;
/// Certificates, and the TLS client's connect and "what was presented", come from the
/// library's test kit, shared with its unit tests.
pub use cutover::tls::testkit::{
    handshake as connect, presented, TestCa as Ca, TestLeaf as Leaf, Validity,
};

/// A server config presenting `leaf` (its chain and key), offering `alpn`.
pub fn server_config(leaf: &Leaf, alpn: &[&[u8]]) -> rustls::ServerConfig {
    let chain: Vec<CertificateDer<'static>> =
        rustls::pki_types::pem::PemObject::pem_slice_iter(leaf.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("leaf chain PEM");
    let key = rustls::pki_types::pem::PemObject::from_pem_slice(leaf.key_pem.as_bytes())
        .expect("leaf key PEM");
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server cert");
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(cutover::tls::provider())
}

/// A client that verifies the server against `roots`, offering `alpn`.
pub fn client(roots: RootCertStore, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    Arc::new(testkit::client_config(roots, alpn))
}

/// A client that accepts any certificate (it only looks at which one is presented).
pub fn client_any(alpn: &[&[u8]], send_sni: bool) -> Arc<ClientConfig> {
    let p = provider();
    let mut cfg = ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(cutover::tls::AcceptAnyServerCert::new(&p)))
        .with_no_client_auth();
    cfg.enable_sni = send_sni;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // A resumed session reports the certificate of the original handshake; the tests want
    // what a full handshake presents.
    cfg.resumption = rustls::client::Resumption::disabled();
    Arc::new(cfg)
}

/// The ALPN protocol the server picked.
pub fn alpn(stream: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

/// An HTTPS storefront presenting `leaf`, offering h2 and http/1.1 by ALPN.
pub async fn recording_tls_store(name: &str, leaf: &Leaf) -> RecordingStore {
    let cfg = server_config(leaf, &[b"h2", b"http/1.1"]);
    let acceptor = TlsAcceptor::from(Arc::new(cfg));
    let (listener, addr) = bind_local().await;
    let b = RecordingStore::new(addr, name);
    let svc = b.service();
    spawn_accept(listener, move |tcp| {
        let svc = svc.clone();
        let acceptor = acceptor.clone();
        async move {
            let Ok(Ok(tls)) = tokio::time::timeout(SLOW_WAIT, acceptor.accept(tcp)).await else {
                return;
            };
            serve_auto(tls, svc).await;
        }
    });
    b
}

/// An https echo backend; returns it and the CA file the proxy must trust. Set
/// `backend.log.drop_next` to make the next connections fail during the handshake.
pub async fn flaky_https(name: &str, dir: &Path) -> (Backend, PathBuf) {
    let ca = Ca::new("flaky backend CA");
    let ca_path = ca.write(dir, "ca.pem");
    let config = server_config(&ca.leaf(&["127.0.0.1"]), &[b"http/1.1"]);
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding");
    let n = name.to_string();
    let backend = super::upstream::spawn_raw(name, listener, move |stream, log, _| {
        let acceptor = acceptor.clone();
        let n = n.clone();
        async move {
            let dropping = log
                .drop_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1))
                .is_ok();
            if dropping {
                drop(stream);
                return;
            }
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            serve_h1(tls, move |req| {
                super::upstream::echo_handler(n.clone(), true, Arc::clone(&log), req)
            })
            .await;
        }
    });
    (backend, ca_path)
}
