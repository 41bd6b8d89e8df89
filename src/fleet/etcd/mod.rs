//! A small etcd v3 client over the JSON gRPC gateway (`POST /v3/kv/range` ...), on hyper 1.
//!
//! Why the gateway rather than gRPC: it needs no protobuf toolchain nor an extra HTTP/2 stack, the
//! calls cutover makes are few and small, and every etcd since 3.3 serves it on the client port.
//! HTTP/1.1 with keep-alive through the same pooled hyper-util client and rustls connector the
//! storefronts use ([`crate::tls::upstream_connector`]), so TLS options mean the same thing.
//!
//! Every call has a timeout. Endpoints are tried in turn starting from the last one that answered
//! (failover); only "could not reach" errors move on to the next endpoint, an answer from etcd is
//! final. Each endpoint's API prefix (`/v3`, `/v3beta`, `/v3alpha`) is detected from its
//! `/version` on first use, and its auth token fetched on first use when a user is configured.

mod b64;
mod error;
mod kv;
mod lease;
mod watch;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

pub use b64::{decode as b64_decode, encode as b64_encode};
pub use error::EtcdError;
pub use kv::{Kv, TxnOutcome};
pub use lease::Lease;
pub use watch::{EventKind, Watch, WatchEvent};

use super::connectivity::Connectivity;
use crate::tls::UpstreamTlsOptions;
use error::{show_key, GRPC_UNAUTHENTICATED, GRPC_UNAVAILABLE};

/// How to reach the etcd cluster.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// Base URLs, `http://host:2379` or `https://host:2379`.
    pub endpoints: Vec<String>,
    /// Bound on every unary call (connect + send + full answer) and on opening a watch.
    pub request_timeout: Duration,
    /// CA, client certificate and SNI for `https://` endpoints (paths relative to `base_dir`).
    pub tls: UpstreamTlsOptions,
    /// Directory TLS paths are relative to (the config file's).
    pub base_dir: PathBuf,
    /// User and password for etcd's auth (`/v3/auth/authenticate`), when enabled on the cluster.
    pub auth: Option<Credentials>,
}

/// etcd user credentials.
#[derive(Clone)]
pub struct Credentials {
    /// etcd user name.
    pub user: String,
    /// Its password (never logged).
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl EtcdOptions {
    /// Plain-HTTP options for `endpoints` with a request timeout, no TLS files, no auth.
    pub fn new(endpoints: Vec<String>, request_timeout: Duration) -> Self {
        EtcdOptions {
            endpoints,
            request_timeout,
            tls: UpstreamTlsOptions::default(),
            base_dir: PathBuf::from("."),
            auth: None,
        }
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Per-endpoint facts learned on first use.
#[derive(Debug, Default, Clone)]
struct EndpointState {
    api_prefix: Option<&'static str>,
    token: Option<String>,
}

/// A cheap-to-clone handle on the cluster; clones share connections and connectivity.
#[derive(Clone)]
pub struct EtcdClient {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Vec<String>,
    timeout: Duration,
    auth: Option<Credentials>,
    http: HttpClient,
    /// Index of the endpoint that answered last: the first tried next time.
    current: AtomicUsize,
    /// Learned per endpoint; a std mutex because it is only held to copy or set a field.
    state: Mutex<Vec<EndpointState>>,
    connectivity: Arc<Connectivity>,
}

impl std::fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdClient")
            .field("endpoints", &self.inner.endpoints)
            .finish()
    }
}

/// Where one successful unary call went and what came back.
pub(crate) struct Answer {
    pub endpoint: String,
    pub body: Value,
}

impl EtcdClient {
    /// Builds the client; does not connect (so a replica can start while etcd is down).
    pub fn new(options: EtcdOptions) -> Result<Self, EtcdError> {
        if options.endpoints.is_empty() {
            return Err(EtcdError::Options("no etcd endpoint given".into()));
        }
        let mut endpoints = Vec::with_capacity(options.endpoints.len());
        for raw in &options.endpoints {
            let trimmed = raw.trim_end_matches('/');
            let uri: http::Uri = trimmed
                .parse()
                .map_err(|e| EtcdError::Options(format!("endpoint `{raw}`: {e}")))?;
            match (uri.scheme_str(), uri.host(), uri.path()) {
                (Some("http" | "https"), Some(_), "" | "/") => {}
                _ => {
                    return Err(EtcdError::Options(format!(
                        "endpoint `{raw}` must look like http://host:2379 or https://host:2379"
                    )))
                }
            }
            endpoints.push(trimmed.to_string());
        }
        let connector = crate::tls::upstream_connector(
            &options.tls,
            &options.base_dir,
            Some(options.request_timeout),
            false,
        )
        .map_err(|e| EtcdError::Options(format!("TLS: {e}")))?;
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .build(connector);
        let n = endpoints.len();
        Ok(EtcdClient {
            inner: Arc::new(Inner {
                endpoints,
                timeout: options.request_timeout,
                auth: options.auth,
                http,
                current: AtomicUsize::new(0),
                state: Mutex::new(vec![EndpointState::default(); n]),
                connectivity: Arc::new(Connectivity::default()),
            }),
        })
    }

