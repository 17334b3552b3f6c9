//! A change a platform made to an alert, normalised: what every inbound adapter produces and
//! what a pending writeback stores.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::PlatformKind;
use crate::s1::dto::AnalystVerdict;

/// A platform's state for an alert, as its webhook says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlatformState {
    New,
    Reopened,
    Investigating,
    Acknowledged,
    InProgress,
    Closed,
    Resolved,
}

impl PlatformState {
    /// The state's name as the mapping table spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PlatformState::New => "new",
            PlatformState::Reopened => "reopened",
            PlatformState::Investigating => "investigating",
            PlatformState::Acknowledged => "acknowledged",
            PlatformState::InProgress => "in_progress",
            PlatformState::Closed => "closed",
            PlatformState::Resolved => "resolved",
        }
    }
}

/// How the platform identifies the alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlertRef {
    /// Our own alert key, echoed back (`s1:<host>:<story id>`), or a dedup key.
    Key(String),
    /// Only the platform's own id (a PagerDuty incident id), resolvable once we have seen it.
    PlatformId(String),
    /// Both: the key, and the platform id to remember for later events.
    KeyAndId(String, String),
}

/// What the analyst did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ChangeAction {
    /// The alert's state changed.
    Status {
        state: PlatformState,
        close_reason: Option<String>,
        verdict: Option<AnalystVerdict>,
    },
    /// A comment, a response action, or a late resolution note; with a verdict when the note
    /// implies one (PagerDuty's "Resolution Note: false positive ...").
    Note { verdict: Option<AnalystVerdict> },
}

/// One normalised change from a platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusChange {
    /// The platform's delivery id (stable across its retries).
    pub event_id: String,
    pub platform: PlatformKind,
    pub alert: AlertRef,
    pub action: ChangeAction,
    pub analysis: Option<String>,
    pub actor: Option<String>,
    /// When the analyst made the change (orders status changes).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}
