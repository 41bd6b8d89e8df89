//! The HTTP(S) client of sitemap fetches and probes: hyper-util's pooled client over rustls
//! with the web's roots, HTTP/1.1, no redirects followed (a redirect is an answer to report).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;

pub(crate) type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

pub(crate) fn client() -> Result<HttpClient, String> {
    let provider = Arc::new(crate::tls::provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// GETs `url` and returns the status and at most `limit` bytes of body (more is an error).
pub(crate) async fn get(
    client: &HttpClient,
    url: &str,
    user_agent: &str,
    limit: usize,
) -> Result<(http::StatusCode, Bytes), String> {
    let req = http::Request::get(url)
        .header(http::header::USER_AGENT, user_agent)
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("invalid URL: {e}"))?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                format!("body larger than {limit} bytes")
            } else {
                format!("reading the body: {e}")
            }
        })?
        .to_bytes();
    Ok((status, body))
}
