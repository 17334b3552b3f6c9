//! poll-threats: every new or changed S1 threat reaches the platform once, grouped into stories.
//!
//! Per tenant, under its lease: read the checkpoint, page through `GET /threats` by `updatedAt`
//! ascending, decide per threat (new, changed, unchanged, our own echo) against the stored
//! stories, publish to the platform, write the stories, and only then save the checkpoint. A
//! crash anywhere repeats at most the last two pages (the one being committed and the one sent
//! meanwhile), and the repeated events carry the same ids (one per threat version), so the
//! platform sees each change once.
//!
//! The files: `paging` pages through a source (threats, unified alerts, STAR alerts) from its checkpoint
//! and replays the dead letters an operator asked for; `candidate` normalises a threat or an
//! alert; `page` correlates a page against its stories ([`crate::domain::correlate()`], the decision
//! itself), plans it and settles the platform's answers; `send` delivers a page's events with
//! several in flight; `inflight` keeps the write-ahead record of a page's updates, so a version
//! whose outcome is unknown is never left standing on the platform; `save` writes the stories
//! back; `report` holds the counts.

mod candidate;
mod commit;
mod inflight;
mod paging;
mod plan;
mod report;
mod send;
mod settle;
mod stories;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use time::OffsetDateTime;

use crate::platform::{Platform, PlatformError, PlatformResolver};
use crate::s1::{ConsoleError, Consoles, S1Error};
use crate::secrets::SecretError;
use crate::store::{Store, StoreError};
use crate::tenant::TenantConfig;

pub use report::{Outcome, PollReport, TenantReport};

/// Name of the threats checkpoint.
pub const CHECKPOINT: &str = crate::store::Source::Threats.checkpoint();
/// For a platform that takes events at a limited pace (PagerDuty: 2 a second), a page is sized
/// to publish in about this long, and paging stops this much earlier than for a fast platform,
/// so no page outlives the invocation (which would repeat it forever).
pub const PACED_PAGE: Duration = Duration::from_secs(60);

/// The page size and the extra deadline margin for a platform's pace.
pub fn paced_page(platform: &dyn Platform) -> (u32, Duration) {
    match platform.max_events_per_second() {
        Some(rate) if rate > 0.0 => (
            ((rate * PACED_PAGE.as_secs_f64()) as u32).clamp(10, crate::s1::MAX_PAGE_LIMIT),
            PACED_PAGE,
        ),
        _ => (crate::s1::MAX_PAGE_LIMIT, Duration::ZERO),
    }
}

/// The time kept for a tenant's pending writebacks after its poll (or a quarter of the run's
/// time, if smaller).
pub const WRITEBACK_SHARE: Duration = Duration::from_secs(10);

/// Name of the lease a poll run holds per tenant.
pub const LEASE_JOB: &str = "poll";
/// How long a poll run's lease lasts unless renewed (every third of it while the run lives).
/// Short, so that a scheduled run ([`poll_scheduled`]) which found nothing to do need not give
/// the lease back: it lapses before the tenant's next message (a minute after this one), and an
/// idle run makes one write, the take. A run that wrote something, failed, or lasted longer
/// releases it (one more write, on a run that made others). A message for the tenant within
/// this time of an idle run finds the lease held and is skipped, counted; the next minute's
/// runs.
pub const POLL_LEASE: time::Duration = time::Duration::seconds(20);
/// Paging stops when less than this (or a quarter of the run's time, if smaller) is left before
/// the deadline.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(20);

