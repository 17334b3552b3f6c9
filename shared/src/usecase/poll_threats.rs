//! poll-threats: every new or changed S1 threat reaches the platform once, grouped into stories.
//!
//! Per tenant, under its lease: read the checkpoint, page through `GET /threats` by `updatedAt`
//! ascending, decide per threat (new, changed, unchanged, our own echo) against the stored
//! stories, publish to the platform, write the stories, and only then save the checkpoint. A
//! crash anywhere repeats at most the last page, and the repeated events carry the same ids, so
//! the platform sees each change once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use serde::Serialize;
use time::OffsetDateTime;

use crate::domain::{self, STORY_MAX_BYTES, STORY_WINDOW, Severity};
use crate::platform::{EventKind, Platform, PlatformError, PlatformResolver, StoryView, ThreatEvent, ThreatView};
use crate::s1::dto::{CloudAlert, Threat};
use crate::s1::{CloudAlertQuery, ConsoleError, Consoles, S1Client, S1Error, ThreatQuery};
use crate::secrets::SecretError;
use crate::store::{
    Checkpoint, Grouping, LEASE_TTL, MemberState, PublishDeadLetter, Store, StoreError, StoryRecord, StoryStatus,
    TenantConfig, Versioned,
};
use crate::telemetry::{Metric, NAMESPACE, emf_line};

/// Name of the threats checkpoint.
pub const CHECKPOINT: &str = "threats";
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

/// Name of the lease a poll run holds per tenant.
pub const LEASE_JOB: &str = "poll";
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
    /// Lease holder id: the invocation's request id.
    pub owner: String,
    /// Tenants polled at once.
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
    /// Enabled tenants whose id hashes to `index` of `count` shards.
    Shard { index: u32, count: u32 },
}

/// How a tenant's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    #[default]
    Completed,
    /// Stopped before the deadline with more to do; the next run continues.
    Partial,
    Failed,
    /// Another run holds the tenant's lease.
    Skipped,
}

/// Counts of one tenant's run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TenantReport {
    pub tenant: String,
    pub outcome: Outcome,
    pub fetched: u64,
    pub new: u64,
    pub changed: u64,
    pub unchanged: u64,
    /// Changes that were only our own writeback coming back: not sent to the platform.
    pub echoes: u64,
    pub published: u64,
    /// Events the platform refused (4xx): recorded, not retried until the threat changes.
    pub failed: u64,
    pub pages: u64,
    /// Seconds between now and the newest change handled.
    pub lag_seconds: Option<i64>,
    /// Events the platform refused for good in this run, kept as publish dead letters.
    pub publish_dead_letters: u64,
    /// Publish dead letters sent again (an operator asked to replay them).
    pub replayed: u64,
    /// Pending writebacks retried after the poll.
    pub writebacks_applied: u64,
    pub writebacks_dead: u64,
    pub error: Option<String>,
}

/// The report of a run, over every tenant it touched.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PollReport {
    pub tenants: Vec<TenantReport>,
}

impl PollReport {
    /// Sums over tenants.
    pub fn totals(&self) -> TenantReport {
        let mut t = TenantReport {
            tenant: "*".into(),
            ..TenantReport::default()
        };
        for r in &self.tenants {
            t.fetched += r.fetched;
            t.new += r.new;
            t.changed += r.changed;
            t.unchanged += r.unchanged;
            t.echoes += r.echoes;
            t.published += r.published;
            t.failed += r.failed;
            t.publish_dead_letters += r.publish_dead_letters;
            t.replayed += r.replayed;
            t.writebacks_applied += r.writebacks_applied;
            t.writebacks_dead += r.writebacks_dead;
            t.pages += r.pages;
            t.lag_seconds = t.lag_seconds.max(r.lag_seconds);
        }
        if self.tenants.iter().any(|r| r.outcome == Outcome::Failed) {
            t.outcome = Outcome::Failed;
        }
        t
    }

