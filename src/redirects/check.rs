//! `cutover redirects check FILE [--config FILE] [--probe URL]`: validates a plan and prints the
//! report the way `nginx -t` does; with `--probe` it also asks the new storefront for every
//! target, the pre-cutover audit nobody else offers: a redirect to a 404 is a lost page.

use super::{load, LoadContext, TableConfig};
use crate::web_client::{self, AskError, WebClient};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// How long one probe may take, body included.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

// Each variant's `#[error]` text says what it and its fields mean.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("writing the report: {0}")]
    Io(#[from] std::io::Error),
    #[error("--probe {url:?}: {reason}")]
    BadProbeUrl { url: String, reason: String },
    #[error("setting up the probe client: {0}")]
    Client(String),
    #[error("loading {file}: the loader stopped unexpectedly: {reason}")]
    Internal { file: String, reason: String },
}

/// Validates `file` with the options of `tables_cfg` (defaults when `None`; its `file` is
/// replaced by `file`) and, with `probe` (the new storefront's base URL), requests every
/// distinct target with at most `concurrency` requests in flight. Returns whether everything
/// passed. Progress goes to stderr, the report to `out`.
pub async fn run(
    file: &Path,
    tables_cfg: Option<&TableConfig>,
    probe: Option<&str>,
    concurrency: usize,
    out: &mut impl Write,
) -> Result<bool, CheckError> {
    let shown = file.display().to_string();
    let mut cfg = match tables_cfg {
        Some(c) => c.clone(),
        None => {
            let stem = file
                .file_stem()
                .map_or("redirects".into(), |s| s.to_string_lossy().into_owned());
            TableConfig::with_defaults(stem, file)
        }
    };
    cfg.file = file.to_path_buf();
    let base = probe.map(probe_base).transpose()?;
    let loaded =
        tokio::task::spawn_blocking(move || load(&cfg, &LoadContext::standalone(Path::new(""))))
            .await
            .map_err(|e| CheckError::Internal {
                file: shown.clone(),
                reason: e.to_string(),
            })?;
    let loaded = match loaded {
        Ok(l) => l,
        Err(errs) => {
            writeln!(out, "{errs}")?;
            writeln!(
                out,
                "cutover: redirect table {shown} test failed ({} errors)",
                errs.count()
            )?;
            return Ok(false);
        }
    };
    writeln!(out, "{}", loaded.report)?;
    writeln!(out, "cutover: the redirect table {shown} syntax is ok")?;
    let mut ok = true;
    if let Some(base) = base {
        ok = probe_targets(&loaded.table, &base, concurrency.max(1), out).await?;
    }
    if ok {
        writeln!(out, "cutover: redirect table {shown} test is successful")?;
    } else {
        writeln!(out, "cutover: redirect table {shown} test failed")?;
    }
    Ok(ok)
}

fn probe_base(url: &str) -> Result<String, CheckError> {
    crate::web_client::base_url(url, true).map_err(|reason| CheckError::BadProbeUrl {
        url: url.into(),
        reason: reason.into(),
    })
}

/// Requests every distinct non-splat target; lists those not answering 2xx.
async fn probe_targets(
    table: &super::RedirectTable,
    base: &str,
    concurrency: usize,
    out: &mut impl Write,
) -> Result<bool, CheckError> {
    let mut targets: HashMap<&str, u32> = HashMap::new();
    let mut splats = 0usize;
    for i in 0..table.len() as u32 {
        if table.status(i) == 410 {
            continue;
        }
        if table.is_splat(i) {
            splats += 1;
            continue;
        }
        targets.entry(table.target(i)).or_insert(table.line(i));
    }
    let mut targets: Vec<(&str, u32)> = targets.into_iter().collect();
    targets.sort_by_key(|t| t.1);
    let total = targets.len();
    let client = crate::web_client::client().map_err(CheckError::Client)?;
    let mut done = 0usize;
    let mut failures: Vec<(u32, &str, String)> = Vec::new();
    let mut results = futures_util::stream::iter(targets.into_iter().map(|(target, line)| {
        let url = if target.starts_with('/') {
            format!("{base}{target}")
        } else {
            target.to_string()
        };
        let client = client.clone();
        async move { (line, target, probe_one(&client, &url).await) }
    }))
    .buffer_unordered(concurrency);
    while let Some((line, target, result)) = results.next().await {
        done += 1;
        if done.is_multiple_of(50) || done == total {
            eprint!("\rprobing targets: {done}/{total}");
        }
        if let Err(why) = result {
            failures.push((line, target, why));
        }
    }
    if total > 0 {
        eprintln!();
    }
    failures.sort();
    writeln!(
        out,
        "probe {base}: {total} targets, {} answered 2xx, {} did not",
        total - failures.len(),
        failures.len()
    )?;
    if splats > 0 {
        writeln!(
            out,
            "probe: {splats} splat targets (/*) not probed: they stand for many pages"
        )?;
    }
    for (line, target, why) in &failures {
        writeln!(out, "line {line}: {target} -> {why}")?;
    }
    Ok(failures.is_empty())
}