/// What a poll run needs. Built once per process.
#[derive(Clone)]
pub struct PollDeps {
    pub store: Store,
    /// The tenants' S1 clients, called with their tokens.
    pub consoles: Consoles,
    pub platforms: Arc<dyn PlatformResolver>,
    /// Lease holder id: the invocation's request id (the queue consumer adds each message's
    /// own key, so no two messages share it).
    pub owner: String,
    /// Tenants polled at once (a queue batch: all of its tenants, or this many if more).
    pub concurrency: usize,
    /// When set, each tenant's due pending writebacks are retried after its poll, so a change
    /// accepted while S1 was down lands on the next scheduled run.
    pub writeback: Option<crate::usecase::writeback::WritebackDeps>,
    /// Running counts after each page (the CLI's live display); `None` under Lambda.
    pub progress: Option<crate::usecase::Progress<TenantReport>>,
}

/// Which tenants a run polls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every enabled tenant.
    All,
    /// One tenant (enabled or not: an operator asked for it).
    Tenant(String),
}

/// Name of the STAR-alerts checkpoint.
pub const ALERTS_CHECKPOINT: &str = crate::store::Source::Star.checkpoint();
/// Name of the unified-alerts (UAM) checkpoint.
pub const UNIFIED_CHECKPOINT: &str = crate::store::Source::Unified.checkpoint();

/// The most id bytes the checkpoint lists at its watermark. Past it, ids at the watermark are
/// recognised through their stories (each member records the `updatedAt` handled), so a bulk
/// action giving tens of thousands of threats one `updatedAt` never outgrows the item.
pub const WATERMARK_IDS_MAX_BYTES: usize = 96 * 1024;

/// This many refusals (400, 409, 413, 422) of different events in a row, with no event accepted
/// in between, is the platform refusing the tenant rather than each event: the run stops with
/// the checkpoint held and none of them is kept as a dead letter.
pub const REFUSALS_IN_A_ROW: u32 = 10;

/// A run could not start.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("no tenant {0:?} is configured")]
    UnknownTenant(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Polls the selected tenants, `deps.concurrency` at a time, each isolated from the others.
///
/// # Errors
/// Only when the run cannot start (unknown tenant, store unreadable); a tenant's own
/// failure is in its report.
pub async fn run(deps: &PollDeps, selection: &Selection, deadline: Instant) -> Result<PollReport, PollError> {
    let tenants: Vec<TenantConfig> = match selection {
        Selection::Tenant(id) => vec![
            deps.store
                .get_tenant(id)
                .await?
                .ok_or_else(|| PollError::UnknownTenant(id.clone()))?,
        ],
        Selection::All => deps.store.enabled_tenants().await?,
    };
    let tenants = stream::iter(tenants.iter().map(|t| poll_tenant(deps, t, deadline)))
        .buffer_unordered(deps.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut report = PollReport { tenants };
    report.tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    Ok(report)
}

/// What one tenant's run works with.
pub(super) struct Ctx<'a> {
    pub deps: &'a PollDeps,
    pub tenant: &'a TenantConfig,
    pub platform: &'a dyn Platform,
    /// No page starts after this (the deadline less the margin), nor any delivery but a page's
    /// first.
    pub cutoff: Instant,
    /// A delivery unanswered by then is given up (half way from the cutoff to the deadline).
    pub give_up: Instant,
    /// Events refused in a row, with none accepted in between
    /// ([`REFUSALS_IN_A_ROW`]).
    pub refusals: AtomicU32,
}

impl<'a> Ctx<'a> {
    /// The context of a run (or of one source of it) that must be done by `deadline`.
    fn until(
        deps: &'a PollDeps,
        tenant: &'a TenantConfig,
        platform: &'a dyn Platform,
        deadline: Instant,
        pace_margin: Duration,
    ) -> Self {
        let margin = paging::margin_before(deadline);
        Self {
            deps,
            tenant,
            platform,
            cutoff: deadline.checked_sub(margin + pace_margin).unwrap_or_else(Instant::now),
            give_up: deadline.checked_sub(margin / 2).unwrap_or_else(Instant::now),
            refusals: AtomicU32::new(0),
        }
    }
}

/// Why a tenant's run stopped early.
#[derive(Debug, thiserror::Error)]
enum Stop {
    #[error(transparent)]
    S1(#[from] S1Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error(
        "the stories changed while a page was published ({differs} events decided differently): the page is held and read again on the next run"
    )]
    Held { differs: usize },
    #[error(
        "the run's time was up while a page was being published: what the platform took is recorded, the next run sends the rest"
    )]
    Deadline,
    #[error(
        "the platform refused {count} different events in a row (the last: HTTP {status}: {detail}): taken as the platform refusing this tenant, not the events; the checkpoint holds and the next run sends them again"
    )]
    Refusals { count: u32, status: u16, detail: String },
}

