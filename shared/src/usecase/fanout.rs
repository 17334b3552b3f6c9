//! Fan-out on Lambda: a dispatcher sends one queue message per enabled tenant due, spread over
//! the minute by a per-tenant delay, and `poll-threats` runs one tenant per message, so no
//! tenant waits for another's run and the fleet scales with the consumers' concurrency.
//!
//! Delivery is at least once, so every message is safe to see twice: a duplicate (or a message
//! arriving while the tenant's previous run still holds its lease) finds the lease held and
//! ends at once, counted. A message for a disabled or deleted tenant ends at once, counted (the
//! next dispatch sends none). A malformed message is reported as a batch item failure, so after
//! the queue's receive limit it sits in the dead-letter queue, alarmed, for an operator to read.
//! A tenant whose run fails is not retried by the queue: its status says `error`, and the next
//! dispatch sends it again (backing off to every [`BACKOFF_MINUTES`] after
//! [`BACKOFF_AFTER`] failures in a row).

use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use serde::Serialize;
use time::OffsetDateTime;

use crate::queue::{BatchItemFailure, SEND_BATCH_MAX, SqsBatchResponse, SqsEvent, TenantMessage, TenantQueue};
use crate::store::{ConnectorStatus, Store, StoreError};
use crate::usecase::poll_threats::{Outcome, PollDeps, TenantReport, poll_tenant, shard_of};

/// Failed runs in a row after which a tenant is dispatched only every [`BACKOFF_MINUTES`].
pub const BACKOFF_AFTER: u32 = 3;
/// A backed-off tenant's interval, in minutes.
pub const BACKOFF_MINUTES: i64 = 15;
/// `SendMessageBatch` requests in flight at once.
const SENDS_IN_FLIGHT: usize = 8;

/// What a dispatch did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DispatchReport {
    /// Enabled tenants.
    pub tenants: usize,
    /// Messages the queue took.
    pub sent: usize,
    /// Tenants left out this minute because they keep failing (backed off).
    pub backed_off: usize,
    /// Tenants whose message the queue did not take (the next dispatch sends them again).
    pub not_sent: Vec<String>,
}

/// A tenant's delay within the spread: stable per tenant (the same offset every minute, so its
/// interval stays a minute) and even over the fleet.
pub fn delay_of(tenant: &str, spread: Duration) -> u32 {
    let secs = spread.as_secs().clamp(0, u64::from(crate::queue::MAX_DELAY_SECONDS)) as u32;
    if secs == 0 { 0 } else { shard_of(tenant, secs) }
}

/// Whether a tenant is due at `now`: always, unless it keeps failing; then once every
/// [`BACKOFF_MINUTES`] (at a per-tenant minute, so backed-off tenants do not bunch up).
pub fn due(tenant: &str, status: Option<&ConnectorStatus>, now: OffsetDateTime) -> bool {
    match status {
        Some(s) if s.failures_in_a_row >= BACKOFF_AFTER => {
            let minute = now.unix_timestamp().div_euclid(60);
            (minute + i64::from(shard_of(tenant, BACKOFF_MINUTES as u32))) % BACKOFF_MINUTES == 0
        }
        _ => true,
    }
}

