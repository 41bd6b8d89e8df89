//! A minimal client for the admin listener, used by the CLI commands that talk to a running proxy.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a call to the admin listener failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens there, or the connection failed.
    #[error("connecting to {address}: {source}")]
    Connect {
        /// The admin address.
        address: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("talking to {address}: {source}")]
    Http {
        /// The admin address.
        address: String,
        /// What hyper said.
        source: hyper::Error,
    },
    /// The admin listener answered with an error status.
    #[error("{address}{path} answered {status}: {body}")]
    Status {
        /// The admin address.
        address: String,
        /// The path asked for.
        path: String,
        /// The status.
        status: StatusCode,
        /// The body, trimmed.
        body: String,
    },
}

/// Sends one request and returns the body of a 2xx answer.
pub async fn call(
    address: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> Result<String, ClientError> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|source| ClientError::Connect {
            address: address.to_string(),
            source,
        })?;
    let http_err = |source| ClientError::Http {
        address: address.to_string(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http_err)?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, address);
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if body.is_some() {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .expect("request parts are valid");
    let resp = sender.send_request(req).await.map_err(http_err)?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(http_err)?
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if !status.is_success() {
        return Err(ClientError::Status {
            address: address.to_string(),
            path: path.to_string(),
            status,
            body: text.trim().to_string(),
        });
    }
    Ok(text)
}

/// `GET path`.
pub async fn get(address: &str, path: &str) -> Result<String, ClientError> {
    call(address, Method::GET, path, None, None).await
}
