//! Who a shopper is, for counting where shoppers are (`cutover status`, the `cutover_shoppers_*`
//! gauges, the warnings of `cutover shift`).
//!
//! Cutover keeps no table of shoppers: their state lives in their cohort cookie. So the proxy
//! can only count what it sees, and a shopper is identified by what they carry:
//! - the session cookie (`cohort.session_cookie`) when configured and sent: one per shopper;
//! - otherwise the verified cohort cookie's contents (bucket and pin, as sent back after this
//!   request). A pin carries the second it was issued, so pinned shoppers are told apart; without
//!   pinning, two shoppers in the same bucket carry the same cookie, and what is counted is
//!   cohorts (buckets, at most 10,000), close to shoppers while they are a few hundred.
//!
//! A shopper without either (a first visit, a client that keeps no cookies: crawlers, health
//! checks) is not counted, so cookie-less bots do not pass for a crowd; their first visit is in
//! `cutover_shoppers_assigned_total`. A pin refreshed (or first set) changes the cookie, so such
//! a shopper can count twice in one window: at most once per half `pin_ttl` each.

use super::cohort::{CohortCookie, PinKind};
use super::{StorefrontId, Table};

/// A shopper a split route just placed, as counted by the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shopper {
    /// A well-mixed 64-bit hash of what identifies the shopper (see the module doc).
    pub id: u64,
    /// A pin (split or staff override) holds them where they went.
    pub pinned: bool,
    /// Pinned where the share would not have sent them: the shoppers a share change does not move.
    pub pinned_against_share: bool,
}

/// splitmix64's finaliser: spreads ids that differ in a few low bits over all 64.
pub fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The hash of a cohort cookie's contents: the same before and after a round trip through the
/// browser, whichever key signed it.
fn cookie_id(cookie: &CohortCookie) -> u64 {
    let pin = cookie.pin.map_or(0, |p| {
        let kind = match p.kind {
            PinKind::Split => 1u64,
            PinKind::Override => 2,
        };
        kind | (p.storefront as u64 & 0xffff) << 2
    });
    mix(mix(u64::from(cookie.bucket) | pin << 16) ^ cookie.pin.map_or(0, |p| p.issued))
}

/// The shopper behind a split decision; `None` when they carry nothing that identifies them.
pub(super) fn identify(
    table: &Table,
    session_hash: Option<u64>,
    returning: bool,
    after: CohortCookie,
    storefront: StorefrontId,
) -> Option<Shopper> {
    let id = match session_hash {
        Some(hash) => hash,
        None if returning => cookie_id(&after),
        None => return None,
    };
    let split = table.split;
    let share_side = if after.bucket < split.share_bp {
        split.to
    } else {
        split.from
    };
    let pinned = after.pin.is_some();
    Some(Shopper {
        id,
        pinned,
        pinned_against_share: pinned && storefront != share_side,
    })
}
