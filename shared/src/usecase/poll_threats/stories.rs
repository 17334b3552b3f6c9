//! The stories a page works on: read from the store (or taken from the previous page as its
//! commit will leave them), changed as the page's decisions are applied, and written by its commit.

use std::collections::{HashMap, HashSet};

use super::candidate::Candidate;
use crate::domain::{self, MemberId};
use crate::domain::{MemberState, StoryRecord};
use crate::platform::{PlatformKind, PublishReceipt};
use crate::store::{Store, StoreError, Versioned};

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
    pub(super) fn as_stored(&self) -> Self {
        Self::new(self.story.clone(), self.version + 1, self.archived, false)
    }

    /// Records a member's state in the story.
    pub(super) fn put_member(&mut self, id: &MemberId, state: MemberState) {
        self.bytes += domain::member_bytes(id, &state);
        self.story.members.insert(id.clone(), state);
        self.touched.insert(id.clone());
        self.dirty = true;
    }
}

/// The page's stories by item name: current ones under their keys, archived ones under their ids.
pub(super) type Stories = HashMap<String, Work>;

pub(super) fn loaded(v: Versioned<StoryRecord>, archived: bool) -> Work {
    Work::new(v.value, v.version, archived, false)
}

/// Reads the stories of the page's keys, and the archived stories of those keys when a
/// candidate is not a member of its key's current story (it may be of an earlier one). The
/// stories the previous page is writing (`prior`, by item name) are taken from it as they will
/// be stored.
pub(super) async fn load(
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
pub(super) async fn read<'n>(
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

/// The page's stories by story id: where a story is held now (under its key, or its id once
/// archived).
pub(super) fn names_by_id(work: &Stories) -> HashMap<String, String> {
    work.iter()
        .map(|(name, w)| (w.story.id.clone(), name.clone()))
        .collect()
}

/// Records the platform's id for a story the first time an accepted event brings one.
pub(super) fn take_ref(w: &mut Work, platform: PlatformKind, receipt: PublishReceipt) {
    if w.story.platform_ref.is_none() {
        w.story.platform = Some(platform);
        w.story.platform_ref = receipt.platform_ref;
    }
}
