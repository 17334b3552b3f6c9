//! One attempt on a pending item: claimed, applied as far as it goes, and ended (applied,
//! rescheduled, dead or let go), every write conditional on the claim.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use time::OffsetDateTime;

use super::apply::{Work, apply};
use super::outcome::ApplyError;
use super::outcome::{Attempt, backoff};
use super::s1_calls::{Recorder, record_outbound};
use super::{CLAIM_TTL, MAX_ATTEMPTS, WritebackDeps};
use crate::domain::StoryRecord;
use crate::s1::RetryPolicy;
use crate::store::{Claim, PendingEntry, Versioned};
use crate::tenant::TenantConfig;

static OWNER_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A claim owner unique to one attempt.
fn new_owner() -> String {
    format!(
        "wb-{}-{}-{}",
        std::process::id(),
        OffsetDateTime::now_utc().unix_timestamp_nanos(),
        OWNER_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// One attempt on a pending item, bounded by `limit`: claims it, applies what is left of it,
/// and ends it (applied, rescheduled or dead), each write conditional on the claim.
pub(super) async fn attempt(
    deps: &WritebackDeps,
    tenant: &TenantConfig,
    entry: PendingEntry,
    retry: &RetryPolicy,
    now: OffsetDateTime,
    known: Option<Versioned<StoryRecord>>,
    limit: StdDuration,
) -> (Attempt, StdDuration) {
    let owner = new_owner();
    if entry.claim.as_ref().is_some_and(|c| c.blocks(&owner, now)) {
        return (Attempt::Busy, StdDuration::ZERO);
    }
    let pending = entry.value;
    let claim = Claim::new(owner, CLAIM_TTL, now);
    let version = match deps
        .store
        .update_pending(&tenant.id, &pending, entry.version, Some(&claim))
        .await
    {
        Ok(Some(v)) => v,
        Ok(None) => return (Attempt::Busy, StdDuration::ZERO),
        Err(e) => {
            tracing::warn!(tenant = %tenant.id, id = %pending.id, error = %e, "could not claim a pending writeback");
            return (Attempt::Pending, StdDuration::ZERO);
        }
    };
    let mut work = Work {
        deps,
        tenant,
        pending,
        version,
        claim,
        lock: None,
        now,
    };
    let recorder = Arc::new(Recorder::default());
    let result = tokio::time::timeout(limit, apply(&mut work, retry, &recorder, known)).await;
    let s1_time = StdDuration::from_micros(recorder.s1_micros.load(std::sync::atomic::Ordering::Relaxed));
    let outcome = match result {
        Ok(r) => attempt_outcome(work, r, &recorder).await,
        Err(_) => {
            // Out of time, perhaps with a call to S1 in flight: the claim (and the alert's lock)
            // stay until they lapse, so nothing repeats that call while it may still land; the
            // progress recorded so far lets the next attempt go on from there.
            tracing::info!(tenant = %tenant.id, id = %work.pending.id, "writeback ran out of time; it stays pending");
            Attempt::Pending
        }
    };
    (outcome, s1_time)
}

async fn attempt_outcome(mut w: Work<'_>, result: Result<Attempt, ApplyError>, recorder: &Recorder) -> Attempt {
    let (deps, tenant) = (w.deps, w.tenant);
    let (fatal, message) = match result {
        Ok(done) => return done,
        // Another attempt has the item: it is theirs to end.
        Err(ApplyError::LostClaim) => return Attempt::Busy,
        Err(ApplyError::Busy(m)) => {
            // Not an attempt: let go of the item, as it was, for a later run.
            if let Err(e) = deps.store.update_pending(&tenant.id, &w.pending, w.version, None).await {
                tracing::warn!(tenant = %tenant.id, error = %e, "could not release a pending writeback; its claim lapses");
            }
            tracing::info!(tenant = %tenant.id, id = %w.pending.id, reason = %m, "writeback waits");
            return Attempt::Busy;
        }
        Err(ApplyError::Fatal(m)) => (true, m),
        Err(ApplyError::Retry(m)) => (false, m),
    };
    record_outbound(deps, tenant, recorder).await;
    w.pending.attempts += 1;
    w.pending.last_error = Some(message.clone());
    if fatal || w.pending.attempts >= MAX_ATTEMPTS {
        tracing::warn!(tenant = %tenant.id, id = %w.pending.id, attempts = w.pending.attempts, error = %message, "writeback moved to the dead letters");
        match deps
            .store
            .retire_to_dead(&tenant.id, &w.pending, w.version, w.lock.as_ref())
            .await
        {
            Ok(true) => Attempt::Dead,
            Ok(false) => Attempt::Busy,
            Err(e) => {
                tracing::error!(tenant = %tenant.id, error = %e, "could not move a writeback to the dead letters; it stays pending");
                Attempt::Pending
            }
        }
    } else {
        w.pending.next_attempt_at = w.now + backoff(w.pending.attempts);
        tracing::info!(tenant = %tenant.id, id = %w.pending.id, attempts = w.pending.attempts, error = %message, "writeback pending");
        if let Some(lock) = w.lock.take() {
            if let Err(e) = deps.store.unlock_alert(&tenant.id, &lock).await {
                tracing::warn!(tenant = %tenant.id, error = %e, "could not release an alert's lock; it lapses");
            }
        }
        match deps.store.update_pending(&tenant.id, &w.pending, w.version, None).await {
            Ok(Some(_)) => Attempt::Pending,
            Ok(None) => Attempt::Busy,
            Err(e) => {
                tracing::error!(tenant = %tenant.id, error = %e, "could not reschedule a pending writeback; its claim lapses");
                Attempt::Pending
            }
        }
    }
}
