//! HTTP/1.1 and HTTP/2 client connections over any stream (plain TCP or TLS), for tests that
//! care which protocol carried a request, as ALPN negotiated it.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::client::Page;
use super::tls::alpn;
use super::wait::bounded;

/// An HTTP/1.1 or HTTP/2 client connection.
pub enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Conn {
    /// HTTP/1.1 over `io`.
    pub async fn h1<I>(io: I) -> Conn
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) = bounded(
            "h1 handshake",
            hyper::client::conn::http1::handshake(TokioIo::new(io)),
        )
        .await
        .expect("h1 handshake");
        tokio::spawn(conn);
        Conn::H1(send)
    }

    /// HTTP/2 over `io`.
    pub async fn h2<I>(io: I) -> Conn
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) = bounded(
            "h2 handshake",
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)),
        )
        .await
        .expect("h2 handshake");
        tokio::spawn(conn);
        Conn::H2(send)
    }

    /// HTTP/1.1 or HTTP/2 over a TLS stream, as ALPN decided.
    pub async fn negotiated(stream: TlsStream<TcpStream>) -> Conn {
        if alpn(&stream).as_deref() == Some(b"h2") {
            Conn::h2(stream).await
        } else {
            Conn::h1(stream).await
        }
    }

    /// Whether this is an HTTP/2 connection.
    pub fn is_h2(&self) -> bool {
        matches!(self, Conn::H2(_))
    }

    /// A clone of an HTTP/2 sender (streams multiplexed on the same connection).
    pub fn h2_sender(&self) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
        match self {
            Conn::H2(s) => s.clone(),
            Conn::H1(_) => panic!("not an HTTP/2 connection"),
        }
    }

    /// Sends `GET path` for `host` with extra headers and reads the whole response.
    pub async fn get(&mut self, host: &str, path: &str, headers: &[(&str, &str)]) -> Page {
        let req = protocol_request(self.is_h2(), "GET", host, path, headers);
        self.send(req).await
    }

    /// Sends a request and reads the whole response.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Page {
        let resp = match self {
            Conn::H1(s) => {
                bounded("h1 ready", s.ready()).await.expect("h1 ready");
                bounded("h1 response", s.send_request(req)).await
            }
            Conn::H2(s) => {
                bounded("h2 ready", s.ready()).await.expect("h2 ready");
                bounded("h2 response", s.send_request(req)).await
            }
        }
        .expect("response");
        read(resp).await
    }
}

/// A request in the form each protocol uses: HTTP/1.1 names the host in `Host`, HTTP/2 in
/// `:authority` (no `Host` header), as browsers do.
pub fn protocol_request(
    h2: bool,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method);
    if h2 {
        b = b.uri(format!("https://{host}{path}"));
    } else {
        b = b.uri(path).header(http::header::HOST, host);
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

/// Reads a response whole.
pub async fn read(resp: Response<Incoming>) -> Page {
    let (parts, body) = resp.into_parts();
    let body = bounded("response body", body.collect())
        .await
        .expect("response body")
        .to_bytes();
    Page {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Plain-HTTP `GET` on a fresh connection.
pub async fn plain_get(addr: SocketAddr, path: &str) -> Page {
    let tcp = bounded("connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    let mut c = Conn::h1(tcp).await;
    c.get(&addr.to_string(), path, &[]).await
}
