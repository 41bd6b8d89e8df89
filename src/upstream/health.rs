//! Cheap per-storefront health for `/admin/status`: when the storefront last answered and when and
//! how it last failed. Counts come from the metrics; this adds only the timestamps Prometheus
//! counters cannot give.
//!
//! Recording is a relaxed load and, at most once per second per storefront, a store: requests on
//! every core do not fight over a cache line for a timestamp that only needs second precision.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::upstream::UpstreamErrorKind;

/// Timestamps of one storefront's last success and last error (unix seconds, 0 = never).
#[derive(Debug, Default)]
pub struct Health {
    last_success: AtomicU64,
    last_error: AtomicU64,
    last_error_kind: AtomicU8,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn stamp(cell: &AtomicU64, t: u64) {
    if cell.load(Ordering::Relaxed) != t {
        cell.store(t, Ordering::Relaxed);
    }
}

impl Health {
    /// The storefront sent response headers.
    pub fn success(&self) {
        stamp(&self.last_success, now());
    }

    /// An exchange with the storefront failed.
    pub fn error(&self, kind: UpstreamErrorKind) {
        self.last_error_kind.store(kind as u8, Ordering::Relaxed);
        stamp(&self.last_error, now());
    }

    /// Unix second of the last response headers, if any.
    pub fn last_success(&self) -> Option<u64> {
        Some(self.last_success.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }

    /// Unix second and kind of the last failure, if any.
    pub fn last_error(&self) -> Option<(u64, UpstreamErrorKind)> {
        let t = self.last_error.load(Ordering::Relaxed);
        let k = self.last_error_kind.load(Ordering::Relaxed) as usize;
        (t > 0).then(|| {
            (
                t,
                UpstreamErrorKind::ALL[k.min(UpstreamErrorKind::ALL.len() - 1)],
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_last_success_and_error() {
        let h = Health::default();
        assert_eq!(h.last_success(), None);
        assert_eq!(h.last_error(), None);
        h.success();
        h.error(UpstreamErrorKind::Timeout);
        assert!(h.last_success().is_some());
        assert_eq!(
            h.last_error().map(|e| e.1),
            Some(UpstreamErrorKind::Timeout)
        );
    }
}
