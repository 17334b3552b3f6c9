//! One use case per function. They take ports, never SDK clients, so they run the same under
//! Lambda, in the one-machine runner and in tests.

pub mod poll_threats;
pub mod sync_assets;
pub mod token_expiry;
pub mod writeback;

use std::sync::Arc;

/// How far a long run has got: S1 objects handled so far, and how many S1 says the listing holds
/// (when it sent a count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// S1 objects handled so far in this run.
    pub done: u64,
    /// What S1 says the run will see in all, when it sent a count.
    pub expected: Option<u64>,
}

/// A live view of a long run: called with a tenant's running counts after each page it handles.
/// The CLI draws its progress line from it; the Lambdas leave it unset, since their report is
/// logged at the end.
pub type Progress<R> = Arc<dyn Fn(&R, Tick) + Send + Sync>;
