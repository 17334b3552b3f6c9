//! Stories (one item per grouping key, archived ones under their id), found by their platform
//! alert through the index or by a platform's own id through an alias.

use std::collections::HashMap;

use serde::Deserialize;

use super::{Store, check_id, decode, item};
use crate::domain::{Checkpoint, PlatformKind, StoryRecord};
use crate::store::{Cond, Item, StoreError, Versioned, keys};

impl Store {
    /// A story with its version: the current story of a key, or an archived one by id.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn get_story(&self, tenant: &str, key_or_id: &str) -> Result<Option<Versioned<StoryRecord>>, StoreError> {
        match self.table.get(&keys::tenant(tenant), &keys::story(key_or_id)).await? {
            Some(i) => Ok(Some(Versioned {
                value: decode(&i, "story")?,
                version: i.version,
            })),
            None => Ok(None),
        }
    }

    /// Several stories at once (batched reads), by key or id.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn get_stories(
        &self,
        tenant: &str,
        keys_or_ids: &[String],
    ) -> Result<HashMap<String, Versioned<StoryRecord>>, StoreError> {
        let pk = keys::tenant(tenant);
        let wanted: Vec<_> = keys_or_ids.iter().map(|k| (pk.clone(), keys::story(k))).collect();
        let items = self.table.batch_get(&wanted).await?;
        items
            .iter()
            .map(|i| {
                let name = i.sk.strip_prefix(keys::STORY_PREFIX).unwrap_or(&i.sk).to_owned();
                Ok((
                    name,
                    Versioned {
                        value: decode(i, "story")?,
                        version: i.version,
                    },
                ))
            })
            .collect()
    }

    pub(super) fn story_item(
        &self,
        tenant: &str,
        name: &str,
        story: &StoryRecord,
        version: u64,
    ) -> Result<Item, StoreError> {
        check_id("story", &story.key)?;
        let mut i = item(keys::tenant(tenant), keys::story(name), story)?;
        i.version = version;
        if let (Some(platform), Some(reference)) = (&story.platform, &story.platform_ref) {
            i.gsi1pk = Some(keys::platform_alert(*platform, reference));
            i.gsi1sk = Some(format!("{tenant}#{}", story.id));
        }
        Ok(i)
    }

    /// Writes a story as its key's current story if it is still at `expected_version` (0 for a
    /// new one). `Ok(false)` when another writer got there first: re-read and retry.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn put_story(
        &self,
        tenant: &str,
        story: &StoryRecord,
        expected_version: u64,
    ) -> Result<bool, StoreError> {
        let i = self.story_item(tenant, &story.key, story, expected_version + 1)?;
        self.table.put(&i, &Cond::Version(expected_version)).await
    }

    /// Writes many stories, each only if still at its expected version, in as few requests as
    /// the backend allows (transactions of up to 100). Each entry is (story, expected version,
    /// archived): a current story is stored under its key, an archived one under its id.
    /// Returns the indexes of stories that were not written because another writer changed
    /// them: re-read those and retry.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn put_stories<S: std::borrow::Borrow<StoryRecord> + Sync>(
        &self,
        tenant: &str,
        stories: &[(S, u64, bool)],
    ) -> Result<Vec<usize>, StoreError> {
        self.write_stories(tenant, stories, None).await
    }

    /// [`put_stories`](Store::put_stories), then the named checkpoint in the same last
    /// transaction, but only when every story was written: with any conflict the checkpoint is
    /// left unwritten, so it can never move past stories still to be retried: it was written
    /// exactly when no conflicts are returned. Saves a page one request (one commit) against
    /// writing the checkpoint on its own.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn put_stories_and_checkpoint<S: std::borrow::Borrow<StoryRecord> + Sync>(
        &self,
        tenant: &str,
        stories: &[(S, u64, bool)],
        name: &str,
        checkpoint: &Checkpoint,
    ) -> Result<Vec<usize>, StoreError> {
        let i = item(keys::tenant(tenant), keys::checkpoint(name), checkpoint)?;
        self.write_stories(tenant, stories, Some(i)).await
    }

    async fn write_stories<S: std::borrow::Borrow<StoryRecord> + Sync>(
        &self,
        tenant: &str,
        stories: &[(S, u64, bool)],
        mut last: Option<Item>,
    ) -> Result<Vec<usize>, StoreError> {
        let mut conflicts = Vec::new();
        let mut batch: Vec<(Item, Cond)> = Vec::new();
        let mut batch_index: Vec<usize> = Vec::new();
        // A fenced store spends one place (and a little room) of each transaction on the lease;
        // the last one keeps room for the item written after the stories.
        let reserved = usize::from(self.fence.is_some()) + usize::from(last.is_some());
        let reserved_bytes = usize::from(self.fence.is_some()) * 1024 + last.as_ref().map_or(0, |i| i.data.len() + 256);
        let mut bytes = reserved_bytes;
        let (max_items, max_bytes) = self.table.transaction_limits();
        for (n, (story, expected, archived)) in stories.iter().enumerate() {
            let story = story.borrow();
            let name = if *archived { &story.id } else { &story.key };
            let i = self.story_item(tenant, name, story, expected + 1)?;
            let size = i.data.len() + 256;
            if batch.len() + reserved == max_items || bytes + size > max_bytes {
                conflicts.extend(self.flush_stories(&mut batch, &mut batch_index, None).await?);
                bytes = reserved_bytes;
            }
            bytes += size;
            batch.push((i, Cond::Version(*expected)));
            batch_index.push(n);
        }
        // Only when nothing so far lost to another writer: the last item says the stories are in.
        if !conflicts.is_empty() {
            last = None;
        }
        conflicts.extend(self.flush_stories(&mut batch, &mut batch_index, last).await?);
        Ok(conflicts)
    }

    /// Writes a transaction of stories (and `last`, unconditionally); a story that lost to
    /// another writer is dropped and the rest written again, without `last`.
    async fn flush_stories(
        &self,
        batch: &mut Vec<(Item, Cond)>,
        index: &mut Vec<usize>,
        last: Option<Item>,
    ) -> Result<Vec<usize>, StoreError> {
        let mut work = std::mem::take(batch);
        let mut idx = std::mem::take(index);
        if let Some(i) = last {
            work.push((i, Cond::Always));
        }
        let mut conflicts = Vec::new();
        // A transaction with a failed condition writes nothing: drop the conflicting stories
        // (and the last item, past the stories) and write the rest again.
        while !work.is_empty() {
            let failed = self.put_all_fenced(&work).await?;
            if failed.is_empty() {
                break;
            }
            work.truncate(idx.len());
            conflicts.extend(failed.iter().map(|f| idx[*f]));
            let (kept, kept_idx): (Vec<_>, Vec<_>) = work
                .into_iter()
                .zip(idx)
                .enumerate()
                .filter(|(n, _)| !failed.contains(n))
                .map(|(_, pair)| pair)
                .unzip();
            work = kept;
            idx = kept_idx;
        }
        Ok(conflicts)
    }

    /// The tenant's story behind a platform alert. A platform's reference is unique only
    /// within what the platform is (a Halo ticket number within its instance), so every story
    /// indexed under it is read and only `tenant`'s counts: the first hit may be another
    /// tenant's. The index key is unchanged, so stories written before this still resolve.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn story_by_platform_ref(
        &self,
        tenant: &str,
        platform: PlatformKind,
        reference: &str,
    ) -> Result<Option<Versioned<StoryRecord>>, StoreError> {
        let key = keys::platform_alert(platform, reference);
        // Index entries sort by `<tenant>#<story id>`.
        let ours = format!("{tenant}#");
        let pk = keys::tenant(tenant);
        let mut cursor = None;
        loop {
            let page = self.table.query_index(&key, cursor.as_deref(), 100).await?;
            if let Some(i) = page.items.iter().find(|i| i.pk == pk) {
                return Ok(Some(Versioned {
                    value: decode(i, "story")?,
                    version: i.version,
                }));
            }
            let past = page
                .items
                .last()
                .and_then(|i| i.gsi1sk.as_deref())
                .is_some_and(|sk| sk > ours.as_str() && !sk.starts_with(&ours));
            match page.next {
                Some(next) if !past => cursor = Some(next),
                _ => return Ok(None),
            }
        }
    }

    /// Remembers that the platform's id `reference` (say a PagerDuty incident id) is the alert
    /// of story `story_name` (a story key, or an archived story's id).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn put_alias(
        &self,
        tenant: &str,
        platform: PlatformKind,
        reference: &str,
        story_name: &str,
    ) -> Result<(), StoreError> {
        let i = item(
            keys::tenant(tenant),
            keys::alias(platform, reference),
            &serde_json::json!({ "story": story_name }),
        )?;
        self.table.put(&i, &Cond::Always).await.map(drop)
    }

    /// The story name behind a platform id, if one was recorded.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn get_alias(
        &self,
        tenant: &str,
        platform: PlatformKind,
        reference: &str,
    ) -> Result<Option<String>, StoreError> {
        #[derive(Deserialize)]
        struct Alias {
            story: String,
        }
        let a: Option<Alias> = self
            .get_record(&keys::tenant(tenant), &keys::alias(platform, reference), "alias")
            .await?;
        Ok(a.map(|a| a.story))
    }
}