    /// Shared connectivity record every call of this client (and its clones) updates.
    pub fn connectivity(&self) -> &Arc<Connectivity> {
        &self.inner.connectivity
    }

    /// The configured endpoints, normalised (no trailing slash).
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// One unary gateway call (`path` like `/kv/range`) with failover. `key` names the key for
    /// errors. The escape hatch for calls this client has no method for (tests use it to enable
    /// auth on a throwaway server).
    pub async fn call(
        &self,
        op: &'static str,
        key: &[u8],
        path: &str,
        body: &Value,
    ) -> Result<Value, EtcdError> {
        self.call_answer(op, key, path, body).await.map(|a| a.body)
    }

    pub(crate) async fn call_answer(
        &self,
        op: &'static str,
        key: &[u8],
        path: &str,
        body: &Value,
    ) -> Result<Answer, EtcdError> {
        let (idx, body) = self
            .first_answering(op, key, |idx| self.call_one(idx, op, key, path, body))
            .await?;
        Ok(Answer {
            endpoint: self.inner.endpoints[idx].clone(),
            body,
        })
    }

    /// Tries the endpoints in turn, from the one that answered last, until one answers (an
    /// etcd error is an answer: the endpoint is up); records connectivity either way. The
    /// error, when none answers, lists every attempt.
    async fn first_answering<T, F, Fut>(
        &self,
        op: &'static str,
        key: &[u8],
        mut attempt: F,
    ) -> Result<(usize, T), EtcdError>
    where
        F: FnMut(usize) -> Fut,
        Fut: std::future::Future<Output = Result<T, EtcdError>>,
    {
        let n = self.inner.endpoints.len();
        let start = self.inner.current.load(Ordering::Relaxed);
        let mut attempts = Vec::new();
        for i in 0..n {
            let idx = (start + i) % n;
            match attempt(idx).await {
                Ok(answer) => {
                    self.inner.current.store(idx, Ordering::Relaxed);
                    self.inner.connectivity.record_success();
                    return Ok((idx, answer));
                }
                Err(e) if e.is_unreachable() => {
                    tracing::debug!(error = %e, "etcd endpoint failed, trying the next");
                    attempts.push(e);
                }
                Err(e) => {
                    self.inner.connectivity.record_success();
                    return Err(e);
                }
            }
        }
        let err = EtcdError::Unreachable {
            op,
            key: show_key(key),
            attempts,
        };
        self.inner.connectivity.record_failure(&err.to_string());
        Err(err)
    }

    /// One endpoint: prefix, token, the call; re-authenticates once when the token expired.
    async fn call_one(
        &self,
        idx: usize,
        op: &'static str,
        key: &[u8],
        path: &str,
        body: &Value,
    ) -> Result<Value, EtcdError> {
        let prefix = self.api_prefix(idx, op, key).await?;
        for retry in 0..2 {
            let token = self.token(idx, prefix, op, key).await?;
            let url = format!("{}{prefix}{path}", self.inner.endpoints[idx]);
            match self.post(idx, &url, token.as_deref(), op, key, body).await {
                Err(EtcdError::Server { code, .. })
                    if code == GRPC_UNAUTHENTICATED && retry == 0 && self.inner.auth.is_some() =>
                {
                    self.set_state(idx, |s| s.token = None);
                }
                // Safe to repeat: reads and keep-alives are idempotent, a put writes the same
                // value, and a compare-and-swap that did land the first time fails its compare
                // (the store recognises its own value in the conflict).
                Err(EtcdError::Transport { ref reason, .. })
                    if retry == 0 && reason.ends_with(STALE) => {}
                other => return other,
            }
        }
        unreachable!("the loop returns on its second pass")
    }

