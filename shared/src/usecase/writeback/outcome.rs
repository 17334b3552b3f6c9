//! What an attempt at a change comes to, and why one stops: the types every step of the
//! writeback (applying, attempting, retrying, the S1 calls) shares, kept below all of them.

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

/// Backoff before the n-th retry: 1, 2, 4 ... minutes, at most an hour.
pub fn backoff(attempts: u32) -> Duration {
    Duration::minutes(1i64 << attempts.saturating_sub(1).min(6))
}
