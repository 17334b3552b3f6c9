//! Connector status: after each poll run, the tenant's status record (`connected`, `degraded`,
//! `error`) is brought up to date, and a tenant that opted in is told when it turns to `error`
//! and when it recovers.
//!
//! Cost matters at fleet size (one run a minute per tenant): the record is read with the token
//! state in one request, dead letters are counted only when the run made some or once every
//! [`DEAD_LETTER_RECOUNT_MINUTES`] (at a per-tenant minute), and it is written only when
//! something an operator would act on changed: an idle tenant's runs never write it (their one
//! write is the lease, which tells `s1-bridge status` when the last run started; see
//! [`ConnectorStatus::as_of`]).

use std::time::Duration;

use time::OffsetDateTime;

use crate::platform::{Notice, PlatformResolver};
use crate::store::{ConnectorState, ConnectorStatus, Store, StoreError};
use crate::tenant::TenantConfig;

/// Dead letters the writeback made (another function) are recounted once in this many minutes.
pub const DEAD_LETTER_RECOUNT_MINUTES: u32 = 15;
/// Behind S1 by more than this (a run stopped at its deadline with more to do): degraded.
pub const DEGRADED_LAG: Duration = Duration::from_secs(15 * 60);
/// This many writebacks waiting for S1: degraded.
pub const DEGRADED_PENDING: u64 = 20;
pub use crate::store::DEGRADED_TOKEN_DAYS;
/// Dead letters are counted up to this many per direction.
pub const DEAD_LETTER_COUNT_CAP: usize = 100;

/// What one poll run tells the status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFacts {
    /// The run failed; `cause` is its report's error.
    pub failed: bool,
    pub cause: Option<String>,
    /// How far behind S1 the run left the tenant (0: caught up).
    pub lag_seconds: Option<i64>,
    /// Writebacks still pending after the run, when the run looked at them.
    pub pending: Option<u64>,
    /// Dead letters counted now (`None`: not counted in this run).
    pub dead_letters: Option<u64>,
    pub token_days_left: Option<i64>,
}

/// The status after a run with `facts`, given the one before.
pub fn next_status(prev: Option<&ConnectorStatus>, facts: &RunFacts, now: OffsetDateTime) -> ConnectorStatus {
    let pending = facts.pending.or(prev.map(|p| p.pending_writebacks)).unwrap_or(0);
    let dead = facts.dead_letters.or(prev.map(|p| p.dead_letters)).unwrap_or(0);
    let token_days_left = facts.token_days_left.or(prev.and_then(|p| p.token_days_left));
    let (state, cause, lag) = if facts.failed {
        let cause = facts.cause.clone().unwrap_or_else(|| "the run failed".into());
        (ConnectorState::Error, Some(cause), prev.and_then(|p| p.lag_seconds))
    } else {
        let mut why = Vec::new();
        if let Some(lag) = facts.lag_seconds.filter(|l| *l > DEGRADED_LAG.as_secs() as i64) {
            why.push(format!("{} min behind S1 (a backlog or a slow platform)", lag / 60));
        }
        if pending >= DEGRADED_PENDING {
            why.push(format!("{pending} writebacks waiting for S1"));
        }
        if dead > 0 {
            why.push(format!("{dead} dead letters (s1-bridge dead-letters list)"));
        }
        if let Some(days) = token_days_left.filter(|d| *d < DEGRADED_TOKEN_DAYS) {
            why.push(crate::store::token_cause(days));
        }
        if why.is_empty() {
            (ConnectorState::Connected, None, facts.lag_seconds)
        } else {
            (ConnectorState::Degraded, Some(why.join("; ")), facts.lag_seconds)
        }
    };
    let same = prev.is_some_and(|p| p.state == state && p.cause == cause);
    ConnectorStatus {
        state,
        since: match prev {
            Some(p) if same => p.since,
            _ => now,
        },
        checked_at: now,
        last_success: if facts.failed {
            prev.and_then(|p| p.last_success)
        } else {
            Some(now)
        },
        lag_seconds: lag,
        token_days_left,
        pending_writebacks: pending,
        dead_letters: dead,
        failures_in_a_row: if facts.failed {
            prev.map_or(0, |p| p.failures_in_a_row) + 1
        } else {
            0
        },
        cause,
        notified: prev.and_then(|p| p.notified),
    }
}

/// Whether `next` says something `prev` does not, or `prev` is due a refresh.
pub fn worth_writing(prev: Option<&ConnectorStatus>, next: &ConnectorStatus) -> bool {
    let Some(p) = prev else { return true };
    let over = |s: &ConnectorStatus| s.lag_seconds.is_some_and(|l| l > DEGRADED_LAG.as_secs() as i64);
    // The token's days left change daily but are counted from the token state when read (and
    // under a week they are in the cause): not worth a write of their own.
    p.state != next.state
        || p.cause != next.cause
        || p.pending_writebacks != next.pending_writebacks
        || p.dead_letters != next.dead_letters
        || p.notified != next.notified
        // A failing tenant's run is rare enough to write each time (its count is what a backoff
        // reads).
        || p.failures_in_a_row != next.failures_in_a_row
        || p.last_success.is_none() != next.last_success.is_none()
        || over(p) != over(next)
}

