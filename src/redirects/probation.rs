//! The probation of permanent redirects: how long after the split reached 100% a rollback must
//! still be able to reach browsers, and the one decision of which `Cache-Control` a redirect
//! answer carries (both the HTTP/1 front and the hyper path ask [`RedirectProbation::cache_control`]).
//!
//! Why: a browser keeps a 301/308 without `Cache-Control` in its disk cache with no expiry
//! (Chromium, Firefox, Safari all do) and follows it without asking again; `cutover shift 0`
//! or `?cutover=old` then never reaches that shopper. During probation a permanent answer says
//! `max-age=N` (default a day): browsers and CDNs ask again after N, so a rollback reaches
//! them by the next day, while search engines, which do not cache redirects by
//! `Cache-Control` but judge permanence by the status, already see the 301. After probation
//! the plan's statuses are served as written: the migration is settled and a browser may keep
//! them for good.
//!
//! The mark ("the share reached 100% at unix second S") is operator state, not config: it is
//! kept by the reloader (state file, fleet document) and set on each snapshot it builds;
//! [`next_mark`] is the rule.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use toml::Spanned;

use super::FULL_SHARE_BP;
use crate::values::HumanDuration;

/// Default probation: two weeks, long enough to see a full business cycle (two weekends, a
/// billing run) on the new storefront before browsers may keep its redirects for good.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(14 * 86_400);
/// Default `max-age` during probation: a day, so a rollback reaches every browser by the next
/// day while a shopper's repeat visits within a day still skip the extra round trip.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(86_400);

static NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// `[redirect_probation]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbationConfig {
    /// How long after the share reached 100% permanent redirects stay revocable; `"0s"`: no
    /// probation (301/308 as written as soon as the share is 100%).
    pub period: Option<Spanned<HumanDuration>>,
    /// The `Cache-Control: max-age` they carry meanwhile, whole seconds.
    pub max_age: Option<Spanned<HumanDuration>>,
}

/// The probation in force, as compiled into a snapshot.
#[derive(Debug, Clone)]
pub struct RedirectProbation {
    /// `[redirect_probation] period`.
    pub period: Duration,
    /// `[redirect_probation] max_age`.
    pub max_age: Duration,
    /// `max-age=N`, built once per snapshot so the request path never formats it.
    max_age_header: HeaderValue,
    /// Unix second the split's share reached 100% (`None`: below 100%).
    pub started_at: Option<u64>,
}

impl Default for RedirectProbation {
    fn default() -> Self {
        RedirectProbation::new(DEFAULT_PERIOD, DEFAULT_MAX_AGE)
    }
}

impl RedirectProbation {
    /// A probation of `period` during which permanent answers carry `max-age` (whole seconds;
    /// a fraction is dropped, config validation rejects one). Not started.
    pub fn new(period: Duration, max_age: Duration) -> Self {
        RedirectProbation {
            period,
            max_age,
            // Digits only: always a valid header value.
            max_age_header: HeaderValue::try_from(format!("max-age={}", max_age.as_secs()))
                .unwrap_or_else(|_| NO_STORE.clone()),
            started_at: None,
        }
    }

    /// Unix second the probation ends, when it started.
    pub fn ends_at(&self) -> Option<u64> {
        self.started_at
            .map(|s| s.saturating_add(self.period.as_secs()))
    }

    /// Whether permanent answers are revocable at unix second `now`.
    pub fn in_force(&self, now: u64) -> bool {
        self.ends_at().is_some_and(|end| now < end)
    }

