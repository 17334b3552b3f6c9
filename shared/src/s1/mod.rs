//! SentinelOne Management API v2.1 client.
//!
//! [`S1Client`] speaks to one console with one token. It pages with cursors as streams (one page
//! in memory at a time), retries what is safe to retry, keeps under S1's per-endpoint rate
//! limits itself, and turns every failure into an [`S1Error`] that says what to do about it.
//! [`Consoles`] keeps one client per tenant and calls it with the tenant's token.

mod client;
mod consoles;
pub mod dto;
mod error;
mod ratelimit;

/// UAM writes: status, verdict and notes of unified alerts.
pub use client::uam::actions as uam_writes;
pub use client::{
    AgentQuery, AlertLink, ClientOptions, CloudAlertQuery, MAX_PAGE_LIMIT, Page, RequestObserver, RequestRecord,
    RetryPolicy, S1Client, SiteQuery, SortOrder, ThreatQuery, ThreatSort, UNIFIED_MAX_PAGE, UnifiedAlertQuery,
    decode_response,
};
pub use consoles::{Console, ConsoleError, Consoles};
pub use error::{GraphQlError, S1Error, S1ErrorBody, SURFACE_TOO_MANY_REQUESTS};
pub use ratelimit::{EndpointFamily, RateLimits};
