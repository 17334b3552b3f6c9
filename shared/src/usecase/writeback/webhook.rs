//! The HTTP side of the writeback: a request checked, verified and parsed into changes, and
//! the answer the platform gets.

use std::time::Instant;

use reqwest::header::HeaderMap;
use time::OffsetDateTime;

use super::accept::{accept, accept_all};
use super::notes::bounded;
pub use super::response::WebhookResponse;
use super::response::{answer, unauthorized, unavailable};
use super::{MAX_BODY, MAX_FUTURE, REPLAY_WINDOW, WebhookOptions, WritebackDeps};
use crate::platform::PlatformKind;
use crate::platform::inbound::{Inbound, InboundError};
use crate::store::StoreError;

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
        return accept(deps, &tenant, bounded(change), now, budget).await;
    }
    accept_all(deps, &tenant, changes, now, started, options.budget).await
}