    fn endpoint_state(&self, idx: usize) -> EndpointState {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())[idx].clone()
    }

    fn set_state(&self, idx: usize, f: impl FnOnce(&mut EndpointState)) {
        f(&mut self.inner.state.lock().unwrap_or_else(|p| p.into_inner())[idx]);
    }

    /// `/v3` from 3.4 on, `/v3beta` on 3.3, `/v3alpha` before: read from `GET /version`.
    async fn api_prefix(
        &self,
        idx: usize,
        op: &'static str,
        key: &[u8],
    ) -> Result<&'static str, EtcdError> {
        if let Some(p) = self.endpoint_state(idx).api_prefix {
            return Ok(p);
        }
        let endpoint = &self.inner.endpoints[idx];
        let url = format!("{endpoint}/version");
        let req = http::Request::get(&url)
            .body(Full::new(Bytes::new()))
            .map_err(|e| EtcdError::Options(format!("`{url}`: {e}")))?;
        let (status, bytes) = self.send(idx, req, op, key).await?;
        let decode = |reason: String| EtcdError::Decode {
            endpoint: endpoint.clone(),
            op,
            key: show_key(key),
            reason,
        };
        if status != 200 {
            return Err(decode(format!("GET /version answered HTTP {status}")));
        }
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| decode(format!("GET /version is not JSON: {e}")))?;
        let cluster = v["etcdcluster"]
            .as_str()
            .or_else(|| v["etcdserver"].as_str())
            .ok_or_else(|| decode(format!("GET /version has no etcdcluster: {v}")))?;
        let prefix = api_prefix_for(cluster).ok_or_else(|| {
            decode(format!(
                "etcd cluster version `{cluster}` has no v3 JSON gateway"
            ))
        })?;
        self.set_state(idx, |s| s.api_prefix = Some(prefix));
        Ok(prefix)
    }

    async fn token(
        &self,
        idx: usize,
        prefix: &str,
        op: &'static str,
        key: &[u8],
    ) -> Result<Option<String>, EtcdError> {
        let Some(auth) = &self.inner.auth else {
            return Ok(None);
        };
        if let Some(t) = self.endpoint_state(idx).token {
            return Ok(Some(t));
        }
        let url = format!("{}{prefix}/auth/authenticate", self.inner.endpoints[idx]);
        let body = json!({"name": auth.user, "password": auth.password});
        let answer = self.post(idx, &url, None, op, key, &body).await?;
        let token = answer["token"]
            .as_str()
            .ok_or_else(|| EtcdError::Decode {
                endpoint: self.inner.endpoints[idx].clone(),
                op,
                key: show_key(key),
                reason: "authenticate answered without a token".into(),
            })?
            .to_string();
        self.set_state(idx, |s| s.token = Some(token.clone()));
        Ok(Some(token))
    }

    async fn post(
        &self,
        idx: usize,
        url: &str,
        token: Option<&str>,
        op: &'static str,
        key: &[u8],
        body: &Value,
    ) -> Result<Value, EtcdError> {
        let req = self.request(url, token, body)?;
        let (status, bytes) = self.send(idx, req, op, key).await?;
        parse_answer(&self.inner.endpoints[idx], status, &bytes, op, key)
    }

    fn request(
        &self,
        url: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Result<http::Request<Full<Bytes>>, EtcdError> {
        let mut b = http::Request::post(url).header(http::header::CONTENT_TYPE, "application/json");
        if let Some(t) = token {
            b = b.header(http::header::AUTHORIZATION, t);
        }
        b.body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| EtcdError::Options(format!("`{url}`: {e}")))
    }

    /// Sends and reads the whole answer, all within the request timeout.
    async fn send(
        &self,
        idx: usize,
        req: http::Request<Full<Bytes>>,
        op: &'static str,
        key: &[u8],
    ) -> Result<(u16, Bytes), EtcdError> {
        let endpoint = &self.inner.endpoints[idx];
        let transport = |reason: String| EtcdError::Transport {
            endpoint: endpoint.clone(),
            op,
            key: show_key(key),
            reason,
        };
        let exchange = async {
            let resp = self.inner.http.request(req).await.map_err(|e| {
                // Not a connect error: most often a pooled keep-alive connection the server
                // closed (etcd restarted). Marked so the call is retried once on a new one.
                let stale = if e.is_connect() { "" } else { STALE };
                transport(format!("{}{stale}", crate::error_text::chain(&e)))
            })?;
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| transport(crate::error_text::chain(&e)))?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(self.inner.timeout, exchange)
            .await
            .map_err(|_| EtcdError::Timeout {
                endpoint: endpoint.clone(),
                op,
                key: show_key(key),
                after: self.inner.timeout,
            })?
    }

    /// Opens a streaming call (watch) on the first endpoint that answers with HTTP 200; the
    /// timeout bounds getting the response head, not the stream.
    pub(crate) async fn open_stream(
        &self,
        op: &'static str,
        key: &[u8],
        path: &str,
        body: &Value,
    ) -> Result<(String, Incoming), EtcdError> {
        let (idx, stream) = self
            .first_answering(op, key, |idx| self.open_one(idx, op, key, path, body))
            .await?;
        Ok((self.inner.endpoints[idx].clone(), stream))
    }

    async fn open_one(
        &self,
        idx: usize,
        op: &'static str,
        key: &[u8],
        path: &str,
        body: &Value,
    ) -> Result<Incoming, EtcdError> {
        let prefix = self.api_prefix(idx, op, key).await?;
        let token = self.token(idx, prefix, op, key).await?;
        let endpoint = &self.inner.endpoints[idx];
        let url = format!("{endpoint}{prefix}{path}");
        let req = self.request(&url, token.as_deref(), body)?;
        let resp = tokio::time::timeout(self.inner.timeout, self.inner.http.request(req))
            .await
            .map_err(|_| EtcdError::Timeout {
                endpoint: endpoint.clone(),
                op,
                key: show_key(key),
                after: self.inner.timeout,
            })?
            .map_err(|e| EtcdError::Transport {
                endpoint: endpoint.clone(),
                op,
                key: show_key(key),
                reason: crate::error_text::chain(&e),
            })?;
        let status = resp.status().as_u16();
        if status == 200 {
            return Ok(resp.into_body());
        }
        let bytes = tokio::time::timeout(self.inner.timeout, resp.into_body().collect())
            .await
            .ok()
            .and_then(|r| r.ok())
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        parse_answer(endpoint, status, &bytes, op, key).and_then(|_| {
            Err(EtcdError::Decode {
                endpoint: endpoint.clone(),
                op,
                key: show_key(key),
                reason: format!("stream opened with HTTP {status}"),
            })
        })
    }
}

