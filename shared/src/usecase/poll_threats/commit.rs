//! Committing a settled page: its dead letters, then its stories with the checkpoint in their
//! last transaction; a story another writer (the writeback) changed meanwhile is merged and
//! written again, keeping what that writer recorded.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use super::settle::Settled;
use super::stories::Work;
use super::{Ctx, Stop};
use crate::domain::MemberId;
use crate::domain::{Checkpoint, StoryRecord, StoryStatus};
use crate::store::{Store, StoreError, Versioned};

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

/// Writes the changed stories, then `checkpoint` (in the same last transaction when nothing
/// conflicts); a story changed meanwhile by another writer (the writeback) is re-read and our
/// member changes applied on top, keeping what the writeback recorded. Returns the item names of
/// the stories merged so: stored otherwise than the page left them.
async fn save_stories(
    store: &Store,
    tenant: &str,
    dirty: Vec<&Work>,
    checkpoint: Option<(&str, &Checkpoint)>,
) -> Result<HashSet<String>, StoreError> {
    // The page's stories are only copied when one is retried: the next page reads them meanwhile.
    let mut dirty: Vec<Cow<'_, Work>> = dirty.into_iter().map(Cow::Borrowed).collect();
    // A story archived by this page's roll goes first (in an earlier transaction than its key's
    // new story, or the same): a commit cut between transactions must never leave the new story
    // naming an archived one that was not written.
    dirty.sort_by_key(|w| !(w.archived && w.version == 0));
    // Stories this page archived by rolling their key over, as the page left them, with the
    // members it changed.
    let rolled: HashMap<String, (StoryRecord, HashSet<MemberId>)> = dirty
        .iter()
        .filter(|w| w.archived && w.version == 0)
        .map(|w| (w.story.id.clone(), (w.story.clone(), w.touched.clone())))
        .collect();
    let mut merged = HashSet::new();
    for _ in 0..5 {
        if dirty.is_empty() && checkpoint.is_none() {
            return Ok(merged);
        }
        let batch: Vec<(&StoryRecord, u64, bool)> = dirty.iter().map(|w| (&w.story, w.version, w.archived)).collect();
        let conflicts = match checkpoint {
            Some((name, c)) => store.put_stories_and_checkpoint(tenant, &batch, name, c).await?,
            None => store.put_stories(tenant, &batch).await?,
        };
        drop(batch);
        if conflicts.is_empty() {
            return Ok(merged);
        }
        let mut retry = Vec::new();
        let retried: HashSet<String> = conflicts
            .iter()
            .filter(|i| dirty[**i].archived)
            .map(|i| dirty[*i].story.id.clone())
            .collect();
        for i in conflicts {
            let mut w = dirty[i].clone().into_owned();
            let name = if w.archived {
                w.story.id.clone()
            } else {
                w.story.key.clone()
            };
            merged.insert(name.clone());
            let Some(Versioned {
                value: current,
                version,
            }) = store.get_story(tenant, &name).await?
            else {
                // Gone meanwhile (never expected): write ours as new.
                w.version = 0;
                retry.push(Cow::Owned(w));
                continue;
            };
            if current.id == w.story.id {
                w.story = on_top(current, &w.touched, &w.story);
            } else if let Some((ours, touched)) = rolled.get(&current.id).filter(|_| !w.archived) {
                // The story this page archived (rolling the key over) was changed under its key
                // meanwhile (the writeback): its archived copy takes that change, with the
                // page's on top. (Unless the copy is itself being retried: then it is merged
                // with what is stored under its id.)
                if !retried.contains(&current.id) {
                    let at = store.get_story(tenant, &current.id).await?.map_or(0, |v| v.version);
                    merged.insert(current.id.clone());
                    let mut copy = Work::new(on_top(current, touched, ours), at, true, true);
                    copy.touched = touched.clone();
                    retry.push(Cow::Owned(copy));
                }
            }
            w.version = version;
            retry.push(Cow::Owned(w));
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

/// `current` (as another writer left it) with the members this page changed (`touched`, as they
/// are in `ours`) on top, keeping what the writeback recorded of them.
fn on_top(mut current: StoryRecord, touched: &HashSet<MemberId>, ours: &StoryRecord) -> StoryRecord {
    let joined = touched.iter().any(|id| !current.members.contains_key(id));
    for id in touched {
        if let Some(mut m) = ours.members.get(id).cloned() {
            if let Some(theirs) = current.members.get(id) {
                m.written_status = m.written_status.or(theirs.written_status);
                m.written_verdict = m.written_verdict.or(theirs.written_verdict);
            }
            current.members.insert(id.clone(), m);
        }
    }
    // A threat that joined a story closed meanwhile reopens it, as it would have.
    if joined {
        current.status = StoryStatus::Open;
    }
    current.platform = current.platform.or(ours.platform);
    current.platform_ref = current.platform_ref.or(ours.platform_ref.clone());
    current
}
