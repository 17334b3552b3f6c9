//! The answers the platform gets: their shape and the few built alike wherever they are decided
//! (accepting a change, or the request as a whole).

use std::time::Duration as StdDuration;

use serde_json::{Value, json};

use crate::store::StoreError;

/// The HTTP answer to a webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookResponse {
    pub status: u16,
    pub body: Value,
    /// Time spent waiting on S1 inside the handler (for the latency benchmark).
    pub s1_time: StdDuration,
}

pub(super) fn answer(status: u16, message: impl Into<String>) -> WebhookResponse {
    WebhookResponse {
        status,
        body: json!({ "status": status, "message": message.into() }),
        s1_time: StdDuration::ZERO,
    }
}

/// The one answer to every request that cannot be verified: unknown tenant, disabled tenant,
/// another platform's endpoint, missing or wrong signature.
pub(super) fn unauthorized() -> WebhookResponse {
    answer(401, "the request could not be verified")
}

/// The state store failed: the platform retries; what failed goes to the log only.
pub(super) fn unavailable(e: &StoreError) -> WebhookResponse {
    tracing::error!(error = %e, "state store unavailable");
    answer(503, "temporarily unavailable; retry later")
}
