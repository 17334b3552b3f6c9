//! A verified change accepted: resolved to its story, mapped, stored with its replay markers in
//! one write, and tried inline within what is left of the webhook's budget. What came of it is
//! an [`Accepted`]; the webhook alone turns that into an HTTP answer.

use std::time::Duration as StdDuration;

use time::OffsetDateTime;

use super::attempt::attempt;
use super::notes::note_text;
use super::outcome::Accepted;
use super::resolve::resolve_story;
use super::{EVENT_TTL, MIN_ATTEMPT_WINDOW, NOTE_DEDUPE_WINDOW, WritebackDeps};
use crate::domain::{PendingChange, PendingWriteback};
use crate::mapping::Mapping;
use crate::platform::inbound::{ChangeAction, StatusChange};
use crate::store::{Acceptance, PendingEntry};
use crate::tenant::TenantConfig;

pub(super) async fn accept(
    deps: &WritebackDeps,
    tenant: &TenantConfig,
    change: StatusChange,
    now: OffsetDateTime,
    budget: StdDuration,
) -> Accepted {
    let mapping = Mapping::new(&tenant.mapping_overrides);
    let (name, archived, story) = match resolve_story(&deps.store, tenant, change.platform, &change.alert).await {
        Ok(Some(found)) => found,
        Ok(None) => return Accepted::UnknownAlert,
        Err(e) => return Accepted::Unavailable(e),
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
                    Ok(true) => Accepted::Duplicate,
                    Ok(false) => Accepted::Stale,
                    Err(e) => Accepted::Unavailable(e),
                };
            }
            Ok(_) => {}
            Err(e) => return Accepted::Unavailable(e),
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
        Ok(Acceptance::Duplicate) => return Accepted::Duplicate,
        Ok(Acceptance::DuplicateNote) => return Accepted::DuplicateNote,
        Err(e) => return Accepted::Unavailable(e),
    }
    if budget < MIN_ATTEMPT_WINDOW {
        // No time left to try S1 inline: the next run applies it.
        return Accepted::Stored;
    }
    let entry = PendingEntry {
        value: pending,
        version: 0,
        claim: None,
    };
    let (outcome, s1_time) = attempt(deps, tenant, entry, &deps.inline_retry, now, Some(story), budget).await;
    Accepted::Tried(outcome, s1_time)
}
