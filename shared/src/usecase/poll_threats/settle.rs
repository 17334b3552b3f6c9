//! Settling a sent page: what the platform answered recorded on the page's stories (the plan as
//! it stands, or the page decided again from the store), the dead letters to keep and retire, and
//! whether the run stops at this page.

use std::collections::{HashMap, HashSet};

use time::OffsetDateTime;

use super::Ctx;
use super::plan::{Sending, decide};
use super::send::{Delivery, Sent};
use super::stories::{Stories, load, names_by_id, take_ref};
use super::{Stop, TenantReport};
use crate::domain::MemberId;
use crate::domain::correlate::all_resolved;
use crate::platform::EventKind;
use crate::store::PublishDeadLetter;

/// A page settled: what its [`commit`](super::commit::commit) writes.
pub(super) struct Settled {
    /// The stories to write, by item name.
    pub stories: Stories,
    pub letters: Vec<PublishDeadLetter>,
    pub retire: Vec<MemberId>,
    /// Why the run stops after this page (its checkpoint is then not written).
    pub stop: Option<Stop>,
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
                take_ref(w, platform.kind(), receipt);
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
                    take_ref(w, platform.kind(), receipt);
                    if placement.had_letter {
                        retire.push(c.id.clone());
                    }
                    w.put_member(&c.id, state);
                }
                Sent::Rejected { status, detail } => {
                    tracing::warn!(tenant = %tenant.id, item = %c.id, status, "platform refused the event; kept as a publish dead letter");
                    state.publish_error = Some(format!("HTTP {status}"));
                    // A version refused does not tell what the platform shows: an earlier one
                    // whose outcome was unknown may still stand.
                    state.unsure = w.story.members.get(&c.id).is_some_and(|m| m.unsure);
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
            stop = Some(Stop::Held { differs });
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
