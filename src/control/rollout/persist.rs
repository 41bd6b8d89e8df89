//! Where the rollout's operator state is kept: `<state file>.rollout`, beside the admin
//! overrides' state file.
//!
//! It is a file of its own because the overrides' state file is tied to the config file's bytes
//! (any edit drops it: the file wins), while a rollout must survive edits that leave its plan
//! alone: the rollout state is tied to the plan's fingerprint instead, and the engine drops it
//! with a message when the plan changes. Written atomically (temp file + rename); the temp name
//! ends in `.tmp-<pid>` like the state file's, so the config watcher ignores it.

use std::path::{Path, PathBuf};

use crate::rollout::engine::RolloutState;

/// Why the rollout state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// I/O.
    #[error("{what} rollout state {}: {source}", path.display())]
    Io {
        /// reading, writing.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Not a rollout state.
    #[error("rollout state {} is not valid ({source}): ignored, the rollout starts idle", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What serde said.
        source: serde_json::Error,
    },
}

/// The rollout state file for a state file path.
pub fn rollout_state_path(state_file: &Path) -> PathBuf {
    let mut name = state_file.file_name().unwrap_or_default().to_os_string();
    name.push(".rollout");
    state_file.with_file_name(name)
}

/// Reads the saved state; `Ok(None)` when there is none.
pub fn read(path: &Path) -> Result<Option<RolloutState>, PersistError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| PersistError::Invalid {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PersistError::Io {
            what: "reading",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes the state atomically.
pub fn write(path: &Path, state: &RolloutState) -> Result<(), PersistError> {
    let mut body = serde_json::to_vec_pretty(state).expect("rollout state serialises");
    body.push(b'\n');
    crate::config::runtime::write_atomically(path, &body).map_err(|source| PersistError::Io {
        what: "writing",
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::engine::Phase;

    fn state() -> RolloutState {
        serde_json::from_value(serde_json::json!({
            "plan_fingerprint": "00000000000000ff",
            "phase": "running",
            "step": 2,
            "step_since_ms": 1234
        }))
        .unwrap()
    }

    #[test]
    fn round_trip_is_atomic_and_beside_the_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = rollout_state_path(&dir.path().join("c.toml.state.json"));
        assert_eq!(path, dir.path().join("c.toml.state.json.rollout"));
        assert!(read(&path).unwrap().is_none(), "no file: nothing saved");
        write(&path, &state()).unwrap();
        let back = read(&path).unwrap().unwrap();
        assert_eq!(back, state());
        assert_eq!(back.phase, Phase::Running);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temp file left behind");
    }

    #[test]
    fn a_garbled_file_is_invalid_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.rollout");
        std::fs::write(&path, "{\"phase\": 3").unwrap();
        let e = read(&path).unwrap_err();
        assert!(matches!(e, PersistError::Invalid { .. }));
        assert!(e.to_string().contains("the rollout starts idle"), "{e}");
    }

    #[test]
    fn an_unwritable_place_is_an_io_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("x.rollout");
        let e = write(&path, &state()).unwrap_err();
        assert!(matches!(
            e,
            PersistError::Io {
                what: "writing",
                ..
            }
        ));
        assert!(e.to_string().contains("x.rollout"), "{e}");
    }
}
