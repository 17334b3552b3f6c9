//! How a client is set up: retry policy, options, and the observer of every attempt.

use std::time::Duration;

use super::super::ratelimit::RateLimits;
use crate::config::AllowedHosts;

pub use crate::net::RetryPolicy;

/// The default cap on one S1 response body: a page of 1,000 threats is a few megabytes.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Client settings. The defaults suit a Lambda run against a real console.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    pub rate_limits: RateLimits,
    /// Hosts a console URL may name (`S1_BRIDGE_ALLOWED_HOSTS`); checked whenever a client is
    /// built, so a tenant item written straight to the table cannot send the token elsewhere.
    pub allowed_hosts: AllowedHosts,
    /// Longest response body read; a longer one fails the call with
    /// [`S1Error::TooLarge`](crate::s1::S1Error::TooLarge).
    pub max_response_bytes: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            rate_limits: RateLimits::default(),
            allowed_hosts: AllowedHosts::default(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

impl ClientOptions {
    /// The same options with `hosts` as the console allow-list.
    #[must_use]
    pub fn allowing(mut self, hosts: AllowedHosts) -> Self {
        self.allowed_hosts = hosts;
        self
    }
}

/// One attempt of one call, as the outbound request log records it. Holds no token or secret.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub method: String,
    /// API path without the `/web/api/v2.1` prefix, e.g. `/threats/incident`.
    pub path: String,
    /// HTTP status, or `None` when no response arrived.
    pub status: Option<u16>,
    pub latency: Duration,
    /// 1 for the first try.
    pub attempt: u32,
    /// Why the attempt failed, when it did.
    pub error: Option<String>,
}

/// Receives a [`RequestRecord`] for every attempt the client makes.
pub trait RequestObserver: Send + Sync {
    /// Called once per attempt, after its answer (or failure) is known.
    fn record(&self, record: &RequestRecord);
}
