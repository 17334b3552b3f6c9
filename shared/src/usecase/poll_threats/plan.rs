//! Planning a page: each candidate decided against the page's stories
//! ([`domain::correlate()`] decides), the decision applied to them as if the platform took every
//! event, the events built in page order; then the page's updates written down (see `inflight`)
//! and its events sent.

use std::collections::HashSet;

use time::OffsetDateTime;

use super::Ctx;
use super::candidate::Candidate;
use super::send::{Delivery, Planned, Sent, send_all};
use super::stories::{Stories, Work, load};
use super::{Stop, TenantReport};
use crate::domain::correlate::{Decision, Held, all_resolved, new_story};
use crate::domain::{self, AlertKey};
use crate::domain::{Checkpoint, InFlight, InFlightMember, MemberState, StoryStatus};
use crate::platform::{EventKind, StoryView, ThreatEvent, ThreatView};
use crate::tenant::TenantConfig;

/// Where an event goes (a story's item name) and how it reads.
pub(super) struct Placement {
    pub name: String,
    pub kind: EventKind,
    pub new_alert: bool,
    /// The member's last version was refused and is kept as a publish dead letter.
    pub had_letter: bool,
}

/// Applies a decision to the page's stories and counts it; for one the platform is told of,
/// where its event goes.
pub(super) fn apply(
    decision: Decision,
    c: &Candidate,
    work: &mut Stories,
    report: &mut TenantReport,
) -> Option<Placement> {
    let key = &c.key;
    let created = |new_alert| Placement {
        name: key.clone(),
        kind: EventKind::Created,
        new_alert,
        had_letter: false,
    };
    // A story opened by this candidate starts its window at its detection.
    let window_start = || c.detected_at.or(c.stamp).unwrap_or_else(OffsetDateTime::now_utc);
    match decision {
        Decision::Unchanged => {
            report.unchanged += 1;
            None
        }
        Decision::Echo { story } => {
            // Our own writeback coming back: remember the state, tell nobody.
            report.echoes += 1;
            let w = work.get_mut(&story).expect("home story is loaded");
            w.put_member(&c.id, c.state.clone());
            None
        }
        Decision::Changed { story, had_letter } => {
            report.changed += 1;
            Some(Placement {
                name: story,
                kind: EventKind::Updated,
                new_alert: false,
                had_letter,
            })
        }
        Decision::Open => {
            report.new += 1;
            let story = new_story(key, window_start(), vec![]);
            work.insert(key.clone(), Work::new(story, 0, false, true));
            Some(created(true))
        }
        Decision::Roll(_) => {
            report.new += 1;
            let w = work.get_mut(key).expect("the current story is loaded");
            let mut previous = w.story.previous.clone();
            previous.push(w.story.id.clone());
            let old = std::mem::replace(&mut w.story, new_story(key, window_start(), previous));
            let touched = std::mem::take(&mut w.touched);
            w.bytes = domain::story_bytes(&w.story);
            w.dirty = true;
            // The old story is stored under its id from now on (written with the others), and
            // stays reachable for the rest of this page.
            let mut archived = Work::new(old, 0, true, true);
            archived.touched = touched;
            work.insert(archived.story.id.clone(), archived);
            Some(created(true))
        }
        Decision::Join { reopens } => {
            report.new += 1;
            if reopens {
                let w = work.get_mut(key).expect("the current story is loaded");
                w.story.status = StoryStatus::Open;
                w.reopened = true;
            }
            Some(created(false))
        }
    }
}

/// The event telling the platform of candidate `c` (seen as `view`) in story `w`, `state` being
/// what it records.
pub(super) fn event(
    tenant: &TenantConfig,
    alert_prefix: &str,
    c: &Candidate,
    view: ThreatView,
    w: &Work,
    p: &Placement,
    state: &MemberState,
) -> ThreatEvent {
    let kind = p.kind;
    ThreatEvent {
        kind,
        id: domain::threat_event_id(&tenant.id, &c.id, c.stamp),
        tenant: tenant.id.clone(),
        severity: c.severity,
        threat: view,
        story: StoryView {
            id: w.story.id.clone(),
            alert_key: AlertKey::with_prefix(alert_prefix, &w.story.id),
            threat_count: w.story.members.len() + usize::from(!w.story.members.contains_key(&c.id)),
            new_alert: p.new_alert,
            reopened: w.reopened && kind == EventKind::Created,
            all_resolved: all_resolved(&w.story, &c.id, state),
            platform_ref: w.story.platform_ref.clone(),
        },
    }
}

/// Decides candidate `c` against the page's stories and applies the decision; for one the
/// platform is told of, where its event goes and the member state it records.
pub(super) fn decide(c: &Candidate, work: &mut Stories, counts: &mut TenantReport) -> Option<(Placement, MemberState)> {
    let decision = domain::correlate(&c.sighting(), |name| {
        work.get(name).map(|w| Held {
            story: &w.story,
            bytes: w.bytes,
        })
    });
    let placement = apply(decision, c, work, counts)?;
    let w = work.get(&placement.name).expect("story is loaded");
    let mut state = c.state.clone();
    if let Some(prev) = w.story.members.get(&c.id) {
        // A console-side change consumes what the writeback recorded; otherwise keep it.
        if placement.kind == EventKind::Created {
            state.written_status = prev.written_status;
            state.written_verdict = prev.written_verdict;
        }
    }
    Some((placement, state))
}

