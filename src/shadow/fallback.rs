//! The 404 fallback policy: while the share moves, an old page the new store does not have yet
//! must not become a 404 for a shopper.
//!
//! Pure decisions, so the proxy's fallback path is a few lines around them: [`should_ask_old`]
//! before reading new's body (new's 404 body is never streamed before the decision), and
//! [`outcome`] after old answered. [`FallbackUrls`] keeps the URLs that fell back, most frequent
//! first, in bounded memory: the pages the new store still lacks (and, later, input for the
//! inventory's coverage report).

use std::sync::Mutex;

use http::Method;
use serde::Serialize;

use super::topk::{Hits, TopK};

/// What became of a request on a fallback route. A fixed set: it labels
/// `cutover_fallback_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackResult {
    /// Old had the page; the shopper got old's answer (`x-cutover-storefront: old`, reason
    /// `fallback`).
    Served,
    /// Old answered with a fallback status too; the shopper got new's original answer.
    Still404,
    /// Old failed (down, timeout, garbage, 5xx); the shopper got new's original answer.
    OldError,
    /// New's status was a fallback status but the request may not be replayed (a method other than
    /// GET/HEAD, or a request body).
    NotEligible,
}

impl FallbackResult {
    /// Every result, in label order.
    pub const ALL: [FallbackResult; 4] = [
        Self::Served,
        Self::Still404,
        Self::OldError,
        Self::NotEligible,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Served => "served",
            Self::Still404 => "still_404",
            Self::OldError => "old_error",
            Self::NotEligible => "not_eligible",
        }
    }
}

/// Whether new's answer leads to asking old.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackDecision {
    /// New's status is not a fallback status: serve new's answer (nothing to count).
    Serve,
    /// Ask old the same request.
    AskOld,
    /// A fallback status, but replaying is unsafe: serve new's answer, count `not_eligible`.
    NotEligible,
}

/// The statuses that trigger the fallback when none are configured.
pub const DEFAULT_STATUSES: [u16; 1] = [404];

/// Decides from new's answer. Only GET and HEAD without a body are replayed: the shopper's request
/// was already sent to new, and repeating anything else could repeat its effect (an order, a
/// payment); a body could also not be read twice without buffering it.
pub fn should_ask_old(
    method: &Method,
    has_body: bool,
    new_status: u16,
    statuses: &[u16],
) -> FallbackDecision {
    if !statuses.contains(&new_status) {
        return FallbackDecision::Serve;
    }
    if (method == Method::GET || method == Method::HEAD) && !has_body {
        FallbackDecision::AskOld
    } else {
        FallbackDecision::NotEligible
    }
}

/// What old's answer means: `Some(status)` when old answered, `None` when asking it failed.
/// Only [`FallbackResult::Served`] serves old's answer; anything else serves new's original one.
pub fn outcome(old_status: Option<u16>, statuses: &[u16]) -> FallbackResult {
    match old_status {
        None => FallbackResult::OldError,
        // A server error from old is no better than new's 404 and would hide that new lacks the page.
        Some(s) if s >= 500 => FallbackResult::OldError,
        Some(s) if statuses.contains(&s) => FallbackResult::Still404,
        Some(_) => FallbackResult::Served,
    }
}

/// The URLs that fell back (old served what new lacks), most frequent first, bounded.
#[derive(Debug)]
pub struct FallbackUrls {
    top: Mutex<TopK>,
}

impl FallbackUrls {
    /// Keeps at most `capacity` URLs.
    pub fn new(capacity: usize) -> Self {
        Self {
            top: Mutex::new(TopK::new(capacity)),
        }
    }

    /// Counts one fallback of `url` (call for [`FallbackResult::Served`], after the answer is on
    /// its way; the lock is held for a short scan of at most `capacity` keys, never across I/O).
    pub fn record(&self, url: &str) {
        self.lock().add(url);
    }

    /// The URLs by descending hits.
    pub fn top(&self) -> Vec<Hits> {
        self.lock().top()
    }

    /// Forgets every URL.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TopK> {
        // A panic while counting cannot leave the table inconsistent in a way that matters.
        self.top.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_old_only_for_a_fallback_status_on_a_safe_bodiless_request() {
        let s = &DEFAULT_STATUSES;
        use FallbackDecision::*;
        assert_eq!(should_ask_old(&Method::GET, false, 404, s), AskOld);
        assert_eq!(should_ask_old(&Method::HEAD, false, 404, s), AskOld);
        assert_eq!(should_ask_old(&Method::GET, false, 200, s), Serve);
        assert_eq!(should_ask_old(&Method::GET, false, 410, s), Serve);
        assert_eq!(should_ask_old(&Method::POST, false, 404, s), NotEligible);
        assert_eq!(should_ask_old(&Method::PUT, true, 404, s), NotEligible);
        assert_eq!(should_ask_old(&Method::GET, true, 404, s), NotEligible);
        assert_eq!(should_ask_old(&Method::POST, true, 500, s), Serve);
        assert_eq!(
            should_ask_old(&Method::GET, false, 410, &[404, 410]),
            AskOld
        );
        assert_eq!(should_ask_old(&Method::GET, false, 404, &[]), Serve);
    }

    #[test]
    fn outcome_of_asking_old() {
        let s = &[404, 410];
        assert_eq!(outcome(Some(200), s), FallbackResult::Served);
        assert_eq!(outcome(Some(301), s), FallbackResult::Served);
        assert_eq!(outcome(Some(404), s), FallbackResult::Still404);
        assert_eq!(outcome(Some(503), s), FallbackResult::OldError);
        assert_eq!(outcome(Some(410), s), FallbackResult::Still404);
        assert_eq!(outcome(None, s), FallbackResult::OldError);
        let labels: Vec<_> = FallbackResult::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels, ["served", "still_404", "old_error", "not_eligible"]);
    }

    #[test]
    fn fallen_back_urls_are_bounded_and_ranked() {
        let urls = FallbackUrls::new(3);
        for i in 0..1000 {
            urls.record("/old/only");
            urls.record(&format!("/crawler/{i}"));
        }
        let top = urls.top();
        assert_eq!(top.len(), 3);
        assert_eq!(top[0].url, "/old/only");
        assert_eq!(top[0].hits, 1000);
        urls.clear();
        assert!(urls.top().is_empty());
    }
}
