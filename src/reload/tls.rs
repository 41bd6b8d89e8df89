//! Certificates follow the config: after every applied reload the HTTPS listeners re-read
//! (or, when their settings changed, rebuild) their certificates, off the reload path.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::Reloader;
use crate::metrics::TlsMetrics;
use crate::state::Snapshot;
use crate::tls::TlsListener;

impl Reloader {
    /// Hands over the HTTPS listeners so certificate changes apply with every reload.
    pub fn set_tls(
        self: &Arc<Self>,
        listeners: Vec<(usize, Arc<TlsListener>)>,
        metrics: TlsMetrics,
    ) {
        if listeners.is_empty() {
            return;
        }
        if let Ok(mut t) = self.tls.lock() {
            *t = (listeners, Some(metrics.clone()));
        }
        // Expiry is a countdown: refresh the gauge even when nothing is reloaded.
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(me) = me.upgrade() else { return };
                let state = me.tls.lock().map(|t| t.clone()).ok();
                if let Some((listeners, Some(m))) = state {
                    refresh_expiry(&listeners, &m);
                }
            }
        });
    }

    /// Swaps certificates after a config was applied: a changed `tls` section is rebuilt, an
    /// unchanged one re-reads its files (a renewed certificate). New handshakes use the new
    /// certificate; open connections keep theirs. Runs off the reload path.
    pub(super) fn spawn_tls_reload(&self, previous: Arc<Snapshot>, current: Arc<Snapshot>) {
        let Ok((listeners, Some(metrics))) = self.tls.lock().map(|t| t.clone()) else {
            return;
        };
        tokio::spawn(reload_tls(listeners, metrics, previous, current));
    }
}

fn refresh_expiry(listeners: &[(usize, Arc<TlsListener>)], metrics: &TlsMetrics) {
    let all: Vec<_> = listeners.iter().flat_map(|(_, l)| l.expiries()).collect();
    metrics.set_expiries(&all);
}

async fn reload_tls(
    listeners: Vec<(usize, Arc<TlsListener>)>,
    metrics: TlsMetrics,
    previous: Arc<Snapshot>,
    current: Arc<Snapshot>,
) {
    let base = current
        .source
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    for (index, listener) in &listeners {
        let (Some(old), Some(new)) = (
            previous.listeners.get(*index).and_then(|l| l.tls.clone()),
            current.listeners.get(*index).and_then(|l| l.tls.clone()),
        ) else {
            continue;
        };
        let base = base.clone();
        let l = Arc::clone(listener);
        let result = tokio::task::spawn_blocking(move || {
            if old == new {
                l.reload()
            } else {
                l.reconfigure(&new, &base)
            }
        })
        .await;
        match result {
            Ok(Ok(_)) => metrics.reloaded(true),
            Ok(Err(e)) => {
                metrics.reloaded(false);
                tracing::error!(listener = index, error = %e, "certificates rejected; the previous ones keep serving");
            }
            Err(e) => {
                tracing::error!(listener = index, error = %e, "certificate reload task failed")
            }
        }
    }
    refresh_expiry(&listeners, &metrics);
}