/// Where a page writes the record of its updates before it sends them (see `inflight`).
pub(super) struct Ahead<'a> {
    /// The source's checkpoint name.
    pub source: &'a str,
    /// 0 or 1, alternating page by page.
    pub slot: u8,
    /// The checkpoint the page is committed with.
    pub past: &'a Checkpoint,
}

/// A page planned and sent: what [`settle`](super::settle::settle) records.
pub(super) struct Sending<'p> {
    /// The page's candidates not already seen at the checkpoint's watermark.
    pub candidates: Vec<&'p Candidate>,
    /// The stories as the plan leaves them (every event accepted).
    pub work: Stories,
    pub deliveries: Vec<Delivery>,
    pub stop: Option<Stop>,
    /// Candidates (by index) whose last version was refused and is kept as a dead letter.
    pub had_letter: HashSet<usize>,
    /// Candidates already seen at the checkpoint's watermark (counted as unchanged).
    pub seen: u64,
    /// Stories taken from the previous page as it was writing them.
    pub from_prior: Vec<String>,
    pub counts: TenantReport,
}

impl Sending<'_> {
    /// Events of the page the platform accepted.
    pub(super) fn accepted(&self) -> u64 {
        self.deliveries
            .iter()
            .filter(|d| matches!(d.sent, Sent::Accepted(_)))
            .count() as u64
    }

    /// Why the run stops at this page, if it does.
    pub(super) fn stop(&self) -> Option<&Stop> {
        self.stop.as_ref()
    }
}

/// Plans a page read from `checkpoint` against its stories and sends its events. `prior` are the
/// stories of the previous page, settled but perhaps still being committed: taken as they will
/// be stored, not read.
pub(super) async fn plan_and_send<'p>(
    ctx: &Ctx<'_>,
    page: &'p mut [Candidate],
    checkpoint: &Checkpoint,
    prior: Option<&Stories>,
    ahead: Ahead<'_>,
) -> Result<Sending<'p>, Stop> {
    let Ctx {
        deps, tenant, platform, ..
    } = *ctx;
    let at_watermark: HashSet<&str> = checkpoint.ids_at_watermark.iter().map(String::as_str).collect();
    let mut seen = 0;
    // Each candidate's view goes into its event as it is (the page is read once).
    let mut candidates: Vec<&Candidate> = Vec::with_capacity(page.len());
    let mut views: Vec<ThreatView> = Vec::with_capacity(page.len());
    for c in page.iter_mut() {
        let at = c.stamp.is_some() && c.stamp == checkpoint.watermark && at_watermark.contains(c.id.as_str());
        if at {
            seen += 1;
            continue;
        }
        views.push(std::mem::take(&mut c.view));
        candidates.push(c);
    }
    let mut sending = Sending {
        candidates,
        work: Stories::new(),
        deliveries: Vec::new(),
        stop: None,
        had_letter: HashSet::new(),
        seen,
        from_prior: Vec::new(),
        counts: TenantReport::default(),
    };
    if sending.candidates.is_empty() {
        return Ok(sending);
    }
    let (mut work, from_prior) = load(&deps.store, &tenant.id, &sending.candidates, prior).await?;
    sending.from_prior = from_prior;

    // Plan the page as if the platform accepted every event: the stories as they will be saved,
    // and the events, built in page order as one-at-a-time publishing would build them.
    let mut planned: Vec<Planned> = Vec::new();
    let mut updates: Vec<InFlightMember> = Vec::new();
    let alert_prefix = AlertKey::prefix(&tenant.console_url);
    for (index, c) in sending.candidates.iter().enumerate() {
        let Some((placement, state)) = decide(c, &mut work, &mut sending.counts) else {
            continue;
        };
        let w = work.get_mut(&placement.name).expect("story is loaded");
        let event = event(
            tenant,
            &alert_prefix,
            c,
            std::mem::take(&mut views[index]),
            w,
            &placement,
            &state,
        );
        w.reopened = false;
        w.put_member(&c.id, state);
        if placement.had_letter {
            sending.had_letter.insert(index);
        }
        if placement.kind == EventKind::Updated {
            updates.push(InFlightMember {
                story: placement.name.clone(),
                id: c.id.clone(),
                updated_at: c.stamp,
            });
        }
        planned.push(Planned {
            index,
            key: c.key.clone(),
            event,
        });
    }
    if !updates.is_empty() {
        // Written before the first update goes out: see `inflight`.
        let last = sending
            .candidates
            .iter()
            .rev()
            .find(|c| c.stamp.is_some() && c.stamp == ahead.past.watermark)
            .map(|c| c.id.to_string())
            .unwrap_or_default();
        let record = InFlight {
            watermark: ahead.past.watermark,
            last,
            members: updates,
        };
        deps.store
            .put_in_flight(&tenant.id, ahead.source, ahead.slot, &record)
            .await?;
    }
    let in_flight = tenant.max_in_flight as usize;
    let (deliveries, stop) = send_all(platform, in_flight, &ctx.refusals, planned, (ctx.cutoff, ctx.give_up)).await;
    sending.work = work;
    sending.deliveries = deliveries;
    sending.stop = stop;
    Ok(sending)
}
