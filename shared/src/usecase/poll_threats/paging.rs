//! Paging: a tenant's sources (threats, unified alerts, STAR alerts), each from its checkpoint, page by page,
//! each page's checkpoint saved with its stories once the platform took it; and the replay of
//! dead letters an operator asked for.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use time::OffsetDateTime;

use super::candidate::Candidate;
use super::commit::commit;
use super::plan::{Ahead, plan_and_send};
use super::settle::{Settled, settle};
use super::{Ctx, DEADLINE_MARGIN, Outcome, PollDeps, Stop, TenantReport, WATERMARK_IDS_MAX_BYTES, paced_page};
use crate::domain::Checkpoint;
use crate::platform::{Platform, PlatformError};
use crate::s1::dto::{CloudAlert, Threat, UnifiedAlert};
use crate::s1::{CloudAlertQuery, S1Client, S1Error, ThreatQuery, UNIFIED_MAX_PAGE, UnifiedAlertQuery};
use crate::tenant::{Source, TenantConfig};

/// Polls one tenant with its S1 client: each source it reads (threats, unified alerts, STAR
/// alerts, in that order) from its own checkpoint, and the replays asked for after the first.
pub(super) async fn poll_threats(
    deps: &PollDeps,
    tenant: &TenantConfig,
    client: &S1Client,
    platform: &dyn Platform,
    deadline: Instant,
    report: &mut TenantReport,
) -> Result<(), Stop> {
    let (limit, pace_margin) = paced_page(platform);
    let sources: Vec<Source> = [Source::Threats, Source::Unified, Source::Star]
        .into_iter()
        .filter(|s| tenant.reads(*s))
        .collect();
    // The switch-over, read before any source moves: a unified listing with no checkpoint yet
    // starts where the threats checkpoint stood, so a tenant moving from threats to unified
    // (or adding it) is not sent its history again. A new tenant starts both from the first.
    let unified_start = if tenant.reads(Source::Unified) {
        switch_over(deps, tenant).await?
    } else {
        None
    };
    let mut result = Ok(());
    for (i, source) in sources.iter().enumerate() {
        // Each source keeps a quarter of what is left for every source after it, so a backlog
        // or a slow platform on one cannot starve the others.
        let later = (sources.len() - 1 - i) as u32;
        let left = deadline.saturating_duration_since(Instant::now());
        let until = Instant::now() + left.mul_f64((1.0 - 0.25 * f64::from(later)).max(0.25));
        let ctx = Ctx::until(deps, tenant, platform, until, pace_margin);
        let name = source.checkpoint();
        let (accounts, sites) = (tenant.account_ids.clone(), tenant.site_ids.clone());
        result = match source {
            Source::Threats => {
                let open = |updated_at_gte| {
                    client.threats(&ThreatQuery {
                        updated_at_gte,
                        account_ids: accounts,
                        site_ids: sites,
                        limit,
                        ..ThreatQuery::default()
                    })
                };
                let to_candidates = |p: Vec<Threat>| p.iter().map(|t| Candidate::from_threat(t, tenant)).collect();
                drain(&ctx, report, name, None, open, to_candidates).await
            }
            Source::Unified => {
                let open = |updated_at_gte| {
                    client.unified_alerts(&UnifiedAlertQuery {
                        updated_at_gte,
                        account_ids: accounts,
                        site_ids: sites,
                        first: limit.min(UNIFIED_MAX_PAGE),
                    })
                };
                // The link shape the listing learnt (when it met an alert that is no threat).
                let to_candidates = |p: Vec<UnifiedAlert>| {
                    let link = client.alert_link().flatten();
                    p.iter()
                        .map(|a| Candidate::from_unified(a, tenant, link.as_ref()))
                        .collect()
                };
                drain(&ctx, report, name, unified_start.clone(), open, to_candidates).await
            }
            Source::Star => {
                // STAR alerts have no updatedAt filter: they are polled by creation time, new
                // ones only.
                let open = |created_at_gte| {
                    client.cloud_alerts(&CloudAlertQuery {
                        created_at_gte,
                        account_ids: accounts,
                        site_ids: sites,
                        limit,
                        ..CloudAlertQuery::default()
                    })
                };
                let to_candidates =
                    |p: Vec<CloudAlert>| p.iter().filter_map(|a| Candidate::from_alert(a, tenant)).collect();
                drain(&ctx, report, name, None, open, to_candidates).await
            }
        };
        if i == 0 {
            result = match result {
                // The platform takes events again: send what an operator asked to replay.
                Ok(()) if report.outcome != Outcome::Partial => replay_dead_letters(&ctx, report).await,
                other => other,
            };
        }
        if result.is_err() {
            break;
        }
    }
    result
}

