//! The scheduled retry pass over a tenant's pending changes, and its backoff.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use time::OffsetDateTime;

use super::attempt::attempt;
use super::outcome::Attempt;
use super::{MIN_ATTEMPT_WINDOW, RETRY_ATTEMPT_LIMIT, WritebackDeps};
use crate::store::{PendingEntry, StoreError};
use crate::tenant::TenantConfig;

/// Counts of a retry pass.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RetryReport {
    pub applied: u64,
    pub rescheduled: u64,
    pub dead: u64,
    /// Older changes retired because a newer one of the same alert was applied first.
    pub superseded: u64,
    /// Due later, claimed by another attempt, or left for the next run (deadline, `max`).
    pub waiting: u64,
    /// Pending items that do not read as a pending writeback (damaged, or written by another
    /// version): left where they are and logged with their key; the others are tried.
    pub unreadable: u64,
}

/// Retries a tenant's pending writebacks that are due at `now`, at most `max` of them, starting
/// none with less than a second left before `deadline` and cutting each at the deadline. Per
/// alert, changes are tried in the order of their platform timestamps. A disabled tenant's
/// changes are left alone, and so is an item that does not read as a pending writeback.
///
/// # Errors
/// The pending list could not be read.
pub async fn retry_pending(
    deps: &WritebackDeps,
    tenant: &TenantConfig,
    now: OffsetDateTime,
    max: usize,
    deadline: Instant,
) -> Result<RetryReport, StoreError> {
    let mut report = RetryReport::default();
    if !tenant.enabled {
        return Ok(report);
    }
    // Per alert, oldest platform time first; alerts by their oldest change.
    let mut by_alert: BTreeMap<String, Vec<PendingEntry>> = BTreeMap::new();
    let mut cursor = None;
    loop {
        let page = deps
            .store
            .list_pending_entries(&tenant.id, cursor.as_deref(), 100)
            .await?;
        for e in page.items {
            match e {
                Ok(e) => by_alert.entry(e.value.alert_key.clone()).or_default().push(e),
                Err(e) => {
                    tracing::error!(tenant = %tenant.id, error = %e, "unreadable pending writeback left alone");
                    report.unreadable += 1;
                }
            }
        }
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    let at = |e: &PendingEntry| e.value.change.change.at;
    let mut alerts: Vec<Vec<PendingEntry>> = by_alert.into_values().collect();
    for a in &mut alerts {
        a.sort_by(|p, q| (at(p), p.value.created_at, &p.value.id).cmp(&(at(q), q.value.created_at, &q.value.id)));
    }
    alerts.sort_by_key(|a| a.first().map(at));
    let mut tried = 0;
    for entry in alerts.into_iter().flatten() {
        let left = deadline.saturating_duration_since(Instant::now());
        if entry.value.next_attempt_at > now
            || entry
                .claim
                .as_ref()
                .is_some_and(|c| c.until_ms >= (now.unix_timestamp_nanos() / 1_000_000) as i64)
            || tried >= max
            || left < MIN_ATTEMPT_WINDOW
        {
            report.waiting += 1;
            continue;
        }
        tried += 1;
        let limit = left.min(RETRY_ATTEMPT_LIMIT);
        match attempt(deps, tenant, entry, &deps.consoles.options().retry, now, None, limit)
            .await
            .0
        {
            Attempt::Applied => report.applied += 1,
            Attempt::Superseded => report.superseded += 1,
            Attempt::Pending => report.rescheduled += 1,
            Attempt::Dead => report.dead += 1,
            Attempt::Busy => report.waiting += 1,
        }
    }
    Ok(report)
}
