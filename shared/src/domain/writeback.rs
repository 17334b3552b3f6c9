//! The writeback's own record: a [`PendingWriteback`] and the change it carries (what the
//! platform said, what it means in S1, and the steps of it already done). The writeback reads
//! and writes it under its claim; the store keeps it as it is.
//!
//! Stored as JSON inside the pending item (`change`), in the shape the writeback wrote before it
//! was typed here: the same field names, `done` a list of step names.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::change::StatusChange;
use crate::s1::dto::{AnalystVerdict, IncidentStatus};

/// A step of a pending change, recorded durably (under the attempt's claim) as it completes, so
/// a later attempt goes on from there and never repeats a note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WritebackStep {
    /// The status/verdict step is over: applied, or skipped as superseded.
    Status,
    /// The status and verdict were not applied: a newer change held the alert.
    Superseded,
    /// The status and verdict were sent to S1 (or were about to be): S1 may hold them on some of
    /// the story's members. Taken back when S1 surely made no change. A change superseded after
    /// this gets its verdict onto every member, so the story's members never disagree on it.
    FieldsSent,
    /// The note was about to be sent: a later attempt looks in S1 before sending it again.
    NoteStarted,
    /// S1 took the note.
    Note,
}

/// The change as stored while pending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingChange {
    /// The change as the platform's webhook said it (free text already cut to what S1 takes).
    pub change: StatusChange,
    /// The story's item name (its key, or an archived story's id).
    pub story: String,
    /// Whether the story is archived (a later story of the same key is current).
    pub archived: bool,
    /// The S1 status the change maps to (`None`: a note).
    pub status: Option<IncidentStatus>,
    /// The S1 verdict the change maps to, if any.
    pub verdict: Option<AnalystVerdict>,
    /// The note S1 gets.
    pub note: String,
    /// Steps already completed.
    #[serde(default)]
    pub done: BTreeSet<WritebackStep>,
}

impl PendingChange {
    /// The platform time of the change in microseconds, for ordering.
    pub fn at_micros(&self) -> i64 {
        (self.change.at.unix_timestamp_nanos() / 1000) as i64
    }
}

/// A change still to be written to S1, or (when `dead`) one that ran out of attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingWriteback {
    pub id: String,
    pub alert_key: String,
    pub change: PendingChange,
    pub attempts: u32,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub next_attempt_at: OffsetDateTime,
}

#[cfg(any(test, feature = "test-util"))]
impl PendingChange {
    /// A generic platform's "resolved" of story `story`'s alert at `at`, mapped to S1's
    /// resolved, nothing done yet: a pending change for tests of the store.
    pub fn for_test(story: &str, at: time::OffsetDateTime) -> Self {
        use crate::domain::PlatformKind;
        use crate::domain::change::{AlertRef, ChangeAction, PlatformState};
        Self {
            change: StatusChange {
                event_id: format!("evt-{story}"),
                platform: PlatformKind::Generic,
                alert: AlertRef::Key(format!("s1:acme.sentinelone.net:{story}")),
                action: ChangeAction::Status {
                    state: PlatformState::Resolved,
                    close_reason: None,
                    verdict: None,
                },
                analysis: None,
                actor: None,
                at,
            },
            story: story.to_owned(),
            archived: false,
            status: Some(IncidentStatus::Resolved),
            verdict: None,
            note: "[generic] resolved by an automation".to_owned(),
            done: BTreeSet::new(),
        }
    }
}
