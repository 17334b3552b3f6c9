//! A verified change accepted: resolved to its story, mapped, stored with its replay markers in
//! one write, and tried inline within what is left of the webhook's budget.

use std::time::{Duration as StdDuration, Instant};

use serde_json::json;
use time::OffsetDateTime;

use super::attempt::attempt;
use super::notes::{bounded, note_text};
use super::outcome::Attempt;
use super::resolve::resolve_story;
use super::response::{WebhookResponse, answer, unavailable};
use super::{EVENT_TTL, MIN_ATTEMPT_WINDOW, NOTE_DEDUPE_WINDOW, WritebackDeps};
use crate::mapping::Mapping;
use crate::platform::inbound::{ChangeAction, StatusChange};
use crate::store::{Acceptance, PendingChange, PendingEntry, PendingWriteback, TenantConfig};

/// Several changes from one delivery, in the order they happened, within one budget. The answer
/// is the first failure the platform should retry (503: the accepted ones are then replays), else
/// 202 with each change's answer.
pub(super) async fn accept_all(
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
        let r = accept(deps, tenant, bounded(change), now, budget).await;
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

/// The answer to a delivery accepted before.
const DUPLICATE: &str = "duplicate delivery: already accepted";

pub(super) async fn accept(
    deps: &WritebackDeps,
    tenant: &TenantConfig,
    change: StatusChange,
    now: OffsetDateTime,
    budget: StdDuration,
) -> WebhookResponse {
    let mapping = Mapping::new(&tenant.mapping_overrides);
    let (name, archived, story) = match resolve_story(&deps.store, tenant, change.platform, &change.alert).await {
        Ok(Some(found)) => found,
        Ok(None) => return answer(404, "unknown alert"),
        Err(e) => return unavailable(&e),
    };
    let (status, verdict) = match &change.action {
        ChangeAction::Status {
            state,
            close_reason,
            verdict,
        } => (
            Some(mapping.status(*state)),
            mapping.verdict(close_reason.as_deref(), *verdict),
        ),
        ChangeAction::Note { verdict } => (None, *verdict),
    };
    let id = crate::domain::short_digest(format!("{}\n{}", change.platform, change.event_id).as_bytes());
    let pending_change = PendingChange {
        note: note_text(&change),
        change: change.clone(),
        story: name,
        archived,
        status,
        verdict,
        done: Default::default(),
    };
    let event_key = format!("{}:{}", change.platform, change.event_id);
    if status.is_some() {
        // Older than the change the alert holds: it would reach S1 out of order. Unless it is
        // a delivery we accepted before (our answer was lost): that one is retried already.
        match deps.store.alert_order(&tenant.id, &story.value.id).await {
            Ok(o) if o.supersedes(pending_change.at_micros(), &id) => {
                return match deps.store.delivery_seen(&tenant.id, &event_key).await {
                    Ok(true) => answer(200, DUPLICATE),
                    Ok(false) => answer(409, "older than the last change applied to this alert"),
                    Err(e) => unavailable(&e),
                };
            }
            Ok(_) => {}
            Err(e) => return unavailable(&e),
        }
    }
    let pending = PendingWriteback {
        id,
        alert_key: story.value.id.clone(),
        change: pending_change,
        attempts: 0,
        last_error: None,
        created_at: now,
        next_attempt_at: now,
    };
    let mut markers = vec![(event_key.as_str(), EVENT_TTL)];
    // The note carries platform, actor and text: what makes two comments the same.
    let note_key = format!(
        "note:{}",
        crate::domain::short_digest(format!("{}\n{}", pending.alert_key, pending.change.note).as_bytes())
    );
    if matches!(change.action, ChangeAction::Note { .. }) {
        markers.push((note_key.as_str(), NOTE_DEDUPE_WINDOW));
    }
    match deps.store.accept_change(&tenant.id, &markers, &pending, now).await {
        Ok(Acceptance::Accepted) => {}
        Ok(Acceptance::Duplicate) => return answer(200, DUPLICATE),
        Ok(Acceptance::DuplicateNote) => return answer(200, "duplicate note: already accepted"),
        Err(e) => return unavailable(&e),
    }
    if budget < MIN_ATTEMPT_WINDOW {
        // No time left to try S1 inline: the next run applies it.
        return WebhookResponse {
            status: 202,
            body: json!({ "status": 202, "message": "accepted", "writeback": "pending" }),
            s1_time: StdDuration::ZERO,
        };
    }
    let entry = PendingEntry {
        value: pending,
        version: 0,
        claim: None,
    };
    let (outcome, s1_time) = attempt(deps, tenant, entry, &deps.inline_retry, now, Some(story), budget).await;
    let state = match outcome {
        Attempt::Applied => "applied",
        Attempt::Superseded => "superseded",
        Attempt::Pending | Attempt::Busy => "pending",
        Attempt::Dead => "dead_letter",
    };
    WebhookResponse {
        status: 202,
        body: json!({ "status": 202, "message": "accepted", "writeback": state }),
        s1_time,
    }
}
