//! One redirect probation for the whole fleet: the moment the share reached 100% is kept in
//! the fleet document (`full_share_since`), so every replica, and one that restarts, ends the
//! probation at the same second.
//!
//! Each replica computes its own mark when it applies a state (`reload::probation`) and
//! prefers the document's. After applying, a replica whose own mark disagrees with the
//! document writes it (compare-and-swap; when several race, one wins and the others adopt its
//! mark with the next state they apply):
//! - the document has no mark and says 100% (or leaves the share to the file): fill it in;
//! - the document has a mark but its own share override is below 100%: clear it.
//!
//! A replica never clears a mark on the strength of its config file alone, so replicas whose
//! files disagree cannot write back and forth.

use std::sync::Arc;

use super::document::FleetDocument;
use super::FleetRuntime;
use crate::redirects::FULL_SHARE_BP;

/// Writes a share into the document: below 100% the mark goes in the same write, so a shift
/// back to 100% right after can never find (and adopt) the mark of the earlier 100%.
pub(super) fn write_share(doc: &mut FleetDocument, bp: u16) {
    doc.overrides.new_share_bp = Some(bp);
    if bp < FULL_SHARE_BP {
        doc.full_share_since = None;
    }
}

/// The mark the document should hold given this replica's, when it should change.
fn wanted(doc: &FleetDocument, local: Option<u64>) -> Option<Option<u64>> {
    let share = doc.overrides.new_share_bp;
    match (doc.full_share_since, local) {
        (None, Some(at)) if share.is_none_or(|bp| bp >= FULL_SHARE_BP) => Some(Some(at)),
        (Some(_), None) if share.is_some_and(|bp| bp < FULL_SHARE_BP) => Some(None),
        _ => None,
    }
}

/// After `doc` (at `revision`) was applied here: writes the mark in the background when the
/// document should change. At most one write at a time; a later call retries.
pub(super) fn settle(rt: &Arc<FleetRuntime>, doc: &FleetDocument, revision: i64) {
    let local = rt.reloader.state().load().redirect_probation.started_at;
    if wanted(doc, local).is_none() || rt.writes.try_lock().is_err() {
        return;
    }
    let rt = Arc::clone(rt);
    tokio::spawn(async move {
        let latest = rt.latest.borrow().as_ref().map(|v| v.revision);
        if latest != Some(revision) {
            return; // a newer state is on its way here: judge that one
        }
        let written = rt
            .try_update(|doc| match wanted(doc, local) {
                Some(mark) => {
                    doc.full_share_since = mark;
                    Ok(mark)
                }
                None => Err(()),
            })
            .await;
        match written {
            Ok(Ok((mark, v))) => tracing::info!(
                fleet_generation = v.record.generation,
                full_share_since = mark,
                "fleet: redirect probation mark written"
            ),
            Ok(Err(())) => {}
            Err(e) => {
                tracing::debug!(error = %e, "fleet: redirect probation mark not written; retried")
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(share: Option<u16>, mark: Option<u64>) -> FleetDocument {
        let mut d = FleetDocument::default();
        d.overrides.new_share_bp = share;
        d.full_share_since = mark;
        d
    }

    #[test]
    fn fills_a_missing_mark_at_100_percent_and_clears_one_below() {
        assert_eq!(wanted(&doc(Some(10_000), None), Some(5)), Some(Some(5)));
        assert_eq!(
            wanted(&doc(None, None), Some(5)),
            Some(Some(5)),
            "the file's 100%"
        );
        assert_eq!(wanted(&doc(Some(5_000), Some(5)), None), Some(None));
        assert_eq!(
            wanted(&doc(Some(10_000), Some(5)), Some(7)),
            None,
            "the fleet's wins"
        );
    }

    #[test]
    fn a_share_below_100_percent_clears_the_mark_in_the_same_write() {
        let mut d = doc(Some(10_000), Some(5));
        write_share(&mut d, 10_000);
        assert_eq!(
            d.full_share_since,
            Some(5),
            "still 100%: the same probation"
        );
        write_share(&mut d, 9_000);
        assert_eq!(
            (d.overrides.new_share_bp, d.full_share_since),
            (Some(9_000), None)
        );
    }

    #[test]
    fn never_writes_on_the_strength_of_the_file_alone() {
        assert_eq!(
            wanted(&doc(None, Some(5)), None),
            None,
            "file below 100% here"
        );
        assert_eq!(
            wanted(&doc(Some(5_000), None), Some(5)),
            None,
            "stale local view"
        );
        assert_eq!(wanted(&doc(Some(5_000), None), None), None);
    }
}