    /// One CloudWatch EMF line per tenant.
    pub fn emf_lines(&self, function: &str, now: OffsetDateTime) -> Vec<String> {
        let ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        self.tenants
            .iter()
            .map(|r| {
                let count = Metric::count;
                let mut metrics = vec![
                    count("Fetched", r.fetched),
                    count("New", r.new),
                    count("Changed", r.changed),
                    count("Unchanged", r.unchanged),
                    count("Echoes", r.echoes),
                    count("Published", r.published),
                    count("Failed", r.failed),
                    count("Pages", r.pages),
                    count("RunFailed", u64::from(r.outcome == Outcome::Failed)),
                    count("WritebacksApplied", r.writebacks_applied),
                    count("PublishDeadLetters", r.publish_dead_letters),
                    // New dead letters of either direction: the alarm watches this one.
                    count("DeadLetters", r.writebacks_dead + r.publish_dead_letters),
                ];
                if let Some(lag) = r.lag_seconds {
                    metrics.push(Metric {
                        name: "LagSeconds",
                        value: lag as f64,
                        unit: "Seconds",
                    });
                }
                emf_line(
                    NAMESPACE,
                    &[("Function", function), ("Tenant", &r.tenant)],
                    &metrics,
                    ms,
                )
            })
            .collect()
    }
}

/// A run could not start.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("no tenant {0:?} is configured")]
    UnknownTenant(String),
    #[error("invalid selection: {0}")]
    BadSelection(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stable shard of a tenant id (FNV-1a), the same in every process.
pub fn shard_of(tenant: &str, count: u32) -> u32 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in tenant.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % u64::from(count.max(1))) as u32
}

/// Polls the selected tenants, `deps.concurrency` at a time, each isolated from the others.
///
/// # Errors
/// Only when the run cannot start (unknown tenant, bad shard, store unreadable); a tenant's own
/// failure is in its report.
pub async fn run(deps: &PollDeps, selection: &Selection, deadline: Instant) -> Result<PollReport, PollError> {
    let tenants: Vec<TenantConfig> = match selection {
        Selection::Tenant(id) => vec![
            deps.store
                .get_tenant(id)
                .await?
                .ok_or_else(|| PollError::UnknownTenant(id.clone()))?,
        ],
        Selection::All => deps
            .store
            .list_tenants()
            .await?
            .into_iter()
            .filter(|t| t.enabled)
            .collect(),
        Selection::Shard { index, count } => {
            if *count == 0 || index >= count {
                return Err(PollError::BadSelection(format!("shard {index} of {count}")));
            }
            deps.store
                .list_tenants()
                .await?
                .into_iter()
                .filter(|t| t.enabled && shard_of(&t.id, *count) == *index)
                .collect()
        }
    };
    let tenants = stream::iter(tenants.iter().map(|t| poll_tenant(deps, t, deadline)))
        .buffer_unordered(deps.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut report = PollReport { tenants };
    report.tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    Ok(report)
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
        "the platform refused {count} different events in a row (the last: HTTP {status}: {detail}): taken as the platform refusing this tenant, not the events; the checkpoint holds and the next run sends them again"
    )]
    Refusals { count: u32, status: u16, detail: String },
}

