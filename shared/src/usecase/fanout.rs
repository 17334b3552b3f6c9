//! Fan-out on Lambda: one schedule per job invokes the dispatcher, which sends one queue
//! message per enabled tenant due, spread by a per-tenant delay; `poll-threats`, `sync-assets`
//! and `token-expiry` each run one tenant per message of their own queue, so no tenant waits for
//! another's run and the fleet scales with the consumers' concurrency.
//!
//! Delivery is at least once, so every message is safe to see twice: a duplicate (or a message
//! arriving while the tenant's previous run still holds its lease) finds the lease held and
//! ends at once, counted. A message for a disabled or deleted tenant ends at once, counted (the
//! next dispatch sends none). A malformed message is reported as a batch item failure, so after
//! the queue's receive limit it sits in the dead-letter queue, alarmed, for an operator to read.
//! A tenant whose run fails is not retried by the queue: its status says `error`, and the next
//! dispatch sends it again (backing off to every [`BACKOFF_MINUTES`] after [`BACKOFF_AFTER`]
//! failures in a row, until a run succeeds, its config changes or `tenant test` passes). An asset
//! sync that stops at its deadline with more to do sends itself a continuation message, delayed
//! by the platform's budget window, instead of waiting for the next day's dispatch.

use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use serde::Serialize;
use time::OffsetDateTime;

use crate::domain::shard_of;
use crate::queue::{
    BatchItemFailure, MAX_DELAY_SECONDS, SEND_BATCH_MAX, SqsBatchResponse, SqsEvent, TenantMessage, TenantQueue,
};
use crate::store::{ConnectorStatus, Store, StoreError, TenantConfig};
use crate::usecase::poll_threats::{Outcome, PollDeps, TenantReport, poll_scheduled};
use crate::usecase::sync_assets::{AssetDeps, AssetReport, sync_tenant};
use crate::usecase::token_expiry::{TokenDeps, TokenReport, check_tenant};

/// Failed runs in a row after which a tenant is dispatched only every [`BACKOFF_MINUTES`].
pub const BACKOFF_AFTER: u32 = 3;
/// A backed-off tenant's interval, in minutes.
pub const BACKOFF_MINUTES: u32 = 15;
/// `SendMessageBatch` requests in flight at once.
const SENDS_IN_FLIGHT: usize = 8;
/// A run's lag (seconds behind S1) over which the fleet figure counts the tenant as lagging.
pub const LAGGING_SECONDS: i64 = 300;

/// The jobs the dispatcher fans out, each to its own queue and consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Job {
    /// `poll-threats`.
    Poll,
    /// `sync-assets`.
    Assets,
    /// `token-expiry`'s watch.
    Tokens,
}

impl Job {
    /// Every job.
    pub const ALL: [Job; 3] = [Job::Poll, Job::Assets, Job::Tokens];

    /// The job's name in the dispatcher's input (`{"job": "assets"}`).
    pub fn as_str(self) -> &'static str {
        match self {
            Job::Poll => "poll",
            Job::Assets => "assets",
            Job::Tokens => "tokens",
        }
    }

    /// The job named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|j| j.as_str() == name)
    }

    /// A tenant's interval for this job, in minutes: its own setting, else each minute for
    /// polls and daily for the asset sync and the token watch.
    pub fn interval_minutes(self, tenant: &TenantConfig) -> u32 {
        let (own, default) = match self {
            Job::Poll => (tenant.intervals.poll_minutes, 1),
            Job::Assets => (tenant.intervals.assets_minutes, 24 * 60),
            Job::Tokens => (tenant.intervals.tokens_minutes, 24 * 60),
        };
        own.unwrap_or(default).max(1)
    }
}

/// One dispatch: which job, how often its schedule runs, and over how long its messages spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub job: Job,
    /// Minutes between two runs of this job's schedule: a tenant is due when a point of its
    /// interval falls in the last `every_minutes` (so a daily sync is sent once however often
    /// the schedule runs).
    pub every_minutes: u32,
    /// The per-tenant delays fall within this (at most SQS's 900 s).
    pub spread: Duration,
}