/// Sends one message per enabled tenant due, `SendMessageBatch` by ten, each delayed by
/// [`delay_of`] within `spread`.
///
/// # Errors
/// The tenant list or statuses could not be read. A batch the queue refused as a whole is
/// reported in `not_sent`, not as an error, so one bad request does not hold back the rest.
pub async fn dispatch(
    store: &Store,
    queue: &dyn TenantQueue,
    spread: Duration,
    now: OffsetDateTime,
) -> Result<DispatchReport, StoreError> {
    let tenants: Vec<_> = store.enabled_tenants().await?;
    let ids: Vec<&str> = tenants.iter().map(|t| t.id.as_str()).collect();
    let statuses: std::collections::HashMap<String, ConnectorStatus> =
        store.statuses(&ids).await?.into_iter().collect();
    let mut report = DispatchReport {
        tenants: tenants.len(),
        ..DispatchReport::default()
    };
    let mut messages = Vec::with_capacity(tenants.len());
    for t in &tenants {
        if due(&t.id, statuses.get(&t.id), now) {
            messages.push(TenantMessage {
                tenant: t.id.clone(),
                delay_seconds: delay_of(&t.id, spread),
            });
        } else {
            report.backed_off += 1;
        }
    }
    let results = stream::iter(messages.chunks(SEND_BATCH_MAX).map(|batch| async move {
        match queue.send_batch(batch).await {
            Ok(failed) => (batch.len() - failed.len(), failed),
            Err(e) => {
                tracing::error!(error = %e, tenants = batch.len(), "a message batch was not sent");
                (0, batch.iter().map(|m| m.tenant.clone()).collect())
            }
        }
    }))
    .buffer_unordered(SENDS_IN_FLIGHT)
    .collect::<Vec<_>>()
    .await;
    for (sent, failed) in results {
        report.sent += sent;
        report.not_sent.extend(failed);
    }
    report.not_sent.sort();
    Ok(report)
}

/// What a consumer did with a batch of messages.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConsumeReport {
    /// The tenants' runs (including those that found the lease held).
    pub runs: Vec<TenantReport>,
    /// Messages that found the tenant's lease held: a duplicate, or a run still going.
    pub lease_held: u64,
    /// Messages for a tenant that is disabled.
    pub disabled: u64,
    /// Messages for a tenant that no longer exists.
    pub unknown: u64,
    /// Messages that name no tenant (left to the dead-letter queue).
    pub malformed: u64,
    /// Messages to be received again (the store could not be read).
    pub retried: u64,
}

enum Handled {
    Run(Box<TenantReport>),
    Disabled,
    Unknown,
    Malformed,
    Retry,
}

/// Runs the tenant each message names (at most `deps.concurrency` at once) and answers which
/// messages are to be received again.
pub async fn consume(deps: &PollDeps, event: &SqsEvent, deadline: Instant) -> (SqsBatchResponse, ConsumeReport) {
    let handled = stream::iter(event.records.iter().map(|r| async move {
        let tenant = match r.tenant() {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(message_id = %r.message_id, receives = r.receive_count(), error = %e, "malformed message; it goes to the dead-letter queue");
                return (r, Handled::Malformed);
            }
        };
        match deps.store.get_tenant(&tenant).await {
            Ok(Some(t)) if t.enabled => (r, Handled::Run(Box::new(poll_tenant(deps, &t, deadline).await))),
            Ok(Some(_)) => {
                tracing::info!(tenant = %tenant, "message for a disabled tenant; nothing to do");
                (r, Handled::Disabled)
            }
            Ok(None) => {
                tracing::warn!(tenant = %tenant, "message for a tenant that does not exist; nothing to do");
                (r, Handled::Unknown)
            }
            Err(e) => {
                tracing::warn!(tenant = %tenant, error = %e, "tenant unreadable; the message is received again");
                (r, Handled::Retry)
            }
        }
    }))
    .buffer_unordered(deps.concurrency.max(1))
    .collect::<Vec<_>>()
    .await;
    let mut response = SqsBatchResponse::default();
    let mut report = ConsumeReport::default();
    for (record, h) in handled {
        let again = match h {
            Handled::Run(run) => {
                if run.outcome == Outcome::Skipped {
                    report.lease_held += 1;
                }
                report.runs.push(*run);
                false
            }
            Handled::Disabled => {
                report.disabled += 1;
                false
            }
            Handled::Unknown => {
                report.unknown += 1;
                false
            }
            Handled::Malformed => {
                report.malformed += 1;
                true
            }
            Handled::Retry => {
                report.retried += 1;
                true
            }
        };
        if again {
            response.batch_item_failures.push(BatchItemFailure {
                item_identifier: record.message_id.clone(),
            });
        }
    }
    report.runs.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    (response, report)
}

