//! Applying a claimed change to S1: its status and verdict under the alert's ordering lock,
//! then its note, each step recorded as it completes; and the end of an applied change in one
//! store transaction.

use std::sync::Arc;

use time::OffsetDateTime;

use super::SUPERSEDED;
use super::WritebackDeps;
use super::attempt::Attempt;
use super::notes::superseded_note;
use super::s1_calls::{Recorder, S1Calls, call_error, check_details, note_in_s1, outbound_records, summarize};
use crate::platform::inbound::{ChangeAction, PlatformState};
use crate::s1::RetryPolicy;
use crate::store::{
    AlertLock, Claim, Finished, OutboundRequest, PendingWriteback, StoreError, StoryRecord, StoryStatus, TenantConfig,
    Versioned, WritebackStep as Step,
};

#[derive(Debug)]
pub(super) enum ApplyError {
    /// Try again later (S1 down or rate-limiting, network, store).
    Retry(String),
    /// Retrying will not help (permissions, a refused request): straight to the dead letters.
    Fatal(String),
    /// Another attempt is applying a change to this alert: try again later, not an attempt.
    Busy(String),
    /// Another attempt took the pending item over: write nothing more.
    LostClaim,
}

pub(super) fn store_error(e: StoreError) -> ApplyError {
    ApplyError::Retry(format!("state store: {e}"))
}

/// One attempt on one claimed pending item.
pub(super) struct Work<'a> {
    pub(super) deps: &'a WritebackDeps,
    pub(super) tenant: &'a TenantConfig,
    pub(super) pending: PendingWriteback,
    /// The pending item's version as we last wrote it (under our claim).
    pub(super) version: u64,
    pub(super) claim: Claim,
    /// The alert's ordering lock, while we hold it.
    pub(super) lock: Option<AlertLock>,
    pub(super) now: OffsetDateTime,
}

