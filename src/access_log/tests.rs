use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, UNIX_EPOCH};

use tokio::io::AsyncReadExt;

use super::*;

fn entry(i: u64) -> AccessEntry {
    AccessEntry {
        time: UNIX_EPOCH + Duration::from_millis(1_735_689_599_123),
        request_id: Some(HeaderValue::from_str(&format!("req-{i}")).unwrap()),
        method: Method::GET,
        host: Some(HeaderValue::from_static("shop.example")),
        uri: "/products/shoe?email=a%40b.c".parse().unwrap(),
        status: StatusCode::OK,
        storefront: Some(Arc::from("new")),
        route: Some(Arc::from("default")),
        reason: Some(Reason::Split),
        upstream: Some(Duration::from_micros(12_345)),
        total: Duration::from_micros(20_001),
        bytes_sent: 5120,
        client_ip: Some("203.0.113.9".parse().unwrap()),
    }
}

/// A writer that never accepts a byte: stands in for a stalled disk or a blocked stdout pipe.
struct Stalled;

impl AsyncWrite for Stalled {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Pending
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Pending
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}

#[tokio::test]
async fn lines_are_json_with_every_field() {
    let metrics = Metrics::new();
    let (writer, mut reader) = tokio::io::duplex(1 << 20);
    let (log, task) = AccessLog::with_writer(writer, 16, &metrics);
    log.log(entry(1));
    let mut redirect = entry(2);
    redirect.status = StatusCode::MOVED_PERMANENTLY;
    redirect.storefront = None;
    redirect.upstream = None;
    redirect.reason = Some(Reason::Redirect);
    redirect.host = Some(HeaderValue::from_bytes(b"\xffbad").unwrap());
    log.log(redirect);
    drop(log);
    task.await.unwrap();
    let mut text = String::new();
    reader.read_to_string(&mut text).await.unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2);
    let a = &lines[0];
    assert_eq!(a["time"], "2024-12-31T23:59:59.123Z");
    assert_eq!(a["request_id"], "req-1");
    assert_eq!(a["method"], "GET");
    assert_eq!(a["host"], "shop.example");
    assert_eq!(
        a["path"], "/products/shoe",
        "query strings are never logged"
    );
    assert_eq!(a["status"], 200);
    assert_eq!(a["storefront"], "new");
    assert_eq!(a["route"], "default");
    assert_eq!(a["reason"], "split");
    assert_eq!(a["upstream_ms"], 12.345);
    assert_eq!(a["total_ms"], 20.001);
    assert_eq!(a["bytes_sent"], 5120);
    assert_eq!(a["client_ip"], "203.0.113.9");
    assert_eq!(a.as_object().unwrap().len(), 13);
    let b = &lines[1];
    assert_eq!(b["status"], 301);
    assert_eq!(b["reason"], "redirect");
    assert!(b["storefront"].is_null() && b["upstream_ms"].is_null());
    assert_eq!(b["host"], "<non-utf8>");
}

#[tokio::test]
async fn flush_writes_what_is_queued_without_closing_the_log() {
    let metrics = Metrics::new();
    let (writer, mut reader) = tokio::io::duplex(1 << 20);
    let (log, task) = AccessLog::with_writer(writer, 16, &metrics);
    log.log(entry(1));
    log.log(entry(2));
    tokio::time::timeout(Duration::from_secs(5), log.flush())
        .await
        .expect("flush answers");
    let mut got = vec![0u8; 1 << 16];
    let n = reader.read(&mut got).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&got[..n]).lines().count(), 2);
    // Still logging after a flush.
    log.log(entry(3));
    drop(log);
    task.await.unwrap();
    let mut rest = String::new();
    reader.read_to_string(&mut rest).await.unwrap();
    assert_eq!(rest.lines().count(), 1);
    AccessLog::disabled().flush().await;
}

