//! Rollout notifications to a chat-style webhook, off the rollout's path.
//!
//! [`Notifier::notify`] never waits: events go through a bounded channel to one task that POSTs
//! them in order with a timeout and retries. When the channel is full (a hanging webhook, a burst)
//! the event is dropped and counted; the rollout is never held up by its news.

use crate::retry::Backoff;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::engine::Event;
use super::gate::Verdict;
use super::http_client::{client, read_body, HttpClient};
use super::plan::{percent, Webhook};

/// Backoff before the first retry; doubles per retry up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Counters of the notifier (export as `cutover_rollout_webhook_*_total`).
#[derive(Debug, Default)]
pub struct WebhookStats {
    sent: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    dropped: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookCounts {
    /// Events delivered (2xx).
    pub sent: u64,
    /// Events given up on after every attempt failed (or a 4xx other than 429).
    pub failed: u64,
    /// Attempts after the first.
    pub retries: u64,
    /// Events dropped because the channel was full.
    pub dropped: u64,
}

impl WebhookStats {
    /// The counters now.
    pub fn counts(&self) -> WebhookCounts {
        WebhookCounts {
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// Building the notifier failed.
#[derive(Debug, thiserror::Error)]
#[error("building the HTTP client for the rollout webhook {url}: {source}")]
pub struct WebhookError {
    /// Webhook URL.
    pub url: String,
    /// What rustls said.
    pub source: rustls::Error,
}

/// The handle the engine's caller keeps. Dropping every clone ends the task once it has sent
/// what was queued.
#[derive(Debug, Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Event>,
    stats: Arc<WebhookStats>,
}

impl Notifier {
    /// Starts the sending task (on the current tokio runtime) with room for `capacity` events.
    pub fn spawn(
        webhook: Webhook,
        capacity: usize,
    ) -> Result<(Notifier, JoinHandle<()>), WebhookError> {
        let client = client().map_err(|source| WebhookError {
            url: webhook.url.to_string(),
            source,
        })?;
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let stats = Arc::new(WebhookStats::default());
        let task = tokio::spawn(run(client, webhook, rx, stats.clone()));
        Ok((Notifier { tx, stats }, task))
    }

    /// Queues an event without waiting; `false` when it was dropped (channel full or task gone).
    pub fn notify(&self, event: Event) -> bool {
        match self.tx.try_send(event) {
            Ok(()) => true,
            Err(_) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// The counters.
    pub fn stats(&self) -> WebhookCounts {
        self.stats.counts()
    }
}

/// The JSON body: `text` for chat tools (Slack, Mattermost, Google Chat read it), the rest for
/// machines.
#[derive(Debug, Serialize)]
pub struct Payload<'a> {
    /// One line for humans.
    pub text: String,
    /// `advanced`, `rolled_back`, ...
    pub event: &'static str,
    /// Step number, 1-based.
    pub step: usize,
    /// Steps in the plan.
    pub steps: usize,
    /// Share on new in percent.
    pub share_percent: f64,
    /// Advise mode (nothing was changed).
    pub advise: bool,
    /// Verdicts with both sides' values.
    pub verdicts: &'a [Verdict],
}

/// Builds the body for an event.
pub fn payload(event: &Event) -> Payload<'_> {
    let prefix = if event.advise {
        "cutover rollout (advise only)"
    } else {
        "cutover rollout"
    };
    Payload {
        text: format!(
            "{prefix}: {} [share on new {}]",
            event.message,
            percent(event.share_bp)
        ),
        event: event.kind.as_str(),
        step: event.step,
        steps: event.steps,
        share_percent: f64::from(event.share_bp) / 100.0,
        advise: event.advise,
        verdicts: &event.verdicts,
    }
}

async fn run(
    client: HttpClient,
    webhook: Webhook,
    mut rx: mpsc::Receiver<Event>,
    stats: Arc<WebhookStats>,
) {
    while let Some(event) = rx.recv().await {
        let body = match serde_json::to_vec(&payload(&event)) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::warn!(error = %e, "rollout webhook: event not serializable");
                stats.failed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
        let mut attempt = 0u32;
        loop {
            match post(&client, &webhook, body.clone()).await {
                Ok(()) => {
                    stats.sent.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(Failure { message, retry }) => {
                    if !retry || attempt >= webhook.retries {
                        tracing::warn!(url = %webhook.url, attempts = attempt + 1, error = %message, "rollout webhook: giving up on an event");
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    tracing::debug!(url = %webhook.url, attempt = attempt + 1, error = %message, "rollout webhook: retrying");
                    attempt += 1;
                    stats.retries.fetch_add(1, Ordering::Relaxed);
                    backoff.wait().await;
                }
            }
        }
    }
}

struct Failure {
    message: String,
    retry: bool,
}

async fn post(client: &HttpClient, webhook: &Webhook, body: Bytes) -> Result<(), Failure> {
    let attempt = async {
        let req = http::Request::post(webhook.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| Failure {
                message: e.to_string(),
                retry: false,
            })?;
        let resp = client.request(req).await.map_err(|e| Failure {
            message: format!("POST failed: {e}"),
            retry: true,
        })?;
        let status = resp.status();
        // Read (a bounded amount of) the answer so the connection can be reused.
        let _ = read_body(resp.into_body(), 64 * 1024).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(Failure {
                message: format!("answered HTTP {}", status.as_u16()),
                retry: status.is_server_error() || status.as_u16() == 429,
            })
        }
    };
    match tokio::time::timeout(webhook.timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(Failure {
            message: format!("no answer within {}ms", webhook.timeout.as_millis()),
            retry: true,
        }),
    }
}
