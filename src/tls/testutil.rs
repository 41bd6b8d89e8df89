//! Unit-test helpers: a tiny TLS echo server and client. Certificates come from
//! [`super::testkit`], shared with the end-to-end tests.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{client::TlsStream, TlsAcceptor, TlsConnector};

pub(crate) use super::testkit::*;

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
