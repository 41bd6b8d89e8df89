//! Real upstream servers on `127.0.0.1:0`: a recording echo backend, and the misbehaving ones
//! the failure tests need (refusing, hanging, resetting), a WebSocket echo, an upgrade refuser,
//! and streaming download/upload endpoints that never hold a whole body.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::wait::WAIT;

/// One request head as a backend received it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Request target as sent on the wire (origin form).
    pub uri: String,
    /// Every header line, in order.
    pub headers: HeaderMap,
    /// Body bytes received (hyper backends only).
    pub body_len: u64,
}

impl Seen {
    /// Every value of a header, joined with ", ".
    pub fn header(&self, name: &str) -> Option<String> {
        let all: Vec<&str> = self
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("<binary>"))
            .collect();
        (!all.is_empty()).then(|| all.join(", "))
    }
}

/// What a backend observed.
#[derive(Default)]
pub struct Log {
    /// Request heads, when recording.
    pub seen: Mutex<Vec<Seen>>,
    /// Accepted TCP connections.
    pub connections: AtomicUsize,
    /// Requests received (counted even when not recording).
    pub requests: AtomicUsize,
    /// Every byte read by raw backends, all connections in arrival order.
    pub raw: Mutex<Vec<u8>>,
    /// Raw backends that wait for the test before misbehaving wait on this.
    pub go: Notify,
    /// Connections still to drop right after accept (TLS backend).
    pub drop_next: AtomicUsize,
}

/// A running backend; its accept loop stops on drop.
pub struct Backend {
    /// Name it answers with (`x-backend` header and body).
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it saw.
    pub log: Arc<Log>,
    task: Option<JoinHandle<()>>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// An address where nothing listens: bound, then closed, so connects are refused (a dead
/// storefront without guessing at free ports).
pub fn refused_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding");
    let addr = l.local_addr().expect("address");
    drop(l);
    addr
}

/// A port on 127.0.0.1 that was free a moment ago (for listeners whose bound address the
/// proxy does not report, such as `redirect_http`, and for the binary).
pub use super::ports::free_port;

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding backend")
}

/// Accepts connections on `listener` until the returned task is aborted, handing each to
/// `on_conn` in its own task: the one accept loop every test server shares.
pub fn spawn_accept<F, Fut>(listener: TcpListener, on_conn: F) -> JoinHandle<()>
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(on_conn(stream));
        }
    })
}

/// A listener on `127.0.0.1:0` and its address.
pub async fn bind_local() -> (TcpListener, SocketAddr) {
    let l = listener().await;
    let addr = l.local_addr().expect("backend address");
    (l, addr)
}

/// A [`Backend`] whose connections `handler` serves raw (with the backend's log and the
/// connection's index), for backends that misbehave below HTTP.
pub fn spawn_raw<F, Fut>(name: &str, listener: TcpListener, handler: F) -> Backend
where
    F: Fn(TcpStream, Arc<Log>, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let log = Arc::new(Log::default());
    let addr = listener.local_addr().expect("backend address");
    let l = Arc::clone(&log);
    let task = spawn_accept(listener, move |stream| {
        let _ = stream.set_nodelay(true);
        let index = l.connections.fetch_add(1, Ordering::SeqCst);
        handler(stream, Arc::clone(&l), index)
    });
    Backend {
        name: name.to_string(),
        addr,
        log,
        task: Some(task),
    }
}

/// Serves HTTP/1.1 or h2c (whichever the client starts) on any stream, for storefronts the
/// proxy may reach over HTTP/2.
pub async fn serve_auto<I, F, Fut>(io: I, handler: F)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service_fn(handler))
        .await;
}

/// Serves HTTP/1.1 (with upgrades) on any stream with the given handler.
pub async fn serve_h1<I, F, Fut, B>(io: I, handler: F)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let handler = Arc::new(handler);
    let svc = service_fn(move |req| {
        let h = Arc::clone(&handler);
        async move { Ok::<_, Infallible>(h(req).await) }
    });
    // Above the proxy's limits, so any 431 a test sees is the proxy's.
    let _ = hyper::server::conn::http1::Builder::new()
        .max_headers(512)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades()
        .await;
}

/// Reads a body to its end, counting bytes without keeping them. `Err` when it broke off.
pub async fn drain_body(mut body: Incoming) -> Result<u64, String> {
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Some(d) = frame.data_ref() {
            n += d.len() as u64;
        }
    }
    Ok(n)
}

