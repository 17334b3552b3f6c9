//! One page: its candidates correlated against their stories ([`domain::correlate()`] decides),
//! each decision applied to the page's stories, the events published (a refused one kept as a
//! publish dead letter), and the stories written back.

use std::collections::{HashMap, HashSet};

use time::OffsetDateTime;

use super::candidate::Candidate;
use super::paging::Ctx;
use super::save::save_stories;
use super::send::{Delivery, Planned, Sent, send_all};
use super::{Stop, TenantReport};
use crate::domain::correlate::{Decision, Held, all_resolved, new_story};
use crate::domain::{self, AlertKey, MemberId};
use crate::platform::{EventKind, PublishReceipt, StoryView, ThreatEvent, ThreatView};
use crate::store::{
    Checkpoint, InFlight, InFlightMember, MemberState, PublishDeadLetter, Store, StoreError, StoryRecord, StoryStatus,
    TenantConfig, Versioned,
};

/// One story being worked on during a page.
#[derive(Clone)]
pub(super) struct Work {
    pub story: StoryRecord,
    pub version: u64,
    /// Stored under its id (an earlier story of its key) rather than as the key's current one.
    pub archived: bool,
    pub dirty: bool,
    /// Member threats this run changed (re-applied if another writer got in first).
    pub touched: HashSet<MemberId>,
    pub reopened: bool,
    /// What the story costs against [`STORY_MAX_BYTES`](domain::STORY_MAX_BYTES) (an upper
    /// bound, kept as members join).
    pub bytes: usize,
}

impl Work {
    pub fn new(story: StoryRecord, version: u64, archived: bool, dirty: bool) -> Self {
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

    /// The story as its page's commit leaves it in the store (read so by the next page).
    fn as_stored(&self) -> Self {
        Self::new(self.story.clone(), self.version + 1, self.archived, false)
    }

    /// Records a member's state in the story.
    fn put_member(&mut self, id: &MemberId, state: MemberState) {
        self.bytes += domain::member_bytes(id, &state);
        self.story.members.insert(id.clone(), state);
        self.touched.insert(id.clone());
        self.dirty = true;
    }
}

/// The page's stories by item name: current ones under their keys, archived ones under their ids.
type Stories = HashMap<String, Work>;

fn loaded(v: Versioned<StoryRecord>, archived: bool) -> Work {
    Work::new(v.value, v.version, archived, false)
}

/// Reads the stories of the page's keys, and the archived stories of those keys when a
/// candidate is not a member of its key's current story (it may be of an earlier one). The
/// stories the previous page is writing (`prior`, by item name) are taken from it as they will
/// be stored.
async fn load(
    store: &Store,
    tenant: &str,
    candidates: &[&Candidate],
    prior: Option<&Stories>,
) -> Result<(Stories, Vec<String>), StoreError> {
    let mut work = Stories::new();
    let mut taken = Vec::new();
    let unique: HashSet<&str> = candidates.iter().map(|c| c.key.as_str()).collect();
    read(store, tenant, unique, (prior, &mut taken), false, &mut work).await?;
    let archived_ids: HashSet<String> = candidates
        .iter()
        .filter_map(|c| {
            work.get(&c.key)
                .filter(|w| !w.story.members.contains_key(&c.id))
                .map(|w| w.story.previous.clone())
        })
        .flatten()
        .collect();
    read(
        store,
        tenant,
        archived_ids.iter().map(String::as_str),
        (prior, &mut taken),
        true,
        &mut work,
    )
    .await?;
    Ok((work, taken))
}

/// Adds the named stories to `work`: from `prior` when it holds them (noting their names in
/// `taken`), else from the store.
async fn read<'n>(
    store: &Store,
    tenant: &str,
    names: impl IntoIterator<Item = &'n str>,
    (prior, taken): (Option<&Stories>, &mut Vec<String>),
    archived: bool,
    work: &mut Stories,
) -> Result<(), StoreError> {
    let mut missing: Vec<String> = Vec::new();
    for name in names {
        match prior.and_then(|p| p.get(name)) {
            Some(w) => {
                work.insert(name.to_owned(), w.as_stored());
                taken.push(name.to_owned());
            }
            None => missing.push(name.to_owned()),
        }
    }
    if !missing.is_empty() {
        for (name, v) in store.get_stories(tenant, &missing).await? {
            work.insert(name, loaded(v, archived));
        }
    }
    Ok(())
}

/// Where an event goes (a story's item name) and how it reads.
struct Placement {
    name: String,
    kind: EventKind,
    new_alert: bool,
    /// The member's last version was refused and is kept as a publish dead letter.
    had_letter: bool,
}

