//! Startup: the config file, with the overrides of its state file when they were saved for
//! exactly this file, compiled as generation 1.

use std::path::Path;

use super::{compile_text, probation};
use crate::config::runtime::read_state;
use crate::config::{content_hash, ConfigError, Source, StateFile};
use crate::metrics::Metrics;
use crate::state::Snapshot;

/// What startup loaded: the snapshot plus what the reloader needs to continue from it.
pub struct Startup {
    /// Generation 1.
    pub snapshot: Snapshot,
    pub(super) source: Source,
    pub(super) overrides: Option<StateFile>,
    /// Why a saved state file was not applied, for the log and status.
    pub state_note: Option<String>,
}

/// Loads the config for startup, with the overrides of its state file when they were made on
/// top of exactly this file. A state file that does not apply is left alone and reported.
pub fn load_startup(path: &Path, metrics: &Metrics) -> Result<Startup, ConfigError> {
    let source = Source::read(path)?;
    // The state file's location comes from the file itself; a file too broken to parse fails
    // the compile below anyway.
    let state_path = source
        .parse()
        .ok()
        .map(|raw| {
            raw.admin.state_file.as_ref().map_or_else(
                || crate::config::admin::default_state_file(path),
                |s| {
                    let p = Path::new(s.get_ref());
                    if p.is_absolute() {
                        p.to_path_buf()
                    } else {
                        source.base_dir().join(p)
                    }
                },
            )
        })
        .unwrap_or_else(|| crate::config::admin::default_state_file(path));
    let hash = content_hash(&source.text);
    let read = read_state(&state_path);
    // The mark is not an override: it holds whatever the file's version (see `probation`).
    let (mark, saved) = match &read {
        Ok(Some(st)) => (st.full_share_since, Some(st.clone())),
        _ => (None, None),
    };
    let (overrides, mut note) = match read {
        Ok(None) => (None, None),
        Ok(Some(st)) if st.config_hash == hash && !st.overrides.is_empty() => (Some(st), None),
        Ok(Some(st)) if st.overrides.is_empty() => (None, None),
        Ok(Some(_)) => (
            None,
            Some(format!(
                "{} was saved for a different version of {}: the file wins, overrides not applied",
                state_path.display(),
                path.display()
            )),
        ),
        Err(e) => (None, Some(format!("{e}: ignored"))),
    };
    let snapshot = match compile_text(&source, overrides.as_ref(), 1, None, metrics, mark) {
        Ok(s) => s,
        Err(e) if overrides.is_some() => {
            note = Some(format!(
                "saved overrides do not apply ({e}); starting from the file"
            ));
            let s = compile_text(&source, None, 1, None, metrics, mark)?;
            note = probation::persist_startup(&s, saved, mark, &source).or(note);
            return Ok(Startup {
                snapshot: s,
                source,
                overrides: None,
                state_note: note,
            });
        }
        Err(e) => return Err(e),
    };
    note = probation::persist_startup(&snapshot, saved, mark, &source).or(note);
    Ok(Startup {
        snapshot,
        source,
        overrides,
        state_note: note,
    })
}