/// Suffix of a transport error on an established (possibly stale pooled) connection.
const STALE: &str = " (on an open connection)";

/// The gateway prefix for a cluster version such as `3.4.0`.
fn api_prefix_for(cluster_version: &str) -> Option<&'static str> {
    let mut parts = cluster_version.split('.');
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    match (major, minor) {
        (3, 0..=1) => None,
        (3, 2) => Some("/v3alpha"),
        (3, 3) => Some("/v3beta"),
        (3, _) => Some("/v3"),
        (m, _) if m > 3 => Some("/v3"),
        _ => None,
    }
}

/// A 200 answer is the JSON body; anything else is the gateway's `{error, message, code}`.
fn parse_answer(
    endpoint: &str,
    status: u16,
    bytes: &[u8],
    op: &'static str,
    key: &[u8],
) -> Result<Value, EtcdError> {
    let parsed: Result<Value, _> = serde_json::from_slice(bytes);
    if status == 200 {
        return parsed.map_err(|e| EtcdError::Decode {
            endpoint: endpoint.to_string(),
            op,
            key: show_key(key),
            reason: format!("answer is not JSON: {e}"),
        });
    }
    let (code, message) = match &parsed {
        Ok(v) => (
            v["code"].as_i64().unwrap_or(-1),
            v["message"]
                .as_str()
                .or_else(|| v["error"].as_str())
                .unwrap_or("no message")
                .to_string(),
        ),
        Err(_) => (
            -1,
            String::from_utf8_lossy(bytes).chars().take(200).collect(),
        ),
    };
    // 502/503 from a proxy or a member without a leader: let the next endpoint try.
    let code = if code == -1 && (status == 502 || status == 503) {
        GRPC_UNAVAILABLE
    } else {
        code
    };
    Err(EtcdError::Server {
        endpoint: endpoint.to_string(),
        op,
        key: show_key(key),
        status,
        code,
        message,
    })
}

/// The JSON number the gateway sends as a string (int64) or a number; 0 when absent.
pub(crate) fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
