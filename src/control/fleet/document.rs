//! The operator-state document the fleet shares: what `<prefix>/state` holds under `state`.
//!
//! ```json
//! {"format": 1, "overrides": {"new_share_bp": 3000, "evacuated_at": {"old": 1764330000}},
//!  "updated_at": 1764330000, "updated_by": "cutover-0"}
//! ```
//!
//! Only `overrides` (and `full_share_since`, the redirect probation's start) is applied to
//! the snapshot. Fields this version does not know (the
//! rollout's state, added by a later version) are kept verbatim and written back with every
//! change, so an older replica never erases what a newer one wrote.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::RuntimeOverrides;

/// The fleet's operator state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetDocument {
    /// Format version, 1.
    #[serde(default = "one")]
    pub format: u32,
    /// Share override and evacuations, laid over every replica's config file.
    #[serde(default)]
    pub overrides: RuntimeOverrides,
    /// Unix seconds of the last change.
    #[serde(default)]
    pub updated_at: u64,
    /// Replica id that wrote the last change.
    #[serde(default)]
    pub updated_by: String,
    /// Unix second the fleet's share reached 100%: the redirect probation's start, the same on
    /// every replica (see `probation`). An older replica keeps it verbatim in `other`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_share_since: Option<u64>,
    /// Anything else (e.g. a rollout's state), kept as written.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

fn one() -> u32 {
    1
}

/// Why a stored document cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("fleet state generation {generation} is not an operator-state document: {reason}")]
pub struct BadDocument {
    /// The generation that holds it.
    pub generation: u64,
    /// What serde said.
    pub reason: String,
}

impl FleetDocument {
    /// A document holding `overrides`, written by `by` now.
    pub fn new(overrides: RuntimeOverrides, by: &str, now: u64) -> Self {
        FleetDocument {
            format: 1,
            overrides,
            updated_at: now,
            updated_by: by.to_string(),
            full_share_since: None,
            other: Map::new(),
        }
    }

    /// Reads the `state` value of a record.
    pub fn from_value(value: &Value, generation: u64) -> Result<Self, BadDocument> {
        serde_json::from_value(value.clone()).map_err(|e| BadDocument {
            generation,
            reason: e.to_string(),
        })
    }

    /// The JSON value to store.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a document serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let stored = serde_json::json!({
            "format": 1,
            "overrides": {"new_share_bp": 2500},
            "rollout": {"step": 3, "paused": false},
        });
        let mut d = FleetDocument::from_value(&stored, 4).unwrap();
        assert_eq!(d.overrides.new_share_bp, Some(2500));
        d.overrides.new_share_bp = Some(3000);
        let back = d.to_value();
        assert_eq!(
            back["rollout"]["step"], 3,
            "a later version's field is kept: {back}"
        );
        assert_eq!(back["overrides"]["new_share_bp"], 3000);
    }

    #[test]
    fn an_empty_object_is_no_overrides_and_garbage_names_its_generation() {
        let d = FleetDocument::from_value(&serde_json::json!({}), 1).unwrap();
        assert!(d.overrides.is_empty());
        let e = FleetDocument::from_value(&serde_json::json!({"overrides": {"share": 1}}), 9)
            .unwrap_err();
        assert!(e.to_string().contains("generation 9"), "{e}");
        assert!(e.to_string().contains("share"), "{e}");
    }
}
