//! Applying a claimed change to S1: its status and verdict under the alert's ordering lock,
//! then its note, each step recorded as it completes; and the end of an applied change in one
//! store transaction.

use std::sync::Arc;

use time::OffsetDateTime;

use super::WritebackDeps;
use super::notes::superseded_note;
use super::outcome::{ApplyError, Attempt, store_error};
use super::s1_calls::CallFailed;
use super::s1_calls::{Recorder, S1Calls, call_error, check_details, note_in_s1, outbound_records, summarize};
use super::uam_calls::{add_unified_notes, set_unified, unified_verdict};
use super::{SUPERSEDED, SUPERSEDED_VERDICT_KEPT};
use crate::domain::MemberId;
use crate::platform::inbound::{ChangeAction, PlatformState};
use crate::s1::RetryPolicy;
use crate::s1::dto::uam_actions::UamVerdict;
use crate::s1::dto::{AnalystVerdict, IncidentStatus};
use crate::store::{
    AlertLock, Claim, Finished, OutboundRequest, PendingChange, PendingWriteback, StoryRecord, StoryStatus,
    TenantConfig, Versioned, WritebackStep as Step,
};

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

/// The story's members an attempt asks S1 to change, and their threat, STAR alert and unified
/// (UAM) alert ids.
struct Ids<'a> {
    members: &'a [MemberId],
    threats: &'a [String],
    alerts: &'a [String],
    unified: &'a [String],
}

/// The S1 ids of `members` of one kind.
fn ids_of(members: &[MemberId], id: impl Fn(&MemberId) -> Option<&str>) -> Vec<String> {
    members.iter().filter_map(id).map(str::to_owned).collect()
}

