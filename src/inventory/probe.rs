//! `cutover inventory coverage --probe URL`: asks the new storefront for every URL the coverage
//! promises (plan targets, same-path URLs) and lists those that do not answer 2xx: a plan
//! target that 404s is not coverage. Bounded concurrency (a semaphore), a timeout per request,
//! redirects not followed (a target that redirects again is reported with its `Location`).

use super::error::ProbeError;
use crate::web_client::{self, AskError, WebClient};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// How a probe runs.
#[derive(Debug, Clone, Copy)]
pub struct ProbeOptions {
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Longest one request may take, body included.
    pub timeout: Duration,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            concurrency: 8,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why a URL failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeOutcome {
    /// Answered with this non-2xx status (and `Location`, if any).
    Status {
        /// The status.
        status: u16,
        /// Where a redirect points.
        location: Option<String>,
    },
    /// No answer within the timeout.
    Timeout,
    /// Connection or protocol error.
    Error(String),
}

impl std::fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeOutcome::Status {
                status,
                location: Some(l),
            } => write!(f, "{status} (Location: {l})"),
            ProbeOutcome::Status {
                status,
                location: None,
            } => write!(f, "{status}"),
            ProbeOutcome::Timeout => f.write_str("timed out"),
            ProbeOutcome::Error(e) => f.write_str(e),
        }
    }
}

/// A URL that did not answer 2xx.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProbeFailure {
    /// The URL as given (path or absolute URL).
    pub url: String,
    /// What happened.
    pub outcome: ProbeOutcome,
}

/// Result of a probe.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProbeReport {
    /// URLs requested.
    pub checked: usize,
    /// Those not answering 2xx, in the order given.
    pub failures: Vec<ProbeFailure>,
}

/// Progress after each answered URL: (done, total).
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Send + Sync);

/// Checks `base` is `http(s)://host[:port]` and returns it without a trailing slash.
pub fn probe_base(url: &str) -> Result<String, ProbeError> {
    web_client::base_url(url, false).map_err(|reason| ProbeError::BadBase {
        url: url.into(),
        reason: reason.into(),
    })
}

/// Requests every URL (paths are appended to `base`, absolute URLs are requested as they are)
/// with at most `opts.concurrency` in flight; calls `progress` after each.
pub async fn probe(
    base: &str,
    urls: &[String],
    opts: ProbeOptions,
    progress: Progress<'_>,
) -> Result<ProbeReport, ProbeError> {
    let base = probe_base(base)?;
    let client = web_client::client().map_err(ProbeError::Client)?;
    let limit = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let total = urls.len();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, url) in urls.iter().enumerate() {
        let full = if url.starts_with('/') {
            format!("{base}{url}")
        } else {
            url.clone()
        };
        let (client, limit) = (client.clone(), limit.clone());
        tasks.spawn(async move {
            // Never closed: the semaphore lives as long as the tasks.
            let _permit = limit.acquire_owned().await.ok();
            (i, check(&client, &full, opts.timeout).await)
        });
    }
    let mut failed: Vec<(usize, ProbeOutcome)> = Vec::new();
    let mut done = 0;
    // In completion order, so progress moves while a slow URL waits for its timeout.
    while let Some(joined) = tasks.join_next().await {
        done += 1;
        progress(done, total);
        match joined {
            Ok((_, None)) => {}
            Ok((i, Some(outcome))) => failed.push((i, outcome)),
            Err(e) => return Err(ProbeError::Client(format!("a probe task failed: {e}"))),
        }
    }
    failed.sort_by_key(|f| f.0);
    let failures = failed
        .into_iter()
        .map(|(i, outcome)| ProbeFailure {
            url: urls[i].clone(),
            outcome,
        })
        .collect();
    Ok(ProbeReport {
        checked: total,
        failures,
    })
}

/// `None` for a 2xx answer.
async fn check(client: &WebClient, url: &str, timeout: Duration) -> Option<ProbeOutcome> {
    match web_client::status_and_location(client, url, "cutover-inventory-probe", timeout).await {
        Err(AskError::Timeout) => Some(ProbeOutcome::Timeout),
        Err(AskError::Failed(e)) => Some(ProbeOutcome::Error(e)),
        Ok((s, _)) if s.is_success() => None,
        Ok((s, location)) => Some(ProbeOutcome::Status {
            status: s.as_u16(),
            location,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_must_be_scheme_and_host() {
        assert_eq!(
            probe_base("http://127.0.0.1:8082/").unwrap(),
            "http://127.0.0.1:8082"
        );
        assert_eq!(
            probe_base("https://new.example").unwrap(),
            "https://new.example"
        );
        for bad in ["new.example", "ftp://x", "http://x/shop", "not a url"] {
            let e = probe_base(bad).unwrap_err();
            assert!(
                e.to_string().starts_with(&format!("--probe {bad:?}")),
                "{e}"
            );
        }
    }

    #[test]
    fn outcomes_display_for_humans() {
        let s = ProbeOutcome::Status {
            status: 301,
            location: Some("/x".into()),
        };
        assert_eq!(s.to_string(), "301 (Location: /x)");
        assert_eq!(ProbeOutcome::Timeout.to_string(), "timed out");
    }
}