/// What a dispatch did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DispatchReport {
    /// Enabled tenants.
    pub tenants: usize,
    /// Messages the queue took.
    pub sent: usize,
    /// Tenants not due this time (their own interval).
    pub not_due: usize,
    /// Tenants left out this time because they keep failing (backed off).
    pub backed_off: usize,
    /// Tenants whose message the queue did not take (the next dispatch sends them again).
    pub not_sent: Vec<String>,
    /// Enabled tenants whose status says `error`.
    pub in_error: usize,
    /// Enabled tenants whose status says they are over [`LAGGING_SECONDS`] behind S1, or in
    /// error (a tenant that cannot be polled falls behind too).
    pub lagging: usize,
}

impl DispatchReport {
    /// The dispatcher's fleet-wide figures as one CloudWatch EMF line (dimension `Function`
    /// only: per-tenant figures stay in the log and the status records, where they cost
    /// nothing per tenant). The fleet's health (tenants, in error, lagging) only for the poll.
    pub fn emf(&self, job: Job, now: OffsetDateTime) -> String {
        use crate::telemetry::{Metric, NAMESPACE, emf_line};
        let m = Metric::count;
        let mut metrics = vec![
            m("Dispatched", self.sent as u64),
            m("BackedOff", self.backed_off as u64),
            m("NotSent", self.not_sent.len() as u64),
        ];
        if job == Job::Poll {
            metrics.push(m("Tenants", self.tenants as u64));
            metrics.push(m("TenantsInError", self.in_error as u64));
            metrics.push(m("TenantsLagging", self.lagging as u64));
            metrics.push(Metric {
                name: "LaggingPercent",
                value: if self.tenants == 0 {
                    0.0
                } else {
                    100.0 * self.lagging as f64 / self.tenants as f64
                },
                unit: "Percent",
            });
        }
        emf_line(
            NAMESPACE,
            &[("Function", "dispatch"), ("Job", job.as_str())],
            &metrics,
            (now.unix_timestamp_nanos() / 1_000_000) as i64,
        )
    }
}

/// A tenant's delay within the spread: stable per tenant (the same offset every minute, so its
/// interval stays a minute) and even over the fleet.
pub fn delay_of(tenant: &str, spread: Duration) -> u32 {
    let secs = spread.as_secs().clamp(0, u64::from(MAX_DELAY_SECONDS)) as u32;
    if secs == 0 { 0 } else { shard_of(tenant, secs) }
}

/// Whether the tenant's `job` is due in the dispatch at `now`, which covers the last
/// `every_minutes`: once per interval (the tenant's own, or [`BACKOFF_MINUTES`] if longer while
/// it keeps failing), at a per-tenant minute of it so the fleet does not bunch up.
pub fn due(
    tenant: &TenantConfig,
    job: Job,
    status: Option<&ConnectorStatus>,
    every_minutes: u32,
    now: OffsetDateTime,
) -> bool {
    let interval = i64::from(interval_of(tenant, job, status));
    let phase = i64::from(shard_of(&tenant.id, interval as u32));
    let minute = now.unix_timestamp().div_euclid(60);
    (minute - phase).rem_euclid(interval) < i64::from(every_minutes.max(1))
}

fn backed_off(status: Option<&ConnectorStatus>) -> bool {
    status.is_some_and(|s| s.failures_in_a_row >= BACKOFF_AFTER)
}

fn interval_of(tenant: &TenantConfig, job: Job, status: Option<&ConnectorStatus>) -> u32 {
    let own = job.interval_minutes(tenant);
    if backed_off(status) {
        own.max(BACKOFF_MINUTES)
    } else {
        own
    }
}

