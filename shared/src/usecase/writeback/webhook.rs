//! The HTTP side of the writeback, and the only file that knows it: a request checked, verified
//! and parsed into changes, what accepting them came to mapped to status codes, and the answer
//! the platform gets.

use std::time::{Duration as StdDuration, Instant};

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::accept::accept;
use super::notes::bounded;
use super::outcome::{Accepted, Attempt};
use super::{MAX_BODY, MAX_FUTURE, REPLAY_WINDOW, WebhookOptions, WritebackDeps};
use crate::platform::PlatformKind;
use crate::platform::inbound::{Inbound, InboundError, StatusChange};
use crate::store::StoreError;
use crate::tenant::TenantConfig;

/// The HTTP answer to a webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookResponse {
    pub status: u16,
    pub body: Value,
    /// Time spent waiting on S1 inside the handler (for the latency benchmark).
    pub s1_time: StdDuration,
}

fn answer(status: u16, message: impl Into<String>) -> WebhookResponse {
    WebhookResponse {
        status,
        body: json!({ "status": status, "message": message.into() }),
        s1_time: StdDuration::ZERO,
    }
}

/// The one answer to every request that cannot be verified: unknown tenant, disabled tenant,
/// another platform's endpoint, missing or wrong signature.
fn unauthorized() -> WebhookResponse {
    answer(401, "the request could not be verified")
}

/// The state store failed: the platform retries; what failed goes to the log only.
fn unavailable(e: &StoreError) -> WebhookResponse {
    tracing::error!(error = %e, "state store unavailable");
    answer(503, "temporarily unavailable; retry later")
}

/// The answer to a delivery accepted before.
const DUPLICATE: &str = "duplicate delivery: already accepted";

/// The answer to one accepted (or refused) change.
fn accepted_answer(outcome: Accepted) -> WebhookResponse {
    let writeback = |state: &str, s1_time| WebhookResponse {
        status: 202,
        body: json!({ "status": 202, "message": "accepted", "writeback": state }),
        s1_time,
    };
    match outcome {
        Accepted::Stored => writeback("pending", StdDuration::ZERO),
        Accepted::Tried(attempt, s1_time) => {
            let state = match attempt {
                Attempt::Applied => "applied",
                Attempt::Superseded => "superseded",
                Attempt::Pending | Attempt::Busy => "pending",
                Attempt::Dead => "dead_letter",
            };
            writeback(state, s1_time)
        }
        Accepted::Duplicate => answer(200, DUPLICATE),
        Accepted::DuplicateNote => answer(200, "duplicate note: already accepted"),
        Accepted::UnknownAlert => answer(404, "unknown alert"),
        Accepted::Stale => answer(409, "older than the last change applied to this alert"),
        Accepted::Unavailable(e) => unavailable(&e),
    }
}

/// Several changes from one delivery, in the order they happened, within one budget. The answer
/// is the first failure the platform should retry (503: the accepted ones are then replays), else
/// 202 with each change's answer.
async fn accept_all(
    deps: &WritebackDeps,
    tenant: &TenantConfig,
    mut changes: Vec<StatusChange>,
    now: OffsetDateTime,
    started: Instant,
    total: StdDuration,
) -> WebhookResponse {
    changes.sort_by_key(|c| c.at);
    let mut each = Vec::new();
    let mut s1_time = StdDuration::ZERO;
    for change in changes {
        let id = change.event_id.clone();
        let budget = total.saturating_sub(started.elapsed());
        let r = accepted_answer(accept(deps, tenant, bounded(change), now, budget).await);
        if r.status >= 500 {
            return r;
        }
        s1_time += r.s1_time;
        each.push(json!({"event": id, "status": r.status, "answer": r.body}));
    }
    WebhookResponse {
        status: 202,
        body: json!({"status": 202, "message": "accepted", "changes": each}),
        s1_time,
    }
}

