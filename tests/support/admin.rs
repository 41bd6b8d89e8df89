//! One-off requests on fresh connections and the admin API calls the control tests make.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use super::client::{request, send_new_conn_within};

/// One request on a fresh connection, body read to the end. Bounded generously (60 s) because
/// drain tests hold requests open on purpose; transport failures are returned, since those
/// tests expect some.
pub async fn request_fresh(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Bytes>,
) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    let req = request(addr, method, path, headers, body.unwrap_or_default());
    let r = send_new_conn_within(addr, req, Duration::from_secs(60)).await?;
    Ok((r.status, r.headers, r.body))
}

/// An admin call: (status, body text).
pub async fn admin(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    let (s, _, b) = request_fresh(
        addr,
        method,
        path,
        &headers,
        body.map(|b| Bytes::from(b.to_string())),
    )
    .await
    .unwrap_or_else(|e| panic!("admin {path}: {e}"));
    (s, String::from_utf8_lossy(&b).into_owned())
}

/// `GET /admin/status` as JSON.
pub async fn status(addr: SocketAddr) -> serde_json::Value {
    let (s, b) = admin(addr, Method::GET, "/admin/status", None, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    serde_json::from_str(&b).unwrap()
}

/// `GET /admin/status` as JSON, or `None` when the connection fails: for polling across a
/// handover, where the old process may close its admin socket under a request.
pub async fn try_status(addr: SocketAddr) -> Option<serde_json::Value> {
    let (s, _, b) = request_fresh(addr, Method::GET, "/admin/status", &[], None)
        .await
        .ok()?;
    (s == StatusCode::OK).then(|| serde_json::from_slice(&b).ok())?
}

/// Share in force (percent), from `/admin/status`.
pub async fn share(addr: SocketAddr) -> f64 {
    status(addr).await["split"]["new_share"].as_f64().unwrap()
}