/// Polls one tenant under its lease, and gives the lease back when done (an operator's run, or
/// the schedule's run of every tenant: the next run may come at once).
pub async fn poll_tenant(deps: &PollDeps, tenant: &TenantConfig, deadline: Instant) -> TenantReport {
    poll_tenant_then(deps, tenant, deadline, Release::Always).await
}

/// Polls one tenant of a fleet's schedule (a queue message, the one-machine runner's pool),
/// whose next run comes a minute later: a run that found nothing to do lets its short lease
/// lapse instead of giving it back, so it makes one write, the take ([`POLL_LEASE`]).
pub async fn poll_scheduled(deps: &PollDeps, tenant: &TenantConfig, deadline: Instant) -> TenantReport {
    poll_tenant_then(deps, tenant, deadline, Release::UnlessIdle).await
}

/// When a run gives its lease back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Release {
    Always,
    /// Not after a run that wrote nothing, failed in nothing and ended within the lease.
    UnlessIdle,
}

async fn poll_tenant_then(deps: &PollDeps, tenant: &TenantConfig, deadline: Instant, release: Release) -> TenantReport {
    let mut report = TenantReport {
        tenant: tenant.id.clone(),
        ..TenantReport::default()
    };
    let now = OffsetDateTime::now_utc();
    let started = Instant::now();
    // A short lease, renewed while the run is alive: a killed run keeps the tenant for at most
    // POLL_LEASE. Every checkpoint and story write is fenced by it.
    let lease = match deps
        .store
        .take_lease(&tenant.id, LEASE_JOB, &deps.owner, POLL_LEASE, now)
        .await
    {
        Ok(Some(lease)) => lease,
        Ok(None) => {
            report.outcome = Outcome::Skipped;
            report.error = Some("another run holds this tenant's lease".into());
            return report;
        }
        Err(e) => {
            report.outcome = Outcome::Failed;
            report.error = Some(e.to_string());
            return report;
        }
    };
    let fenced = PollDeps {
        store: deps.store.fenced(lease.clone()),
        ..deps.clone()
    };
    // The pending writebacks keep a share of the time for themselves, so a slow platform or a
    // backlog cannot starve them; and the poll is cut at its own deadline in any case (its own
    // checks stop it well before), so the run always returns, with its report and metrics,
    // before the invocation ends. A cut is as safe as a kill.
    let poll_deadline = match &deps.writeback {
        Some(_) => deadline
            .checked_sub(WRITEBACK_SHARE.min(deadline.saturating_duration_since(Instant::now()) / 4))
            .unwrap_or(deadline),
        None => deadline,
    };
    let work = async {
        let polled = tokio::time::timeout_at(
            poll_deadline.into(),
            poll_with_token(&fenced, tenant, poll_deadline, &mut report),
        )
        .await;
        match polled {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                report.outcome = Outcome::Failed;
                report.error = Some(e.to_string());
                tracing::warn!(tenant = %tenant.id, error = %e, "poll failed");
            }
            Err(_) if report.pages == 0 => {
                // No time even to read a page: the next run goes on.
                report.outcome = Outcome::Partial;
            }
            Err(_) => {
                // Its own checks should have stopped it well before: a failure, so it alarms.
                report.outcome = Outcome::Failed;
                report.error = Some(
                    "the poll was cut at its deadline before it could record its page; the next run repeats it".into(),
                );
                if let Ok(Some(c)) = deps.store.get_checkpoint(&tenant.id, CHECKPOINT).await {
                    let lag = c
                        .watermark
                        .map(|w| (OffsetDateTime::now_utc() - w).whole_seconds().max(0));
                    report.lag_seconds = report.lag_seconds.max(lag);
                }
                tracing::warn!(tenant = %tenant.id, "poll cut at its deadline");
            }
        }
        if let Some(wb) = &deps.writeback {
            // Done a little before the invocation ends, so the lease is given back and the
            // metrics are printed.
            let until = deadline
                .checked_sub(Duration::from_secs(3).min(deadline.saturating_duration_since(Instant::now()) / 20))
                .unwrap_or(deadline);
            match crate::usecase::writeback::retry_pending(wb, tenant, OffsetDateTime::now_utc(), 50, until).await {
                Ok(r) => {
                    report.writebacks_applied = r.applied;
                    report.writebacks_dead = r.dead;
                    report.writebacks_pending = Some(r.rescheduled + r.waiting + r.unreadable);
                }
                Err(e) => tracing::warn!(tenant = %tenant.id, error = %e, "could not read pending writebacks"),
            }
        }
    };
    if let Err(e) = deps.store.keep_alive(&lease, work).await {
        report.outcome = Outcome::Failed;
        report.error = Some(e.to_string());
        tracing::warn!(tenant = %tenant.id, error = %e, "poll stopped");
    }
    // The status is written while the lease is still held, so two runs never race on it.
    if let Some(facts) = report.status_facts() {
        if let Err(e) = crate::usecase::status::record_run(
            &deps.store,
            deps.platforms.as_ref(),
            tenant,
            facts,
            OffsetDateTime::now_utc(),
        )
        .await
        {
            tracing::warn!(tenant = %tenant.id, error = %e, "could not record the connector status");
        }
    }
    // A scheduled idle run's lease lapses by itself before the tenant's next message: no write.
    // A run that wrote (each write renewed it), failed (the operator may retry at once) or
    // lasted longer lets it go, so the next run need not wait.
    let idle = fenced.store.fenced_writes() == 0
        && report.outcome != Outcome::Failed
        && started.elapsed() < POLL_LEASE.unsigned_abs();
    if release == Release::Always || !idle {
        if let Err(e) = deps.store.release(&lease, OffsetDateTime::now_utc()).await {
            tracing::warn!(tenant = %tenant.id, error = %e, "could not release the lease; it lapses by itself");
        }
    }
    tracing::info!(
        tenant = %report.tenant, outcome = ?report.outcome, fetched = report.fetched, new = report.new,
        changed = report.changed, unchanged = report.unchanged, echoes = report.echoes,
        published = report.published, failed = report.failed, pages = report.pages,
        publish_dead_letters = report.publish_dead_letters, replayed = report.replayed,
        writebacks_applied = report.writebacks_applied, writebacks_dead = report.writebacks_dead,
        lag_seconds = report.lag_seconds, error = report.error.as_deref(), "poll report"
    );
    report
}

impl ConsoleError for Stop {
    fn is_unauthorized(&self) -> bool {
        matches!(self, Stop::S1(e) if e.is_unauthorized())
    }
}

/// Polls with the tenant's token; a 401 re-reads it once and polls again (see [`Consoles`]).
async fn poll_with_token(
    deps: &PollDeps,
    tenant: &TenantConfig,
    deadline: Instant,
    report: &mut TenantReport,
) -> Result<(), Stop> {
    let platform = deps.platforms.resolve(tenant).await?;
    let platform = platform.as_ref();
    deps.consoles
        .with_token_state(tenant, report, |client, report| async move {
            let result = paging::poll_threats(deps, tenant, &client, platform, deadline, report).await;
            (report, result)
        })
        .await
}
