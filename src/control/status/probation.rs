//! The redirect probation in `GET /admin/status` and `cutover status`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::redirects::probation::RedirectProbation;
use crate::values::time::{rfc3339_secs, when};

/// The redirect probation: how long permanent redirects still carry `max-age` after the
/// share reached 100%.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProbationInfo {
    /// `[redirect_probation] period`, seconds.
    pub period_seconds: u64,
    /// `[redirect_probation] max_age`, seconds.
    pub max_age_seconds: u64,
    /// Unix second the share reached 100% (`None`: below 100%).
    pub started_at: Option<u64>,
    /// [`Self::started_at`] as RFC 3339 UTC.
    pub started_at_rfc3339: Option<String>,
    /// Unix second the probation ends.
    pub ends_at: Option<u64>,
    /// [`Self::ends_at`] as RFC 3339 UTC.
    pub ends_at_rfc3339: Option<String>,
    /// Whether 301/308/410 carry `Cache-Control: max-age` now.
    pub in_force: bool,
}

impl ProbationInfo {
    /// The probation of the snapshot in force, at unix second `now`.
    pub fn new(p: &RedirectProbation, now: u64) -> Self {
        ProbationInfo {
            period_seconds: p.period.as_secs(),
            max_age_seconds: p.max_age.as_secs(),
            started_at: p.started_at,
            started_at_rfc3339: p.started_at.map(rfc3339_secs),
            ends_at: p.ends_at(),
            ends_at_rfc3339: p.ends_at().map(rfc3339_secs),
            in_force: p.in_force(now),
        }
    }

    /// The `cutover status` line, relative to `now`.
    pub fn line(&self, now: u64) -> Line<'_> {
        Line { info: self, now }
    }
}

/// [`ProbationInfo::line`].
pub struct Line<'a> {
    info: &'a ProbationInfo,
    now: u64,
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.info;
        let age = super::ago(p.max_age_seconds);
        match (p.started_at, p.ends_at) {
            (Some(start), Some(end)) if p.in_force => write!(
                f,
                "probation   until {}: 301/308 carry Cache-Control: max-age={} ({age}), so a rollback reaches browsers; 100% since {}",
                when(end, self.now),
                p.max_age_seconds,
                rfc3339_secs(start),
            ),
            (Some(start), Some(end)) => write!(
                f,
                "probation   over since {} (100% since {}): permanent redirects served as written",
                when(end, self.now),
                rfc3339_secs(start),
            ),
            _ => write!(
                f,
                "probation   starts when the share reaches 100%: then {} of max-age={} ({age}) on 301/308",
                super::ago(p.period_seconds),
                p.max_age_seconds,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn says_when_it_ends_or_ended_or_that_it_waits_for_100_percent() {
        let mut p = RedirectProbation::new(Duration::from_secs(86_400), Duration::from_secs(60));
        let waiting = ProbationInfo::new(&p, 1_000);
        assert!(waiting.line(1_000).to_string().contains("starts when"));
        p.started_at = Some(1_000);
        let running = ProbationInfo::new(&p, 2_000);
        assert!(running.in_force);
        assert_eq!(running.ends_at, Some(87_400));
        assert_eq!(
            running.ends_at_rfc3339.as_deref(),
            Some("1970-01-02T00:16:40Z")
        );
        let text = running.line(2_000).to_string();
        assert!(
            text.contains("until 1970-01-02T00:16:40Z (in 23h 43m)"),
            "{text}"
        );
        assert!(text.contains("max-age=60"), "{text}");
        let over = ProbationInfo::new(&p, 90_000);
        assert!(!over.in_force);
        assert!(
            over.line(90_000).to_string().contains("over since"),
            "{over:?}"
        );
    }
}
