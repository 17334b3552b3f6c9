//! `s1-shared`: the core every s1-bridge function and the CLI share.
//!
//! So far it holds the SentinelOne Management API client ([`s1`]) and the redacting secret
//! types ([`secret`]). Later modules (store, platforms, use cases) build on these.

pub mod s1;
pub mod secret;
pub mod secrets;
pub mod store;

pub use secret::ApiToken;
