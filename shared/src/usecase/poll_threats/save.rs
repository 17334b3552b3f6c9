//! Writing a page's stories back, over the writeback's changes when it got in first.

use super::page::Work;
use crate::store::{Checkpoint, Store, StoreError, StoryRecord, StoryStatus, Versioned};

/// Writes the changed stories, then `checkpoint` (in the same last transaction when nothing
/// conflicts); a story changed meanwhile by another writer (the writeback) is re-read and our
/// member changes applied on top, keeping what the writeback recorded.
pub(super) async fn save_stories(
    store: &Store,
    tenant: &str,
    mut dirty: Vec<Work>,
    checkpoint: Option<(&str, &Checkpoint)>,
) -> Result<(), StoreError> {
    for _ in 0..5 {
        if dirty.is_empty() && checkpoint.is_none() {
            return Ok(());
        }
        let batch: Vec<(&StoryRecord, u64, bool)> = dirty.iter().map(|w| (&w.story, w.version, w.archived)).collect();
        let conflicts = match checkpoint {
            Some((name, c)) => store.put_stories_and_checkpoint(tenant, &batch, name, c).await?,
            None => store.put_stories(tenant, &batch).await?,
        };
        drop(batch);
        if conflicts.is_empty() {
            return Ok(());
        }
        let mut retry = Vec::new();
        for i in conflicts {
            let placeholder = Work::new(dirty[i].story.clone(), 0, false, false);
            let mut w = std::mem::replace(&mut dirty[i], placeholder);
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
