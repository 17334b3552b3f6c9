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

/// One item of a console's listing, threat or unified alert, as much as the held-page tests use.
pub struct Item {
    /// Its id as events name it (`s1.threat_id`).
    pub id: String,
    updated_at: Option<time::OffsetDateTime>,
    key: String,
    /// How a new detection joins its story, when one can.
    join: Option<Join>,
    detected_at: Option<time::OffsetDateTime>,
}

/// How a new detection joins a story: an endpoint's by agent and file hash, another unified
/// alert's by asset and rule.
#[derive(Clone)]
enum Join {
    Endpoint { agent: String, hash: String },
    Asset { asset: String, rule: String },
}

/// Every item of `source` in `h`'s console, oldest first for unified alerts.
async fn listed(h: &PollHarness, source: Source) -> Vec<Item> {
    use s1_shared::store::Grouping;
    let client = crate::client_for(&h.sim, s1_bridge_sim::DEFAULT_TOKEN, crate::fast_retry_options());
    let both = |agent: Option<&str>, hash: Option<&str>| {
        Some(Join::Endpoint {
            agent: agent?.to_owned(),
            hash: hash?.to_owned(),
        })
    };
    if source == Source::Unified {
        let alerts = crate::items(client.unified_alerts(&s1_shared::s1::UnifiedAlertQuery::default()))
            .await
            .unwrap();
        alerts
            .iter()
            .map(|a| Item {
                id: a.id.clone(),
                updated_at: a.updated_at,
                key: domain::unified_story_key(a, &domain::unified_member(a), Grouping::Story),
                join: if a.is_endpoint() {
                    both(a.primary_asset().and_then(|x| x.agent_uuid.as_deref()), a.file_hash())
                } else {
                    a.primary_asset()
                        .and_then(|x| x.name.clone())
                        .zip(a.name.clone())
                        .map(|(asset, rule)| Join::Asset { asset, rule })
                },
                detected_at: a.detected_at,
            })
            .collect()
    } else {
        let threats = crate::items(client.threats(&s1_shared::s1::ThreatQuery::default()))
            .await
            .unwrap();
        threats
            .iter()
            .map(|t| Item {
                id: t.id.clone(),
                updated_at: t.threat_info.updated_at,
                key: domain::story_key(t, Grouping::Story),
                join: both(t.agent_uuid(), t.file_hash()),
                detected_at: t.threat_info.created_at,
            })
            .collect()
    }
}

/// The run stopped because a page was decided differently once its stories were read again: the
/// page is held for the next run.
pub fn assert_page_held(r: &s1_shared::usecase::poll_threats::TenantReport) {
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    let error = r.error.as_deref().unwrap_or_default();
    assert!(error.contains("changed while a page was published"), "{r:?}");
}

/// A polled backlog of a page and a fifth of `source`, and a story `key` of it with members `a`
/// (and `b`, when the story has two): on the next run, page 1 holds `a` and all but two of a
/// page of other items changed in the console (after the checkpoint's own item, read again),
/// page 2 one more other item and whatever the test adds after this.
pub struct TwoPages {
    pub h: PollHarness,
    pub source: Source,
    flaky: Arc<FlakyTable>,
    pub key: String,
    pub a: Item,
    pub b: Option<String>,
}

/// [`TwoPages`] of `source`, its story of at least `members` members; with one member, a story a
/// new detection can join.
pub async fn two_pages(source: Source, members: usize) -> TwoPages {
    let page = page_of(source);
    let flaky = FlakyTable::new(Arc::new(s1_shared::store::EmbeddedTable::in_memory().unwrap()));
    let h = console(flaky.clone(), source, page + page / 5).await;
    h.poll().await;
    let mut items = listed(&h, source).await;
    let last = items.iter().max_by_key(|i| i.updated_at).unwrap().id.clone();
    items.retain(|i| i.id != last);
    let mut by_key: HashMap<&str, Vec<&Item>> = HashMap::new();
    for i in &items {
        by_key.entry(i.key.as_str()).or_default().push(i);
    }
    let (key, story) = by_key
        .iter()
        .find(|(_, m)| m.len() >= members && (members > 1 || m[0].join.is_some()))
        .expect("a story to work on");
    // Each a real change of status, so each is published.
    let control = h.sim.control();
    let others = items.iter().filter(|i| i.key != *key).take(page - 1);
    for i in std::iter::once(story[0]).chain(others) {
        crate::guarantees::console_moves_on(&control, source, &i.id).await;
    }
    let (key, b) = (key.to_string(), story.get(1).map(|i| i.id.clone()));
    let a_id = story[0].id.clone();
    let a = items.into_iter().find(|i| i.id == a_id).unwrap();
    TwoPages {
        key,
        a,
        b,
        h,
        source,
        flaky,
    }
}

