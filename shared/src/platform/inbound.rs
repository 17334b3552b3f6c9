//! What every inbound adapter produces: a platform's webhook as one normalised
//! [`StatusChange`], and the helpers the adapters share (header reading, constant-time
//! comparison, delivery ids, times, verdict words). Each platform's own verification and
//! parsing is in its folder (`generic/inbound.rs`, `pagerduty/inbound.rs`).

use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
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

/// The outcome of reading a webhook.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Change(StatusChange),
    /// Several changes (a platform that reports a ticket's history, or a batched delivery), in
    /// the order they happened.
    Batch(Vec<StatusChange>),
    /// Valid but nothing to do (a ping, our own echo, an event type we do not map).
    Ignore(String),
}

/// Why a webhook was refused before any change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InboundError {
    #[error("signature check failed: {0}")]
    Unauthorized(String),
    #[error("malformed webhook: {0}")]
    Malformed(String),
    /// Verified, but what it names could not be read back from the platform now: it may send
    /// it again.
    #[error("the platform could not be read back: {0}")]
    Unavailable(String),
}

/// A header's value, when it is text.
pub fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Compares secrets in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Through HMAC so the comparison time never depends on where the bytes differ.
    let key = [0u8; 32];
    let mut ma = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    ma.update(a);
    let mut mb = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mb.update(b);
    mb.verify(&ma.finalize().into_bytes()).is_ok()
}

/// The longest delivery id accepted (it keys the replay marker).
pub const MAX_DELIVERY_ID: usize = 256;

/// A delivery's id: present, not empty, at most [`MAX_DELIVERY_ID`] bytes, no control characters.
pub fn delivery_id(id: Option<&str>, what: &str) -> Result<String, InboundError> {
    match id {
        None | Some("") => Err(InboundError::Malformed(format!("{what} is required"))),
        Some(id) if id.len() > MAX_DELIVERY_ID => Err(InboundError::Malformed(format!(
            "{what} is {} bytes; the limit is {MAX_DELIVERY_ID}",
            id.len()
        ))),
        Some(id) if id.chars().any(char::is_control) => {
            Err(InboundError::Malformed(format!("{what} holds control characters")))
        }
        Some(id) => Ok(id.to_owned()),
    }
}

/// An RFC 3339 time from a webhook field.
///
/// # Errors
/// [`InboundError::Malformed`] naming the field.
pub fn parse_time(s: &str, field: &str) -> Result<OffsetDateTime, InboundError> {
    crate::s1::dto::parse_time(s).map_err(|_| InboundError::Malformed(format!("{field} {s:?} is not RFC 3339")))
}

/// A verdict spelled as a word (`false positive`, `true_positive`, ...).
pub fn verdict_word(s: &str) -> Option<AnalystVerdict> {
    match s.trim().to_ascii_lowercase().replace([' ', '-'], "_").as_str() {
        "true_positive" => Some(AnalystVerdict::TruePositive),
        "false_positive" => Some(AnalystVerdict::FalsePositive),
        "suspicious" => Some(AnalystVerdict::Suspicious),
        "undefined" => Some(AnalystVerdict::Undefined),
        _ => None,
    }
}