#[tokio::test]
async fn full_buffer_drops_and_counts_without_blocking() {
    let metrics = Metrics::new();
    let (log, task) = AccessLog::with_writer(Stalled, 4, &metrics);
    // Let the writer take a first batch and wedge in write_all, as a stalled disk would.
    log.log(entry(0));
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let start = Instant::now();
    for i in 1..=1000 {
        log.log(entry(i));
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "logging blocked for {took:?}"
    );
    // The wedged batch holds entry 0; the channel holds 4 more; the other 996 are dropped.
    assert_eq!(metrics.access_log_dropped().get(), 996);
    task.abort();
}

#[tokio::test]
async fn appends_to_a_file_and_disabled_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    std::fs::write(&path, "earlier line\n").unwrap();
    let metrics = Metrics::new();
    let cfg: AccessLogConfig = toml::from_str(&format!(
        "enabled = true\npath = {:?}\nbuffer = 8",
        path.display().to_string()
    ))
    .unwrap();
    let (log, task) = AccessLog::start(&cfg, &metrics).unwrap();
    for i in 0..20 {
        log.log(entry(i));
    }
    drop(log);
    task.unwrap().await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("earlier line\n"));
    // Dropped entries plus written lines account for every request.
    let written = text.lines().count() as u64 - 1;
    assert_eq!(written + metrics.access_log_dropped().get(), 20);
    assert!(written >= 8);

    let (off, task) = AccessLog::start(&AccessLogConfig::default(), &metrics).unwrap();
    assert!(!off.is_enabled() && task.is_none());
    off.log(entry(0));
}

#[test]
fn config_parsing_and_validation() {
    let cfg: AccessLogConfig = toml::from_str("enabled = true").unwrap();
    assert_eq!(cfg.buffer, DEFAULT_BUFFER);
    assert_eq!(cfg.file(), None);
    let cfg: AccessLogConfig = toml::from_str("enabled = true\npath = \"-\"").unwrap();
    assert_eq!(cfg.file(), None, "\"-\" means stdout");
    assert!(toml::from_str::<AccessLogConfig>("enabled = true\nbufer = 3").is_err());
    let zero: AccessLogConfig = toml::from_str("buffer = 0").unwrap();
    assert!(matches!(zero.validate(), Err(AccessLogError::Buffer(0))));
    let err = AccessLog::start(
        &AccessLogConfig {
            enabled: true,
            path: Some("/nonexistent-dir/x.log".into()),
            buffer: 1,
            format: AccessLogFormat::Json,
        },
        &Metrics::new(),
    )
    .map(|_| ())
    .expect_err("missing directory is an error");
    assert!(err.to_string().contains("/nonexistent-dir/x.log"), "{err}");
}

#[tokio::test]
async fn text_lines_read_like_nginx_and_escape_what_came_from_the_request() {
    let metrics = Metrics::new();
    let (writer, mut reader) = tokio::io::duplex(1 << 20);
    let (log, task) = AccessLog::with_writer_as(writer, 16, &metrics, AccessLogFormat::Text);
    log.log(entry(1));
    let mut local = entry(2);
    local.storefront = None;
    local.status = StatusCode::MOVED_PERMANENTLY;
    local.host = Some(HeaderValue::from_bytes(b"evil\tshop .example").unwrap());
    log.log(local);
    drop(log);
    task.await.unwrap();
    let mut text = String::new();
    reader.read_to_string(&mut text).await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "2024-12-31T23:59:59.123Z 203.0.113.9 GET shop.example/products/shoe 200 new (split) 20.001 ms 5120 B id=req-1"
    );
    assert!(
        !lines[0].contains("email"),
        "query strings are never logged"
    );
    assert!(lines[1].contains(" 301 cutover "), "{}", lines[1]);
    assert!(
        !lines[1].contains('\t') && lines[1].contains(" evil\\u{9}shop\\u{20}.example/"),
        "control bytes are escaped: {}",
        lines[1]
    );
    let cfg: AccessLogConfig = toml::from_str("format = \"text\"").unwrap();
    assert_eq!(cfg.format, AccessLogFormat::Text);
    assert!(toml::from_str::<AccessLogConfig>("format = \"xml\"").is_err());
}
