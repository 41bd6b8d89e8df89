//! The HTTP(S) client of the checks that ask a URL on the web: sitemap fetches and coverage
//! probes (`inventory`), the redirect plan's target check (`redirects check --probe`).
//!
//! One client for all of them, because they want the same things and a second copy drifted:
//! hyper-util's pooled client over rustls with the web's roots, HTTP/1.1, a User-Agent naming
//! the check, redirects never followed (a redirect is an answer to report, with its `Location`),
//! a body drained so the connection goes back to the pool, and a bound on time or size.
//!
//! Layer: wire. May import only its own layer; never edge, control, server, request, config,
//! snapshot, observe, clients, domain, policy.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The client type: GETs with no body.
pub(crate) type WebClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A client with the web's roots; the error says why TLS could not be set up.
pub(crate) fn client() -> Result<WebClient, String> {
    let https = crate::tls::public_https_connector().map_err(|e| e.to_string())?;
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// `url` as the base that paths are appended to: `http(s)://host[:port]` (and, with
/// `path_allowed`, a path), without a trailing `/`. The error is the reason, for the caller's
/// message.
pub(crate) fn base_url(url: &str, path_allowed: bool) -> Result<String, &'static str> {
    let uri: http::Uri = url.parse().map_err(|_| "not a URL")?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.authority().is_some() => {}
        _ => return Err("expected http://host[:port] or https://host[:port]"),
    }
    if !path_allowed && uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err("give the storefront's base URL only, without a path");
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Why asking a URL gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AskError {
    /// No answer (body included) within the time allowed.
    Timeout,
    /// The URL, the connection or the body failed; the text says which.
    Failed(String),
}

fn get(url: &str, user_agent: &str) -> Result<http::Request<Empty<Bytes>>, String> {
    http::Request::get(url)
        .header(http::header::USER_AGENT, user_agent)
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("invalid URL: {e}"))
}

/// GETs `url` and returns its status and `Location` (if any), the body read and dropped, all
/// within `timeout`.
pub(crate) async fn status_and_location(
    client: &WebClient,
    url: &str,
    user_agent: &str,
    timeout: Duration,
) -> Result<(StatusCode, Option<String>), AskError> {
    let req = get(url, user_agent).map_err(AskError::Failed)?;
    let attempt = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = resp.status();
        let location = resp
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Drained so the connection goes back to the pool; an error here does not change the
        // answer.
        let _ = resp.into_body().collect().await;
        Ok::<_, String>((status, location))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => Err(AskError::Timeout),
        Ok(r) => r.map_err(AskError::Failed),
    }
}

/// GETs `url` and returns the status and at most `limit` bytes of body (more is an error).
pub(crate) async fn get_limited(
    client: &WebClient,
    url: &str,
    user_agent: &str,
    limit: usize,
) -> Result<(StatusCode, Bytes), String> {
    let resp = client
        .request(get(url, user_agent)?)
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
