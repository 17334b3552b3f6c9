//! The write-ahead record of a page's updates, and what the next run makes of one whose page was
//! never committed.
//!
//! A page's stories are recorded only once the platform answered all of it and the commit went
//! in. An update the platform took while the run was then killed (or its commit failed, or every
//! attempt timed out after the platform had it) leaves the story at the version before: if S1
//! then returns to that earlier state, the poller would find nothing changed and the platform
//! would stay on the version it was told. So before a page sends an update of a member its
//! stories hold, the page's updates are written down ([`InFlight`]); a run that finds a record its
//! checkpoint has not passed marks each of those members whose story still holds an older version
//! [`unsure`](crate::domain::MemberState::unsure), and the correlation then sends any newer version
//! of it. New members need nothing: a story that does not hold a threat tells it whatever it reads.

use std::collections::HashMap;

use time::OffsetDateTime;

use crate::domain::MemberId;
use crate::domain::{InFlight, StoryRecord};
use crate::store::{Store, StoreError};

/// Whether the stored version `held` is older than the version `sent`.
fn older(held: Option<OffsetDateTime>, sent: Option<OffsetDateTime>) -> bool {
    match (held, sent) {
        (Some(h), Some(s)) => h < s,
        (None, Some(_)) => true,
        (_, None) => false,
    }
}

/// Marks unsure every member of `pages` (records of pages never committed) whose story still
/// holds an older version than the one sent. Returns how many were marked.
///
/// # Errors
/// Store errors; a story changed by another writer on every attempt.
pub(super) async fn mark_unsure(store: &Store, tenant: &str, pages: Vec<InFlight>) -> Result<usize, StoreError> {
    // By story (item name): the members sent, each at the newest version sent.
    let mut wanted: HashMap<String, HashMap<MemberId, Option<OffsetDateTime>>> = HashMap::new();
    for m in pages.into_iter().flat_map(|p| p.members) {
        let at = wanted.entry(m.story).or_default().entry(m.id).or_insert(m.updated_at);
        if older(*at, m.updated_at) {
            *at = m.updated_at;
        }
    }
    let mut marked = 0;
    for _ in 0..5 {
        if wanted.is_empty() {
            return Ok(marked);
        }
        let names: Vec<String> = wanted.keys().cloned().collect();
        let mut stories = store.get_stories(tenant, &names).await?;
        // A member not in the story named (rolled over since) is in one of its archived ones.
        let mut moved: HashMap<String, HashMap<MemberId, Option<OffsetDateTime>>> = HashMap::new();
        for (name, members) in &wanted {
            let Some(story) = stories.get(name) else { continue };
            for (id, at) in members {
                if !story.value.members.contains_key(id.as_str()) {
                    for previous in &story.value.previous {
                        moved.entry(previous.clone()).or_default().insert(id.clone(), *at);
                    }
                }
            }
        }
        let archived: Vec<String> = moved.keys().filter(|n| !stories.contains_key(*n)).cloned().collect();
        if !archived.is_empty() {
            stories.extend(store.get_stories(tenant, &archived).await?);
        }
        for (name, members) in moved {
            wanted.entry(name).or_default().extend(members);
        }
        let mut writes: Vec<(StoryRecord, u64, bool, String, usize)> = Vec::new();
        let mut settled: Vec<String> = Vec::new();
        for (name, members) in &wanted {
            let Some(v) = stories.remove(name) else {
                settled.push(name.clone());
                continue;
            };
            let mut story = v.value;
            let mut changed = 0;
            for (id, at) in members {
                if let Some(m) = story.members.get_mut(id.as_str()) {
                    if !m.unsure && older(m.updated_at, *at) {
                        m.unsure = true;
                        changed += 1;
                    }
                }
            }
            if changed == 0 {
                settled.push(name.clone());
            } else {
                let archived = story.key != *name;
                writes.push((story, v.version, archived, name.clone(), changed));
            }
        }
        for name in settled {
            wanted.remove(&name);
        }
        let batch: Vec<(&StoryRecord, u64, bool)> = writes.iter().map(|(s, v, a, _, _)| (s, *v, *a)).collect();
        let conflicts = store.put_stories(tenant, &batch).await?;
        for (i, (_, _, _, name, changed)) in writes.iter().enumerate() {
            // A story changed meanwhile (the writeback) is read and marked again.
            if !conflicts.contains(&i) {
                marked += changed;
                wanted.remove(name);
            }
        }
    }
    if wanted.is_empty() {
        return Ok(marked);
    }
    Err(StoreError::Conflict {
        op: "poll",
        what: format!(
            "tenant {tenant}'s stories kept changing while the updates of an unfinished page were marked unsure; the next run tries again"
        ),
    })
}
