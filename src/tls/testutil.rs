//! Unit-test helpers: a tiny TLS echo server and client. Certificates come from
//! [`super::testkit`], shared with the end-to-end tests.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{client::TlsStream, TlsAcceptor};

pub(crate) use super::testkit::*;

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