/// The notice `status` calls for, if the tenant opted in and the platform was not yet told:
/// `connector.error` once it is in error, `connector.recovered` once it is out of an error the
/// platform was told of.
pub fn notice_due(tenant: &TenantConfig, status: &ConnectorStatus) -> Option<Notice> {
    if !tenant.status_notices {
        return None;
    }
    let recovered = match (status.state, status.notified) {
        (ConnectorState::Error, Some(ConnectorState::Error)) => return None,
        (ConnectorState::Error, _) => false,
        (_, Some(ConnectorState::Error)) => true,
        _ => return None,
    };
    let since = status.since.unix_timestamp();
    let message = if recovered {
        format!("s1-bridge: tenant {} is {} again", tenant.id, status.state.as_str())
    } else {
        format!(
            "s1-bridge: tenant {} is in error: {}",
            tenant.id,
            status.cause.as_deref().unwrap_or("the run failed")
        )
    };
    Some(Notice::ConnectorStatus {
        // One id per change: a notice sent again after a lost answer is the same notice.
        id: format!("status:{}:{}:{since}", tenant.id, status.state.as_str()),
        timestamp: status.since,
        tenant: tenant.id.clone(),
        console: tenant.console_url.clone(),
        state: status.state.as_str(),
        recovered,
        cause: status.cause.clone(),
        message,
    })
}

/// Brings a tenant's status up to date after a run with `facts`: reads it (with the token
/// state), counts dead letters when due, sends the notice the change calls for, and writes it
/// when worth it. Returns the status as it now stands.
///
/// # Errors
/// Store errors. A notice the platform did not take is logged and tried again by the next run
/// (the status remembers what the platform was told).
pub async fn record_run(
    store: &Store,
    platforms: &dyn PlatformResolver,
    tenant: &TenantConfig,
    mut facts: RunFacts,
    now: OffsetDateTime,
) -> Result<ConnectorStatus, StoreError> {
    let (prev, token) = store.get_status_and_token(&tenant.id).await?;
    if facts.token_days_left.is_none() {
        facts.token_days_left = token.and_then(|t| t.expires_at).map(|at| (at - now).whole_days());
    }
    let minute = now.unix_timestamp().div_euclid(60);
    let recount = (minute + i64::from(crate::domain::shard_of(&tenant.id, DEAD_LETTER_RECOUNT_MINUTES)))
        % i64::from(DEAD_LETTER_RECOUNT_MINUTES)
        == 0;
    let refresh = prev.is_none() || recount;
    if facts.dead_letters.is_none() && refresh {
        facts.dead_letters = Some(store.count_dead_letters(&tenant.id, DEAD_LETTER_COUNT_CAP).await?);
    }
    let mut next = next_status(prev.as_ref(), &facts, now);
    if let Some(notice) = notice_due(tenant, &next) {
        let sent = match platforms.resolve(tenant).await {
            Ok(p) => p.notify(&notice).await.map(drop),
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => {
                next.notified = Some(match next.state {
                    ConnectorState::Error => ConnectorState::Error,
                    _ => ConnectorState::Connected,
                });
            }
            Err(e) => {
                tracing::warn!(tenant = %tenant.id, kind = notice.kind(), error = %e, "status notice not sent; the next run tries again")
            }
        }
    }
    if worth_writing(prev.as_ref(), &next) {
        store.put_status(&tenant.id, &next).await?;
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(min: i64) -> OffsetDateTime {
        time::macros::datetime!(2026-01-01 0:00 UTC) + time::Duration::minutes(min)
    }

    fn ok() -> RunFacts {
        RunFacts {
            lag_seconds: Some(0),
            pending: Some(0),
            dead_letters: Some(0),
            ..RunFacts::default()
        }
    }

    #[test]
    fn an_idle_tenant_never_writes_its_status() {
        let first = next_status(None, &ok(), at(0));
        assert_eq!(first.state, ConnectorState::Connected);
        assert!(worth_writing(None, &first));
        let mut writes = 0;
        let mut stored = first;
        for m in 1..=24 * 60 {
            let facts = RunFacts {
                // The token's days left go down by one a day.
                token_days_left: Some(90 - m / (24 * 60)),
                ..ok()
            };
            let next = next_status(Some(&stored), &facts, at(m));
            if worth_writing(Some(&stored), &next) {
                writes += 1;
                stored = next;
            }
        }
        assert_eq!(
            writes, 0,
            "a day of idle runs writes nothing: the lease tells when they ran"
        );
    }

    #[test]
    fn a_failure_is_an_error_with_its_cause_and_success_clears_it() {
        let good = next_status(None, &ok(), at(0));
        let failed = RunFacts {
            failed: true,
            cause: Some("S1 rejected the API token (HTTP 401)".into()),
            ..RunFacts::default()
        };
        let bad = next_status(Some(&good), &failed, at(1));
        assert_eq!(bad.state, ConnectorState::Error);
        assert_eq!(bad.cause.as_deref(), Some("S1 rejected the API token (HTTP 401)"));
        assert_eq!(bad.last_success, Some(at(0)));
        assert_eq!((bad.since, bad.failures_in_a_row), (at(1), 1));
        assert!(worth_writing(Some(&good), &bad));
        let again = next_status(Some(&bad), &failed, at(2));
        assert_eq!((again.since, again.failures_in_a_row), (at(1), 2));
        let back = next_status(Some(&again), &ok(), at(3));
        assert_eq!(
            (back.state, back.cause.clone(), back.last_success),
            (ConnectorState::Connected, None, Some(at(3)))
        );
    }

    #[test]
    fn piling_up_or_an_expiring_token_is_degraded_naming_why() {
        let facts = RunFacts {
            lag_seconds: Some(3_600),
            pending: Some(25),
            dead_letters: Some(2),
            token_days_left: Some(3),
            ..RunFacts::default()
        };
        let s = next_status(None, &facts, at(0));
        assert_eq!(s.state, ConnectorState::Degraded);
        let cause = s.cause.unwrap();
        for part in ["60 min behind", "25 writebacks", "2 dead letters", "expires in 3 days"] {
            assert!(cause.contains(part), "{part}: {cause}");
        }
    }
}
