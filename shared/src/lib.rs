//! `s1-shared`: the core every s1-bridge function and the CLI share.
//!
//! - [`s1`]: the SentinelOne Management API client.
//! - [`store`]: the state store port, its DynamoDB and embedded backends, and the typed facade
//!   that keeps the model.
//! - [`tenant`]: a tenant's configuration and secret references, and reading a tenant file.
//! - [`secrets`]: where S1 tokens and webhook secrets come from.
//! - [`platform`]: the platform port and its adapters.
//! - [`domain`]: the model (stories, checkpoints, changes, pending writebacks, the platform's
//!   identity) and its pure rules (grouping, digests, severity).
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
