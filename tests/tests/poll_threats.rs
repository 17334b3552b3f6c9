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

/// The writeback records our write on a story while the page that changed it is committed, after
/// the next page was decided against that page's copy of it: decided again and held
/// (`held::` has the scenario, by source).
#[tokio::test(flavor = "multi_thread")]
async fn a_page_decided_against_a_story_merged_meanwhile_is_decided_again() {
    held::a_page_decided_against_a_story_merged_meanwhile_is_decided_again(Source::Threats).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_unified_page_decided_against_a_story_merged_meanwhile_is_decided_again() {
    held::a_page_decided_against_a_story_merged_meanwhile_is_decided_again(Source::Unified).await;
}

/// The writeback closes a story while the page that changed it is committed, after the next page
/// joined a new detection to it: told as the reopen it is (`held::`, by source).
#[tokio::test(flavor = "multi_thread")]
async fn a_join_decided_against_a_story_closed_meanwhile_is_told_as_a_reopen() {
    held::a_join_decided_against_a_story_closed_meanwhile_is_told_as_a_reopen(Source::Threats).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_unified_join_decided_against_a_story_closed_meanwhile_is_told_as_a_reopen() {
    held::a_join_decided_against_a_story_closed_meanwhile_is_told_as_a_reopen(Source::Unified).await;
}
