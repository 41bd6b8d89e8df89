//! A small real HTTP client: hyper-util's pooled client for keep-alive, hyper's connection API
//! for one request per fresh connection, and a cookie jar.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::wait::{SLOW_WAIT, WAIT};

/// A whole response.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Resp {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header value as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("<binary>").to_string())
    }

    /// Which backend answered (`x-backend`); panics when cutover answered itself.
    pub fn backend(&self) -> String {
        self.header("x-backend").unwrap_or_else(|| {
            panic!(
                "no x-backend: cutover answered {} {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// `Set-Cookie` values.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }

    /// The value a `Set-Cookie` gives `name`, if any.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            let (k, v) = c.split(';').next()?.split_once('=')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    }
}

/// A keep-alive client bound to one proxy address.
#[derive(Clone)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
}

/// Builds a request to `addr` with extra headers.
pub fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(body.into())).expect("valid request")
}

async fn collect(resp: http::Response<hyper::body::Incoming>) -> Result<Resp, String> {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Resp {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

impl Client {
    /// A client with a connection pool.
    pub fn new(addr: SocketAddr) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let inner = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build(http);
        Client { inner, addr }
    }

    /// Sends, collects the body; `Err` describes a transport failure.
    pub async fn try_send(&self, req: Request<Full<Bytes>>) -> Result<Resp, String> {
        let fut = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| format!("{e:?}"))?;
            collect(resp).await
        };
        tokio::time::timeout(WAIT, fut)
            .await
            .map_err(|_| "timed out".to_string())?
    }

    /// Sends; panics on a transport failure.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Resp {
        self.try_send(req)
            .await
            .unwrap_or_else(|e| panic!("request to proxy failed: {e}"))
    }

    /// `GET path` with extra headers.
    pub async fn get_h(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.send(request(self.addr, Method::GET, path, headers, Bytes::new()))
            .await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Resp {
        self.get_h(path, &[]).await
    }

    /// `GET path` carrying the jar's cookies, then storing what the response sets.
    pub async fn get_jar(&self, path: &str, jar: &mut Jar) -> Resp {
        let cookie = jar.header();
        let mut headers = Vec::new();
        if let Some(c) = &cookie {
            headers.push(("cookie", c.as_str()));
        }
        let resp = self.get_h(path, &headers).await;
        jar.store(&resp);
        resp
    }
}

/// One request on a fresh TCP connection, closed afterwards.
pub async fn get_new_conn(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    let req = request(addr, Method::GET, path, headers, Bytes::new());
    send_new_conn(addr, req)
        .await
        .unwrap_or_else(|e| panic!("request on a new connection failed: {e}"))
}

/// Sends any request on a fresh HTTP/1.1 connection.
pub async fn send_new_conn<B>(addr: SocketAddr, req: Request<B>) -> Result<Resp, String>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    send_new_conn_within(addr, req, WAIT).await
}

/// [`send_new_conn`] with its own bound (large uploads).
pub async fn send_new_conn_within<B>(
    addr: SocketAddr,
    req: Request<B>,
    limit: std::time::Duration,
) -> Result<Resp, String>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let fut = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let (mut parts, body) = req.into_parts();
        // The connection API wants origin-form.
        parts.uri = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .expect("origin form");
        if !parts.headers.contains_key("host") {
            parts
                .headers
                .insert("host", addr.to_string().parse().expect("host value"));
        }
        let resp = sender
            .send_request(Request::from_parts(parts, body))
            .await
            .map_err(|e| e.to_string())?;
        collect(resp).await
    };
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// A cookie jar for one shopper: name -> value, following `Set-Cookie` and `Max-Age=0`.
#[derive(Debug, Clone, Default)]
pub struct Jar {
    cookies: BTreeMap<String, String>,
}

impl Jar {
    /// An empty jar.
    pub fn new() -> Self {
        Jar::default()
    }

    /// Sets a cookie directly (a session cookie the shop issued).
    pub fn set(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.into(), value.into());
    }

    /// A cookie's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    /// The `Cookie` header value, if the jar holds anything.
    pub fn header(&self) -> Option<String> {
        (!self.cookies.is_empty()).then(|| {
            self.cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// Applies a response's `Set-Cookie` headers.
    pub fn store(&mut self, resp: &Resp) {
        for c in resp.set_cookies() {
            let mut attrs = c.split(';');
            let Some((k, v)) = attrs.next().and_then(|kv| kv.split_once('=')) else {
                continue;
            };
            let expired = attrs.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            if expired {
                self.cookies.remove(k.trim());
            } else {
                self.cookies.insert(k.trim().into(), v.trim().into());
            }
        }
    }
}

/// Sends a request on a fresh connection and drains the response body without keeping it.
/// Returns the status and the byte count, or `Err` with what broke the body off.
pub async fn send_counting<B>(
    addr: SocketAddr,
    req: Request<B>,
    limit: std::time::Duration,
) -> (StatusCode, Result<u64, String>)
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let fut = async {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let resp = sender.send_request(req).await.expect("response head");
        let status = resp.status();
        (status, super::upstream::drain_body(resp.into_body()).await)
    };
    tokio::time::timeout(limit, fut)
        .await
        .expect("streaming request timed out")
}

/// A response read whole, body as text: what [`HttpClient`] and the h1/h2 connections of
/// `conn.rs` return.
#[derive(Debug)]
pub struct Page {
    /// Status.
    pub status: StatusCode,
    /// The protocol it came over.
    pub version: http::Version,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body, as text.
    pub body: String,
}

impl Page {
    /// A header as text ("" when absent), so assertions compare plain strings.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// `x-cutover-storefront`.
    pub fn storefront(&self) -> &str {
        self.header("x-cutover-storefront")
    }

    /// `Location`, for redirects.
    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(http::header::LOCATION)
            .map(|v| v.to_str().expect("Location is visible ASCII"))
    }

    /// Which storefront answered (the upstream's own header, so redirects have none).
    pub fn upstream(&self) -> Option<&str> {
        self.headers.get("x-upstream").and_then(|v| v.to_str().ok())
    }

    /// `name=value` of the first `Set-Cookie` for `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find(|kv| kv.starts_with(&format!("{name}=")))
            .map(str::to_string)
    }
}

/// A keep-alive HTTP/1.1 client for any address: the data plane and the admin listener of a
/// process share one pool. [`Client`] is the variant bound to one in-process proxy.
#[derive(Clone)]
pub struct HttpClient {
    inner: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A client with a small pool.
    pub fn new() -> HttpClient {
        HttpClient {
            inner: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(8)
                .build_http(),
        }
    }

    /// GET `path_and_query` from `addr` with extra headers; panics on transport errors.
    pub async fn get(&self, addr: SocketAddr, pq: &str, headers: &[(&str, &str)]) -> Page {
        self.try_get(addr, pq, headers)
            .await
            .unwrap_or_else(|e| panic!("GET {pq} from {addr}: {e}"))
    }

    /// GET, with transport errors and timeouts ([`SLOW_WAIT`]) returned.
    pub async fn try_get(
        &self,
        addr: SocketAddr,
        pq: &str,
        headers: &[(&str, &str)],
    ) -> Result<Page, String> {
        let req = request(addr, Method::GET, pq, headers, Bytes::new());
        let fut = async {
            let resp = self.inner.request(req).await.map_err(|e| e.to_string())?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok(Page {
                status: parts.status,
                version: parts.version,
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        tokio::time::timeout(SLOW_WAIT, fut)
            .await
            .map_err(|_| format!("no answer within {SLOW_WAIT:?}"))?
    }
}
