//! The redirect probation's mark ("the split's share reached 100% at unix second S") through
//! builds, restarts and file changes. [`next_mark`] is the rule; here it is applied to every
//! snapshot the reloader builds and kept in the state file beside the overrides.
//!
//! Unlike an override, the mark is not dropped when the config file changes: a file edited to
//! say 100% after an operator shifted to 100% has not "reached" 100% again, and a restart must
//! continue the probation, not start a new one. So the state file is kept (with empty
//! `overrides`) while a mark exists, and read for its mark whatever file version it was saved
//! for.

use super::unix_now;
use crate::config::runtime::{remove_state, write_state, StateError};
use crate::config::{content_hash, RuntimeOverrides, Source, StateFile};
use crate::redirects::probation::next_mark;
use crate::state::Snapshot;

/// Sets the mark of a freshly compiled snapshot from the one before its build.
pub(super) fn set_mark(snap: &mut Snapshot, before: Option<u64>, now: u64) {
    snap.redirect_probation.started_at = next_mark(before, snap.routing.split.share_bp, now);
}

/// Saves `state` (the overrides in force, if any) with `snap`'s mark in `snap`'s state file;
/// removes the file when there is neither.
pub(super) fn save(
    snap: &Snapshot,
    state: Option<StateFile>,
    source: &Source,
) -> Result<(), StateError> {
    let mark = snap.redirect_probation.started_at;
    let state = match (state, mark) {
        (Some(st), _) => st,
        (None, Some(at)) => StateFile {
            format: 1,
            config: source.path.display().to_string(),
            config_hash: content_hash(&source.text),
            since: at,
            updated_at: unix_now(),
            overrides: RuntimeOverrides::default(),
            full_share_since: None,
        },
        (None, None) => return remove_state(&snap.state_file),
    };
    write_state(
        &snap.state_file,
        &StateFile {
            full_share_since: mark,
            ..state
        },
    )
}

/// At startup: saves the mark when the first build moved it (the file says 100% and no mark
/// was kept, or a kept mark whose share is no longer 100%), keeping whatever else the state
/// file held (`saved`, even overrides for another version of the file). Returns why it could
/// not, for the status page.
pub(super) fn persist_startup(
    snap: &Snapshot,
    saved: Option<StateFile>,
    before: Option<u64>,
    source: &Source,
) -> Option<String> {
    let after = snap.redirect_probation.started_at;
    if after == before {
        return None;
    }
    match after {
        Some(at) => tracing::info!(
            since = at,
            "the split is at 100%: redirect probation starts"
        ),
        None => tracing::info!("the split is below 100%: the redirect probation mark is cleared"),
    }
    let keep_or_drop = match saved {
        Some(st) if st.overrides.is_empty() => None,
        other => other,
    };
    save(snap, keep_or_drop, source)
        .err()
        .map(|e| format!("{e}: the redirect probation mark will not survive a restart"))
}
