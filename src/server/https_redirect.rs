//! The plain port beside an HTTPS listener: every request answered `308` to its `https://` URL.

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::connections::ConnGuard;
use super::{builder, stopped};
use crate::state::Limits;

/// `http://host/path?q` -> `308 https://host[:port]/path?q`, the whole job of the plain port
/// next to an HTTPS listener. 308 keeps the method and body, unlike 301.
fn https_location(
    req: &http::Request<hyper::body::Incoming>,
    https_port: u16,
) -> Option<http::HeaderValue> {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))?;
    let host = crate::proxy::strip_port(host);
    if host.is_empty()
        || host
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b == b'/' || b == b'\\' || b == b'@')
    {
        return None;
    }
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = if https_port == 443 {
        format!("https://{host}{pq}")
    } else {
        format!("https://{host}:{https_port}{pq}")
    };
    http::HeaderValue::from_str(&location).ok()
}

pub(super) async fn redirect_connection(
    stream: TcpStream,
    https_port: u16,
    limits: Limits,
    _guard: ConnGuard,
    mut draining: watch::Receiver<bool>,
) {
    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let resp = match https_location(&req, https_port) {
            Some(location) => http::Response::builder()
                .status(http::StatusCode::PERMANENT_REDIRECT)
                .header(http::header::LOCATION, location)
                .header(http::header::CONTENT_LENGTH, "0")
                .body(http_body_util::Full::new(bytes::Bytes::new())),
            None => http::Response::builder()
                .status(http::StatusCode::BAD_REQUEST)
                .header(http::header::CONTENT_LENGTH, "0")
                .body(http_body_util::Full::new(bytes::Bytes::new())),
        }
        .expect("static response parts are valid");
        async move { Ok::<_, std::convert::Infallible>(resp) }
    });
    let b = builder(&limits);
    let conn = b.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let _ = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopped(&mut draining) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
}
