//! What every inbound adapter produces: a platform's webhook as one normalised
//! [`StatusChange`], and the helpers the adapters share (header reading, constant-time
//! comparison, delivery ids, times, verdict words). Each platform's own verification and
//! parsing is in its folder (`generic/inbound.rs`, `pagerduty/inbound.rs`).

use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::HeaderMap;
use sha2::Sha256;
use time::OffsetDateTime;

// The change's types are the domain's (the pending writeback stores them); the adapters name
// them here, beside the helpers that build them.
pub use crate::domain::change::{AlertRef, ChangeAction, PlatformState, StatusChange};
use crate::s1::dto::AnalystVerdict;

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
