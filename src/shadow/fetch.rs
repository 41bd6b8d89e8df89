//! Asking one storefront for a copy and turning its answer into an [`Observation`].
//!
//! Off the shopper's path: runs in the mirror's workers. The body is read only for a 2xx HTML
//! answer, chunk by chunk into the [`HtmlExtractor`], and abandoned at its limit (the connection
//! is then closed rather than drained: a copy never pays for bytes it does not compare).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::compare::{is_html, Answer, Failure, Observation};
use super::html::{Feed, HtmlExtractor};

/// The client copies are sent with: plain HTTP/1.1 to the storefronts' configured addresses.
pub(crate) type CopyClient = Client<HttpConnector, Empty<Bytes>>;

/// A client whose connect attempts give up after `timeout` and which keeps up to `idle`
/// connections per storefront.
pub(crate) fn client(timeout: Duration, idle: usize) -> CopyClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(idle)
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// One copy to send.
pub(crate) struct Copy<'a> {
    pub method: &'a Method,
    /// `http://127.0.0.1:8082` + path and query.
    pub uri: Uri,
    pub headers: &'a HeaderMap,
    /// The Host the storefront is asked for (the shopper's, or the plan's target host).
    pub host: Option<&'a HeaderValue>,
    /// The public URL of the page (what its relative links resolve against).
    pub page_url: String,
    pub html_limit: usize,
    pub timeout: Duration,
}

/// Sends the copy and observes the answer; never fails, failures are part of the observation.
pub(crate) async fn observe(client: &CopyClient, copy: Copy<'_>) -> Observation {
    let url = copy.page_url.clone();
    let outcome = match tokio::time::timeout(copy.timeout, answer(client, copy)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Failure::Timeout),
    };
    Observation { url, outcome }
}

async fn answer(client: &CopyClient, copy: Copy<'_>) -> Result<Answer, Failure> {
    let mut request = Request::new(Empty::new());
    *request.method_mut() = copy.method.clone();
    *request.uri_mut() = copy.uri;
    *request.headers_mut() = copy.headers.clone();
    if let Some(host) = copy.host {
        request
            .headers_mut()
            .insert(http::header::HOST, host.clone());
    }
    let response = client
        .request(request)
        .await
        .map_err(|e| Failure::Error(crate::error_text::chain(&e)))?;
    let (head, mut body) = response.into_parts();
    let mut answer = Answer::from_head(head.status.as_u16(), &head.headers);
    let wants_html = head.status.is_success()
        && is_html(answer.content_type.as_deref())
        && copy.method != Method::HEAD;
    if wants_html {
        let mut extractor = HtmlExtractor::new(&copy.page_url, copy.html_limit);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Failure::Error(format!("reading the body: {e}")))?;
            if let Some(data) = frame.data_ref() {
                if extractor.feed(data) == Feed::Enough {
                    break;
                }
            }
        }
        answer.html = Some(extractor.finish());
    }
    Ok(answer)
}