/// `Ok` for a 2xx answer; otherwise the status (and where a redirect goes) or the error.
async fn probe_one(client: &WebClient, url: &str) -> Result<(), String> {
    let answer =
        web_client::status_and_location(client, url, "cutover-redirects-check", PROBE_TIMEOUT);
    match answer.await {
        Ok((status, _)) if status.is_success() => Ok(()),
        Ok((status, Some(loc))) => Err(format!("{} (Location: {loc})", status.as_u16())),
        Ok((status, None)) => Err(status.as_u16().to_string()),
        Err(AskError::Timeout) => Err("timed out".into()),
        Err(AskError::Failed(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use std::convert::Infallible;

    /// A storefront on 127.0.0.1:0 that knows `/ok1` and `/ok2` and answers 404 otherwise.
    async fn storefront() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                        let status = match req.uri().path() {
                            "/ok1" | "/ok2" => 200,
                            _ => 404,
                        };
                        let body = http_body_util::Full::new(Bytes::from_static(b"page"));
                        Ok::<_, Infallible>(
                            http::Response::builder().status(status).body(body).unwrap(),
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        format!("http://{addr}")
    }

    fn plan(dir: &Path, csv: &str) -> std::path::PathBuf {
        let p = dir.join("plan.csv");
        std::fs::write(&p, csv).unwrap();
        p
    }

    const PLAN: &str = "old_url,new_url,status\n/a,/ok1\n/b,/ok2\n/b2,/ok2\n/c,/missing\n/d,,410\n/blog/*,/news/*\n";

    #[tokio::test]
    async fn probe_lists_targets_not_answering_2xx() {
        let dir = tempfile::tempdir().unwrap();
        let file = plan(dir.path(), PLAN);
        let base = storefront().await;
        let mut out = Vec::new();
        let ok = run(&file, None, Some(&format!("{base}/")), 2, &mut out)
            .await
            .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(!ok, "{out}");
        assert!(
            out.contains("3 targets, 2 answered 2xx, 1 did not"),
            "{out}"
        );
        assert!(out.contains("line 5: /missing -> 404"), "{out}");
        assert!(out.contains("1 splat targets"), "{out}");
        assert!(out.ends_with("test failed\n"), "{out}");
    }

    #[tokio::test]
    async fn check_without_probe_is_like_nginx_t() {
        let dir = tempfile::tempdir().unwrap();
        let file = plan(dir.path(), PLAN);
        let mut out = Vec::new();
        assert!(run(&file, None, None, 4, &mut out).await.unwrap());
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("6 entries (5 exact, 1 prefix, 0 per-host, 1 gone)"),
            "{out}"
        );
        assert!(
            out.contains("syntax is ok") && out.contains("test is successful"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn check_reports_every_error_and_fails() {
        let dir = tempfile::tempdir().unwrap();
        let file = plan(dir.path(), "old_url,new_url\n/a,/b\n/b,/a\nnope,/x\n");
        let mut cfg = TableConfig::with_defaults("main", "ignored.csv");
        cfg.case_sensitive = true;
        let mut out = Vec::new();
        assert!(!run(&file, Some(&cfg), None, 4, &mut out).await.unwrap());
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("plan.csv:4: old_url \"nope\""), "{out}");
        assert!(out.contains("plan.csv:2: redirect loop"), "{out}");
        assert!(out.contains("test failed (2 errors)"), "{out}");
    }

    #[tokio::test]
    async fn bad_probe_url_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = plan(dir.path(), PLAN);
        let err = run(&file, None, Some("ftp://x"), 1, &mut Vec::new())
            .await
            .unwrap_err();
        assert!(matches!(err, CheckError::BadProbeUrl { .. }));
    }
}
