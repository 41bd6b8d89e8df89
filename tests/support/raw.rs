//! Raw TCP for what a well-behaved client cannot send: malformed framing, slow heads, exact
//! header bytes. Responses are parsed just enough to count them and read status, headers, body.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::wait::{SLOW_WAIT, WAIT};

/// One response parsed from raw bytes.
#[derive(Debug, Clone)]
pub struct RawResp {
    /// Status code.
    pub status: u16,
    /// Header lines, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body (de-chunked).
    pub body: Vec<u8>,
}

impl RawResp {
    /// First value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether any header has this name.
    pub fn has(&self, name: &str) -> bool {
        self.header(name).is_some()
    }
}

/// Connects to `addr`.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    let s = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect");
    let _ = s.set_nodelay(true);
    s
}

/// Reads until the peer closes (or resets), or until nothing closes within `limit`.
/// Returns the bytes and whether the connection was closed.
pub async fn read_until_close(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut buf = [0u8; 16 * 1024];
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads until one complete response is buffered and returns it (bytes after it are dropped).
pub async fn read_response(s: &mut TcpStream) -> Option<RawResp> {
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some((resp, _)) = parse_one(&buf) {
            return Some(resp);
        }
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

/// Writes `bytes`, then reads until close; returns the responses found and whether it closed.
pub async fn exchange(addr: SocketAddr, bytes: &[u8]) -> (Vec<RawResp>, bool) {
    let mut s = connect(addr).await;
    s.write_all(bytes).await.expect("write");
    let (out, closed) = read_until_close(&mut s, Duration::from_secs(5)).await;
    (parse_all(&out), closed)
}

/// Sends `bytes` on a fresh connection and returns everything the server sent until it closed
/// (send `Connection: close`); fails the test when it does not close within [`SLOW_WAIT`].
pub async fn send_until_close(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = connect(addr).await;
    s.write_all(bytes).await.expect("write request");
    let (out, closed) = read_until_close(&mut s, SLOW_WAIT).await;
    assert!(closed, "raw request answered and closed in time");
    out
}

/// The head of a raw response, without needing its body complete (HEAD answers, truncated
/// reads): status code and header lines (name lowercase, value).
pub fn response_head(raw: &[u8]) -> (u16, Vec<(String, String)>) {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers)
}

/// Every complete response in `bytes`, in order.
pub fn parse_all(mut bytes: &[u8]) -> Vec<RawResp> {
    let mut out = Vec::new();
    while let Some((r, used)) = parse_one(bytes) {
        out.push(r);
        bytes = &bytes[used..];
    }
    out
}

/// Parses one response (content-length, chunked, or no body for 1xx/204/304); returns it and
/// the bytes consumed. A response delimited by close is taken as whatever is there.
pub fn parse_one(bytes: &[u8]) -> Option<(RawResp, usize)> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut pos = end + 4;
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let body = if status < 200 || status == 204 || status == 304 {
        Vec::new()
    } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut body = Vec::new();
        loop {
            let line_end = bytes[pos..].windows(2).position(|w| w == b"\r\n")? + pos;
            let size_text = std::str::from_utf8(&bytes[pos..line_end]).ok()?;
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            pos = line_end + 2;
            if size == 0 {
                // Trailers (none expected) end with an empty line.
                let t_end = bytes[pos..].windows(2).position(|w| w == b"\r\n")? + pos;
                pos = t_end + 2;
                break;
            }
            if bytes.len() < pos + size + 2 {
                return None;
            }
            body.extend_from_slice(&bytes[pos..pos + size]);
            pos += size + 2;
        }
        body
    } else if let Some(len) = get("content-length") {
        let len: usize = len.parse().ok()?;
        if bytes.len() < pos + len {
            return None;
        }
        let b = bytes[pos..pos + len].to_vec();
        pos += len;
        b
    } else {
        let b = bytes[pos..].to_vec();
        pos = bytes.len();
        b
    };
    Some((
        RawResp {
            status,
            headers,
            body,
        },
        pos,
    ))
}

/// Sends `n` identical requests pipelined on `conns` connections, in batches, and returns every
/// response. The fastest way to push many shoppers through a debug build.
pub async fn pipelined(addr: SocketAddr, request: &[u8], n: usize, conns: usize) -> Vec<RawResp> {
    let mut tasks = Vec::new();
    for c in 0..conns {
        let count = n / conns + usize::from(c < n % conns);
        let request = request.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut s = connect(addr).await;
            let mut out = Vec::with_capacity(count);
            let mut buf = Vec::new();
            let mut sent = 0;
            while out.len() < count {
                let batch = (count - sent).min(64);
                if batch > 0 && out.len() == sent {
                    s.write_all(&request.repeat(batch)).await.expect("write");
                    sent += batch;
                }
                let mut chunk = vec![0u8; 64 * 1024];
                let k = tokio::time::timeout(WAIT, s.read(&mut chunk))
                    .await
                    .expect("pipelined read timed out")
                    .expect("read");
                assert!(k > 0, "proxy closed a pipelined connection");
                buf.extend_from_slice(&chunk[..k]);
                let mut used = 0;
                while let Some((r, u)) = parse_one(&buf[used..]) {
                    out.push(r);
                    used += u;
                }
                buf.drain(..used);
            }
            out
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.expect("pipelining task"));
    }
    all
}
