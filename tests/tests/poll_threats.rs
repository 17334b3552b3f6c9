//! poll-threats end to end: the simulator over HTTP, the embedded store, and a real HTTP receiver
//! that verifies signatures and de-duplicates on webhook-id as Standard Webhooks asks.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration_tests::poll::{FlakyTable, PollHarness, publish_dead_letters, tenant, threat_ids};
use integration_tests::{fast_retry_options, held, items};
use s1_bridge_sim::{FaultKind, FaultRule, NewThreats, SimConfig};
use s1_shared::domain;
use s1_shared::s1::{S1Client, ThreatQuery};
use s1_shared::store::{EmbeddedTable, Grouping, ItemTable, Source, StoryStatus};
use s1_shared::usecase::Tick;
use s1_shared::usecase::poll_threats::{Outcome, Selection, TenantReport, run};
use serde_json::Value;

#[path = "poll_threats/delivery.rs"]
mod delivery;
#[path = "poll_threats/resilience.rs"]
mod resilience;
#[path = "poll_threats/stories.rs"]
mod stories;

fn embedded() -> Arc<dyn ItemTable> {
    Arc::new(EmbeddedTable::in_memory().unwrap())
}

fn config(threats: usize) -> SimConfig {
    SimConfig {
        threats,
        agents: 300,
        cloud_alerts: 0,
        ..SimConfig::default()
    }
}

fn assert_each_once(events: &[Value], expected: usize) {
    let ids = threat_ids(events);
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), expected, "distinct threats published");
    assert_eq!(ids.len(), expected, "each threat exactly once");
}