/// Polls one tenant under its lease.
pub async fn poll_tenant(deps: &PollDeps, tenant: &TenantConfig, deadline: Instant) -> TenantReport {
    let mut report = TenantReport {
        tenant: tenant.id.clone(),
        ..TenantReport::default()
    };
    let now = OffsetDateTime::now_utc();
    // A short lease, renewed while the run is alive: a killed run keeps the tenant for at most
    // LEASE_TTL. Every checkpoint and story write is fenced by it.
    let lease = match deps
        .store
        .take_lease(&tenant.id, LEASE_JOB, &deps.owner, LEASE_TTL, now)
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
    let work = async {
        if let Err(e) = poll_with_token(&fenced, tenant, deadline, &mut report).await {
            report.outcome = Outcome::Failed;
            report.error = Some(e.to_string());
            tracing::warn!(tenant = %tenant.id, error = %e, "poll failed");
        }
        if let Some(wb) = &deps.writeback {
            match crate::usecase::writeback::retry_pending(wb, tenant, OffsetDateTime::now_utc(), 50, deadline).await {
                Ok(r) => {
                    report.writebacks_applied = r.applied;
                    report.writebacks_dead = r.dead;
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
    match deps.store.give_back(&lease).await {
        Ok(_) => {}
        Err(e) => tracing::warn!(tenant = %tenant.id, error = %e, "could not release the lease; it lapses by itself"),
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
            let result = poll_threats(deps, tenant, &client, platform, deadline, report).await;
            (report, result)
        })
        .await
}

/// One story being worked on during a page.
struct Work {
    story: StoryRecord,
    version: u64,
    /// Stored under its id (an earlier story of its key) rather than as the key's current one.
    archived: bool,
    dirty: bool,
    /// Member threats this run changed (re-applied if another writer got in first).
    touched: HashSet<String>,
    reopened: bool,
    /// What the story costs against [`STORY_MAX_BYTES`] (an upper bound, kept as members join).
    bytes: usize,
}

impl Work {
    fn new(story: StoryRecord, version: u64, archived: bool, dirty: bool) -> Self {
        Self {
            bytes: domain::story_bytes(&story),
            story,
            version,
            archived,
            dirty,
            touched: HashSet::new(),
            reopened: false,
        }
    }

    /// Records a member's state in the story.
    fn put_member(&mut self, id: &str, state: MemberState) {
        self.bytes += domain::member_bytes(id, &state);
        self.story.members.insert(id.to_owned(), state);
        self.touched.insert(id.to_owned());
        self.dirty = true;
    }
}

async fn poll_threats(
    deps: &PollDeps,
    tenant: &TenantConfig,
    client: &S1Client,
    platform: &dyn Platform,
    deadline: Instant,
    report: &mut TenantReport,
) -> Result<(), Stop> {
    let (limit, pace_margin) = paced_page(platform);
    let query = ThreatQuery {
        updated_at_gte: None,
        account_ids: tenant.account_ids.clone(),
        site_ids: tenant.site_ids.clone(),
        limit,
        ..ThreatQuery::default()
    };
    let to_candidates = |page: Vec<Threat>| page.iter().map(|t| Candidate::from_threat(t, tenant)).collect();
    let ctx = Ctx {
        deps,
        tenant,
        platform,
        deadline,
        pace_margin,
        refusals: AtomicU32::new(0),
    };
    let result = drain(
        &ctx,
        report,
        CHECKPOINT,
        |watermark| {
            client.threats(&ThreatQuery {
                updated_at_gte: watermark,
                ..query.clone()
            })
        },
        to_candidates,
    )
    .await;
    let result = match result {
        // The platform takes events again: send what an operator asked to replay.
        Ok(()) if report.outcome != Outcome::Partial => replay_dead_letters(&ctx, report).await,
        other => other,
    };
    if result.is_ok() && tenant.poll_cloud_alerts && report.outcome != Outcome::Partial {
        // STAR alerts have no updatedAt filter: they are polled by creation time, new ones only.
        let alerts = CloudAlertQuery {
            account_ids: tenant.account_ids.clone(),
            site_ids: tenant.site_ids.clone(),
            limit,
            ..CloudAlertQuery::default()
        };
        let to_candidates =
            |page: Vec<CloudAlert>| page.iter().filter_map(|a| Candidate::from_alert(a, tenant)).collect();
        return drain(
            &ctx,
            report,
            ALERTS_CHECKPOINT,
            |watermark| {
                client.cloud_alerts(&CloudAlertQuery {
                    created_at_gte: watermark,
                    ..alerts.clone()
                })
            },
            to_candidates,
        )
        .await;
    }
    result
}

/// Sends again, once each, the publish dead letters an operator asked to replay (as they were
/// refused, under the same webhook id): each is retired once the platform took it, or kept with
/// the new answer if it is refused again.
async fn replay_dead_letters(ctx: &Ctx<'_>, report: &mut TenantReport) -> Result<(), Stop> {
    let store = &ctx.deps.store;
    let tenant = &ctx.tenant.id;
    for mut letter in store.publish_replays(tenant, 100).await? {
        let sent = match serde_json::from_value::<ThreatEvent>(letter.event.clone()) {
            Ok(event) => ctx.platform.publish(&event).await,
            Err(e) => Err(PlatformError::Rejected {
                status: 0,
                detail: format!("the stored event cannot be read back: {e}"),
            }),
        };
        match sent {
            Ok(_) => {
                store
                    .retire_publish_dead(tenant, std::slice::from_ref(&letter.id))
                    .await?;
                report.replayed += 1;
            }
            Err(PlatformError::Rejected { status, detail }) => {
                tracing::warn!(tenant = %tenant, item = %letter.id, status, "a replayed event was refused again");
                letter.status = status;
                letter.error = detail;
                letter.attempts += 1;
                letter.replay_requested = false;
                store.refused_again(tenant, &letter).await?;
                report.failed += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Name of the STAR-alerts checkpoint.
pub const ALERTS_CHECKPOINT: &str = "alerts";

/// What one tenant's run works with.
struct Ctx<'a> {
    deps: &'a PollDeps,
    tenant: &'a TenantConfig,
    platform: &'a dyn Platform,
    deadline: Instant,
    /// Extra time kept back for a page of a paced platform.
    pace_margin: Duration,
    /// Events refused in a row, with none accepted in between ([`REFUSALS_IN_A_ROW`]).
    refusals: AtomicU32,
}

/// Pages through one source from its checkpoint, processing and checkpointing page by page.
async fn drain<'c, T, S, F, M>(
    ctx: &Ctx<'_>,
    report: &mut TenantReport,
    checkpoint_name: &str,
    open: F,
    to_candidates: M,
) -> Result<(), Stop>
where
    F: FnOnce(Option<OffsetDateTime>) -> S,
    S: futures_util::Stream<Item = Result<crate::s1::Page<T>, S1Error>> + 'c,
    M: Fn(Vec<T>) -> Vec<Candidate>,
{
    let Ctx {
        deps,
        tenant,
        deadline,
        pace_margin,
        ..
    } = *ctx;
    // A short-lived invocation still gets most of its time: the margin is at most a quarter.
    let margin = DEADLINE_MARGIN.min(deadline.saturating_duration_since(Instant::now()) / 4) + pace_margin;
    let store = &deps.store;
    let mut checkpoint = store
        .get_checkpoint(&tenant.id, checkpoint_name)
        .await?
        .unwrap_or_default();
    let mut pages = std::pin::pin!(open(checkpoint.watermark));
    // S1's total is what is left from the watermark: add what this run already fetched.
    let mut expected = None;
    let fetched_before = report.fetched;
    let result = loop {
        if deadline.saturating_duration_since(Instant::now()) <= margin {
            report.outcome = Outcome::Partial;
            break Ok(());
        }
        let Some(page) = pages.next().await else { break Ok(()) };
        let page = match page {
            Ok(p) => p,
            Err(e) => break Err(Stop::S1(e)),
        };
        report.pages += 1;
        report.fetched += page.items.len() as u64;
        if expected.is_none() {
            expected = page.total_items.map(|t| t + fetched_before);
        }
        let candidates = to_candidates(page.items);
        if let Err(e) = process_page(ctx, &candidates, &checkpoint, report).await {
            break Err(e);
        }
        advance(&mut checkpoint, &candidates);
        // Saved last: everything before it has been accepted by the platform.
        store.put_checkpoint(&tenant.id, checkpoint_name, &checkpoint).await?;
        if let Some(progress) = &deps.progress {
            progress(
                report,
                crate::usecase::Tick {
                    done: report.fetched,
                    expected: expected.map(|e| e.max(report.fetched)),
                },
            );
        }
    };
    let lag = checkpoint
        .watermark
        .map(|w| (OffsetDateTime::now_utc() - w).whole_seconds().max(0));
    report.lag_seconds = report.lag_seconds.max(lag);
    result
}

/// One thing to publish, normalised from a threat or a STAR alert.
pub(crate) struct Candidate {
    /// Member id: the threat id, or `alert:<alertId>`.
    id: String,
    /// Order and de-duplication stamp: a threat's `updatedAt`, an alert's `createdAt`.
    stamp: Option<OffsetDateTime>,
    key: String,
    detected_at: Option<OffsetDateTime>,
    state: MemberState,
    view: ThreatView,
    severity: Severity,
}

impl Candidate {
    fn from_threat(t: &Threat, tenant: &TenantConfig) -> Self {
        Self {
            id: t.id.clone(),
            stamp: t.threat_info.updated_at,
            key: domain::story_key(t, tenant.grouping),
            detected_at: domain::detected_at(t),
            state: MemberState {
                updated_at: t.threat_info.updated_at,
                digest: domain::content_digest(t),
                status: t.threat_info.incident_status.map(|s| s.as_str().to_owned()),
                verdict: t.threat_info.analyst_verdict.map(|v| v.as_str().to_owned()),
                written_status: None,
                written_verdict: None,
                publish_error: None,
            },
            view: ThreatView::from_threat(t, &tenant.console_url),
            severity: domain::severity(t.threat_info.confidence_level, t.threat_info.classification.as_deref()),
        }
    }

    fn from_alert(a: &CloudAlert, tenant: &TenantConfig) -> Option<Self> {
        let alert_id = a.alert_info.alert_id.clone()?;
        let view = ThreatView::from_cloud_alert(a, &tenant.console_url);
        let agent = a
            .agent_detection_info
            .as_ref()
            .and_then(|d| d.uuid.clone())
            .filter(|u| !u.is_empty());
        let rule = a.rule_info.as_ref().and_then(|r| r.id.clone().or(r.name.clone()));
        let key = match (tenant.grouping, agent, rule) {
            (Grouping::Story, Some(agent), Some(rule)) => format!(
                "{}:star:{}",
                agent.to_ascii_lowercase(),
                rule.to_ascii_lowercase().replace('#', "")
            ),
            _ => format!("alert:{alert_id}"),
        };
        let digest = domain::short_digest(&serde_json::to_vec(&view).unwrap_or_default());
        Some(Self {
            id: format!("alert:{alert_id}"),
            stamp: a.alert_info.created_at,
            key,
            detected_at: a.alert_info.created_at,
            state: MemberState {
                updated_at: a.alert_info.created_at,
                digest,
                status: view.status.map(|s| s.as_str().to_owned()),
                verdict: view.verdict.map(|v| v.as_str().to_owned()),
                written_status: None,
                written_verdict: None,
                publish_error: None,
            },
            severity: domain::severity_of_rule(a.rule_info.as_ref().and_then(|r| r.severity.as_deref())),
            view,
        })
    }
}

/// The most id bytes the checkpoint lists at its watermark. Past it, ids at the watermark are
/// recognised through their stories (each member records the `updatedAt` handled), so a bulk
/// action giving tens of thousands of threats one `updatedAt` never outgrows the item.
pub const WATERMARK_IDS_MAX_BYTES: usize = 96 * 1024;

/// Moves the watermark to the newest stamp of the page, remembering (up to
/// [`WATERMARK_IDS_MAX_BYTES`]) which ids sit exactly on it (`__gte` returns them again).
fn advance(c: &mut Checkpoint, page: &[Candidate]) {
    let mut listed: HashSet<String> = c.ids_at_watermark.iter().cloned().collect();
    let mut bytes: usize = c.ids_at_watermark.iter().map(|id| id.len() + 3).sum();
    for t in page {
        let Some(at) = t.stamp else { continue };
        match c.watermark {
            Some(w) if at < w => continue,
            Some(w) if at == w => {}
            _ => {
                c.watermark = Some(at);
                c.ids_at_watermark.clear();
                listed.clear();
                bytes = 0;
            }
        }
        if bytes + t.id.len() + 3 <= WATERMARK_IDS_MAX_BYTES && listed.insert(t.id.clone()) {
            bytes += t.id.len() + 3;
            c.ids_at_watermark.push(t.id.clone());
        }
    }
}

fn console_host(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| url.to_owned())
}

fn new_story(key: &str, c: &Candidate, previous: Vec<String>) -> StoryRecord {
    let window_start = c.detected_at.or(c.stamp).unwrap_or_else(OffsetDateTime::now_utc);
    let mut id = format!("{key}@{}", window_start.unix_timestamp());
    if previous.contains(&id) {
        // A full story rolled over to one starting the same second (threats detected together):
        // each story keeps an id, and so an item and an alert, of its own.
        id = format!("{id}.{}", previous.len());
    }
    StoryRecord {
        key: key.to_owned(),
        id,
        window_start,
        status: StoryStatus::Open,
        platform: None,
        platform_ref: None,
        members: BTreeMap::new(),
        previous,
    }
}

fn loaded(v: Versioned<StoryRecord>, archived: bool) -> Work {
    Work::new(v.value, v.version, archived, false)
}

async fn process_page(
    ctx: &Ctx<'_>,
    page: &[Candidate],
    checkpoint: &Checkpoint,
    report: &mut TenantReport,
) -> Result<(), Stop> {
    let Ctx {
        deps,
        tenant,
        platform,
        ref refusals,
        ..
    } = *ctx;
    let store = &deps.store;
    let at_watermark: HashSet<&str> = checkpoint.ids_at_watermark.iter().map(String::as_str).collect();
    let candidates: Vec<&Candidate> = page
        .iter()
        .filter(|c| {
            let seen = c.stamp.is_some() && c.stamp == checkpoint.watermark && at_watermark.contains(c.id.as_str());
            if seen {
                report.unchanged += 1;
            }
            !seen
        })
        .collect();
    if candidates.is_empty() {
        return Ok(());
    }
    let unique: Vec<String> = candidates
        .iter()
        .map(|c| c.key.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut work: HashMap<String, Work> = store
        .get_stories(&tenant.id, &unique)
        .await?
        .into_iter()
        .map(|(k, v)| (k, loaded(v, false)))
        .collect();
    // Members of earlier (archived) stories of a key are found through the current story.
    let archived_ids: Vec<String> = candidates
        .iter()
        .filter_map(|c| {
            work.get(&c.key)
                .filter(|w| !w.story.members.contains_key(&c.id))
                .map(|w| w.story.previous.clone())
        })
        .flatten()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if !archived_ids.is_empty() {
        for (id, v) in store.get_stories(&tenant.id, &archived_ids).await? {
            work.insert(id, loaded(v, true));
        }
    }
    let host = console_host(&tenant.console_url);
    let mut stop: Option<Stop> = None;
    // Refused events not recorded yet, dead letters to write, and ones to retire.
    let mut held: Vec<Refusal> = Vec::new();
    let mut letters: Vec<PublishDeadLetter> = Vec::new();
    let mut retire: Vec<String> = Vec::new();

    for c in candidates {
        let key = &c.key;
        // Where the item is already a member: the current story or an archived one.
        let home = if work.get(key).is_some_and(|w| w.story.members.contains_key(&c.id)) {
            Some(key.clone())
        } else {
            work.get(key)
                .map(|w| w.story.previous.clone())
                .unwrap_or_default()
                .into_iter()
                .find(|id| work.get(id).is_some_and(|w| w.story.members.contains_key(&c.id)))
        };
        let fresh = c.state.clone();
        let (name, kind, new_alert, had_letter) = match home {
            Some(name) => {
                let w = work.get_mut(&name).expect("home story is loaded");
                let known = w.story.members.get(&c.id).expect("member exists").clone();
                if known.updated_at == fresh.updated_at && known.updated_at.is_some() {
                    report.unchanged += 1;
                    continue;
                }
                let status_changed = (&known.status, &known.verdict) != (&fresh.status, &fresh.verdict);
                let content_changed = known.digest != fresh.digest;
                if !content_changed && !status_changed {
                    // Only updatedAt moved (a note, say): nothing the platform shows.
                    report.unchanged += 1;
                    continue;
                }
                let ours = known.written_status.is_some() || known.written_verdict.is_some();
                let expected = (
                    known.written_status.clone().or(known.status.clone()),
                    known.written_verdict.clone().or(known.verdict.clone()),
                );
                if !content_changed && ours && (fresh.status.clone(), fresh.verdict.clone()) == expected {
                    // Our own writeback coming back: remember the state, tell nobody.
                    report.echoes += 1;
                    w.put_member(&c.id, fresh);
                    continue;
                }
                report.changed += 1;
                (name, EventKind::Updated, false, known.publish_error.is_some())
            }
            None => {
                report.new += 1;
                let roll = work.get(key).map(|w| {
                    let expired = c
                        .detected_at
                        .or(c.stamp)
                        .is_some_and(|d| d >= w.story.window_start + STORY_WINDOW);
                    // Full: one more member would take the item past its byte budget.
                    expired || w.bytes + domain::member_bytes(&c.id, &c.state) > STORY_MAX_BYTES
                });
                match roll {
                    None => {
                        work.insert(key.clone(), Work::new(new_story(key, c, vec![]), 0, false, true));
                        (key.clone(), EventKind::Created, true, false)
                    }
                    Some(true) => {
                        let w = work.get_mut(key).expect("present");
                        let mut previous = w.story.previous.clone();
                        previous.push(w.story.id.clone());
                        let old = std::mem::replace(&mut w.story, new_story(key, c, previous));
                        let touched = std::mem::take(&mut w.touched);
                        w.bytes = domain::story_bytes(&w.story);
                        w.dirty = true;
                        // The old story is stored under its id from now on (written with the
                        // others), and stays reachable for the rest of this page.
                        let mut archived = Work::new(old, 0, true, true);
                        archived.touched = touched;
                        work.insert(archived.story.id.clone(), archived);
                        (key.clone(), EventKind::Created, true, false)
                    }
                    Some(false) => {
                        let w = work.get_mut(key).expect("present");
                        if w.story.status == StoryStatus::Closed {
                            w.story.status = StoryStatus::Open;
                            w.reopened = true;
                        }
                        (key.clone(), EventKind::Created, false, false)
                    }
                }
            }
        };
        let w = work.get_mut(&name).expect("story is loaded");
        let mut state = fresh;
        if let Some(prev) = w.story.members.get(&c.id) {
            // A console-side change consumes what the writeback recorded; otherwise keep it.
            if kind == EventKind::Created {
                state.written_status = prev.written_status.clone();
                state.written_verdict = prev.written_verdict.clone();
            }
        }
        let count = w.story.members.len() + usize::from(!w.story.members.contains_key(&c.id));
        let resolved = |s: &Option<String>| s.as_deref() == Some("resolved");
        let all_resolved =
            resolved(&state.status) && w.story.members.iter().all(|(id, m)| *id == c.id || resolved(&m.status));
        let event = ThreatEvent {
            kind,
            id: domain::event_id(&tenant.id, kind.as_str(), &c.id, c.stamp),
            tenant: tenant.id.clone(),
            severity: c.severity,
            threat: c.view.clone(),
            story: StoryView {
                id: w.story.id.clone(),
                alert_key: format!("s1:{host}:{}", w.story.id),
                threat_count: count,
                new_alert,
                reopened: w.reopened && kind == EventKind::Created,
                all_resolved,
                platform_ref: w.story.platform_ref.clone(),
            },
        };
        match platform.publish(&event).await {
            Ok(receipt) => {
                report.published += 1;
                if w.story.platform_ref.is_none() {
                    w.story.platform = Some(platform.name().to_owned());
                    w.story.platform_ref = receipt.platform_ref;
                }
                if had_letter {
                    // An earlier version was refused; this one got through.
                    retire.push(c.id.clone());
                }
                // The platform takes events: the refusals before this one were about them.
                refusals.store(0, Ordering::Relaxed);
            }
            Err(PlatformError::Rejected { status, detail }) => {
                let in_a_row = refusals.fetch_add(1, Ordering::Relaxed) + 1;
                if in_a_row >= REFUSALS_IN_A_ROW {
                    // Not one event's fault: none of them is recorded, the checkpoint holds.
                    stop = Some(Stop::Refusals {
                        count: in_a_row,
                        status,
                        detail,
                    });
                    break;
                }
                tracing::warn!(tenant = %tenant.id, item = %c.id, status, "platform refused the event; kept as a publish dead letter");
                state.publish_error = Some(format!("HTTP {status}"));
                w.reopened = false;
                held.push(Refusal {
                    name: name.clone(),
                    story_id: w.story.id.clone(),
                    state,
                    letter: PublishDeadLetter {
                        id: c.id.clone(),
                        kind: kind.as_str().to_owned(),
                        alert_key: event.story.alert_key.clone(),
                        event_id: event.id.clone(),
                        updated_at: c.stamp,
                        status,
                        error: detail,
                        created_at: OffsetDateTime::now_utc(),
                        attempts: 1,
                        replay_requested: false,
                        event: serde_json::to_value(&event).unwrap_or_default(),
                    },
                });
                continue;
            }
            Err(e) => {
                // Not recorded: the checkpoint stays put and the next run retries this item.
                stop = Some(e.into());
                break;
            }
        }
        w.reopened = false;
        w.put_member(&c.id, state);
        letters.extend(held.drain(..).map(|r| r.record(&mut work, report)));
    }
    if stop.is_none() {
        // Refusals at the end of the page: each the event's own fault, as far as we can tell.
        letters.extend(held.drain(..).map(|r| r.record(&mut work, report)));
    }

    // Dead letters first: a crash before the stories are saved repeats the refused events, so
    // none is ever recorded as refused without its dead letter.
    if !letters.is_empty() {
        store.put_publish_dead(&tenant.id, &letters).await?;
    }
    // A story no event was recorded in (its first one was not sent) is not written.
    let dirty = work
        .into_values()
        .filter(|w| w.dirty && !w.story.members.is_empty())
        .collect();
    save_stories(store, &tenant.id, dirty).await?;
    if !retire.is_empty() {
        store.retire_publish_dead(&tenant.id, &retire).await?;
    }
    match stop {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// This many refusals (400, 409, 413, 422) of different events in a row, with no event accepted
/// in between, is the platform refusing the tenant rather than each event: the run stops with
/// the checkpoint held and none of them is kept as a dead letter.
pub const REFUSALS_IN_A_ROW: u32 = 10;

/// A refused event, recorded (as a dead letter, and on its story) once it is clear the refusal
/// was about it: when the platform accepts a later event, or the page ends.
struct Refusal {
    /// The story's name when it was refused, and its id (the story may have rolled over since).
    name: String,
    story_id: String,
    state: MemberState,
    letter: PublishDeadLetter,
}

impl Refusal {
    fn record(self, work: &mut HashMap<String, Work>, report: &mut TenantReport) -> PublishDeadLetter {
        let name = if work.get(&self.name).is_some_and(|w| w.story.id == self.story_id) {
            self.name
        } else {
            self.story_id
        };
        if let Some(w) = work.get_mut(&name) {
            w.put_member(&self.letter.id, self.state);
        }
        report.failed += 1;
        report.publish_dead_letters += 1;
        self.letter
    }
}

/// Writes the changed stories; a story changed meanwhile by another writer (the writeback) is
/// re-read and our member changes applied on top, keeping what the writeback recorded.
async fn save_stories(store: &Store, tenant: &str, mut dirty: Vec<Work>) -> Result<(), StoreError> {
    for _ in 0..5 {
        if dirty.is_empty() {
            return Ok(());
        }
        let batch: Vec<(StoryRecord, u64, bool)> =
            dirty.iter().map(|w| (w.story.clone(), w.version, w.archived)).collect();
        let conflicts = store.put_stories(tenant, &batch).await?;
        let mut retry = Vec::new();
        for i in conflicts {
            let mut w = std::mem::replace(&mut dirty[i], Work::new(batch[i].0.clone(), 0, false, false));
            let name = if w.archived {
                w.story.id.clone()
            } else {
                w.story.key.clone()
            };
            let Some(Versioned {
                value: mut current,
                version,
            }) = store.get_story(tenant, &name).await?
            else {
                // Gone meanwhile (never expected): write ours as new.
                w.version = 0;
                retry.push(w);
                continue;
            };
            if current.id == w.story.id {
                let joined = w.touched.iter().any(|id| !current.members.contains_key(id));
                for id in &w.touched {
                    if let Some(mut m) = w.story.members.get(id).cloned() {
                        if let Some(theirs) = current.members.get(id) {
                            m.written_status = m.written_status.or(theirs.written_status.clone());
                            m.written_verdict = m.written_verdict.or(theirs.written_verdict.clone());
                        }
                        current.members.insert(id.clone(), m);
                    }
                }
                // A threat that joined a story closed meanwhile reopens it, as it would have.
                if joined {
                    current.status = StoryStatus::Open;
                }
                current.platform = current.platform.or(w.story.platform.clone());
                current.platform_ref = current.platform_ref.or(w.story.platform_ref.clone());
                w.story = current;
            }
            w.version = version;
            retry.push(w);
        }
        dirty = retry;
    }
    let names: Vec<&str> = dirty
        .iter()
        .map(|w| {
            if w.archived {
                w.story.id.as_str()
            } else {
                w.story.key.as_str()
            }
        })
        .collect();
    let more = names.len().saturating_sub(3);
    Err(StoreError::Conflict {
        op: "put_stories",
        what: format!(
            "tenant {tenant}'s stories {}{} (changed by another writer on every attempt)",
            names[..names.len().min(3)].join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ),
    })
}
