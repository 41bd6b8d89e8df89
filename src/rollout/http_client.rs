//! The HTTP client the rollout's outbound calls share (Prometheus queries, webhook posts): hyper
//! with rustls and the webpki roots, so `https://` chat webhooks and TLS-fronted Prometheus work.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Client type used by the rollout.
pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Builds the client; fails only if the TLS provider refuses its default protocol versions.
pub(crate) fn client() -> Result<HttpClient, rustls::Error> {
    let https = crate::tls::public_https_connector()?;
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// Reads a response body up to `limit` bytes.
pub(crate) async fn read_body(body: hyper::body::Incoming, limit: usize) -> Result<Bytes, String> {
    Limited::new(body, limit)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| format!("reading the response body: {e}"))
}

/// Percent-encodes a query parameter value (everything but RFC 3986 unreserved characters).
pub(crate) fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_promql() {
        assert_eq!(
            super::encode_component("sum by (a) (x{s=~\"o|n\"}[5m])"),
            "sum%20by%20%28a%29%20%28x%7Bs%3D~%22o%7Cn%22%7D%5B5m%5D%29"
        );
    }
}