    /// `Cache-Control` for a redirect-table answer of `status`. `held_back`: the table holds
    /// permanence back while the share is below 100% (`during_shift = "temporary"`), which a
    /// 410 cannot show in its status.
    ///
    /// - 302/303/307: `no-store`, a browser must ask again or a rollback could not reach it.
    /// - 301/308/410 during probation: `max-age=N`.
    /// - 410 while held back: `no-store`: a page removed on new may be live again on old after a
    ///   rollback, and a CDN caches a 410 by default (minutes at Cloudflare) even though browsers
    ///   without `Last-Modified` do not.
    /// - otherwise (after probation, or an `as_written` table below 100%): none of cutover's,
    ///   the plan's answer as written.
    ///
    /// Reads the clock only for a permanent answer during a started probation.
    pub fn cache_control(&self, status: StatusCode, held_back: bool) -> Option<&HeaderValue> {
        match status {
            StatusCode::FOUND | StatusCode::SEE_OTHER | StatusCode::TEMPORARY_REDIRECT => {
                Some(&NO_STORE)
            }
            StatusCode::GONE if held_back => Some(&NO_STORE),
            StatusCode::MOVED_PERMANENTLY | StatusCode::PERMANENT_REDIRECT | StatusCode::GONE
                if self.started_at.is_some() && self.in_force(unix_now()) =>
            {
                Some(&self.max_age_header)
            }
            _ => None,
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The mark after a change to `share_bp` at unix second `now`, given the mark before: below
/// 100% there is none; at 100% it is kept (the share was already full) or starts now. A share
/// of 100% written in the config file counts like one set by an operator: the first build that
/// sees it starts the probation, and the kept mark makes a restart continue it.
pub fn next_mark(before: Option<u64>, share_bp: u16, now: u64) -> Option<u64> {
    (share_bp >= FULL_SHARE_BP).then(|| before.unwrap_or(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(at: Option<u64>) -> RedirectProbation {
        let mut p = RedirectProbation::new(Duration::from_secs(3600), Duration::from_secs(60));
        p.started_at = at;
        p
    }

    fn cc(p: &RedirectProbation, status: u16, held_back: bool) -> Option<&str> {
        p.cache_control(StatusCode::from_u16(status).unwrap(), held_back)
            .map(|v| v.to_str().unwrap())
    }

    #[test]
    fn temporary_answers_are_no_store_whatever_the_probation() {
        for p in [started(None), started(Some(unix_now()))] {
            for s in [302, 303, 307] {
                assert_eq!(cc(&p, s, false), Some("no-store"), "{s}");
                assert_eq!(cc(&p, s, true), Some("no-store"), "{s}");
            }
        }
    }

    #[test]
    fn permanent_answers_carry_max_age_only_during_probation() {
        let during = started(Some(unix_now()));
        let after = started(Some(unix_now() - 7200));
        let none = started(None);
        for s in [301, 308, 410] {
            assert_eq!(cc(&during, s, false), Some("max-age=60"), "{s}");
            assert_eq!(
                cc(&after, s, false),
                None,
                "{s} after probation: as written"
            );
            assert_eq!(cc(&none, s, false), None, "{s} as_written below 100%");
        }
        assert_eq!(during.ends_at(), during.started_at.map(|s| s + 3600));
        assert_eq!(none.ends_at(), None);
    }

    #[test]
    fn a_gone_held_back_by_the_shift_is_no_store() {
        assert_eq!(cc(&started(None), 410, true), Some("no-store"));
        assert_eq!(cc(&started(None), 200, false), None);
    }

    #[test]
    fn a_zero_period_never_starts_a_probation_that_is_in_force() {
        let mut p = RedirectProbation::new(Duration::ZERO, DEFAULT_MAX_AGE);
        p.started_at = Some(unix_now());
        assert_eq!(cc(&p, 301, false), None);
        assert_eq!(
            RedirectProbation::default()
                .max_age_header
                .to_str()
                .unwrap(),
            "max-age=86400"
        );
    }

    #[test]
    fn the_mark_starts_at_100_percent_is_kept_there_and_cleared_below() {
        assert_eq!(next_mark(None, 9_999, 50), None);
        assert_eq!(next_mark(None, 10_000, 50), Some(50), "reached now");
        assert_eq!(next_mark(Some(10), 10_000, 50), Some(10), "kept");
        assert_eq!(next_mark(Some(10), 0, 50), None, "cleared by a rollback");
        assert_eq!(next_mark(None, 10_000, 70), Some(70), "a new probation");
    }
}