/// Applies a decision to the page's stories and counts it; for one the platform is told of,
/// where its event goes.
fn apply(decision: Decision, c: &Candidate, work: &mut Stories, report: &mut TenantReport) -> Option<Placement> {
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
fn event(
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
fn decide(c: &Candidate, work: &mut Stories, counts: &mut TenantReport) -> Option<(Placement, MemberState)> {
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

/// The page's stories by story id: where a story is held now (under its key, or its id once
/// archived).
fn names_by_id(work: &Stories) -> HashMap<String, String> {
    work.iter()
        .map(|(name, w)| (w.story.id.clone(), name.clone()))
        .collect()
}

/// Records the platform's id for a story the first time an accepted event brings one.
fn take_ref(w: &mut Work, platform: &str, receipt: PublishReceipt) {
    if w.story.platform_ref.is_none() {
        w.story.platform = Some(platform.to_owned());
        w.story.platform_ref = receipt.platform_ref;
    }
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

/// A page planned and sent: what [`settle`] records.
pub(super) struct Sending<'p> {
    /// The page's candidates not already seen at the checkpoint's watermark.
    candidates: Vec<&'p Candidate>,
    /// The stories as the plan leaves them (every event accepted).
    work: Stories,
    deliveries: Vec<Delivery>,
    stop: Option<Stop>,
    /// Candidates (by index) whose last version was refused and is kept as a dead letter.
    had_letter: HashSet<usize>,
    /// Candidates already seen at the checkpoint's watermark (counted as unchanged).
    seen: u64,
    /// Stories taken from the previous page as it was writing them.
    from_prior: Vec<String>,
    counts: TenantReport,
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

/// A page settled: what its [`commit`] writes.
pub(super) struct Settled {
    /// The stories to write, by item name.
    stories: Stories,
    letters: Vec<PublishDeadLetter>,
    retire: Vec<MemberId>,
    /// Why the run stops after this page (its checkpoint is then not written).
    pub stop: Option<Stop>,
}

/// Plans a page read from `checkpoint` against its stories and sends its events. `prior` is the
/// previous page, settled but perhaps still being committed: its stories are taken as they will
/// be stored, not read.
pub(super) async fn plan_and_send<'p>(
    ctx: &Ctx<'_>,
    page: &'p mut [Candidate],
    checkpoint: &Checkpoint,
    prior: Option<&Settled>,
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
    let prior = prior.map(|p| &p.stories);
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
    let (deliveries, stop) = send_all(platform, in_flight, &ctx.refusals, planned, ctx.cutoff).await;
    sending.work = work;
    sending.deliveries = deliveries;
    sending.stop = stop;
    Ok(sending)
}

/// Records what the platform answered for a sent page, once the previous page is committed
/// (`merged`: the stories its commit merged with another writer's change): the stories to
/// write, the dead letters to keep and to retire, and whether the run stops.
pub(super) async fn settle(
    ctx: &Ctx<'_>,
    sent: Sending<'_>,
    merged: &HashSet<String>,
    report: &mut TenantReport,
) -> Result<Settled, Stop> {
    let Ctx {
        deps, tenant, platform, ..
    } = *ctx;
    let store = &deps.store;
    let Sending {
        candidates,
        mut work,
        deliveries,
        mut stop,
        had_letter,
        seen,
        from_prior,
        mut counts,
    } = sent;
    report.unchanged += seen;
    // The page was decided against a story the previous page's commit then merged with another
    // writer's change (the writeback): its plan may not stand.
    let stale = from_prior.iter().any(|name| merged.contains(name));
    let mut retire: Vec<MemberId> = Vec::new();
    let mut letters: Vec<PublishDeadLetter> = Vec::new();
    if !stale && stop.is_none() && deliveries.iter().all(|d| matches!(d.sent, Sent::Accepted(_))) {
        // Everything went through: the plan stands, with the platform's ids for new alerts.
        let names = names_by_id(&work);
        for d in deliveries {
            let Sent::Accepted(receipt) = d.sent else {
                unreachable!()
            };
            counts.published += 1;
            if let Some(w) = names.get(&d.event.story.id).and_then(|n| work.get_mut(n)) {
                take_ref(w, platform.name(), receipt);
            }
            if had_letter.contains(&d.index) {
                // An earlier version was refused; this one got through.
                retire.push(candidates[d.index].id.clone());
            }
        }
    } else {
        // Some event was refused or not delivered, or the plan was made against a story changed
        // meanwhile: decide the page again from the stored
        // stories (the previous page's are in by now), recording only what the platform took
        // (and, unless the run stopped, the refusals, as dead letters), and nothing of a story
        // after one of its events that did not get through. The stories may have changed
        // meanwhile (the writeback): wherever the decision now differs from the event that was
        // sent, the story is left alone and the page is held, so the next run decides it again.
        counts = TenantReport::default();
        work = load(store, &tenant.id, &candidates, None).await?.0;
        let mut answers: HashMap<usize, Delivery> = deliveries.into_iter().map(|d| (d.index, d)).collect();
        let mut blocked: HashSet<&str> = HashSet::new();
        let mut differs = 0usize;
        for (index, c) in candidates.iter().enumerate() {
            if blocked.contains(c.key.as_str()) {
                continue;
            }
            let answer = answers.remove(&index);
            let recordable = match &answer {
                None => true,
                Some(d) => match d.sent {
                    Sent::Accepted(_) => true,
                    // A refusal is the event's own fault only when the run went on (or only ran
                    // out of time).
                    Sent::Rejected { .. } => matches!(stop, None | Some(Stop::Deadline)),
                    Sent::NotDelivered => false,
                },
            };
            if !recordable {
                blocked.insert(c.key.as_str());
                continue;
            }
            let Some((placement, mut state)) = decide(c, &mut work, &mut counts) else {
                if answer.is_some() {
                    // Sent, but now nothing to tell: the story changed meanwhile.
                    differs += 1;
                    blocked.insert(c.key.as_str());
                }
                continue;
            };
            let w = work.get_mut(&placement.name).expect("story is loaded");
            // What was sent must say what the story now says: same story, same kind, and the
            // same reopen and all-resolved flags (a story closed or resolved meanwhile).
            let same = answer.as_ref().is_some_and(|d| {
                let told = &d.event.story;
                told.id == w.story.id
                    && d.event.kind == placement.kind
                    && told.reopened == (w.reopened && placement.kind == EventKind::Created)
                    && told.all_resolved == all_resolved(&w.story, &c.id, &state)
            });
            let Some(d) = answer.filter(|_| same) else {
                // Not what was sent (or nothing was): the story changed meanwhile.
                differs += 1;
                blocked.insert(c.key.as_str());
                continue;
            };
            w.reopened = false;
            match d.sent {
                Sent::Accepted(receipt) => {
                    counts.published += 1;
                    take_ref(w, platform.name(), receipt);
                    if placement.had_letter {
                        retire.push(c.id.clone());
                    }
                    w.put_member(&c.id, state);
                }
                Sent::Rejected { status, detail } => {
                    tracing::warn!(tenant = %tenant.id, item = %c.id, status, "platform refused the event; kept as a publish dead letter");
                    state.publish_error = Some(format!("HTTP {status}"));
                    // Recorded at once, as the plan had it, so the story's later events are
                    // decided against the same story.
                    w.put_member(&c.id, state);
                    counts.failed += 1;
                    counts.publish_dead_letters += 1;
                    letters.push(PublishDeadLetter {
                        id: c.id.clone(),
                        kind: d.event.kind.as_str().to_owned(),
                        alert_key: d.event.story.alert_key.to_string(),
                        event_id: d.event.id.clone(),
                        updated_at: c.stamp,
                        status,
                        error: detail,
                        created_at: OffsetDateTime::now_utc(),
                        attempts: 1,
                        replay_requested: false,
                        event: d.event,
                    });
                }
                Sent::NotDelivered => unreachable!("not recordable"),
            }
        }
        if differs > 0 && stop.is_none() {
            stop = Some(Stop::Store(StoreError::Conflict {
                op: "poll",
                what: format!(
                    "tenant {}'s stories changed while a page was published ({differs} events decided differently); the page is read again on the next run",
                    tenant.id
                ),
            }));
        }
    }
    report.add(&counts);
    // A story no event was recorded in (its first one was not sent) is not written.
    work.retain(|_, w| w.dirty && !w.story.members.is_empty());
    Ok(Settled {
        stories: work,
        letters,
        retire,
        stop,
    })
}

/// Writes a settled page: its dead letters, then its stories with `next` (the checkpoint past
/// the page; none when the run stops at this page) in their last transaction. Returns the names
/// of the stories merged with another writer's change on the way.
pub(super) async fn commit(
    ctx: &Ctx<'_>,
    page: &Settled,
    next: Option<(&str, &Checkpoint)>,
) -> Result<HashSet<String>, Stop> {
    let store = &ctx.deps.store;
    let tenant = &ctx.tenant.id;
    // Dead letters first: a crash before the stories are saved repeats the refused events, so
    // none is ever recorded as refused without its dead letter. Letters retired (a later
    // version got through) before the stories too: a crash in between sends that version again
    // (its story still says refused) and retires nothing twice.
    if !page.letters.is_empty() {
        store.put_publish_dead(tenant, &page.letters).await?;
    }
    if !page.retire.is_empty() {
        store.retire_publish_dead(tenant, &page.retire).await?;
    }
    let dirty: Vec<&Work> = page.stories.values().collect();
    Ok(save_stories(store, tenant, dirty, next).await?)
}
