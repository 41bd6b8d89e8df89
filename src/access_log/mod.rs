//! Optional access log: one JSON line per request, written off the request path.
//!
//! A request hands a small [`AccessEntry`] (mostly refcounted `http` types, no formatting) to a bounded
//! channel with `try_send` and moves on. A single writer task formats lines into a reusable buffer
//! and writes them in batches. When the writer falls behind (slow disk, stdout piped into a stalled
//! collector) the channel fills and entries are dropped and counted in
//! `cutover_access_log_dropped_total`: on cutover night a shopper's request must never wait on a log.
//!
//! Layer: observe. May import its own layer and clients, domain, policy, wire; never edge, control,
//! server, request, config, snapshot.

use crate::values::time as rfc3339;
#[cfg(test)]
mod tests;
mod text;

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, StatusCode, Uri};
use prometheus::IntCounter;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::metrics::{Metrics, Reason};

/// Default channel capacity in entries: a few seconds of a busy store's traffic.
pub const DEFAULT_BUFFER: usize = 8192;
/// Upper bound on `buffer`, so a typo cannot reserve gigabytes.
pub const MAX_BUFFER: usize = 1 << 20;
/// Entries taken from the channel per write; bounds the batch buffer.
const BATCH: usize = 512;
/// Once a batch has begun, how long the writer waits for more entries before writing it. Without
/// this, a busy proxy wakes the writer for every few lines and each write is a hand-off to tokio's
/// blocking pool (`tokio::fs`), a few microseconds of CPU that showed up as ~9 µs per request in
/// benches/metrics. With it: at most ~100 writes a second, and a line reaches the file at most
/// this much later.
const COALESCE: Duration = Duration::from_millis(10);

/// `[access_log]` in the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// Off unless asked for: a store behind a CDN may already log every request there.
    #[serde(default)]
    pub enabled: bool,
    /// File to append to; absent or "-" means stdout.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Entries that may wait for the writer before new ones are dropped.
    #[serde(default = "default_buffer")]
    pub buffer: usize,
    /// `json` (one object per line, for machines; the default) or `text` (one short line for
    /// people, what the demo shows).
    #[serde(default)]
    pub format: AccessLogFormat,
}

/// How a line is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// One human line: time, client, method, host and path, status, storefront (reason), time,
    /// bytes, request id.
    Text,
}

fn default_buffer() -> usize {
    DEFAULT_BUFFER
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig {
            enabled: false,
            path: None,
            buffer: DEFAULT_BUFFER,
            format: AccessLogFormat::Json,
        }
    }
}

impl AccessLogConfig {
    /// Checks values serde cannot: the buffer bounds.
    pub fn validate(&self) -> Result<(), AccessLogError> {
        if self.buffer == 0 || self.buffer > MAX_BUFFER {
            return Err(AccessLogError::Buffer(self.buffer));
        }
        Ok(())
    }

    /// The file to write, or `None` for stdout.
    pub fn file(&self) -> Option<&Path> {
        self.path.as_deref().filter(|p| *p != Path::new("-"))
    }
}

/// Why the access log could not start.
#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    /// The buffer size is zero or absurdly large.
    #[error("access_log.buffer must be between 1 and {MAX_BUFFER} entries, got {0}")]
    Buffer(usize),
    #[error("opening access log file {path} for appending: {source}")]
    /// The log file could not be opened for appending.
    Open {
        /// The file.
        path: PathBuf,
        /// What the OS or library said.
        source: io::Error,
    },
}

/// One answered request. Built by the proxy after the response finished; fields are cheap clones
/// (`Uri`, `HeaderValue` and the names share their bytes) so building one costs no string copies.
#[derive(Debug, Clone)]
pub struct AccessEntry {
    /// When the request head arrived.
    pub time: SystemTime,
    /// Request id, as sent to the storefront.
    pub request_id: Option<HeaderValue>,
    /// Request method.
    pub method: Method,
    /// Host header as received.
    pub host: Option<HeaderValue>,
    /// Only the path is logged: query strings carry emails, tokens and discount codes.
    pub uri: Uri,
    /// Status sent to the client.
    pub status: StatusCode,
    /// `None` when no storefront was involved (answered by the proxy itself).
    pub storefront: Option<Arc<str>>,
    /// Matched route name.
    pub route: Option<Arc<str>>,
    /// Why the storefront was chosen.
    pub reason: Option<Reason>,
    /// Time to the upstream's response head; `None` when no upstream answered.
    pub upstream: Option<Duration>,
    /// Time from request to last response byte.
    pub total: Duration,
    /// Response body bytes sent to the client.
    pub bytes_sent: u64,
    /// The client's address.
    pub client_ip: Option<IpAddr>,
}

/// The JSON shape of a line. Field names are the log's public format.
#[derive(Serialize)]
struct Line<'a> {
    time: &'a str,
    request_id: Option<&'a str>,
    method: &'a str,
    host: Option<&'a str>,
    path: &'a str,
    status: u16,
    storefront: Option<&'a str>,
    route: Option<&'a str>,
    reason: Option<&'static str>,
    upstream_ms: Option<f64>,
    total_ms: f64,
    bytes_sent: u64,
    client_ip: Option<IpAddr>,
}

/// Header bytes that are not UTF-8 are logged as "<non-utf8>" rather than guessed at.
fn header_str(v: &Option<HeaderValue>) -> Option<&str> {
    v.as_ref().map(|v| v.to_str().unwrap_or("<non-utf8>"))
}

