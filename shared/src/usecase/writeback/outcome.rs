//! What an attempt at a change comes to, and why one stops: the types every step of the
//! writeback (accepting, applying, attempting, retrying, the S1 calls) shares, kept below all of
//! them. None of them knows HTTP: the webhook maps them to answers.

use std::time::Duration as StdDuration;

use time::Duration;

use crate::store::StoreError;

#[derive(Debug)]
pub(super) enum ApplyError {
    /// Try again later (S1 down or rate-limiting, network, store).
    Retry(String),
    /// Retrying will not help (permissions, a refused request): straight to the dead letters.
    Fatal(String),
    /// Another attempt is applying a change to this alert: try again later, not an attempt.
    Busy(String),
    /// Another attempt took the pending item over: write nothing more.
    LostClaim,
}

pub(super) fn store_error(e: StoreError) -> ApplyError {
    ApplyError::Retry(format!("state store: {e}"))
}

/// How an attempt ended.
pub(super) enum Attempt {
    /// S1 holds the change; the pending item is retired.
    Applied,
    /// A newer change held the alert: the note was posted, the status and verdict were not, and
    /// the change is listed with the dead letters as superseded.
    Superseded,
    /// Not (fully) applied; it is retried later.
    Pending,
    /// Moved to the dead letters.
    Dead,
    /// Another attempt holds the item or its alert; nothing was done.
    Busy,
}

/// What accepting one change came to.
pub(super) enum Accepted {
    /// Stored as pending; no time was left to try S1 inline.
    Stored,
    /// Stored and tried inline: how the attempt ended and the time it waited on S1.
    Tried(Attempt, StdDuration),
    /// The same delivery was accepted before (our answer was lost).
    Duplicate,
    /// The same comment was accepted before within the dedupe window.
    DuplicateNote,
    /// No story holds the alert the change names.
    UnknownAlert,
    /// Older than the change the alert holds: it would reach S1 out of order.
    Stale,
    /// The state store failed; nothing was accepted.
    Unavailable(StoreError),
}

/// Backoff before the n-th retry: 1, 2, 4 ... minutes, at most an hour.
pub fn backoff(attempts: u32) -> Duration {
    Duration::minutes(1i64 << attempts.saturating_sub(1).min(6))
}
