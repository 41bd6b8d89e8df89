//! The rollout's progress in the fleet's document, under `"rollout"` beside the overrides:
//!
//! ```json
//! {"overrides": {"new_share_bp": 500}, "rollout": {"written_by": "r2", "state": {"phase":
//!  "running", "step": 1, "step_since_ms": 1764330000000, "last_verdicts": [...], ...}}}
//! ```
//!
//! One document holds both, so a step and its share are one compare-and-swap write: every
//! replica applies the share through the watcher (the path of `cutover shift`), and a new leader
//! reads the step, its hold start and the last verdicts and continues there instead of starting
//! the plan again. A write names the rollout value it was based on and is refused (nothing
//! written) when the document holds another one: an operator's command on another replica, or
//! a newer leader, moved the rollout since; the writer re-reads and decides again.

use std::convert::Infallible;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::document::FleetDocument;
use super::{unix_now, FleetRuntime, UpdateError};
use crate::fleet::{Versioned, WriteError};
use crate::rollout::engine::RolloutState;

/// The document's field that holds the rollout.
pub const FIELD: &str = "rollout";

/// What the document holds under [`FIELD`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedRollout {
    /// Replica that wrote it: the leader after an evaluation, any replica after a command.
    pub written_by: String,
    /// The engine's state: phase, step, hold start, failures, last verdicts, next evaluation.
    pub state: RolloutState,
}

impl SharedRollout {
    /// Reads the [`FIELD`] value of a document.
    pub fn from_document(doc: &FleetDocument) -> Option<Result<SharedRollout, String>> {
        doc.other
            .get(FIELD)
            .map(|v| serde_json::from_value(v.clone()).map_err(|e| e.to_string()))
    }
}

/// Operator-state changes a rollout write carries with its state (the step's share moves in the
/// same write as the step).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OverrideEdit {
    /// The share on new, basis points.
    pub share_bp: Option<u16>,
    /// A storefront to evacuate, and the unix second.
    pub evacuate: Option<(String, u64)>,
}

/// Why a rollout write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RolloutWriteError {
    /// The document's rollout is not the one this write was based on; nothing was written.
    #[error("the rollout was changed on another replica since this one read it (an operator's command or another leader); nothing was written: re-read and retry")]
    Moved,
    /// The write was an evaluation's and this replica no longer leads; nothing was written.
    #[error(
        "this replica no longer leads the fleet; it stopped driving the rollout and wrote nothing"
    )]
    NotLeader,
    /// The store refused or did not answer.
    #[error(transparent)]
    Update(#[from] UpdateError),
}

impl RolloutWriteError {
    /// Another writer got there first: re-reading and deciding again may succeed.
    pub fn lost_race(&self) -> bool {
        matches!(
            self,
            RolloutWriteError::Moved | RolloutWriteError::Update(UpdateError::Conflict(_))
        )
    }

    /// The admin API status for it.
    pub fn status(&self) -> http::StatusCode {
        match self {
            RolloutWriteError::Moved | RolloutWriteError::NotLeader => http::StatusCode::CONFLICT,
            RolloutWriteError::Update(e) => e.status(),
        }
    }
}

/// One line for `cutover status --fleet`: where the fleet's rollout is and who wrote it.
pub fn summary(v: &Versioned) -> Option<String> {
    let doc = FleetDocument::from_value(&v.record.state, v.record.generation).ok()?;
    let line = match SharedRollout::from_document(&doc)? {
        Err(e) => format!("unreadable in the fleet store ({e})"),
        Ok(r) => format!(
            "{} at step {}, share on new {}, last written by {}",
            r.state.phase.as_str(),
            r.state.step + 1,
            doc.overrides
                .new_share_bp
                .map_or_else(|| "from the file".into(), crate::rollout::plan::percent),
            r.written_by
        ),
    };
    Some(line)
}

impl FleetRuntime {
    /// The replica that leads the fleet (and so drives the rollout), as this replica last
    /// learned it; no etcd call.
    pub fn leader_id(&self) -> Option<String> {
        super::lock(&self.election)
            .as_ref()
            .and_then(crate::fleet::Election::leader)
    }

    /// This replica's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The revision of the document as last delivered by the watcher (0: none yet).
    pub fn latest_revision(&self) -> i64 {
        self.latest.borrow().as_ref().map_or(0, |v| v.revision)
    }

    /// Waits (at most `within`) until the watcher delivered a document newer than `revision`:
    /// after a write lost to another writer, before deciding again.
    pub async fn wait_newer_than(&self, revision: i64, within: std::time::Duration) {
        let mut rx = self.latest.clone();
        let _ = tokio::time::timeout(
            within,
            rx.wait_for(|v| v.as_ref().is_some_and(|v| v.revision > revision)),
        )
        .await;
    }

    /// The document's rollout value as last delivered by the watcher (`None`: none yet).
    pub fn rollout_value(&self) -> Option<Value> {
        let latest = self.latest.borrow();
        latest
            .as_ref()
            .and_then(|v| v.record.state.get(FIELD).cloned())
    }

