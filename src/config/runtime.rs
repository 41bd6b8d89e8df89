//! Runtime overrides: changes made through the admin API (share on new, evacuations), layered on
//! top of the config file and compiled by the same `compile` as a file change.
//!
//! The rule, precisely:
//! - An override is recorded together with a hash of the config file's bytes it was made on top
//!   of (the *base*), and saved in the state file (`<config>.state.json` unless `[admin]
//!   state_file` says otherwise), written atomically (temp file + rename).
//! - Every build (reload, SIGHUP, admin change, restart) compares the config file's current bytes
//!   with the base. Same bytes: the overrides apply. Different bytes (any edit, even a comment):
//!   the operator has taken control through the file, so the file wins: the overrides are dropped
//!   and the state file removed, once that changed file has compiled and gone live. A changed file
//!   that is rejected leaves the running config and its overrides as they were.
//! - On restart, the state file is applied when its base matches the file on disk, and ignored
//!   (with a log line) otherwise.

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use siphasher::sip128::{Hasher128, SipHasher13};
use toml::Spanned;

use super::raw::RawConfig;
use super::{Problem, Source};
use crate::values::Share;

/// What the admin API has changed relative to the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeOverrides {
    /// `[split] new_share`, in basis points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_share_bp: Option<u16>,
    /// `[storefront.NAME] evacuated_at`, unix seconds, by storefront name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub evacuated_at: BTreeMap<String, u64>,
}

impl RuntimeOverrides {
    /// Nothing overridden.
    pub fn is_empty(&self) -> bool {
        self.new_share_bp.is_none() && self.evacuated_at.is_empty()
    }

    /// Writes the overrides into a freshly parsed file. Spans stay those of the file so a
    /// problem still points at the line the operator would edit. A storefront the file does
    /// not define is a problem (it can only happen when the file changed, which drops overrides).
    pub fn apply(&self, raw: &mut RawConfig, source: &Source) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let (Some(bp), Some(split)) = (self.new_share_bp, raw.split.as_mut()) {
            let span = split.get_ref().new_share.span();
            if bp > 10_000 {
                // The admin API never saves more than 100%, but the state file is outside input
                // (hand edits, corruption): without this check, compile took any u16 as the split.
                problems.push(source.problem(
                    span,
                    "split.new_share",
                    format!(
                        "a runtime override (state file) sets the share to {bp} basis points; \
                         it must be between 0 and 10000 (100 percent)"
                    ),
                ));
            } else {
                split.get_mut().new_share = Spanned::new(span, Share(Ok(bp)));
            }
        }
        for (name, at) in &self.evacuated_at {
            match raw.storefronts.get_mut(name.as_str()) {
                Some(sf) => {
                    let span = sf.span();
                    let sf = sf.get_mut();
                    let from_file = sf.evacuated_at.as_ref().map_or(0, |e| *e.get_ref());
                    sf.evacuated_at = Some(Spanned::new(span, from_file.max(*at)));
                }
                None => problems.push(source.problem(
                    0..0,
                    format!("storefront.{name}.evacuated_at"),
                    format!(
                        "a runtime override evacuates `{name}`, which the file no longer defines"
                    ),
                )),
            }
        }
        problems
    }
}

/// Overrides in force and the file they apply on top of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    /// Format version, 1.
    pub format: u32,
    /// The config file (informational).
    pub config: String,
    /// [`content_hash`] of the config file's bytes the overrides were made on.
    pub config_hash: String,
    /// Unix seconds of the first override since the file last changed.
    pub since: u64,
    /// Unix seconds of the latest override.
    pub updated_at: u64,
    /// The overrides.
    pub overrides: RuntimeOverrides,
    /// Unix second the split's share reached 100% (the redirect probation's start), while it
    /// is 100%. Not an override: it survives a change of the file (the file may say 100% too),
    /// so a file holding only this mark has empty `overrides`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_share_since: Option<u64>,
}