/// The echo handler: records the head, drains the body, answers with its name.
pub async fn echo_handler(
    name: String,
    record: bool,
    log: Arc<Log>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body_len = drain_body(body).await.unwrap_or(0);
    log.requests.fetch_add(1, Ordering::SeqCst);
    if record {
        log.seen.lock().unwrap().push(Seen {
            method: parts.method.to_string(),
            uri: parts.uri.to_string(),
            headers: parts.headers.clone(),
            body_len,
        });
    }
    Response::builder()
        .header("x-backend", &name)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(name)))
        .expect("valid response")
}

/// A response body of `len` bytes produced on the fly, chunk by chunk.
pub struct RepeatBody {
    remaining: u64,
    chunk: Bytes,
}

impl RepeatBody {
    /// `len` bytes in 64 KiB chunks.
    pub fn new(len: u64) -> Self {
        RepeatBody {
            remaining: len,
            chunk: Bytes::from(vec![b'x'; 64 * 1024]),
        }
    }
}

impl http_body::Body for RepeatBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64) as usize;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Reads one request head (through `\r\n\r\n`) from a raw stream, appending everything read to
/// `log.raw`. Returns the head text and any bytes read past it; `None` on EOF or error.
pub async fn read_head(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    log: &Log,
) -> Option<(String, Vec<u8>)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            let rest = buf[end + 4..].to_vec();
            buf.clear();
            return Some((head, rest));
        }
        let mut chunk = [0u8; 8192];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        log.raw.lock().unwrap().extend_from_slice(&chunk[..n]);
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Parses a raw request head into a [`Seen`].
pub fn parse_head(head: &str) -> Seen {
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or("");
    let mut parts = first.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let uri = parts.next().unwrap_or("").to_string();
    let mut headers = HeaderMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        if let Some((k, v)) = line.split_once(':') {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.trim().as_bytes()),
                HeaderValue::from_str(v.trim()),
            ) {
                headers.append(k, v);
            }
        }
    }
    Seen {
        method,
        uri,
        headers,
        body_len: 0,
    }
}

