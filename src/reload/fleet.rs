//! Operator state that comes from elsewhere (the fleet store, `crate::fleet`) applied through
//! the same compile-and-swap as a local admin change.
//!
//! The state replaces the overrides in force as a whole (each value from the store is the whole
//! state, so applying the newest one loses nothing), is laid over the config text in force, and
//! is saved in the local state file too: a replica that restarts while the store is unreachable
//! then serves the fleet's last state, not an older local one.

use super::{unix_now, Reloader};
use crate::config::{content_hash, ConfigError, RuntimeOverrides, Source, StateFile};

/// What applying shared operator state did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedApply {
    /// Compiled and swapped in: the new generation.
    Applied(u64),
    /// The same overrides were already in force: nothing compiled (the generation in force).
    Unchanged(u64),
}

impl Reloader {
    /// Replaces the operator overrides with `overrides` (empty: none), compiles them over the
    /// config text in force and swaps the snapshot. A compile that fails keeps the running
    /// snapshot and its overrides, and is recorded in the history like any rejected change.
    /// `full_share_since`: the fleet's redirect probation mark, which wins over this replica's
    /// own while the share is 100% (so every replica ends the probation at the same second).
    pub async fn apply_shared_state(
        &self,
        overrides: RuntimeOverrides,
        full_share_since: Option<u64>,
        trigger: &'static str,
    ) -> Result<SharedApply, ConfigError> {
        let mut ctl = self.serial.lock().await;
        let previous = self.state.load_full();
        let in_force = ctl
            .overrides
            .as_ref()
            .map(|o| o.overrides.clone())
            .unwrap_or_default();
        let probation = &previous.redirect_probation;
        let mark_differs = probation.started_at.is_some()
            && full_share_since.is_some()
            && probation.started_at != full_share_since;
        if in_force == overrides && !mark_differs {
            return Ok(SharedApply::Unchanged(previous.generation));
        }
        let generation = previous.generation + 1;
        let source = match &ctl.applied {
            Some(s) => s.clone(),
            None => {
                let path = self.path.clone();
                tokio::task::spawn_blocking(move || Source::read(&path))
                    .await
                    .unwrap_or_else(|join| Err(self.failed_task(join)))?
            }
        };
        let now = unix_now();
        let state = (!overrides.is_empty()).then(|| StateFile {
            format: 1,
            config: self.path.display().to_string(),
            config_hash: content_hash(&source.text),
            since: ctl.overrides.as_ref().map_or(now, |o| o.since),
            updated_at: now,
            overrides,
            full_share_since: None,
        });
        let compiled = self
            .compile_and_persist(
                &source,
                state.clone(),
                generation,
                &previous,
                full_share_since,
            )
            .await;
        drop(previous);
        let (snap, persisted) = match compiled {
            Ok(x) => x,
            Err(e) => {
                self.reject(trigger, &e);
                return Err(e);
            }
        };
        let persist_error = persisted.err().map(|e| {
            tracing::warn!(error = %e, "shared operator state applied but not saved locally");
            e.to_string()
        });
        self.public().state_error = persist_error;
        ctl.applied = Some(source);
        ctl.overrides.clone_from(&state);
        Ok(SharedApply::Applied(
            self.install(snap, state, trigger, false),
        ))
    }

    /// The overrides in force (empty when none): what a replica seeds a new fleet with.
    pub async fn overrides_in_force(&self) -> RuntimeOverrides {
        let ctl = self.serial.lock().await;
        ctl.overrides
            .as_ref()
            .map(|o| o.overrides.clone())
            .unwrap_or_default()
    }
}
