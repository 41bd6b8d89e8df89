//! Metrics of the HTTPS listeners: certificate expiry, failed handshakes, certificate reloads.

use std::time::SystemTime;

use prometheus::{GaugeVec, IntCounter, IntCounterVec, Opts, Registry};

use super::names::{
    label, CERTIFICATE_LABEL, TLS_CERTIFICATE_EXPIRY_SECONDS, TLS_HANDSHAKE_ERRORS_TOTAL,
    TLS_RELOADS_TOTAL,
};
use super::{reg, MetricsError};

/// TLS metrics, registered in the process registry next to the others.
#[derive(Clone)]
pub struct TlsMetrics {
    expiry: GaugeVec,
    /// Failed client handshakes.
    pub handshake_errors: IntCounter,
    reloads: IntCounterVec,
}

impl TlsMetrics {
    /// Registers the TLS metrics; call once per process.
    pub fn register(r: &Registry) -> Result<Self, MetricsError> {
        let reloads = reg(
            r,
            TLS_RELOADS_TOTAL,
            IntCounterVec::new(
                Opts::new(
                    TLS_RELOADS_TOTAL,
                    "Certificate reloads by result; a rejected one keeps the old certificate.",
                ),
                &[label::RESULT],
            ),
        )?;
        for result in ["applied", "rejected"] {
            reloads.with_label_values(&[result]);
        }
        Ok(TlsMetrics {
            expiry: reg(
                r,
                TLS_CERTIFICATE_EXPIRY_SECONDS,
                GaugeVec::new(
                    Opts::new(
                        TLS_CERTIFICATE_EXPIRY_SECONDS,
                        "Seconds until the certificate expires; negative once expired.",
                    ),
                    &[CERTIFICATE_LABEL],
                ),
            )?,
            handshake_errors: reg(
                r,
                TLS_HANDSHAKE_ERRORS_TOTAL,
                IntCounter::new(
                    TLS_HANDSHAKE_ERRORS_TOTAL,
                    "Failed TLS handshakes with clients.",
                ),
            )?,
            reloads,
        })
    }

    /// Sets the expiry gauge of every certificate served now.
    pub fn set_expiries(&self, expiries: &[(String, SystemTime)]) {
        let now = SystemTime::now();
        self.expiry.reset();
        for (label, not_after) in expiries {
            let secs = match not_after.duration_since(now) {
                Ok(d) => d.as_secs_f64(),
                Err(e) => -e.duration().as_secs_f64(),
            };
            self.expiry.with_label_values(&[label.as_str()]).set(secs);
        }
    }

    /// Counts a certificate reload.
    pub fn reloaded(&self, applied: bool) {
        self.reloads
            .with_label_values(&[if applied { "applied" } else { "rejected" }])
            .inc();
    }
}