/// Hash of a config file's bytes: decides whether overrides still apply.
pub fn content_hash(text: &str) -> String {
    let mut h = SipHasher13::new_with_keys(0x0063_7574_6f76_6572, 0x7374_6174_6566_696c);
    h.write(text.as_bytes());
    format!("{:032x}", h.finish128().as_u128())
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// I/O.
    #[error("{what} state file {}: {source}", path.display())]
    Io {
        /// reading, writing, removing.
        what: &'static str,
        /// The state file.
        path: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Not a state file.
    #[error("state file {} is not valid: {source}", path.display())]
    Invalid {
        /// The state file.
        path: std::path::PathBuf,
        /// What serde said.
        source: serde_json::Error,
    },
}

/// Reads a state file; `Ok(None)` when there is none.
pub fn read_state(path: &Path) -> Result<Option<StateFile>, StateError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StateError::Invalid {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Io {
            what: "reading",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes a state file atomically: a temp file beside it, fsync, rename. The temp name ends in
/// `.tmp-<pid>` (never starts with `..`) so the config watcher, which reacts to Kubernetes'
/// `..data` swaps, does not mistake it for a config change.
pub fn write_state(path: &Path, state: &StateFile) -> Result<(), StateError> {
    let mut body = serde_json::to_vec_pretty(state).expect("state serialises");
    body.push(b'\n');
    write_atomically(path, &body).map_err(|source| StateError::Io {
        what: "writing",
        path: path.to_path_buf(),
        source,
    })
}

/// Replaces `path` with `body` so that a reader sees the old file or the new one, never half of
/// it: a temp file beside it (named `.tmp-<pid>`, see [`write_state`]), fsync, rename. Every file
/// of operator state (the state file, the rollout's) is written through here.
pub fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes a state file; a missing one is fine.
pub fn remove_state(path: &Path) -> Result<(), StateError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StateError::Io {
            what: "removing",
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "[[listener]]\naddress = \"127.0.0.1:0\"\n[storefront.old]\nupstream = \"http://127.0.0.1:1\"\n[storefront.new]\nupstream = \"http://127.0.0.1:2\"\nevacuated_at = 500\n[split]\nnew_share = 10\n";

    fn parsed() -> (Source, RawConfig) {
        let s = Source {
            path: "c.toml".into(),
            text: FILE.into(),
        };
        let raw = s.parse().unwrap();
        (s, raw)
    }

    #[test]
    fn overrides_replace_share_and_take_the_latest_evacuation() {
        let (s, mut raw) = parsed();
        let o = RuntimeOverrides {
            new_share_bp: Some(1250),
            evacuated_at: [("new".to_string(), 100), ("old".to_string(), 900)].into(),
        };
        assert!(o.apply(&mut raw, &s).is_empty());
        let split = raw.split.as_ref().unwrap().get_ref();
        assert_eq!(split.new_share.get_ref().0, Ok(1250));
        let ev = |n: &str| {
            raw.storefronts[n]
                .get_ref()
                .evacuated_at
                .as_ref()
                .map(|e| *e.get_ref())
        };
        assert_eq!(ev("new"), Some(500), "the file's later evacuation stays");
        assert_eq!(ev("old"), Some(900));
    }

    /// Found by the `admin_json` fuzz target: a state file saying `"new_share_bp": 65535`
    /// compiled to a split sending 655% of shoppers to `new`.
    #[test]
    fn share_above_100_percent_is_a_problem() {
        let (s, mut raw) = parsed();
        let o = RuntimeOverrides {
            new_share_bp: Some(10_001),
            evacuated_at: BTreeMap::new(),
        };
        let p = o.apply(&mut raw, &s);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].field, "split.new_share");
        assert_eq!(p[0].line, 9, "the line of new_share in the file");
        assert!(p[0].message.contains("10001 basis points"), "{}", p[0]);
        let split = raw.split.as_ref().unwrap().get_ref();
        assert_eq!(
            split.new_share.get_ref().0,
            Ok(1000),
            "the file's share stays"
        );
        let o = RuntimeOverrides {
            new_share_bp: Some(10_000),
            evacuated_at: BTreeMap::new(),
        };
        assert!(o.apply(&mut raw, &s).is_empty(), "100% is allowed");
    }

    #[test]
    fn unknown_storefront_is_a_problem() {
        let (s, mut raw) = parsed();
        let o = RuntimeOverrides {
            new_share_bp: None,
            evacuated_at: [("gone".to_string(), 1)].into(),
        };
        let p = o.apply(&mut raw, &s);
        assert_eq!(p.len(), 1);
        assert!(p[0].message.contains("`gone`"));
    }

    #[test]
    fn hash_changes_with_any_byte() {
        assert_eq!(content_hash("a"), content_hash("a"));
        assert_ne!(content_hash("a"), content_hash("a "));
        assert_eq!(content_hash("").len(), 32);
    }

    #[test]
    fn state_file_round_trip_and_atomic_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml.state.json");
        assert!(read_state(&path).unwrap().is_none());
        let st = StateFile {
            format: 1,
            config: "c.toml".into(),
            config_hash: content_hash(FILE),
            since: 1,
            updated_at: 2,
            overrides: RuntimeOverrides {
                new_share_bp: Some(2500),
                evacuated_at: BTreeMap::new(),
            },
            full_share_since: Some(3),
        };
        write_state(&path, &st).unwrap();
        assert_eq!(read_state(&path).unwrap(), Some(st));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temp file left: {names:?}");
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(read_state(&path), Err(StateError::Invalid { .. })));
        remove_state(&path).unwrap();
        remove_state(&path).unwrap();
    }
}
