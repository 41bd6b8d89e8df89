use std::time::Duration as StdDuration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Empty};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::*;
use crate::metrics::Reason;

/// One request over a fresh connection with hyper's own client.
async fn call(addr: SocketAddr, method: Method, path: &str) -> (StatusCode, HeaderMap, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(state: AdminState) -> Running {
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, state, async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

#[tokio::test]
async fn metrics_health_and_readiness() {
    let metrics = Metrics::new();
    let h = metrics.handles(&["old", "new"], &["default"]);
    h.record(
        1,
        0,
        Reason::Override,
        StatusCode::OK,
        None,
        StdDuration::from_millis(4),
    );
    let ready = Arc::new(AtomicBool::new(false));
    let mut srv = start(AdminState::new(metrics.clone(), ready.clone())).await;

    let (status, headers, body) = call(srv.addr, Method::GET, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[http::header::CONTENT_TYPE],
        "text/plain; version=0.0.4"
    );
    assert!(body.contains(
        r#"cutover_requests_total{reason="override",route="default",status_class="2xx",storefront="new"} 1"#
    ));
    assert!(body.contains("cutover_build_info{version="));

    assert_eq!(
        call(srv.addr, Method::GET, "/healthz").await.0,
        StatusCode::OK
    );
    let (status, _, body) = call(srv.addr, Method::GET, "/readyz").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    );
    ready.store(true, Ordering::Release);
    assert_eq!(
        call(srv.addr, Method::GET, "/readyz").await.0,
        StatusCode::OK
    );
    ready.store(false, Ordering::Release); // draining
    assert_eq!(
        call(srv.addr, Method::GET, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let (status, _, body) = call(srv.addr, Method::HEAD, "/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));

    srv.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(StdDuration::from_secs(5), &mut srv.task)
        .await
        .expect("serve returns after shutdown")
        .unwrap();
    assert!(
        TcpStream::connect(srv.addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn unknown_paths_404_and_wrong_methods_405() {
    let metrics = Metrics::new();
    let srv = start(AdminState::new(metrics, Arc::new(AtomicBool::new(true)))).await;
    let (status, _, _) = call(srv.addr, Method::GET, "/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(srv.addr, Method::GET, "/metrics/extra").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, headers, _) = call(srv.addr, Method::POST, "/metrics").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[http::header::ALLOW], "GET, HEAD");
    let (status, _, _) = call(srv.addr, Method::DELETE, "/readyz").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn extra_routes_extend_but_never_shadow_builtins() {
    let metrics = Metrics::new();
    let extra = Router::new()
        .route(
            Method::POST,
            "/admin/reload",
            |req: Request<hyper::body::Incoming>| async move {
                let authorized = req.headers().get("authorization").is_some();
                if authorized {
                    text(StatusCode::ACCEPTED, "reloading\n")
                } else {
                    text(StatusCode::UNAUTHORIZED, "token required\n")
                }
            },
        )
        .get("/healthz", |_| async {
            text(StatusCode::IM_A_TEAPOT, "shadow\n")
        });
    let state = AdminState::new(metrics, Arc::new(AtomicBool::new(true))).with_routes(extra);
    let srv = start(state).await;
    assert_eq!(
        call(srv.addr, Method::POST, "/admin/reload").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, headers, _) = call(srv.addr, Method::GET, "/admin/reload").await;
    assert_eq!(
        status,
        StatusCode::METHOD_NOT_ALLOWED,
        "mutations refuse GET"
    );
    assert_eq!(headers[http::header::ALLOW], "POST");
    assert_eq!(
        call(srv.addr, Method::GET, "/healthz").await.0,
        StatusCode::OK
    );
}