async fn all_threats(h: &PollHarness) -> Vec<s1_shared::s1::dto::Threat> {
    let client = S1Client::new(
        &h.sim.base_url(),
        &s1_shared::ApiToken::new(s1_bridge_sim::DEFAULT_TOKEN),
        fast_retry_options(),
    )
    .unwrap();
    items(client.threats(&ThreatQuery::default())).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_is_published_once_grouped_into_stories_and_a_rerun_sends_nothing() {
    let mut h = PollHarness::start(config(2_500), embedded()).await;
    // The live display's hook: what it was told after each page.
    let ticks: Arc<Mutex<Vec<(Tick, u64)>>> = Arc::default();
    let seen = ticks.clone();
    h.deps.progress = Some(Arc::new(move |r: &TenantReport, t: Tick| {
        seen.lock().unwrap().push((t, r.published))
    }));
    let report = h.poll().await;
    let r = &report.tenants[0];
    assert_eq!(
        (r.outcome, r.fetched, r.new, r.published, r.pages),
        (Outcome::Completed, 2_500, 2_500, 2_500, 3),
        "{r:?}"
    );
    let created = h.events("threat.created");
    assert_each_once(&created, 2_500);

    // Stories: one alert per (agent, hash), and every event of a story carries its alert key.
    let threats = all_threats(&h).await;
    let keys: HashMap<String, String> = threats
        .iter()
        .map(|t| (t.id.clone(), domain::story_key(t, Grouping::Story)))
        .collect();
    let distinct: HashSet<_> = keys.values().collect();
    let opened = created
        .iter()
        .filter(|e| e["data"]["story"]["new_alert"] == true)
        .count();
    assert_eq!(opened, distinct.len(), "one new alert per story");
    assert!(opened < 2_500, "some threats share a story");
    let mut alert_of_key: HashMap<&String, &str> = HashMap::new();
    for e in &created {
        let key = &keys[e["data"]["s1"]["threat_id"].as_str().unwrap()];
        let alert = e["data"]["alert_key"].as_str().unwrap();
        assert!(alert.starts_with("s1:127.0.0.1:"), "{alert}");
        assert_eq!(
            *alert_of_key.entry(key).or_insert(alert),
            alert,
            "one alert key per story"
        );
    }
    assert_eq!(h.receiver.refused_signatures(), 0);
    let first = &created[0];
    for field in ["title", "severity"] {
        assert!(first["data"][field].is_string(), "{field} in {first}");
    }
    assert!(first["data"]["asset"]["hostname"].is_string());
    assert!(first["data"]["customer"]["external_id"].is_string());

    let tick = |done, expected| Tick { done, expected };
    assert_eq!(
        ticks.lock().unwrap().drain(..).collect::<Vec<_>>(),
        [
            (tick(1_000, Some(2_500)), 1_000),
            (tick(2_000, Some(2_500)), 2_000),
            (tick(2_500, Some(2_500)), 2_500)
        ],
        "a running count after each page, against S1's total"
    );

    let again = h.poll().await;
    assert_eq!(again.tenants[0].published, 0, "{:?}", again.tenants[0]);
    assert_eq!(h.receiver.deliveries().len(), 2_500, "nothing re-sent");
    assert_eq!(
        *ticks.lock().unwrap(),
        [(tick(1, Some(1)), 0)],
        "the rerun re-reads only the checkpoint's own instant"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_at_the_checkpoint_repeats_its_page_under_the_same_ids() {
    let flaky = FlakyTable::new(embedded());
    let h = PollHarness::start(config(2_200), flaky.clone()).await;
    // The checkpoint is written in one transaction with the page's stories: a crash there
    // saves neither, so the page is sent again, and never half-recorded. Page 2 was sent while
    // page 1 was being written: it is not recorded either, and is sent again too.
    flaky.fail_puts("CURSOR#", 1);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(r.published, 2_000, "pages 1 and 2 went out before the crash");
    assert!(h.store.get_checkpoint("acme", "threats").await.unwrap().is_none());
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    assert_eq!(r.new, 2_200, "page 1's stories were not saved: {r:?}");
    assert_each_once(&h.events("threat.created"), 2_200);
    let deliveries = h.receiver.deliveries();
    assert_eq!(deliveries.len(), 4_200);
    assert_eq!(
        deliveries.iter().filter(|d| d.duplicate).count(),
        2_000,
        "pages 1 and 2 repeated under their webhook-ids, each recognised by the receiver"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_before_the_stories_are_saved_redelivers_under_the_same_ids() {
    let flaky = FlakyTable::new(embedded());
    let h = PollHarness::start(config(1_500), flaky.clone()).await;
    flaky.fail_story_writes(1);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Failed);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    // Page 1, and page 2 (sent while page 1 was being written), went out twice at the wire; the
    // receiver recognised every repeat by its webhook-id.
    let deliveries = h.receiver.deliveries();
    assert_eq!(deliveries.iter().filter(|d| d.duplicate).count(), 1_500);
    assert_each_once(&h.events("threat.created"), 1_500);
}

/// A page is planned and sent while the previous page's stories are still being written: it
/// decides against them as they will be stored (`held::` has the scenario, by source).
#[tokio::test(flavor = "multi_thread")]
async fn a_page_decides_against_the_stories_the_previous_page_is_still_writing() {
    held::a_page_decides_against_the_stories_the_previous_page_is_still_writing(embedded, Source::Threats).await;
}

/// The same for the unified source; here rather than in the suite, for the same reason as the
/// threats one (a held commit raced by the next page).
#[tokio::test(flavor = "multi_thread")]
async fn a_unified_page_decides_against_the_stories_the_previous_page_is_still_writing() {
    held::a_page_decides_against_the_stories_the_previous_page_is_still_writing(embedded, Source::Unified).await;
}

/// The run stopped because a page was decided differently once its stories were read again: the
/// page is held for the next run.
fn assert_page_held(r: &TenantReport) {
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    let error = r.error.as_deref().unwrap_or_default();
    assert!(error.contains("changed while a page was published"), "{r:?}");
}

/// A polled backlog of 1,200 and a story `key` of it with members `a` (and `b`, when the story
/// has two): on the next run, page 1 holds `a` and 998 other threats changed in the console (after
/// the checkpoint's own threat, read again), page 2 one more other threat and whatever the test
/// adds after this.
struct TwoPages {
    h: PollHarness,
    flaky: Arc<FlakyTable>,
    key: String,
    a: s1_shared::s1::dto::Threat,
    b: Option<String>,
}

async fn two_pages(members: usize) -> TwoPages {
    use s1_shared::s1::dto::IncidentStatus;
    let flaky = FlakyTable::new(embedded());
    let h = PollHarness::start(config(1_200), flaky.clone()).await;
    h.poll().await;
    let threats = all_threats(&h).await;
    let last = threats
        .iter()
        .max_by_key(|t| t.threat_info.updated_at)
        .unwrap()
        .id
        .clone();
    let mut by_key: HashMap<String, Vec<&s1_shared::s1::dto::Threat>> = HashMap::new();
    for t in threats.iter().filter(|t| t.id != last) {
        by_key.entry(domain::story_key(t, Grouping::Story)).or_default().push(t);
    }
    let (key, story) = by_key
        .iter()
        .find(|(_, m)| m.len() >= members && m[0].file_hash().is_some())
        .expect("a story to work on");
    // Each a real change of status, so each is published.
    let other_status = |t: &s1_shared::s1::dto::Threat| match t.threat_info.incident_status {
        Some(IncidentStatus::InProgress) => "unresolved",
        _ => "in_progress",
    };
    let control = h.sim.control();
    let changed = std::iter::once(story[0]).chain(
        threats
            .iter()
            .filter(|t| t.id != last && domain::story_key(t, Grouping::Story) != *key)
            .take(999),
    );
    for t in changed {
        control
            .console_update(&t.id, Some(other_status(t)), None)
            .await
            .unwrap();
    }
    TwoPages {
        key: key.clone(),
        a: story[0].clone(),
        b: story.get(1).map(|t| t.id.clone()),
        h,
        flaky,
    }
}

/// Runs a poll with page 1's stories held back until page 2 is decided and publishing; then
/// `meanwhile` (the writeback) changes story `key`, and page 1's commit goes in over it.
async fn poll_with_page_1_held(
    p: &mut TwoPages,
    meanwhile: impl Fn(&mut s1_shared::store::StoryRecord) + Send + Sync + 'static,
) -> TenantReport {
    use futures_util::FutureExt;
    use integration_tests::poll::{Hooked, PublishHook};
    p.flaky.hold_story_writes(true);
    let meanwhile = Arc::new(meanwhile);
    let (store, gate, k) = (p.h.store.clone(), p.flaky.clone(), p.key.clone());
    let hook: PublishHook = Arc::new(move |n| {
        let (store, gate, key, meanwhile) = (store.clone(), gate.clone(), k.clone(), meanwhile.clone());
        async move {
            if n == 999 {
                let mut s = store.get_story("acme", &key).await.unwrap().unwrap();
                meanwhile(&mut s.value);
                assert!(store.put_story("acme", &s.value, s.version).await.unwrap());
                gate.hold_story_writes(false);
            }
        }
        .boxed()
    });
    let plain = p.h.deps.platforms.clone();
    p.h.deps.platforms = Hooked::wrap(plain.clone(), hook);
    let r = tokio::time::timeout(Duration::from_secs(120), p.h.poll())
        .await
        .expect("page 2 went out while page 1's stories were held")
        .tenants
        .remove(0);
    p.h.deps.platforms = plain;
    r
}

/// The writeback records our write on a story while the page that changed it is committed, after
/// the next page was decided against that page's copy of it: the next page is decided again
/// from the store (where the console's change is our own write coming back) and held, rather
/// than recorded as decided.
#[tokio::test(flavor = "multi_thread")]
async fn a_page_decided_against_a_story_merged_meanwhile_is_decided_again() {
    use s1_shared::s1::dto::IncidentStatus;
    let mut p = two_pages(2).await;
    // Page 2 also holds `b` showing what our writeback wrote to S1.
    let b = p.b.clone().unwrap();
    p.h.sim
        .control()
        .console_update(&b, Some("resolved"), None)
        .await
        .unwrap();
    let m = b.clone();
    let r = poll_with_page_1_held(&mut p, move |s| {
        s.members.get_mut(m.as_str()).unwrap().written_status = Some(IncidentStatus::Resolved);
    })
    .await;
    // `b`'s update went out before the writeback's record could be seen; it is not recorded.
    assert_eq!((r.outcome, r.published, r.echoes), (Outcome::Failed, 1_000, 1), "{r:?}");
    assert!(threat_ids(&p.h.events("threat.updated")).contains(&b));
    assert_page_held(&r);
    // Decided again, `b` was recognised as our own write coming back (the echo above, recorded):
    // the next run reads page 2 again and has nothing to send.
    let r = p.h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 0), "{r:?}");
}

/// The writeback closes a story while the page that changed it is committed, after the next page
/// joined a new threat to that page's (open) copy of it: the join is decided again, held, and
/// told as the reopen it is.
#[tokio::test(flavor = "multi_thread")]
async fn a_join_decided_against_a_story_closed_meanwhile_is_told_as_a_reopen() {
    let mut p = two_pages(1).await;
    let late = NewThreats {
        count: 1,
        agent_uuid: Some(p.a.agent_uuid().unwrap().to_owned()),
        sha1: p.a.threat_info.sha1.clone(),
        detected_at: p.a.threat_info.created_at.map(|d| d + time::Duration::minutes(1)),
    };
    let t = p.h.sim.control().add_threats(&late).await.unwrap().remove(0);
    let r = poll_with_page_1_held(&mut p, |s| s.status = StoryStatus::Closed).await;
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
    assert!(story.members.contains_key(t.as_str()));
}