/// What the one-machine runner's poll pool reports as it goes.
#[derive(Debug)]
pub enum PoolEvent<'a> {
    /// A tenant's run started.
    Started(&'a str),
    /// A tenant's run ended, with its report.
    Finished(&'a TenantReport),
}

/// The one-machine runner's polls (`serve`): each enabled tenant on its own schedule (every
/// `every` from its last start; a run that outlasts it is followed at once by the next), run by
/// at most `workers` at a time, each within `run_limit`. A tenant with a backlog or a slow
/// platform holds one worker, never the others' turns, as the queue does on Lambda. Runs until
/// dropped; the tenant list is read again every `every` (at most every minute), so a tenant
/// added or disabled takes effect without a restart.
pub async fn serve_polls(
    deps: &PollDeps,
    every: Duration,
    workers: usize,
    run_limit: Duration,
    mut on_event: impl FnMut(PoolEvent<'_>),
) {
    use std::collections::{HashMap, HashSet};
    let every = every.max(Duration::from_secs(1));
    let workers = workers.max(1);
    let mut tenants = Vec::new();
    let mut listed_at: Option<Instant> = None;
    let mut next_due: HashMap<String, Instant> = HashMap::new();
    let mut running: HashSet<String> = HashSet::new();
    let mut runs = futures_util::stream::FuturesUnordered::new();
    loop {
        let now = Instant::now();
        if listed_at.is_none_or(|at| now - at >= every.min(Duration::from_secs(60))) {
            match deps.store.enabled_tenants().await {
                Ok(all) => {
                    tenants = all;
                    listed_at = Some(now);
                }
                Err(e) => tracing::warn!(error = %e, "could not list tenants; keeping the last list"),
            }
        }
        // The longest-waiting due tenants first, while a worker is free.
        let mut due: Vec<_> = tenants
            .iter()
            .filter(|t| !running.contains(&t.id) && next_due.get(&t.id).is_none_or(|d| *d <= now))
            .collect();
        due.sort_by_key(|t| next_due.get(&t.id).copied());
        for t in due.into_iter().take(workers.saturating_sub(running.len())) {
            running.insert(t.id.clone());
            next_due.insert(t.id.clone(), now + every);
            on_event(PoolEvent::Started(&t.id));
            let t = t.clone();
            runs.push(async move { poll_tenant(deps, &t, Instant::now() + run_limit).await });
        }
        let wake = tenants
            .iter()
            .filter(|t| !running.contains(&t.id))
            .filter_map(|t| next_due.get(&t.id).copied())
            .min()
            .unwrap_or(now + every)
            .min(now + Duration::from_secs(1));
        tokio::select! {
            Some(report) = runs.next(), if !runs.is_empty() => {
                running.remove(&report.tenant);
                on_event(PoolEvent::Finished(&report));
            }
            () = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_stable_per_tenant_and_spread_over_the_window() {
        let spread = Duration::from_secs(50);
        assert_eq!(delay_of("acme", spread), delay_of("acme", spread));
        let delays: std::collections::BTreeSet<u32> =
            (0..500).map(|i| delay_of(&format!("tenant-{i}"), spread)).collect();
        assert!(delays.iter().all(|d| *d < 50));
        assert!(delays.len() > 40, "500 tenants use most of the 50 offsets: {delays:?}");
        assert_eq!(delay_of("acme", Duration::ZERO), 0);
        assert!(delay_of("acme", Duration::from_secs(5_000)) < 900, "SQS's limit");
    }

    #[test]
    fn a_tenant_that_keeps_failing_is_dispatched_every_fifteen_minutes() {
        let t0 = time::macros::datetime!(2026-01-01 0:00 UTC);
        let status = |failures| ConnectorStatus {
            state: crate::store::ConnectorState::Error,
            cause: Some("x".into()),
            since: t0,
            checked_at: t0,
            last_success: None,
            lag_seconds: None,
            token_days_left: None,
            pending_writebacks: 0,
            dead_letters: 0,
            failures_in_a_row: failures,
            notified: None,
        };
        let minutes = |s: &ConnectorStatus| {
            (0..60)
                .filter(|m| due("acme", Some(s), t0 + time::Duration::minutes(*m)))
                .count()
        };
        assert_eq!(minutes(&status(BACKOFF_AFTER - 1)), 60);
        assert_eq!(minutes(&status(BACKOFF_AFTER)), 4);
        assert!(due("acme", None, t0));
    }
}
