//! An https storefront with a test CA, whose next N connections are dropped right after the TCP
//! accept. For the proxy that is a failed connect (the TLS handshake never completes, nothing of
//! the request was sent), and the backend can count every attempt: that makes the retry rule
//! observable without guessing at refused ports.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use super::upstream::{serve_h1, Backend};

/// Generates a CA and a leaf for 127.0.0.1; writes the CA to `dir/ca.pem`.
fn certificates(dir: &Path) -> (PathBuf, rustls::ServerConfig) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA cert");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("leaf params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf cert");
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).expect("writing CA");
    let provider = Arc::new(cutover::tls::provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .expect("server cert");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (ca_path, config)
}

/// An https echo backend; returns it and the CA file the proxy must trust. Set
/// `backend.log.drop_next` to make the next connections fail during the handshake.
pub async fn flaky_https(name: &str, dir: &Path) -> (Backend, PathBuf) {
    let (ca, config) = certificates(dir);
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
    (backend, ca)
}