    /// Writes the rollout's `state` (and `edit`) if the document's rollout is still `expected`
    /// (the value this replica's engine was built from; `None`: no rollout yet). With
    /// `leader_only` (an evaluation's write) nothing is written unless this replica leads at
    /// the moment of writing. Returns the value written: the next write's `expected`.
    pub async fn write_rollout(
        &self,
        expected: Option<&Value>,
        state: &RolloutState,
        edit: OverrideEdit,
        leader_only: bool,
    ) -> Result<Value, RolloutWriteError> {
        let value = serde_json::to_value(SharedRollout {
            written_by: self.id.clone(),
            state: state.clone(),
        })
        .expect("a rollout state serializes");
        let written = value.clone();
        let outcome = self
            .try_update(move |doc| {
                if leader_only && !self.is_leader() {
                    return Err(RolloutWriteError::NotLeader);
                }
                if doc.other.get(FIELD) != expected {
                    return Err(RolloutWriteError::Moved);
                }
                if let Some(bp) = edit.share_bp {
                    super::probation::write_share(doc, bp);
                }
                if let Some((name, at)) = edit.evacuate {
                    doc.overrides.evacuated_at.insert(name, at);
                }
                doc.other.insert(FIELD.to_string(), value);
                Ok(())
            })
            .await?;
        outcome.map(|_| written)
    }

    /// [`FleetRuntime::update`] whose `edit` may decline (`Err`: nothing is written and the
    /// error is returned inside `Ok`).
    pub async fn try_update<T, E>(
        &self,
        edit: impl FnOnce(&mut FleetDocument) -> Result<T, E>,
    ) -> Result<Result<(T, Versioned), E>, UpdateError> {
        let _one = self.writes.lock().await;
        let seen = self.latest.borrow().clone();
        let base = match seen {
            Some(v) => Some(v),
            // Nothing delivered yet (etcd was unreachable since startup): ask now.
            None => match self.store.read().await {
                Ok((v, _)) => v,
                Err(e) => return Err(self.unreachable(&e)),
            },
        };
        let mut doc = match &base {
            Some(v) => FleetDocument::from_value(&v.record.state, v.record.generation)
                .map_err(|e| UpdateError::Corrupt(e.to_string()))?,
            None => FleetDocument::default(),
        };
        let out = match edit(&mut doc) {
            Ok(out) => out,
            Err(e) => return Ok(Err(e)),
        };
        doc.format = 1;
        doc.updated_at = unix_now();
        doc.updated_by.clone_from(&self.id);
        let expected = base.as_ref().map_or(0, |v| v.revision);
        let written = match self.store.write_state(expected, doc.to_value()).await {
            Ok(v) => v,
            Err(e @ WriteError::Conflict { .. }) => return Err(UpdateError::Conflict(e)),
            Err(WriteError::Etcd(e)) => return Err(self.unreachable(&e)),
            Err(e @ WriteError::Corrupt(_)) => return Err(UpdateError::Corrupt(e.to_string())),
        };
        let mut applied = self.applied.subscribe();
        let waited = tokio::time::timeout(
            super::APPLY_WAIT,
            applied.wait_for(|a| a.as_ref().is_some_and(|a| a.revision >= written.revision)),
        )
        .await;
        match waited {
            Ok(Ok(_)) => Ok(Ok((out, written))),
            _ => Err(UpdateError::NotAppliedHere(written.record.generation)),
        }
    }

    /// [`FleetRuntime::try_update`] with an edit that always writes.
    pub(super) async fn update_always<T>(
        &self,
        edit: impl FnOnce(&mut FleetDocument) -> T,
    ) -> Result<(T, Versioned), UpdateError> {
        match self
            .try_update(|doc| Ok::<_, Infallible>(edit(doc)))
            .await?
        {
            Ok(done) => Ok(done),
            Err(never) => match never {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_without_a_rollout_has_none_and_a_garbled_one_says_why() {
        let doc = FleetDocument::from_value(&serde_json::json!({"overrides": {}}), 1).unwrap();
        assert!(SharedRollout::from_document(&doc).is_none());
        let doc =
            FleetDocument::from_value(&serde_json::json!({"rollout": {"step": 2}}), 2).unwrap();
        let e = SharedRollout::from_document(&doc).unwrap().unwrap_err();
        assert!(e.contains("written_by") || e.contains("state"), "{e}");
    }

    #[test]
    fn a_shared_rollout_round_trips_through_the_document_and_keeps_other_fields() {
        let state: RolloutState = serde_json::from_value(serde_json::json!({
            "plan_fingerprint": "ab", "phase": "running", "step": 2, "step_since_ms": 77
        }))
        .unwrap();
        let mut doc = FleetDocument::from_value(
            &serde_json::json!({"overrides": {"new_share_bp": 2500}, "later": {"x": 1}}),
            3,
        )
        .unwrap();
        let shared = SharedRollout {
            written_by: "r2".into(),
            state,
        };
        doc.other
            .insert(FIELD.into(), serde_json::to_value(&shared).unwrap());
        let back = FleetDocument::from_value(&doc.to_value(), 4).unwrap();
        assert_eq!(
            SharedRollout::from_document(&back).unwrap().unwrap(),
            shared
        );
        assert_eq!(back.other["later"]["x"], 1, "unknown fields are kept");
    }
}