/// Answers one webhook: `POST /<platform>/<tenant>` with the raw body, within
/// [`INLINE_BUDGET`](super::INLINE_BUDGET).
///
/// 202 accepted (applied, or pending when S1 is unavailable or slow), 200 replay or nothing to
/// do, 400 malformed, 401 not verified (one answer for an unknown or disabled tenant, another
/// platform's endpoint and a bad signature), 404 unknown alert, 409 older than the last applied
/// change, 413 too large, 503 state store unavailable (the platform retries; no detail given).
pub async fn handle_webhook(
    deps: &WritebackDeps,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> WebhookResponse {
    handle_webhook_with(deps, method, path, headers, body, &WebhookOptions::default()).await
}

/// [`handle_webhook`] with an explicit budget and clock.
pub async fn handle_webhook_with(
    deps: &WritebackDeps,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    options: &WebhookOptions,
) -> WebhookResponse {
    let started = Instant::now();
    if !method.eq_ignore_ascii_case("POST") {
        return answer(405, "webhooks are POSTed");
    }
    if body.len() > MAX_BODY {
        return answer(413, format!("body is {} bytes; the limit is {MAX_BODY}", body.len()));
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (platform, tenant_id) = match parts.as_slice() {
        [p, t] if PlatformKind::parse(p).is_some() => (PlatformKind::parse(p).expect("checked"), *t),
        _ => {
            let paths: Vec<String> = PlatformKind::ALL.iter().map(|k| format!("/{k}/<tenant>")).collect();
            return answer(404, format!("no such webhook endpoint: use {}", paths.join(" or ")));
        }
    };
    // Unknown, disabled or mismatched tenant and a failed check all get the same answer, so
    // nobody learns which tenants exist or what they use; the log says which it was.
    let tenant = match deps.store.get_tenant(tenant_id).await {
        Ok(Some(t)) if t.enabled && t.platform.kind() == platform => t,
        Ok(Some(t)) => {
            let why = if t.enabled {
                "the tenant uses another platform"
            } else {
                "the tenant is disabled"
            };
            tracing::warn!(tenant = %t.id, platform = %platform, reason = why, "webhook refused");
            return unauthorized();
        }
        Ok(None) | Err(StoreError::Invalid(_)) => {
            tracing::warn!(platform = %platform, "webhook refused: unknown tenant");
            return unauthorized();
        }
        Err(e) => return unavailable(&e),
    };
    let now = options.now.unwrap_or_else(OffsetDateTime::now_utc);
    let inbound = match deps.platforms.inbound(&tenant).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(tenant = %tenant.id, error = %e, "inbound webhook auth is not configured");
            return unauthorized();
        }
    };
    if let Err(e) = inbound.verify(headers, body, now) {
        tracing::warn!(tenant = %tenant.id, error = %e, "webhook refused");
        return unauthorized();
    }
    let changes = match inbound.parse(headers, body).await {
        Ok(Inbound::Change(c)) => vec![c],
        Ok(Inbound::Batch(cs)) => cs,
        Ok(Inbound::Ignore(why)) => return answer(200, format!("ignored: {why}")),
        Err(InboundError::Malformed(m)) => return answer(400, m),
        Err(InboundError::Unauthorized(m)) => {
            tracing::warn!(tenant = %tenant.id, error = %m, "webhook refused");
            return unauthorized();
        }
        Err(InboundError::Unavailable(m)) => {
            tracing::warn!(tenant = %tenant.id, error = %m, "webhook could not be read back");
            return answer(503, "temporarily unavailable; retry later");
        }
    };
    let field = inbound.time_field();
    for change in &changes {
        if change.at > now + MAX_FUTURE {
            return answer(
                400,
                format!(
                    "{field} {} is more than 5 minutes in the future",
                    crate::s1::dto::format_time(change.at)
                ),
            );
        }
        // Standard Webhooks signs a fresh timestamp (checked within 300 s); the others carry
        // only the event's own time.
        if !inbound.signs_fresh_timestamp() && change.at < now - REPLAY_WINDOW {
            return answer(
                400,
                format!(
                    "{field} {} is older than the 24-hour replay window",
                    crate::s1::dto::format_time(change.at)
                ),
            );
        }
    }
    if changes.len() == 1 {
        let budget = options.budget.saturating_sub(started.elapsed());
        let change = changes.into_iter().next().expect("one change");
        return accepted_answer(accept(deps, &tenant, bounded(change), now, budget).await);
    }
    accept_all(deps, &tenant, changes, now, started, options.budget).await
}