impl Work<'_> {
    /// Records progress durably under the claim. Losing the claim stops the attempt.
    async fn save(&mut self) -> Result<(), ApplyError> {
        match self
            .deps
            .store
            .update_pending(&self.tenant.id, &self.pending, self.version, Some(&self.claim))
            .await
        {
            Ok(Some(v)) => {
                self.version = v;
                Ok(())
            }
            Ok(None) => Err(ApplyError::LostClaim),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn lock_alert(&mut self) -> Result<(), ApplyError> {
        if self.lock.is_some() {
            return Ok(());
        }
        match self
            .deps
            .store
            .lock_alert(&self.tenant.id, &self.pending.alert_key, &self.claim, self.now)
            .await
        {
            Ok(Some(l)) => {
                self.lock = Some(l);
                Ok(())
            }
            Ok(None) => Err(ApplyError::Busy(
                "another attempt is applying a change to this alert".into(),
            )),
            Err(e) => Err(store_error(e)),
        }
    }
}

pub(super) async fn apply(
    w: &mut Work<'_>,
    retry: &RetryPolicy,
    recorder: &Arc<Recorder>,
    known: Option<Versioned<StoryRecord>>,
) -> Result<Attempt, ApplyError> {
    let (deps, tenant) = (w.deps, w.tenant);
    // The webhook path has just read the story; a scheduled retry reads it afresh.
    let story = match known {
        Some(s) => s,
        None => deps
            .store
            .get_story(&tenant.id, &w.pending.change.story)
            .await
            .map_err(store_error)?
            .ok_or_else(|| ApplyError::Fatal(format!("story {} no longer exists", w.pending.change.story)))?,
    };
    let threat_ids: Vec<String> = story
        .value
        .members
        .keys()
        .filter_map(crate::domain::MemberId::threat_id)
        .map(str::to_owned)
        .collect();
    let alert_ids: Vec<String> = story
        .value
        .members
        .keys()
        .filter_map(crate::domain::MemberId::star_alert_id)
        .map(str::to_owned)
        .collect();
    // The token is read and the client built before anything is locked: when either fails,
    // the attempt ends here.
    deps.consoles.client_for(tenant).await.map_err(call_error)?;
    let s1 = S1Calls {
        deps,
        tenant,
        retry,
        recorder,
    };
    let (threats, alerts) = (threat_ids.as_slice(), alert_ids.as_slice());
    let at = w.pending.change.at_micros();
    let id = w.pending.id.clone();
    let ordered = w.pending.change.status.is_some();
    let mut results = Vec::new();
    if ordered {
        // Status changes of one alert go to S1 one at a time, in platform-time order.
        w.lock_alert().await?;
    }
    if !w.pending.change.done.contains(&Step::Status) {
        match (w.pending.change.status, w.pending.change.verdict) {
            (Some(status), verdict) => {
                let lock = w.lock.as_mut().expect("locked above");
                if lock.order.supersedes(at, &id) {
                    w.pending.change.done.insert(Step::Superseded);
                } else {
                    // Marked before S1 is called, so no older change can follow this one.
                    if !deps
                        .store
                        .mark_alert(&tenant.id, lock, at, &id)
                        .await
                        .map_err(store_error)?
                    {
                        return Err(ApplyError::LostClaim);
                    }
                    if !threat_ids.is_empty() {
                        let r = s1
                            .run(|c| async move { c.set_incident_status(threats, status, verdict).await })
                            .await?;
                        check_details(&r, &threat_ids, verdict.is_some())?;
                        results.push(("/threats/incident", summarize(&r)));
                    }
                    if !alert_ids.is_empty() {
                        s1.run(|c| async move { c.set_alert_incident_status(alerts, status).await })
                            .await?;
                        if let Some(v) = verdict {
                            s1.run(|c| async move { c.set_alert_analyst_verdict(alerts, v).await })
                                .await?;
                        }
                    }
                }
            }
            (None, Some(verdict)) => {
                // A note implying a verdict: not over a newer status change's own verdict.
                let order = deps
                    .store
                    .alert_order(&tenant.id, &w.pending.alert_key)
                    .await
                    .map_err(store_error)?;
                if order.applied_micros.is_some_and(|a| a > at) {
                    w.pending.change.verdict = None;
                } else {
                    if !threat_ids.is_empty() {
                        let r = s1
                            .run(|c| async move { c.set_analyst_verdict(threats, verdict).await })
                            .await?;
                        check_details(&r, &threat_ids, false)?;
                        results.push(("/threats/analyst-verdict", summarize(&r)));
                    }
                    if !alert_ids.is_empty() {
                        s1.run(|c| async move { c.set_alert_analyst_verdict(alerts, verdict).await })
                            .await?;
                    }
                }
            }
            (None, None) => {}
        }
        w.pending.change.done.insert(Step::Status);
        w.save().await?;
    }
    let superseded = w.pending.change.done.contains(&Step::Superseded);
    // S1 has no notes on STAR alerts; threats get the note.
    if !threat_ids.is_empty() && !w.pending.change.done.contains(&Step::Note) {
        if w.pending.change.done.contains(&Step::NoteStarted)
            && note_in_s1(&s1, &threat_ids[0], &w.pending.change.note).await?
        {
            w.pending.change.done.insert(Step::Note);
        } else {
            if !w.pending.change.done.contains(&Step::NoteStarted) {
                if superseded {
                    w.pending.change.note = superseded_note(&w.pending.change.note);
                }
                w.pending.change.done.insert(Step::NoteStarted);
                w.save().await?;
            }
            let note = w.pending.change.note.as_str();
            let r = s1.run(|c| async move { c.add_note(threats, note).await }).await?;
            results.push(("/threats/notes", format!("affected={}", r.affected)));
            w.pending.change.done.insert(Step::Note);
        }
    }
    let outbound = outbound_records(recorder, &results);
    if superseded {
        w.pending.last_error = Some(SUPERSEDED.to_owned());
        let done = deps
            .store
            .retire_to_dead(&tenant.id, &w.pending, w.version, w.lock.as_ref())
            .await
            .map_err(store_error)?;
        if !done {
            return Err(ApplyError::LostClaim);
        }
        w.lock = None;
        if let Err(e) = deps.store.record_outbound_many(&tenant.id, &outbound).await {
            tracing::warn!(tenant = %tenant.id, error = %e, "could not record outbound requests");
        }
        return Ok(Attempt::Superseded);
    }
    finish(w, &outbound, Some(story)).await?;
    Ok(Attempt::Applied)
}

/// Ends an applied writeback in one store transaction, under the claim: what S1 now holds on
/// each member (so the poller recognises the echo) and the alert's open/closed state, the
/// pending item retired, the alert's lock released, and the outbound log.
async fn finish(
    w: &mut Work<'_>,
    outbound: &[OutboundRequest],
    mut known: Option<Versioned<StoryRecord>>,
) -> Result<(), ApplyError> {
    let (deps, tenant) = (w.deps, w.tenant);
    let id = w.pending.id.clone();
    // S1 holds this change's status only if the alert's mark is still ours (a newer change
    // that got the lock after ours lapsed was applied after it).
    let status_held = w.pending.change.status.is_some()
        && w.lock
            .as_ref()
            .is_some_and(|l| l.order.applied_by.as_deref() == Some(id.as_str()));
    let verdict_held = w.pending.change.verdict.is_some() && (w.pending.change.status.is_none() || status_held);
    for _ in 0..5 {
        let current = match known.take() {
            Some(s) => Some(s),
            None => deps
                .store
                .get_story(&tenant.id, &w.pending.change.story)
                .await
                .map_err(store_error)?,
        };
        let story = current.map(
            |Versioned {
                 value: mut story,
                 version,
             }| {
                for m in story.members.values_mut() {
                    if let (Some(s), true) = (w.pending.change.status, status_held) {
                        m.written_status = Some(s);
                    }
                    if let (Some(v), true) = (w.pending.change.verdict, verdict_held) {
                        m.written_verdict = Some(v);
                    }
                }
                if let (ChangeAction::Status { state, .. }, true) = (&w.pending.change.change.action, status_held) {
                    story.status = match state {
                        PlatformState::Closed | PlatformState::Resolved => StoryStatus::Closed,
                        PlatformState::New | PlatformState::Reopened => StoryStatus::Open,
                        _ => story.status,
                    };
                }
                (story, version)
            },
        );
        let finished = deps
            .store
            .finish_claimed(
                &tenant.id,
                story.as_ref().map(|(s, v)| (s, *v, w.pending.change.archived)),
                &w.pending,
                w.version,
                w.lock.as_ref(),
                outbound,
            )
            .await
            .map_err(store_error)?;
        match finished {
            Finished::Done => {
                w.lock = None;
                return Ok(());
            }
            Finished::LostClaim => return Err(ApplyError::LostClaim),
            Finished::StoryChanged => {}
        }
    }
    Err(ApplyError::Retry(
        "the story kept changing while the writeback finished".into(),
    ))
}