/// Sends one message per enabled tenant due, `SendMessageBatch` by ten, each delayed by
/// [`delay_of`] within the plan's spread.
///
/// # Errors
/// The tenant list or statuses could not be read. A batch the queue refused as a whole is
/// reported in `not_sent`, not as an error, so one bad request does not hold back the rest.
pub async fn dispatch(
    store: &Store,
    queue: &dyn TenantQueue,
    plan: Plan,
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
        let status = statuses.get(&t.id);
        if let Some(s) = status {
            let error = s.state == crate::store::ConnectorState::Error;
            report.in_error += usize::from(error);
            report.lagging += usize::from(error || s.lag_seconds.is_some_and(|l| l > LAGGING_SECONDS));
        }
        if due(t, plan.job, status, plan.every_minutes, now) {
            messages.push(TenantMessage {
                tenant: t.id.clone(),
                delay_seconds: delay_of(&t.id, plan.spread),
            });
        } else if backed_off(status) && due(t, plan.job, None, plan.every_minutes, now) {
            report.backed_off += 1;
        } else {
            report.not_due += 1;
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
#[derive(Debug, Clone, Serialize)]
pub struct Consumed<R> {
    /// The tenants' runs (including those that found the lease held).
    pub runs: Vec<R>,
    /// Messages that found the tenant's lease held: a duplicate, or a run still going.
    pub lease_held: u64,
    /// Messages for a tenant that is disabled.
    pub disabled: u64,
    /// Messages for a tenant that no longer exists.
    pub unknown: u64,
    /// Messages that name no tenant (left to the dead-letter queue).
    pub malformed: u64,
    /// Messages to be received again (the store could not be read, or a continuation could
    /// not be sent).
    pub retried: u64,
}

impl<R> Default for Consumed<R> {
    fn default() -> Self {
        Self {
            runs: Vec::new(),
            lease_held: 0,
            disabled: 0,
            unknown: 0,
            malformed: 0,
            retried: 0,
        }
    }
}

impl<R> Consumed<R> {
    /// The batch's counts, as one log line.
    pub fn log(&self, messages: usize) {
        tracing::info!(
            messages,
            lease_held = self.lease_held,
            disabled = self.disabled,
            unknown = self.unknown,
            malformed = self.malformed,
            retried = self.retried,
            "queue batch done"
        );
    }
}

/// What the poll consumer did with a batch.
pub type ConsumeReport = Consumed<TenantReport>;

/// One tenant's run, as a consumer counts it.
pub struct Ran<R> {
    pub report: R,
    /// The run found the tenant's lease held and did nothing.
    pub lease_held: bool,
    /// The message is to be received again.
    pub again: bool,
}

enum Handled<R> {
    Run(Box<Ran<R>>),
    Disabled,
    Unknown,
    Malformed,
    Retry,
}

/// Runs `run` on the tenant each message names (at most `concurrency` at once) and answers
/// which messages are to be received again: the one consumer loop of every job.
///
/// `run` gets the message's own key (its id and place in the batch) beside the tenant: the
/// lease owner of that message's run. A lease is re-entrant for its owner, so were every
/// message of a batch run under the invocation's one owner, a duplicate delivery in the same
/// batch would take the lease its twin holds and run beside it instead of finding it held.
pub async fn consume_each<R, F, Fut>(
    store: &Store,
    event: &SqsEvent,
    concurrency: usize,
    run: F,
) -> (SqsBatchResponse, Consumed<R>)
where
    F: Fn(TenantConfig, String) -> Fut,
    Fut: Future<Output = Ran<R>>,
{
    let run = &run;
    let handled = stream::iter(event.records.iter().enumerate().map(|(i, r)| async move {
        let tenant = match r.tenant() {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(message_id = %r.message_id, receives = r.receive_count(), error = %e, "malformed message; it goes to the dead-letter queue");
                return (r, Handled::Malformed);
            }
        };
        match store.get_tenant(&tenant).await {
            Ok(Some(t)) if t.enabled => {
                // The index too: SQS may hand one message twice, even in one batch.
                let key = format!("{}#{i}", r.message_id);
                (r, Handled::Run(Box::new(run(t, key).await)))
            }
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
    .buffer_unordered(concurrency.max(1))
    .collect::<Vec<_>>()
    .await;
    let mut response = SqsBatchResponse::default();
    let mut report = Consumed::default();
    for (record, h) in handled {
        let again = match h {
            Handled::Run(ran) => {
                report.lease_held += u64::from(ran.lease_held);
                report.retried += u64::from(ran.again);
                report.runs.push(ran.report);
                ran.again
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
    (response, report)
}

/// The lease owner of one message's run: the invocation's owner and the message's key.
fn message_owner(invocation: &str, message: &str) -> String {
    format!("{invocation}/{message}")
}

/// `poll-threats`' consumer: polls the tenant each message names, every message of the batch at
/// once (`deps.concurrency` only when it is larger), each under a lease owner of its own
/// ([`consume_each`]).
///
/// The whole batch at once because a batch is the event source mapping's `BatchSize` (at most
/// 10) tenants the queue handed this invocation together: with fewer slots than messages, a
/// tenant with a backlog or a slow platform would hold a slot to its deadline and the messages
/// queued behind it in the batch would wait for it, the head-of-line blocking the queue exists
/// to avoid. Idle runs are mostly waiting on S1, so ten of them cost little more than one.
pub async fn consume(deps: &PollDeps, event: &SqsEvent, deadline: Instant) -> (SqsBatchResponse, ConsumeReport) {
    let concurrency = deps.concurrency.max(event.records.len());
    let (response, mut report) = consume_each(&deps.store, event, concurrency, |t, message| async move {
        let deps = PollDeps {
            owner: message_owner(&deps.owner, &message),
            ..deps.clone()
        };
        let report = poll_scheduled(&deps, &t, deadline).await;
        Ran {
            lease_held: report.outcome == Outcome::Skipped,
            again: false,
            report,
        }
    })
    .await;
    report.runs.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    (response, report)
}

/// How long an asset sync that stopped with more to do waits before its continuation: one
/// slice of the platform's budget window (Halo: 30 s of 300), at least a second, at most SQS's
/// 900 s; none for a platform without a budget. The budget kept in the state table holds every
/// run of every process under the platform's limit whatever the delay, so waiting out the whole
/// window would only leave most of it unused (measured: 8 waits of 300 s left about 2,800 of a
/// 5,000-agent import's requests of budget idle); one slice lets the next slice's share come
/// free before the continuation asks for it.
pub fn continuation_delay(tenant: &TenantConfig) -> u32 {
    tenant.platform.settings().budget_window().map_or(0, |w| {
        let slice = w.as_secs().div_ceil(u64::from(crate::net::budget::SLICES)).max(1);
        slice.min(u64::from(MAX_DELAY_SECONDS)) as u32
    })
}

/// `sync-assets`' consumer: syncs the tenant each message names, one at a time (the agent
/// listing is the slow part). A sync that ends `partial` sends its own continuation to `queue`,
/// delayed by [`continuation_delay`]; if the queue does not take it, the message is received
/// again instead, so the rest is never left for the next day.
pub async fn consume_assets(
    deps: &AssetDeps,
    queue: &dyn TenantQueue,
    event: &SqsEvent,
    deadline: Instant,
) -> (SqsBatchResponse, Consumed<AssetReport>) {
    consume_each(&deps.store, event, 1, |t, message| async move {
        let deps = AssetDeps {
            owner: message_owner(&deps.owner, &message),
            ..deps.clone()
        };
        let report = sync_tenant(&deps, &t, deadline).await;
        let mut again = false;
        if report.outcome == Outcome::Partial {
            let next = TenantMessage {
                tenant: t.id.clone(),
                delay_seconds: continuation_delay(&t),
            };
            match queue.send_batch(std::slice::from_ref(&next)).await {
                Ok(failed) if failed.is_empty() => {
                    tracing::info!(tenant = %t.id, delay_seconds = next.delay_seconds, "asset sync partial; continuation sent");
                }
                Ok(_) => again = true,
                Err(e) => {
                    tracing::warn!(tenant = %t.id, error = %e, "continuation not sent; the message is received again");
                    again = true;
                }
            }
        }
        Ran {
            lease_held: report.outcome == Outcome::Skipped,
            again,
            report,
        }
    })
    .await
}

/// `token-expiry`'s consumer: checks the token of the tenant each message names, a few at once,
/// each under the tenant's token lease (a duplicate finds it held: [`check_tenant`]).
pub async fn consume_tokens(
    deps: &TokenDeps,
    event: &SqsEvent,
    now: OffsetDateTime,
) -> (SqsBatchResponse, Consumed<TokenReport>) {
    consume_each(&deps.store, event, 4, |t, _| async move {
        let report = check_tenant(deps, &t, now).await;
        Ran {
            lease_held: report.lease_held,
            again: false,
            report,
        }
    })
    .await
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
            // A tenant's own interval, when it asks for a longer one than the runner's.
            let own = Duration::from_secs(60 * u64::from(t.intervals.poll_minutes.unwrap_or(0)));
            next_due.insert(t.id.clone(), now + every.max(own));
            on_event(PoolEvent::Started(&t.id));
            let t = t.clone();
            runs.push(async move { poll_scheduled(deps, &t, Instant::now() + run_limit).await });
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
    fn each_job_is_sent_once_per_the_tenants_interval_however_often_its_schedule_runs() {
        let t0 = time::macros::datetime!(2026-01-01 0:00 UTC);
        let mut t = TenantConfig::for_test(
            "acme",
            "https://acme.sentinelone.net",
            crate::test_util::generic("https://hooks.example.com/x", "HOOK"),
        );
        // Dispatches over two days, each covering the `every` minutes before it.
        let sent = |t: &TenantConfig, job: Job, every: u32| {
            (0..2 * 24 * 60 / every)
                .filter(|i| due(t, job, None, every, t0 + time::Duration::minutes(i64::from(i * every))))
                .count()
        };
        assert_eq!(sent(&t, Job::Poll, 1), 2 * 24 * 60, "each minute by default");
        assert_eq!(sent(&t, Job::Assets, 60), 2, "daily, from an hourly schedule");
        assert_eq!(sent(&t, Job::Tokens, 60), 2);
        t.intervals.poll_minutes = Some(5);
        t.intervals.assets_minutes = Some(6 * 60);
        assert_eq!(sent(&t, Job::Poll, 1), 2 * 24 * 12);
        assert_eq!(sent(&t, Job::Assets, 60), 8);
        // A phase per tenant: five-minute tenants do not all go in the same minute.
        let minutes: std::collections::BTreeSet<i64> = (0..100)
            .map(|i| {
                let mut t = t.clone();
                t.id = format!("tenant-{i}");
                (0..5)
                    .find(|m| due(&t, Job::Poll, None, 1, t0 + time::Duration::minutes(*m)))
                    .unwrap()
            })
            .collect();
        assert_eq!(minutes.len(), 5, "{minutes:?}");
        assert_eq!(Job::parse("assets"), Some(Job::Assets));
        assert_eq!(Job::parse("shard"), None);
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
        let acme = TenantConfig::for_test(
            "acme",
            "https://acme.sentinelone.net",
            crate::test_util::generic("https://hooks.example.com/x", "HOOK"),
        );
        let minutes = |s: &ConnectorStatus| {
            (0..60)
                .filter(|m| due(&acme, Job::Poll, Some(s), 1, t0 + time::Duration::minutes(*m)))
                .count()
        };
        assert_eq!(minutes(&status(BACKOFF_AFTER - 1)), 60);
        assert_eq!(minutes(&status(BACKOFF_AFTER)), 4);
        assert!(due(&acme, Job::Poll, None, 1, t0));
    }
}
