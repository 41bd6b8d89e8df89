//! What the engine answers: the [`Action`]s the lead carries out and the [`Event`]s that go to
//! the webhook and the log.

use serde::Serialize;

use crate::rollout::gate::Verdict;

/// What the engine asks the lead to do. The engine has already updated its own state.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Set the share on new (basis points) through the `cutover shift` path.
    SetShare(u16),
    /// Share to 0; with `evacuate_new`, also evacuate the shoppers pinned to new.
    Rollback {
        /// Evacuate pins on new as well.
        evacuate_new: bool,
    },
    /// The engine paused itself (failed gates with `action = "pause"`, or a silent source): nothing
    /// to apply; persist and show the reason.
    Pause(String),
    /// Tell people (webhook, log).
    Notify(Event),
}

/// What happened, for the webhook and the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Step one began.
    Started,
    /// Moved to the next step after passing gates.
    Advanced,
    /// An operator skipped to the next step.
    Promoted,
    /// Past the last step.
    Completed,
    /// Paused (operator, failed gates or silent source).
    Paused,
    /// An operator resumed.
    Resumed,
    /// Gates failed `failure_limit` times in a row: share to 0.
    RolledBack,
    /// An operator aborted.
    Aborted,
    /// Advise mode: would have advanced (or completed).
    WouldAdvance,
    /// Advise mode: would have rolled back.
    WouldRollBack,
    /// Advise mode: would have paused.
    WouldPause,
}

impl EventKind {
    /// Label for logs and the webhook.
    pub fn as_str(&self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Advanced => "advanced",
            EventKind::Promoted => "promoted",
            EventKind::Completed => "completed",
            EventKind::Paused => "paused",
            EventKind::Resumed => "resumed",
            EventKind::RolledBack => "rolled_back",
            EventKind::Aborted => "aborted",
            EventKind::WouldAdvance => "would_advance",
            EventKind::WouldRollBack => "would_roll_back",
            EventKind::WouldPause => "would_pause",
        }
    }
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// Step number, 1-based, after the event.
    pub step: usize,
    /// Steps in the plan.
    pub steps: usize,
    /// Share on new after the event (basis points); in advise mode, the share it would have.
    pub share_bp: u16,
    /// Whether the rollout acts or only advises.
    pub advise: bool,
    /// One human sentence.
    pub message: String,
    /// Verdicts behind the event, if an evaluation caused it.
    pub verdicts: Vec<Verdict>,
}