/// Where the unified listing starts when it has no checkpoint of its own: the threats
/// checkpoint's watermark (its ids are threat ids, not UAM's: the alerts at that millisecond
/// are read again and recognised through their stories). `None` when the unified listing has a
/// checkpoint, or threats have none.
async fn switch_over(deps: &PollDeps, tenant: &TenantConfig) -> Result<Option<Checkpoint>, Stop> {
    let store = &deps.store;
    if store
        .get_checkpoint(&tenant.id, Source::Unified.checkpoint())
        .await?
        .is_some()
    {
        return Ok(None);
    }
    let threats = store.get_checkpoint(&tenant.id, Source::Threats.checkpoint()).await?;
    Ok(threats.filter(|c| c.watermark.is_some()).map(|c| Checkpoint {
        watermark: c.watermark,
        ids_at_watermark: vec![],
    }))
}

/// Sends again, once each, the publish dead letters an operator asked to replay (as they were
/// refused, under the same webhook id): each is retired once the platform took it, or kept with
/// the new answer if it is refused again.
async fn replay_dead_letters(ctx: &Ctx<'_>, report: &mut TenantReport) -> Result<(), Stop> {
    let store = &ctx.deps.store;
    let tenant = &ctx.tenant.id;
    for mut letter in store.publish_replays(tenant, 100).await? {
        match ctx.platform.publish(&letter.event).await {
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

/// Pages through one source from its checkpoint (from `start` while it has none), processing
/// and checkpointing page by page.
async fn drain<'c, T, S, F, M>(
    ctx: &Ctx<'_>,
    report: &mut TenantReport,
    checkpoint_name: &str,
    start: Option<Checkpoint>,
    open: F,
    to_candidates: M,
) -> Result<(), Stop>
where
    F: FnOnce(Option<OffsetDateTime>) -> S,
    S: futures_util::Stream<Item = Result<crate::s1::Page<T>, S1Error>> + 'c,
    M: Fn(Vec<T>) -> Vec<Candidate>,
{
    let Ctx { deps, tenant, .. } = *ctx;
    let store = &deps.store;
    let (checkpoint, unfinished) = store.get_checkpoint_and_in_flight(&tenant.id, checkpoint_name).await?;
    // The checkpoint as stored: an idle page (only the boundary items `__gte` returns again)
    // leaves it as it is, and then it is not written again (the bill is per write). A source
    // with none yet starts at `start` (the switch-over), which is then written.
    let mut saved = checkpoint.clone().unwrap_or_default();
    let mut checkpoint = checkpoint.or(start).unwrap_or_default();
    if !unfinished.is_empty() {
        // A run sent updates it never committed: the platform may show versions the stories
        // do not hold.
        let marked = super::inflight::mark_unsure(store, &tenant.id, unfinished).await?;
        tracing::info!(tenant = %tenant.id, source = checkpoint_name, marked, "members of an unfinished page marked unsure");
    }
    // Slot of the next page's write-ahead record: pages alternate, as at most two are
    // uncommitted at once.
    let mut slot: u8 = 0;
    let mut pages = std::pin::pin!(open(checkpoint.watermark));
    // S1's total is what is left from the watermark: add what this run already fetched.
    let mut expected = None;
    let fetched_before = report.fetched;
    let mut fetched = pages.next().await;
    // The page before this one, settled: committed (with `checkpoint`, which is past it) while
    // this one is planned and sent.
    let mut prior: Option<Settled> = None;
    let result = loop {
        // No page starts within the margin before the deadline (the same cutoff as deliveries).
        if Instant::now() >= ctx.cutoff {
            report.outcome = Outcome::Partial;
            break Ok(());
        }
        let Some(page) = fetched.take() else { break Ok(()) };
        let page = match page {
            Ok(p) => p,
            Err(e) => break Err(Stop::S1(e)),
        };
        report.pages += 1;
        report.fetched += page.items.len() as u64;
        if expected.is_none() {
            expected = page.total_items.map(|t| t + fetched_before);
        }
        let mut candidates = to_candidates(page.items);
        let mut past = checkpoint.clone();
        advance(&mut past, &candidates);
        // While this page is planned and its events sent, S1 reads the next page and the
        // previous page is committed (its stories, with its checkpoint); this page takes that
        // page's stories as they will be stored. Its answers are recorded once the previous
        // page is in, and it is committed itself during the next page. The checkpoint is saved
        // with its page's stories: everything before it has been accepted by the platform.
        let moved = (checkpoint != saved).then_some((checkpoint_name, &checkpoint));
        let committed = async {
            match &prior {
                Some(p) => commit(ctx, p, moved).await,
                None => Ok(HashSet::new()),
            }
        };
        let (sent, committed, next) = futures_util::join!(
            plan_and_send(
                ctx,
                &mut candidates,
                &checkpoint,
                prior.as_ref().map(|p| &p.stories),
                Ahead {
                    source: checkpoint_name,
                    slot,
                    past: &past
                }
            ),
            committed,
            pages.next()
        );
        if prior.take().is_some() && committed.is_ok() {
            saved = checkpoint.clone();
        }
        let merged = match committed {
            Ok(merged) => merged,
            Err(e) => {
                // This page's events went out, but it is not recorded: the next run repeats
                // both pages under the same ids. Only the first failure is the run's error.
                match &sent {
                    Ok(sent) => {
                        report.published += sent.accepted();
                        if let Some(also) = sent.stop() {
                            tracing::warn!(tenant = %tenant.id, error = %also, "the page published meanwhile stopped too");
                        }
                    }
                    Err(also) => {
                        tracing::warn!(tenant = %tenant.id, error = %also, "the page published meanwhile failed too");
                    }
                }
                break Err(e);
            }
        };
        let settled = match sent {
            Ok(sent) => settle(ctx, sent, &merged, report).await,
            Err(e) => Err(e),
        };
        let mut settled = match settled {
            Ok(s) => s,
            Err(e) => break Err(e),
        };
        fetched = next;
        if let Some(stop) = settled.stop.take() {
            // The run stops at this page: what it recorded is written, without its checkpoint.
            if let Err(e) = commit(ctx, &settled, None).await {
                break Err(e);
            }
            if matches!(stop, Stop::Deadline) {
                // Not a failure: the next run goes on from what this one recorded.
                report.outcome = Outcome::Partial;
                break Ok(());
            }
            break Err(stop);
        }
        prior = Some(settled);
        checkpoint = past;
        slot ^= 1;
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
    // The last page settled goes in whatever ended the loop: the platform took all of it.
    let last = match &prior {
        Some(p) => {
            let moved = (checkpoint != saved).then_some((checkpoint_name, &checkpoint));
            commit(ctx, p, moved).await.map(drop)
        }
        None => Ok(()),
    };
    let result = match (result, last) {
        (Err(e), Err(also)) => {
            tracing::warn!(tenant = %tenant.id, error = %also, "the last page's stories were not saved either");
            Err(e)
        }
        (result, last) => result.and(last),
    };
    let lag = checkpoint
        .watermark
        .map(|w| (OffsetDateTime::now_utc() - w).whole_seconds().max(0));
    report.lag_seconds = report.lag_seconds.max(lag);
    result
}

/// Time kept back before `deadline`: no page starts, and no delivery, within it. A short-lived
/// invocation still gets most of its time: the margin is at most a quarter of what is left.
pub(super) fn margin_before(deadline: Instant) -> Duration {
    DEADLINE_MARGIN.min(deadline.saturating_duration_since(Instant::now()) / 4)
}

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
        if bytes + t.id.len() + 3 <= WATERMARK_IDS_MAX_BYTES && listed.insert(t.id.to_string()) {
            bytes += t.id.len() + 3;
            c.ids_at_watermark.push(t.id.to_string());
        }
    }
}
