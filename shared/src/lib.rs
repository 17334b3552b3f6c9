//! `s1-shared`: the core every s1-bridge function and the CLI share.
//!
//! - [`s1`]: the SentinelOne Management API client.
//! - [`store`]: the state store port, its DynamoDB and embedded backends, and typed records.
//! - [`secrets`]: where S1 tokens and webhook secrets come from.
//! - [`platform`]: the platform port and its adapters.
//! - [`domain`]: pure rules (stories, digests, severity).
//! - [`usecase`]: one use case per function.
//! - [`telemetry`]: EMF metrics.
//! - [`net`]: outbound HTTP safety (no redirects, the DNS guard, capped bodies, named causes).

pub mod config;
pub mod domain;
pub mod ip;
pub mod lambda;
pub mod mapping;
pub mod net;
pub mod platform;
pub mod queue;
pub mod s1;
pub mod secret;
pub mod secrets;
pub mod store;
pub mod telemetry;
pub mod tenant;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
pub mod usecase;

pub use secret::ApiToken;
