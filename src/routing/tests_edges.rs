//! The edges of the pin rules, added for the mutants `cargo mutants` found alive in `pin_valid`
//! and `decide` (BENCHMARKS.md, "Mutation testing"): each test sits on the one-second boundary
//! a flipped comparison would move.

use std::time::Duration;

use super::cohort::{CohortCookie, CohortPolicy, Pin, PinKind};
use super::staff_override::OverridePolicy;
use super::*;

const NOW: u64 = 1_800_000_000;
const TTL: u64 = 7200;

/// `old` (0) and `new` (1), the split at `share_bp`, pinning on with a [`TTL`] pin life, `new`
/// evacuated at `evacuated_at`.
fn table(share_bp: u16, evacuated_at: Option<u64>) -> Table {
    let mut cohort = CohortPolicy::with_key("edge-key");
    cohort.pinning = true;
    cohort.pin_ttl = Duration::from_secs(TTL);
    Table {
        storefronts: [("old", None), ("new", evacuated_at)]
            .map(|(name, evacuated_at)| StorefrontRouting {
                name: name.into(),
                evacuated_at,
            })
            .into(),
        routes: vec![Route {
            name: "default".into(),
            matcher: Matcher::default(),
            action: Action::Split,
        }],
        split: Split {
            from: 0,
            to: 1,
            share_bp,
        },
        cohort,
        overrides: OverridePolicy::default(),
    }
}

/// A shopper in bucket 9,000 (old at a 0% share) pinned to `new` since `issued`.
fn pinned_to_new(issued: u64) -> CohortCookie {
    CohortCookie {
        bucket: 9000,
        pin: Some(Pin {
            storefront: 1,
            kind: PinKind::Split,
            issued,
        }),
    }
}

/// Where a request carrying `cookie` goes at `now`, and the decision.
fn decide_at(t: &Table, cookie: &CohortCookie, now: u64) -> (&'static str, Decision) {
    let value = cohort::encode(cookie, &t.cohort.keys, |id| t.storefronts[id].name.clone());
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::COOKIE,
        http::HeaderValue::from_str(&format!("{}={value}", t.cohort.cookie)).unwrap(),
    );
    let view = RequestView {
        method: &http::Method::GET,
        host: "shop.example",
        path: "/",
        query: None,
        headers: (&headers).into(),
    };
    let d = decide(t, &view, now, || {
        panic!("a returning shopper needs no fresh bucket")
    });
    (["old", "new"][d.storefront], d)
}

#[test]
fn a_pin_issued_after_the_evacuation_holds_and_one_issued_at_it_does_not() {
    let evacuated = NOW - 100;
    let t = table(0, Some(evacuated));
    let (after, d) = decide_at(&t, &pinned_to_new(evacuated + 1), NOW);
    assert_eq!(
        after, "new",
        "a pin issued after the evacuation is a new choice"
    );
    assert_eq!(d.reason, Reason::Pin);
    let (at, d) = decide_at(&t, &pinned_to_new(evacuated), NOW);
    assert_eq!(at, "old", "a pin from the evacuation's second is released");
    assert_eq!(d.reason, Reason::Split);
    let (before, _) = decide_at(&t, &pinned_to_new(evacuated - 1), NOW);
    assert_eq!(before, "old");
}

#[test]
fn a_pin_lives_until_its_last_second() {
    let t = table(0, None);
    let cookie = pinned_to_new(NOW);
    assert_eq!(decide_at(&t, &cookie, NOW + TTL - 1).0, "new");
    assert_eq!(decide_at(&t, &cookie, NOW + TTL).0, "old");
}

#[test]
fn a_pin_slides_forward_only_past_half_its_life() {
    let t = table(0, None);
    let cookie = pinned_to_new(NOW);
    let (_, at_half) = decide_at(&t, &cookie, NOW + TTL / 2);
    assert_eq!(at_half.set_cookie, None, "exactly half: not yet");
    let (_, past_half) = decide_at(&t, &cookie, NOW + TTL / 2 + 1);
    assert_eq!(
        past_half.set_cookie.and_then(|c| c.pin).map(|p| p.issued),
        Some(NOW + TTL / 2 + 1),
        "one second past half: the pin is re-issued now"
    );
}

#[test]
fn a_session_cookie_bucket_is_in_range_and_spread_evenly() {
    // Buckets are basis points: one at or past 10,000 would never be below any share (a
    // shopper left on old at 100%), and a skewed spread moves more or fewer shoppers than
    // the share says.
    let keys = cohort::CohortKeys::derive("edge-key");
    let buckets: Vec<u16> = (0..20_000)
        .map(|i| keys.bucket_of(&format!("session-{i}")))
        .collect();
    assert!(
        buckets.iter().all(|b| *b < cohort::BUCKETS),
        "every bucket below 10,000"
    );
    let below_half = buckets.iter().filter(|b| **b < 5000).count();
    assert!(
        (9_000..=11_000).contains(&below_half),
        "about half the sessions below 5,000 bp: {below_half} of 20,000"
    );
    assert_eq!(
        keys.bucket_of("session-7"),
        keys.bucket_of("session-7"),
        "stable for one session"
    );
}
