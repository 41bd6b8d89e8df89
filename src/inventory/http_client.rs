//! The HTTP(S) client of sitemap fetches and probes: hyper-util's pooled client over rustls
//! with the web's roots, HTTP/1.1, no redirects followed (a redirect is an answer to report).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub(crate) type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

pub(crate) fn client() -> Result<HttpClient, String> {
    let https = crate::tls::public_https_connector().map_err(|e| e.to_string())?;
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
