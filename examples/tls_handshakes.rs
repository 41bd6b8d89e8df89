//! New TLS handshakes per second against a server: the client half of `benches/tls/run.sh`.
//!
//! `cargo run --release --example tls_handshakes -- 127.0.0.1:8443 [seconds] [concurrency] [sni]`
//!
//! Each of `concurrency` tasks loops: TCP connect, a full TLS handshake (no resumption, ALPN
//! h2 + http/1.1 as a browser offers), close. The client skips certificate verification, so
//! nearly all of its CPU goes to the key exchange and the server is the side being measured.
//! Prints `handshakes seconds handshakes_per_second errors`. Bounded by `seconds`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Accepts any certificate and skips even the handshake signature check (unlike
/// `cutover::tls::AcceptAnyServerCert`): the client's CPU must go to opening connections, so
/// that the server, not the load generator, is what limits handshakes per second.
#[derive(Debug)]
struct NoVerify(Vec<SignatureScheme>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .expect("usage: tls_handshakes ADDR [seconds] [concurrency] [sni]")
        .parse()
        .expect("ADDR is IP:port");
    let secs: f64 = args.next().map_or(5.0, |s| s.parse().expect("seconds"));
    let concurrency: usize = args.next().map_or(16, |s| s.parse().expect("concurrency"));
    let sni = args.next().unwrap_or_else(|| "localhost".to_string());

    let provider = Arc::new(cutover::tls::provider());
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(schemes)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg.resumption = rustls::client::Resumption::disabled();
    let connector = TlsConnector::from(Arc::new(cfg));
    let name = ServerName::try_from(sni).expect("SNI name");

    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (connector, name) = (connector.clone(), name.clone());
        let (done, errors) = (done.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let attempt = async {
                    let tcp = TcpStream::connect(addr).await?;
                    tcp.set_nodelay(true)?;
                    let mut tls = connector.connect(name.clone(), tcp).await?;
                    let _ = tls.shutdown().await;
                    Ok::<_, std::io::Error>(())
                };
                match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                    Ok(Ok(())) => done.fetch_add(1, Ordering::Relaxed),
                    _ => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        "{n} {elapsed:.3} {:.0} {}",
        n as f64 / elapsed,
        errors.load(Ordering::Relaxed)
    );
}
