//! A page decided and sent while the previous page's stories are still being written (their
//! commit held back), by source: each body runs for threats and for unified alerts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use s1_shared::domain::{self, MemberId};
use s1_shared::s1::dto::IncidentStatus;
use s1_shared::store::{ItemTable, Source};
use s1_shared::usecase::poll_threats::Outcome;
use serde_json::Value;

use crate::poll::{FlakyTable, Hooked, PollHarness, PublishHook};

/// How many items a page of `source` holds.
pub fn page_of(source: Source) -> usize {
    if source == Source::Unified { 100 } else { 1_000 }
}

/// A console of `n` items of `source` alone, spread so that stories span pages: threats over
/// 300 agents, the far fewer unified alerts over 20.
async fn console(table: Arc<dyn ItemTable>, source: Source, n: usize) -> PollHarness {
    let agents = if source == Source::Unified { 20 } else { 300 };
    PollHarness::of_source(table, source, n, agents).await
}

/// The story member an event's `s1.threat_id` names: a unified alert's member is `uam:<id>`.
pub fn member_of(source: Source, told: &str) -> MemberId {
    match source {
        Source::Unified => MemberId::unified(told),
        _ => MemberId::threat(told),
    }
}

/// Each created event's item, with its story as the event told it.
pub fn created_views(h: &PollHarness) -> HashMap<String, (String, bool, u64)> {
    h.events("threat.created")
        .iter()
        .map(|e| {
            let s = &e["data"]["story"];
            (
                e["data"]["s1"]["threat_id"].as_str().unwrap().to_owned(),
                (
                    s["id"].as_str().unwrap().to_owned(),
                    s["new_alert"].as_bool().unwrap(),
                    s["threat_count"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

/// Checks what the created events say of their stories, page after page: one story per key (no
/// story of this backlog rolls over), its first event the one new alert, and its count going up
/// one by one.
pub fn assert_stories_told_in_order(events: &[Value]) {
    let mut told: HashMap<String, (String, u64)> = HashMap::new();
    for e in events {
        let s = &e["data"]["story"];
        let id = s["id"].as_str().unwrap();
        let count = s["threat_count"].as_u64().unwrap();
        let key = domain::story_key_of(id).unwrap().to_owned();
        let first = !told.contains_key(&key);
        let (story, n) = told.entry(key).or_insert_with(|| (id.to_owned(), 0));
        assert_eq!(story, id, "one story per key");
        assert_eq!(
            s["new_alert"].as_bool(),
            Some(first),
            "the story's first event opens it: {e}"
        );
        *n += 1;
        assert_eq!(count, *n, "counts go up one by one: {e}");
    }
}

/// A page is planned and sent while the previous page's stories are still being written: it
/// decides against them as they will be stored, exactly as a run of one page at a time would,
/// and what the writeback records in one of them meanwhile is kept. Two pages of `source`.
pub async fn a_page_decides_against_the_stories_the_previous_page_is_still_writing(
    table: impl Fn() -> Arc<dyn ItemTable>,
    source: Source,
) {
    let page = page_of(source);
    // The same backlog, nothing held: what each event should say.
    let reference = console(table(), source, 2 * page).await;
    reference.poll().await;
    let expected = created_views(&reference);
    assert_eq!(expected.len(), 2 * page);
    assert_stories_told_in_order(&reference.events("threat.created"));
    // A story with items on both pages (page 1's events are the first to arrive).
    let events = reference.events("threat.created");
    let story_of = |e: &Value| e["data"]["story"]["id"].as_str().unwrap().to_owned();
    let on_page_1: HashMap<String, String> = events[..page]
        .iter()
        .map(|e| (story_of(e), e["data"]["s1"]["threat_id"].as_str().unwrap().to_owned()))
        .collect();
    let spanning = events[page..]
        .iter()
        .map(story_of)
        .find(|s| on_page_1.contains_key(s))
        .expect("a story spans the pages");
    let member = member_of(source, &on_page_1[&spanning]).to_string();
    let key = domain::story_key_of(&spanning).unwrap().to_owned();
    let members = reference
        .store
        .get_story("acme", &key)
        .await
        .unwrap()
        .unwrap()
        .value
        .members
        .len();

    let flaky = FlakyTable::new(table());
    let mut h = console(flaky.clone(), source, 2 * page).await;
    // Page 1's stories are held back until page 2 is planned and half sent; then they go in and
    // the writeback records a status on the spanning story before page 2's stories are written.
    flaky.hold_story_writes(true);
    let (store, gate, k, m) = (h.store.clone(), flaky.clone(), key.clone(), member.clone());
    let hook: PublishHook = Arc::new(move |n| {
        let (store, gate, key, member) = (store.clone(), gate.clone(), k.clone(), m.clone());
        async move {
            if n == page + page / 2 {
                gate.hold_story_writes(false);
                let mut s = loop {
                    match store.get_story("acme", &key).await.unwrap() {
                        Some(s) => break s,
                        None => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                };
                let m = s.value.members.get_mut(member.as_str()).unwrap();
                m.written_status = Some(IncidentStatus::Resolved);
                assert!(store.put_story("acme", &s.value, s.version).await.unwrap());
            }
        }
        .boxed()
    });
    h.deps.platforms = Hooked::wrap(h.deps.platforms.clone(), hook);
    let r = tokio::time::timeout(Duration::from_secs(120), h.poll())
        .await
        .expect("page 2 went out while page 1's stories were held")
        .tenants
        .remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 2 * page as u64), "{r:?}");
    assert_eq!(
        created_views(&h),
        expected,
        "every event as a run of one page at a time tells it"
    );
    assert_stories_told_in_order(&h.events("threat.created"));
    let story = h.store.get_story("acme", &key).await.unwrap().unwrap().value;
    assert_eq!(
        story.members.len(),
        members,
        "page 2's members went in over the writeback's change"
    );
    assert_eq!(
        story.members[member.as_str()].written_status,
        Some(IncidentStatus::Resolved),
        "the writeback's record was kept"
    );
    assert_eq!(h.poll().await.tenants[0].published, 0, "a rerun sends nothing");
}