pub(super) async fn apply(
    w: &mut Work<'_>,
    retry: &RetryPolicy,
    recorder: &Arc<Recorder>,
    known: Option<Versioned<StoryRecord>>,
) -> Result<Attempt, ApplyError> {
    let (deps, tenant) = (w.deps, w.tenant);
    // The webhook path has just read the story; a scheduled retry reads it afresh.
    let mut story = match known {
        Some(s) => s,
        None => deps
            .store
            .get_story(&tenant.id, &w.pending.change.story)
            .await
            .map_err(store_error)?
            .ok_or_else(|| ApplyError::Fatal(format!("story {} no longer exists", w.pending.change.story)))?,
    };
    // The members S1 is asked to change: the story's as read now (one joining later is not).
    let members: Vec<MemberId> = story.value.members.keys().cloned().collect();
    let threat_ids = ids_of(&members, MemberId::threat_id);
    let alert_ids = ids_of(&members, MemberId::star_alert_id);
    let unified_ids = ids_of(&members, MemberId::unified_alert_id);
    let ids = Ids {
        members: &members,
        threats: &threat_ids,
        alerts: &alert_ids,
        unified: &unified_ids,
    };
    // The token is read and the client built before anything is locked: when either fails,
    // the attempt ends here.
    deps.consoles.client_for(tenant).await.map_err(call_error)?;
    let s1 = S1Calls {
        deps,
        tenant,
        retry,
        recorder,
    };
    let mut results = Vec::new();
    if !w.pending.change.done.contains(&Step::Status) {
        if w.pending.change.status.is_some() || w.pending.change.verdict.is_some() {
            set_fields(w, &s1, &mut story, &ids, &mut results).await?;
        }
        w.pending.change.done.insert(Step::Status);
        w.save().await?;
    }
    let superseded = w.pending.change.done.contains(&Step::Superseded);
    // S1 has no notes on STAR alerts; threats and unified alerts get the note.
    let no_one_to_note = threat_ids.is_empty() && unified_ids.is_empty();
    if !no_one_to_note && !w.pending.change.done.contains(&Step::Note) {
        // An earlier attempt may have sent it: S1 is looked at before it is sent again.
        let retrying = w.pending.change.done.contains(&Step::NoteStarted);
        if !retrying {
            if superseded {
                w.pending.change.note = superseded_note(&w.pending.change.note);
            }
            w.pending.change.done.insert(Step::NoteStarted);
            w.save().await?;
        }
        let note = w.pending.change.note.as_str();
        let threats_hold_it = match threat_ids.first() {
            Some(first) => retrying && note_in_s1(&s1, first, note).await?,
            None => true,
        };
        if !threats_hold_it {
            let threats = ids.threats;
            let r = s1.run(|c| async move { c.add_note(threats, note).await }).await?;
            results.push(("/threats/notes", format!("affected={}", r.affected)));
        }
        add_unified_notes(&s1, ids.unified, note, retrying, &mut results).await?;
        w.pending.change.done.insert(Step::Note);
    }
    if !superseded {
        close_late_joiners(w, &s1, &mut story, &mut results).await?;
    }
    let outbound = outbound_records(recorder, &results);
    if superseded {
        w.pending.last_error = Some(
            if keeps_verdict(&w.pending.change) {
                SUPERSEDED_VERDICT_KEPT
            } else {
                SUPERSEDED
            }
            .to_owned(),
        );
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

/// The change's status and verdict to S1, under the alert's ordering lock: each field only if
/// no newer change already set it (a change whose status is older than the alert's is
/// superseded whole; an older verdict is left out), marked on the alert and recorded on the
/// story before S1 is called.
async fn set_fields(
    w: &mut Work<'_>,
    s1: &S1Calls<'_>,
    story: &mut Versioned<StoryRecord>,
    ids: &Ids<'_>,
    results: &mut Vec<(&'static str, String)>,
) -> Result<(), ApplyError> {
    let (deps, tenant) = (w.deps, w.tenant);
    let at = w.pending.change.at_micros();
    let id = w.pending.id.clone();
    w.lock_alert().await?;
    let lock = w.lock.as_mut().expect("locked above");
    let status = w.pending.change.status;
    if lock.order.verdict_supersedes(at, &id) {
        w.pending.change.verdict = None;
    }
    let verdict = w.pending.change.verdict;
    if status.is_some() && lock.order.supersedes(at, &id) {
        w.pending.change.done.insert(Step::Superseded);
        // An earlier attempt's send may have left this change's verdict on some members (the
        // threats took it, UAM failed) and a newer status-only change went out since: the
        // verdict is still the SOC's latest, so it goes to every member rather than leave the
        // story's threats and alerts disagreeing. Unsent, it stays unapplied.
        if !keeps_verdict(&w.pending.change) {
            return Ok(());
        }
        return record_and_send(w, s1, story, ids, None, verdict, results)
            .await
            .map_err(|f| f.error);
    }
    if status.is_none() && verdict.is_none() {
        return Ok(());
    }
    // Marked before S1 is called, so no older change can follow this one.
    let unmarked = lock.order.clone();
    let order = lock.order.marked(at, &id, status.is_some(), verdict.is_some());
    if !deps
        .store
        .mark_alert_fields(&tenant.id, lock, order)
        .await
        .map_err(store_error)?
    {
        return Err(ApplyError::LostClaim);
    }
    // Saved before S1 is called: a kill mid-call leaves it, as a failure after part landed
    // does. Only this attempt's mark is taken back when S1 surely made no change: an earlier
    // attempt's send may still have landed.
    let sent_before = !w.pending.change.done.insert(Step::FieldsSent);
    if !sent_before {
        w.save().await?;
    }
    let sent = record_and_send(w, s1, story, ids, status, verdict, results).await;
    if matches!(
        sent,
        Err(CallFailed {
            made_no_change: true,
            ..
        })
    ) && !sent_before
    {
        w.pending.change.done.remove(&Step::FieldsSent);
        // S1 holds nothing of this change, so its marks are taken back with the lock's release
        // (every end of the attempt writes the lock's order): an older change that did land on
        // part of the story still holds the verdict, and completes it if superseded.
        if let Some(lock) = w.lock.as_mut() {
            lock.order = unmarked;
        }
    }
    sent.map_err(|f| f.error)
}

/// Whether a superseded `change` still sends its verdict to every member: an earlier attempt
/// sent it (it may sit on part of the story) and no newer verdict has set it aside.
fn keeps_verdict(change: &PendingChange) -> bool {
    change.done.contains(&Step::FieldsSent) && change.verdict.is_some()
}

/// Records on `ids.members` that S1 is being given `status` / `verdict`, then sends them; the
/// record is taken back when S1 surely made no change (the failure says which).
async fn record_and_send(
    w: &mut Work<'_>,
    s1: &S1Calls<'_>,
    story: &mut Versioned<StoryRecord>,
    ids: &Ids<'_>,
    status: Option<IncidentStatus>,
    verdict: Option<AnalystVerdict>,
    results: &mut Vec<(&'static str, String)>,
) -> Result<(), CallFailed> {
    // Unified members are recorded as the poller reads their alert back: the UAM verdict's
    // legacy reading.
    let uam_verdict = unified_verdict(w.tenant, &w.pending.change, verdict);
    let (unified, others): (Vec<MemberId>, Vec<MemberId>) = ids
        .members
        .iter()
        .cloned()
        .partition(|m| m.unified_alert_id().is_some());
    let recorded = [
        w.record_written(story, &others, status, verdict)
            .await
            .map_err(CallFailed::unsent)?,
        w.record_written(story, &unified, status, uam_verdict.map(|v| v.legacy()))
            .await
            .map_err(CallFailed::unsent)?,
    ];
    let failed = match send_fields(s1, ids, status, verdict, uam_verdict, results).await {
        Ok(()) => return Ok(()),
        Err(f) => f,
    };
    if failed.made_no_change {
        for r in &recorded {
            w.take_back(story, r).await;
        }
    }
    Err(failed)
}

/// A threat that joined the story while its close was being applied (the poller told the
/// platform it joined the alert still open) gets the same status and verdict, under the same
/// lock: else it would sit unresolved in S1 in an alert the platform and the bridge call closed,
/// and a later console resolve of it would be taken for our own echo. Only while this change
/// still holds the alert's status (a newer change owns what follows).
async fn close_late_joiners(
    w: &mut Work<'_>,
    s1: &S1Calls<'_>,
    story: &mut Versioned<StoryRecord>,
    results: &mut Vec<(&'static str, String)>,
) -> Result<(), ApplyError> {
    let Some(status @ IncidentStatus::Resolved) = w.pending.change.status else {
        return Ok(());
    };
    let (deps, tenant) = (w.deps, w.tenant);
    match deps
        .store
        .get_story(&tenant.id, &w.pending.change.story)
        .await
        .map_err(store_error)?
    {
        // Read by its item name: the same story, unless the key rolled over to a new one
        // meanwhile, whose threats are not this alert's.
        Some(fresh) if fresh.value.id == story.value.id => *story = fresh,
        _ => return Ok(()),
    }
    // The members S1 was asked to change carry our written status already (recorded before
    // the call): the others joined since.
    let resolved = Some(IncidentStatus::Resolved);
    let late: Vec<MemberId> = story
        .value
        .members
        .iter()
        .filter(|(_, state)| state.status != resolved && state.written_status != resolved)
        .map(|(m, _)| m.clone())
        .collect();
    if late.is_empty() {
        return Ok(());
    }
    // A retry whose status step was done by an earlier attempt holds no lock yet: it takes it,
    // reading who holds the alert's status and verdict now.
    w.lock_alert().await?;
    let (id, at) = (w.pending.id.as_str(), w.pending.change.at_micros());
    let order = &w.lock.as_ref().expect("locked above").order;
    if order.applied_by.as_deref() != Some(id) {
        return Ok(());
    }
    // A newer verdict (a comment since) is not overwritten on the members that joined.
    let verdict = w.pending.change.verdict.filter(|_| !order.verdict_supersedes(at, id));
    let threats = ids_of(&late, MemberId::threat_id);
    let alerts = ids_of(&late, MemberId::star_alert_id);
    let unified = ids_of(&late, MemberId::unified_alert_id);
    tracing::info!(tenant = %tenant.id, id = %id, joined = late.len(), "threats that joined the story while it was closed get the close too");
    let ids = Ids {
        members: &late,
        threats: &threats,
        alerts: &alerts,
        unified: &unified,
    };
    record_and_send(w, s1, story, &ids, Some(status), verdict, results)
        .await
        .map_err(|f| f.error)
}

/// The S1 calls that set `status` and `verdict` (each when given) on the threats and STAR
/// alerts, and `status` and `uam_verdict` on the unified alerts (through UAM). A failure says
/// S1 made no change only when it came before anything landed.
async fn send_fields(
    s1: &S1Calls<'_>,
    ids: &Ids<'_>,
    status: Option<IncidentStatus>,
    verdict: Option<AnalystVerdict>,
    uam_verdict: Option<UamVerdict>,
    results: &mut Vec<(&'static str, String)>,
) -> Result<(), CallFailed> {
    let (threats, alerts) = (ids.threats, ids.alerts);
    let mut landed = false;
    if !threats.is_empty() {
        let (path, r) = match (status, verdict) {
            (Some(s), v) => (
                "/threats/incident",
                s1.try_run(|c| async move { c.set_incident_status(threats, s, v).await })
                    .await?,
            ),
            (None, Some(v)) => (
                "/threats/analyst-verdict",
                s1.try_run(|c| async move { c.set_analyst_verdict(threats, v).await })
                    .await?,
            ),
            (None, None) => return Ok(()),
        };
        landed = true;
        check_details(&r, threats, status.is_some() && verdict.is_some()).map_err(CallFailed::landed)?;
        results.push((path, summarize(&r)));
    }
    if !alerts.is_empty() {
        if let Some(s) = status {
            s1.try_run(|c| async move { c.set_alert_incident_status(alerts, s).await })
                .await
                .map_err(|f| f.after(landed))?;
            landed = true;
        }
        if let Some(v) = verdict {
            s1.try_run(|c| async move { c.set_alert_analyst_verdict(alerts, v).await })
                .await
                .map_err(|f| f.after(landed))?;
            landed = true;
        }
    }
    set_unified(s1, ids.unified, status, uam_verdict, results)
        .await
        .map_err(|f| f.after(landed))
}

/// Ends an applied writeback in one store transaction, under the claim: the alert's open/closed
/// state (what S1 holds was recorded on the members before each call), the pending item
/// retired, the alert's lock released, and the outbound log.
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
    let story_status = match &w.pending.change.change.action {
        ChangeAction::Status { state, .. } if status_held => match state {
            PlatformState::Closed | PlatformState::Resolved => Some(StoryStatus::Closed),
            PlatformState::New | PlatformState::Reopened => Some(StoryStatus::Open),
            _ => None,
        },
        _ => None,
    };
    for _ in 0..5 {
        let current = match known.take() {
            Some(s) => Some(s),
            None if story_status.is_some() => deps
                .store
                .get_story(&tenant.id, &w.pending.change.story)
                .await
                .map_err(store_error)?,
            None => None,
        };
        let story = current
            .filter(|s| story_status.is_some_and(|st| st != s.value.status))
            .map(|Versioned { mut value, version }| {
                value.status = story_status.expect("filtered");
                (value, version)
            });
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