/// Milliseconds with microsecond precision.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// Appends `entry` as one JSON line to `out`.
fn write_line(entry: &AccessEntry, out: &mut Vec<u8>) {
    let mut time = [0u8; rfc3339::LEN];
    let line = Line {
        time: rfc3339::format(entry.time, &mut time),
        request_id: header_str(&entry.request_id),
        method: entry.method.as_str(),
        host: header_str(&entry.host),
        path: entry.uri.path(),
        status: entry.status.as_u16(),
        storefront: entry.storefront.as_deref(),
        route: entry.route.as_deref(),
        reason: entry.reason.map(Reason::as_str),
        upstream_ms: entry.upstream.map(millis),
        total_ms: millis(entry.total),
        bytes_sent: entry.bytes_sent,
        client_ip: entry.client_ip,
    };
    // Serialising plain strings and numbers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &line);
    out.push(b'\n');
}

/// What travels to the writer task.
// Lines are nearly all the traffic and already travel by value; boxing them to shrink the rare
// flush marker would allocate on every request.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Line(AccessEntry),
    /// Write what is queued now, then answer.
    Flush(oneshot::Sender<()>),
}

/// Handle the request path logs through. Clone freely; the writer task ends (after flushing) when
/// the last clone is dropped, so a reload that opens a new log lets the old one finish its backlog.
#[derive(Clone)]
pub struct AccessLog {
    tx: Option<mpsc::Sender<Msg>>,
    dropped: IntCounter,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("enabled", &self.tx.is_some())
            .finish()
    }
}

impl AccessLog {
    /// A log that discards everything, for `enabled = false`.
    pub fn disabled() -> Self {
        AccessLog {
            tx: None,
            dropped: IntCounter::new("unused", "unused").expect("static opts are valid"),
        }
    }

    /// Starts the writer for `config` (stdout or the file, appended to). Needs a tokio runtime.
    /// Returns the writer task to await on shutdown, or `None` when the log is disabled.
    pub fn start(
        config: &AccessLogConfig,
        metrics: &Metrics,
    ) -> Result<(AccessLog, Option<JoinHandle<()>>), AccessLogError> {
        config.validate()?;
        if !config.enabled {
            return Ok((AccessLog::disabled(), None));
        }
        let (log, task) = match config.file() {
            None => AccessLog::with_writer_as(
                tokio::io::stdout(),
                config.buffer,
                metrics,
                config.format,
            ),
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| AccessLogError::Open {
                        path: path.to_path_buf(),
                        source,
                    })?;
                let file = tokio::fs::File::from_std(file);
                AccessLog::with_writer_as(file, config.buffer, metrics, config.format)
            }
        };
        Ok((log, Some(task)))
    }

    /// Starts a JSON writer task on any async writer (tests use a stalled one).
    pub fn with_writer<W>(
        writer: W,
        buffer: usize,
        metrics: &Metrics,
    ) -> (AccessLog, JoinHandle<()>)
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        Self::with_writer_as(writer, buffer, metrics, AccessLogFormat::Json)
    }

    /// Starts a writer task writing `format` lines on any async writer.
    pub fn with_writer_as<W>(
        writer: W,
        buffer: usize,
        metrics: &Metrics,
        format: AccessLogFormat,
    ) -> (AccessLog, JoinHandle<()>)
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        let write_errors = metrics.access_log_write_errors();
        let task = tokio::spawn(run_writer(rx, writer, write_errors, format));
        let log = AccessLog {
            tx: Some(tx),
            dropped: metrics.access_log_dropped(),
        };
        (log, task)
    }

    /// False for a disabled log: the proxy can skip building entries.
    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues `entry` for writing. Never blocks or awaits: when the buffer is full (or the writer
    /// has gone) the entry is dropped and counted.
    pub fn log(&self, entry: AccessEntry) {
        if let Some(tx) = &self.tx {
            if tx.try_send(Msg::Line(entry)).is_err() {
                self.dropped.inc();
            }
        }
    }

    /// Writes every line queued so far and returns once the writer has flushed them: for shutdown,
    /// since a line otherwise waits up to `COALESCE` for its batch. Waits for buffer space like
    /// any sender; bound it with a timeout. A no-op when the log is disabled.
    pub async fn flush(&self) {
        if let Some(tx) = &self.tx {
            let (done, written) = oneshot::channel();
            if tx.send(Msg::Flush(done)).await.is_ok() {
                let _ = written.await;
            }
        }
    }
}

/// Drains the channel in batches: one `write_all` + `flush` per batch, at most [`COALESCE`] after
/// the batch's first line, and at once when [`BATCH`] lines are waiting.
async fn run_writer<W>(
    mut rx: mpsc::Receiver<Msg>,
    mut out: W,
    write_errors: IntCounter,
    format: AccessLogFormat,
) where
    W: AsyncWrite + Unpin,
{
    let mut msgs = Vec::with_capacity(BATCH);
    let mut acks = Vec::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    while rx.recv_many(&mut msgs, BATCH).await > 0 {
        let flushing = msgs.iter().any(|m| matches!(m, Msg::Flush(_)));
        if msgs.len() < BATCH && !flushing {
            tokio::time::sleep(COALESCE).await;
            while msgs.len() < BATCH {
                match rx.try_recv() {
                    Ok(m) => msgs.push(m),
                    Err(_) => break,
                }
            }
        }
        for m in msgs.drain(..) {
            match m {
                Msg::Line(e) => match format {
                    AccessLogFormat::Json => write_line(&e, &mut buf),
                    AccessLogFormat::Text => text::write_line(&e, &mut buf),
                },
                Msg::Flush(ack) => acks.push(ack),
            }
        }
        let result = match out.write_all(&buf).await {
            Ok(()) => out.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            // Count every failure, log the first of a run so a full disk does not flood stderr.
            if write_errors.get() == 0 || write_errors.get().is_multiple_of(1000) {
                tracing::warn!(error = %e, "access log write failed; lines lost");
            }
            write_errors.inc();
        }
        buf.clear();
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
    let _ = out.shutdown().await;
}
