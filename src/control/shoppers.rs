//! Where shoppers are, said to the operator: the `shoppers` line of `cutover status`, and the
//! warnings of `cutover shift` when a share change will not move the shoppers it seems to (pins)
//! or will move shoppers back (no pins). The counts are the estimates of
//! [`crate::metrics::shoppers`]: what this replica saw in the last 10 minutes.

use std::fmt;

use super::status::StorefrontInfo;
use crate::state::Snapshot;

/// `1234567` -> `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `shoppers    seen in the last 10 min: old ~1,234 (pinned ~1,100, ~900 against the share), new ~567; estimates within 5%`
pub(crate) fn write_status_line(
    f: &mut fmt::Formatter<'_>,
    storefronts: &[StorefrontInfo],
) -> fmt::Result {
    let counted: Vec<_> = storefronts
        .iter()
        .filter_map(|s| s.recent_shoppers.map(|r| (s.name.as_str(), r)))
        .collect();
    let Some((_, first)) = counted.first() else {
        return Ok(());
    };
    let minutes = first.window_seconds / 60;
    if counted.iter().all(|(_, r)| r.seen_estimate == 0) {
        return writeln!(
            f,
            "shoppers    none with a cohort cookie or session seen in the last {minutes} min"
        );
    }
    let parts: Vec<String> = counted
        .iter()
        .map(|(name, r)| {
            let mut s = format!("{name} ~{}", thousands(r.seen_estimate));
            if r.pinned_estimate > 0 {
                s.push_str(&format!(" (pinned ~{}", thousands(r.pinned_estimate)));
                if r.pinned_against_share_estimate > 0 {
                    s.push_str(&format!(
                        ", ~{} against the share",
                        thousands(r.pinned_against_share_estimate)
                    ));
                }
                s.push(')');
            }
            s
        })
        .collect();
    writeln!(
        f,
        "shoppers    seen in the last {minutes} min: {}; estimates within {:.0}%",
        parts.join(", "),
        first.estimate_relative_error * 100.0
    )
}

/// What a share change from `from_bp` to `to_bp` will not do, or will do unasked, given where
/// shoppers were recently. Empty when nothing is worth a warning.
pub(crate) fn shift_warnings(snap: &Snapshot, from_bp: u16, to_bp: u16) -> Vec<String> {
    let split = snap.routing.split;
    let name = |id: usize| snap.storefronts[id].name.as_str();
    let recent = |id: usize| snap.metrics.recent_shoppers(id);
    if !snap.routing.cohort.pinning {
        if to_bp >= from_bp {
            return Vec::new();
        }
        let mut w = format!(
            "pinning is off: shoppers whose bucket is no longer under the share move back from {} to {} on their next page",
            name(split.to),
            name(split.from)
        );
        let on_new = recent(split.to);
        let unpinned = on_new.seen_estimate.saturating_sub(on_new.pinned_estimate);
        if unpinned > 0 && from_bp > 0 {
            let moving = unpinned * u64::from(from_bp - to_bp) / u64::from(from_bp);
            w.push_str(&format!(
                " (about {} of the ~{} shoppers seen on {} in the last {} min)",
                thousands(moving),
                thousands(on_new.seen_estimate),
                name(split.to),
                on_new.window_seconds / 60
            ));
        }
        return vec![w];
    }
    // The side the share moves away from: its pinned shoppers stay there.
    let (away, direction) = if to_bp > from_bp {
        (split.from, "raising")
    } else {
        (split.to, "lowering")
    };
    let r = recent(away);
    if r.pinned_estimate == 0 {
        return Vec::new();
    }
    vec![format!(
        "pinning is on: the shoppers seen pinned to {} in the last {} min (~{}) stay there, {direction} the share does not move them: they stay on {} until their pin expires (pin_ttl {}, refreshed while they keep coming back) or `cutover evacuate {}` releases them",
        name(away),
        r.window_seconds / 60,
        thousands(r.pinned_estimate),
        name(away),
        super::status::ago(snap.routing.cohort.pin_ttl.as_secs()),
        name(away)
    )]
}

/// What evacuating `storefront` does to the shoppers seen pinned there recently.
pub(crate) fn evacuate_notes(snap: &Snapshot, storefront: &str) -> Vec<String> {
    let Some(id) = snap.storefront_id(storefront) else {
        return Vec::new();
    };
    let r = snap.metrics.recent_shoppers(id);
    if r.pinned_estimate == 0 {
        return Vec::new();
    }
    vec![format!(
        "the shoppers seen pinned to {storefront} in the last {} min (~{}) are released: the share decides where their next page goes",
        r.window_seconds / 60,
        thousands(r.pinned_estimate)
    )]
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_are_grouped() {
        for (n, s) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (1_234_567, "1,234,567"),
            (100_000, "100,000"),
        ] {
            assert_eq!(thousands(n), s);
        }
    }
}
