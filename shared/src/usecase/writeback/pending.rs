//! The change as stored while pending, with the steps already done.

use serde::{Deserialize, Serialize};

use crate::platform::inbound::StatusChange;
use crate::s1::dto::{AnalystVerdict, IncidentStatus};

/// Steps of a pending change, recorded durably (under the attempt's claim) as they complete.
pub(super) mod step {
    /// The status/verdict step is over: applied, or skipped as superseded.
    pub const STATUS: &str = "status";
    /// The status and verdict were not applied: a newer change held the alert.
    pub const SUPERSEDED: &str = "superseded";
    /// The note was about to be sent: a later attempt looks in S1 before sending it again.
    pub const NOTE_STARTED: &str = "note_started";
    /// S1 took the note.
    pub const NOTE: &str = "note";
}

/// The change as stored while pending.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PendingChange {
    pub(super) change: StatusChange,
    /// The story's item name (its key, or an archived story's id) and whether it is archived.
    pub(super) story: String,
    pub(super) archived: bool,
    pub(super) status: Option<IncidentStatus>,
    pub(super) verdict: Option<AnalystVerdict>,
    pub(super) note: String,
    /// Steps already completed (see [`step`]), so a retry never repeats a note.
    #[serde(default)]
    pub(super) done: Vec<String>,
}

impl PendingChange {
    pub(super) fn did(&self, step: &str) -> bool {
        self.done.iter().any(|d| d == step)
    }

    pub(super) fn mark(&mut self, step: &str) {
        if !self.did(step) {
            self.done.push(step.to_owned());
        }
    }

    /// The platform time of the change, for ordering.
    pub(super) fn at_micros(&self) -> i64 {
        (self.change.at.unix_timestamp_nanos() / 1000) as i64
    }
}
