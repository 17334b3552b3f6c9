//! One use case per function. They take ports, never SDK clients, so they run the same under
//! Lambda, in the one-machine runner and in tests.

pub mod poll_threats;
pub mod sync_assets;
pub mod token_expiry;
pub mod writeback;
