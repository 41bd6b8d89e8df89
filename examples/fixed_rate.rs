//! A constant-rate HTTP/1.1 load generator: the latency half of `benches/matrix.sh`.
//!
//! `cargo run --release --example fixed_rate -- 127.0.0.1:8080 /path RATE SECONDS CONNECTIONS`
//!
//! Why not wrk: wrk sends the next request when the previous answer arrives (a closed loop), so
//! a stall delays the requests that would have measured it and the percentiles look better than
//! what shoppers see (coordinated omission). Here request `i` is due at `start + i / RATE`,
//! whatever happened before, and its latency is counted from that due time: a request that had
//! to wait for a busy connection carries the wait. wrk2 does the same but is not packaged.
//!
//! `CONNECTIONS` keep-alive connections share the schedule round-robin (each takes every
//! `CONNECTIONS`-th due time). They are all opened before the schedule starts: opened lazily at
//! their first due time, the set-up of 64 connections (and a single-threaded generator's time
//! spent on it) landed inside the measured window as latency of the proxy under test. Responses must carry `Content-Length`. Prints one line:
//! `sent ok errors p50_us p99_us p999_us max_us achieved_rps`. Bounded by `SECONDS` plus 5 s.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| {
        eprintln!("usage: fixed_rate ADDR PATH RATE SECONDS CONNECTIONS ({what} missing or bad)");
        std::process::exit(2)
    })
}

/// Reads one response (head + Content-Length body) from `s`, keeping leftovers in `buf`.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).unwrap_or("");
            let ok = head.starts_with("HTTP/1.1 2") || head.starts_with("HTTP/1.1 3");
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            let total = end + 4 + len;
            while buf.len() < total {
                let mut chunk = [0u8; 16 * 1024];
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..total);
            return Ok(ok);
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One connection's share of the schedule; returns latencies (µs) and the error count.
#[allow(clippy::too_many_arguments)]
async fn worker(
    addr: String,
    mut conn: Option<TcpStream>,
    request: Vec<u8>,
    start: Instant,
    first: u64,
    step: Duration,
    every: u64,
    end: Instant,
) -> (Vec<u32>, u64) {
    let mut lat = Vec::new();
    let mut errors = 0u64;
    let mut buf = Vec::new();
    let mut i = first;
    loop {
        let due = start + step * (i as u32);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        if conn.is_none() {
            match TcpStream::connect(&addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    conn = Some(s);
                    buf.clear();
                }
                Err(_) => {
                    errors += 1;
                    i += every;
                    continue;
                }
            }
        }
        let s = conn.as_mut().expect("connected above");
        let sent = async {
            s.write_all(&request).await?;
            read_response(s, &mut buf).await
        };
        match tokio::time::timeout(Duration::from_secs(5), sent).await {
            Ok(Ok(true)) => lat.push(due.elapsed().as_micros().min(u32::MAX as u128) as u32),
            _ => {
                errors += 1;
                conn = None;
            }
        }
        i += every;
    }
    (lat, errors)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr: String = arg(&args, 1, "ADDR");
    let path: String = arg(&args, 2, "PATH");
    let rate: f64 = arg(&args, 3, "RATE");
    let seconds: f64 = arg(&args, 4, "SECONDS");
    let conns: u64 = arg(&args, 5, "CONNECTIONS");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: fixed_rate\r\n\r\n")
        .into_bytes();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (mut lat, errors, elapsed) = rt.block_on(async move {
        let step = Duration::from_secs_f64(1.0 / rate);
        // Every connection is open before the first request is due (one that fails to open is
        // retried at its first due time, and counted as an error if it fails again).
        let mut opened = Vec::new();
        for _ in 0..conns {
            let s = TcpStream::connect(&addr).await.ok();
            if let Some(s) = &s {
                let _ = s.set_nodelay(true);
            }
            opened.push(s);
        }
        let start = Instant::now() + Duration::from_millis(50);
        let end = start + Duration::from_secs_f64(seconds);
        let tasks: Vec<_> = opened
            .into_iter()
            .zip(0..conns)
            .map(|(conn, c)| {
                tokio::spawn(worker(
                    addr.clone(),
                    conn,
                    request.clone(),
                    start,
                    c,
                    step,
                    conns,
                    end,
                ))
            })
            .collect();
        let mut lat = Vec::new();
        let mut errors = 0;
        for t in tasks {
            if let Ok(Ok((l, e))) =
                tokio::time::timeout(Duration::from_secs_f64(seconds + 5.0), t).await
            {
                lat.extend(l);
                errors += e;
            }
        }
        (lat, errors, start.elapsed())
    });
    lat.sort_unstable();
    let pct = |p: f64| -> u32 {
        if lat.is_empty() {
            return 0;
        }
        lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)]
    };
    println!(
        "{} {} {} {} {} {} {} {:.0}",
        lat.len() as u64 + errors,
        lat.len(),
        errors,
        pct(0.50),
        pct(0.99),
        pct(0.999),
        lat.last().copied().unwrap_or(0),
        lat.len() as f64 / elapsed.as_secs_f64()
    );
}