fn content_length(seen: &Seen) -> usize {
    seen.header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Sends RST instead of FIN when the socket is dropped.
fn reset_on_drop(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
}

impl Backend {
    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Recorded request heads.
    pub fn seen(&self) -> Vec<Seen> {
        self.log.seen.lock().unwrap().clone()
    }

    /// Requests received.
    pub fn requests(&self) -> usize {
        self.log.requests.load(Ordering::SeqCst)
    }

    /// Connections accepted.
    pub fn connections(&self) -> usize {
        self.log.connections.load(Ordering::SeqCst)
    }

    /// Every raw byte received (raw backends).
    pub fn raw(&self) -> Vec<u8> {
        self.log.raw.lock().unwrap().clone()
    }

    /// Forgets what was recorded.
    pub fn clear(&self) {
        self.log.seen.lock().unwrap().clear();
        self.log.raw.lock().unwrap().clear();
    }

    /// Lets a waiting raw backend misbehave now.
    pub fn go(&self) {
        self.log.go.notify_one();
    }

    /// The echo backend: records every request head and answers `200 <name>` with `x-backend`.
    pub async fn echo(name: &str) -> Backend {
        Self::echo_with(name, true).await
    }

    /// The echo backend without recording heads (for the high-volume tests).
    pub async fn counting(name: &str) -> Backend {
        Self::echo_with(name, false).await
    }

    async fn echo_with(name: &str, record: bool) -> Backend {
        let n = name.to_string();
        spawn_raw(name, listener().await, move |stream, log, _| {
            let n = n.clone();
            serve_h1(stream, move |req| {
                echo_handler(n.clone(), record, Arc::clone(&log), req)
            })
        })
    }

    /// Accepts and reads, never answers.
    pub async fn hang(name: &str) -> Backend {
        spawn_raw(name, listener().await, |mut stream, log, _| async move {
            let mut buf = Vec::new();
            while let Some((head, _)) = read_head(&mut stream, &mut buf, &log).await {
                log.requests.fetch_add(1, Ordering::SeqCst);
                log.seen.lock().unwrap().push(parse_head(&head));
            }
        })
    }

    /// Reads the request head, records it, then resets the connection (RST) without answering.
    pub async fn reset_before_headers(name: &str) -> Backend {
        spawn_raw(name, listener().await, |mut stream, log, _| async move {
            let mut buf = Vec::new();
            if let Some((head, _)) = read_head(&mut stream, &mut buf, &log).await {
                log.requests.fetch_add(1, Ordering::SeqCst);
                log.seen.lock().unwrap().push(parse_head(&head));
            }
            reset_on_drop(&stream);
        })
    }

    /// Sends response headers (content-length or chunked) and part of the body, waits for
    /// [`Backend::go`], then resets the connection.
    pub async fn reset_mid_body(name: &str, chunked: bool) -> Backend {
        spawn_raw(
            name,
            listener().await,
            move |mut stream, log, _| async move {
                let mut buf = Vec::new();
                if read_head(&mut stream, &mut buf, &log).await.is_none() {
                    return;
                }
                log.requests.fetch_add(1, Ordering::SeqCst);
                let part = vec![b'y'; 4096];
                let mut out = Vec::new();
                if chunked {
                    out.extend_from_slice(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
                    out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                    out.extend_from_slice(&part);
                    out.extend_from_slice(b"\r\n");
                } else {
                    out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n");
                    out.extend_from_slice(&part);
                }
                let _ = stream.write_all(&out).await;
                let _ = stream.flush().await;
                let _ = tokio::time::timeout(WAIT, log.go.notified()).await;
                reset_on_drop(&stream);
            },
        )
    }

    /// For every request, answers exactly `response` (raw bytes); records heads and raw bytes.
    pub async fn scripted(name: &str, response: &'static [u8]) -> Backend {
        spawn_raw(
            name,
            listener().await,
            move |mut stream, log, _| async move {
                let mut buf = Vec::new();
                while let Some((head, rest)) = read_head(&mut stream, &mut buf, &log).await {
                    let seen = parse_head(&head);
                    // Skip a content-length body (the proxy re-frames bodies it forwards).
                    let mut need = content_length(&seen).saturating_sub(rest.len());
                    buf = rest[rest.len().min(content_length(&seen))..].to_vec();
                    while need > 0 {
                        let mut chunk = [0u8; 8192];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                log.raw.lock().unwrap().extend_from_slice(&chunk[..n]);
                                need = need.saturating_sub(n);
                            }
                        }
                    }
                    log.requests.fetch_add(1, Ordering::SeqCst);
                    log.seen.lock().unwrap().push(seen);
                    if stream.write_all(response).await.is_err() {
                        return;
                    }
                }
            },
        )
    }

    /// Answers `200` (never `101`) to everything, upgrade requests included.
    pub async fn refuse_upgrade(name: &str) -> Backend {
        Self::scripted(
            name,
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 11\r\n\r\nno upgrade\n",
        )
        .await
    }

    /// A WebSocket echo server.
    pub async fn ws_echo(name: &str) -> Backend {
        use futures_util::{SinkExt, StreamExt};
        spawn_raw(name, listener().await, |stream, log, _| async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            log.requests.fetch_add(1, Ordering::SeqCst);
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_text() || msg.is_binary() {
                    if ws.send(msg).await.is_err() {
                        return;
                    }
                } else if msg.is_close() {
                    let _ = ws.close(None).await;
                    return;
                }
            }
        })
    }

    /// `GET` answers `len` bytes streamed; any request with a body answers the byte count it
    /// drained. Neither direction holds more than a chunk.
    pub async fn stream(name: &str, len: u64) -> Backend {
        let n = name.to_string();
        spawn_raw(name, listener().await, move |stream, log, _| {
            let n = n.clone();
            serve_h1(stream, move |req: Request<Incoming>| {
                let log = Arc::clone(&log);
                let n = n.clone();
                async move {
                    log.requests.fetch_add(1, Ordering::SeqCst);
                    let got = drain_body(req.into_body()).await;
                    let body = match got {
                        Ok(0) => http_body_util::Either::Left(RepeatBody::new(len)),
                        Ok(k) => {
                            http_body_util::Either::Right(Full::new(Bytes::from(k.to_string())))
                        }
                        Err(e) => http_body_util::Either::Right(Full::new(Bytes::from(format!(
                            "error: {e}"
                        )))),
                    };
                    Response::builder()
                        .header("x-backend", n)
                        .body(body)
                        .expect("valid response")
                }
            })
        })
    }
}

impl Backend {
    /// A minimal raw HTTP/1.1 backend for the high-volume tests: counts requests (bodyless
    /// only) and answers `200 <name>` with `x-backend`, without a full HTTP stack in the way.
    pub async fn fast(name: &str) -> Backend {
        let response: &'static [u8] = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\nx-backend: {name}\r\ncontent-length: {}\r\n\r\n{name}",
                name.len()
            )
            .into_bytes()
            .into_boxed_slice(),
        );
        spawn_raw(
            name,
            listener().await,
            move |mut stream, log, _| async move {
                let mut buf = Vec::with_capacity(8192);
                let mut chunk = vec![0u8; 16 * 1024];
                loop {
                    let n = match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    let mut answers = 0;
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        answers += 1;
                    }
                    log.requests.fetch_add(answers, Ordering::SeqCst);
                    for _ in 0..answers {
                        if stream.write_all(response).await.is_err() {
                            return;
                        }
                    }
                }
            },
        )
    }
}