impl TwoPages {
    /// Adds one new detection that joins `a`'s story (by its agent and file hash, or its asset
    /// and rule; a minute later); returns its id as events name it.
    pub async fn add_joining_a(&self) -> String {
        use s1_bridge_sim::{DetectionSource, NewUnifiedAlerts};
        let control = self.h.sim.control();
        let detected_at = self.a.detected_at.map(|d| d + time::Duration::minutes(1));
        let join = self.a.join.clone().expect("a joinable story");
        if self.source == Source::Unified {
            let spec = match join {
                Join::Endpoint { agent, hash } => NewUnifiedAlerts {
                    agent_uuid: Some(agent),
                    sha1: Some(hash),
                    detected_at,
                    ..NewUnifiedAlerts::one(DetectionSource::Edr)
                },
                // The asset and rule make the story, whatever the source.
                Join::Asset { asset, rule } => NewUnifiedAlerts {
                    asset_name: Some(asset),
                    rule: Some(rule),
                    detected_at,
                    ..NewUnifiedAlerts::one(DetectionSource::Identity)
                },
            };
            control.add_unified_alerts(&spec).await.unwrap().remove(0)
        } else {
            let Join::Endpoint { agent, hash } = join else {
                panic!("a threat joins by agent and hash")
            };
            let spec = s1_bridge_sim::NewThreats {
                count: 1,
                agent_uuid: Some(agent),
                sha1: Some(hash),
                detected_at,
            };
            control.add_threats(&spec).await.unwrap().remove(0)
        }
    }

    /// Runs a poll with page 1's stories held back until page 2 is decided and publishing; then
    /// `meanwhile` (the writeback) changes story `key`, and page 1's commit goes in over it.
    pub async fn poll_with_page_1_held(
        &mut self,
        meanwhile: impl Fn(&mut s1_shared::domain::StoryRecord) + Send + Sync + 'static,
    ) -> s1_shared::usecase::poll_threats::TenantReport {
        self.flaky.hold_story_writes(true);
        let meanwhile = Arc::new(meanwhile);
        let (store, gate, k) = (self.h.store.clone(), self.flaky.clone(), self.key.clone());
        let first_of_page_2 = page_of(self.source);
        let hook: PublishHook = Arc::new(move |n| {
            let (store, gate, key, meanwhile) = (store.clone(), gate.clone(), k.clone(), meanwhile.clone());
            async move {
                if n == first_of_page_2 {
                    let mut s = store.get_story("acme", &key).await.unwrap().unwrap();
                    meanwhile(&mut s.value);
                    assert!(store.put_story("acme", &s.value, s.version).await.unwrap());
                    gate.hold_story_writes(false);
                }
            }
            .boxed()
        });
        let plain = self.h.deps.platforms.clone();
        self.h.deps.platforms = Hooked::wrap(plain.clone(), hook);
        let r = tokio::time::timeout(Duration::from_secs(120), self.h.poll())
            .await
            .expect("page 2 went out while page 1's stories were held")
            .tenants
            .remove(0);
        self.h.deps.platforms = plain;
        r
    }
}

/// The writeback records our write on a story while the page that changed it is committed, after
/// the next page was decided against that page's copy of it: the next page is decided again
/// from the store (where the console's change is our own write coming back) and held, rather
/// than recorded as decided.
pub async fn a_page_decided_against_a_story_merged_meanwhile_is_decided_again(source: Source) {
    let mut p = two_pages(source, 2).await;
    // Page 2 also holds `b` showing what our writeback wrote to S1.
    let b = p.b.clone().unwrap();
    crate::guarantees::console_sets(&p.h.sim.control(), source, &b, "resolved").await;
    let m = member_of(source, &b);
    let r = p
        .poll_with_page_1_held(move |s| {
            s.members.get_mut(m.as_str()).unwrap().written_status = Some(IncidentStatus::Resolved);
        })
        .await;
    // `b`'s update went out before the writeback's record could be seen; it is not recorded.
    let page = page_of(source) as u64;
    assert_eq!((r.outcome, r.published, r.echoes), (Outcome::Failed, page, 1), "{r:?}");
    assert!(crate::poll::threat_ids(&p.h.events("threat.updated")).contains(&b));
    assert_page_held(&r);
    // Decided again, `b` was recognised as our own write coming back (the echo above, recorded):
    // the next run reads page 2 again and has nothing to send.
    let r = p.h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 0), "{r:?}");
}

/// The writeback closes a story while the page that changed it is committed, after the next page
/// joined a new detection to that page's (open) copy of it: the join is decided again, held, and
/// told as the reopen it is.
pub async fn a_join_decided_against_a_story_closed_meanwhile_is_told_as_a_reopen(source: Source) {
    use s1_shared::store::StoryStatus;
    let mut p = two_pages(source, 1).await;
    let t = p.add_joining_a().await;
    let r = p.poll_with_page_1_held(|s| s.status = StoryStatus::Closed).await;
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    let told = |h: &PollHarness| -> Vec<bool> {
        h.receiver
            .deliveries()
            .iter()
            .filter(|d| d.body["data"]["s1"]["threat_id"] == t.as_str())
            .map(|d| d.body["data"]["story"]["reopened"].as_bool().unwrap())
            .collect()
    };
    assert_eq!(told(&p.h), [false], "decided against the open copy");
    let r = p.h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    assert_eq!(
        told(&p.h),
        [false, true],
        "decided again: the story was closed, the join reopens it"
    );
    let story = p.h.store.get_story("acme", &p.key).await.unwrap().unwrap().value;
    assert_eq!(story.status, StoryStatus::Open);
    assert!(story.members.contains_key(member_of(source, &t).as_str()));
}
