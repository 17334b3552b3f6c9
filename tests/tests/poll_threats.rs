//! poll-threats end to end: the simulator over HTTP, the embedded store, and a real HTTP receiver
//! that verifies signatures and de-duplicates on webhook-id as Standard Webhooks asks.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration_tests::poll::{FlakyTable, PollHarness, publish_dead_letters, tenant, threat_ids};
use integration_tests::{fast_retry_options, items};
use s1_bridge_sim::{FaultKind, FaultRule, NewThreats, SimConfig};
use s1_shared::domain;
use s1_shared::s1::{S1Client, ThreatQuery};
use s1_shared::store::{EmbeddedTable, Grouping, ItemTable, StoryStatus};
use s1_shared::usecase::Tick;
use s1_shared::usecase::poll_threats::{Outcome, Selection, TenantReport, run};
use serde_json::Value;

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

/// Each created event's threat, with its story as the event told it.
fn created_views(h: &PollHarness) -> HashMap<String, (String, bool, u64)> {
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
/// story of this backlog rolls over), its first event the one new alert, and its threat count
/// going up one by one.
fn assert_stories_told_in_order(events: &[Value]) {
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
        assert_eq!(count, *n, "threat counts go up one by one: {e}");
    }
}

/// A page is planned and sent while the previous page's stories are still being written: it
/// decides against them as they will be stored, exactly as a run of one page at a time would,
/// and what the writeback records in one of them meanwhile is kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_page_decides_against_the_stories_the_previous_page_is_still_writing() {
    use futures_util::FutureExt;
    use integration_tests::poll::{Hooked, PublishHook};
    use s1_shared::s1::dto::IncidentStatus;
    // The same backlog, nothing held: what each event should say.
    let reference = PollHarness::start(config(2_000), embedded()).await;
    reference.poll().await;
    let expected = created_views(&reference);
    assert_eq!(expected.len(), 2_000);
    assert_stories_told_in_order(&reference.events("threat.created"));
    // A story with threats on both pages (page 1's events are the first 1,000 to arrive).
    let events = reference.events("threat.created");
    let story_of = |e: &Value| e["data"]["story"]["id"].as_str().unwrap().to_owned();
    let on_page_1: HashMap<String, String> = events[..1_000]
        .iter()
        .map(|e| (story_of(e), e["data"]["s1"]["threat_id"].as_str().unwrap().to_owned()))
        .collect();
    let spanning = events[1_000..]
        .iter()
        .map(story_of)
        .find(|s| on_page_1.contains_key(s))
        .expect("a story spans the pages");
    let member = on_page_1[&spanning].clone();
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

    let flaky = FlakyTable::new(embedded());
    let mut h = PollHarness::start(config(2_000), flaky.clone()).await;
    // Page 1's stories are held back until page 2 is planned and half sent; then they go in and
    // the writeback records a status on the spanning story before page 2's stories are written.
    flaky.hold_story_writes(true);
    let (store, gate, k, m) = (h.store.clone(), flaky.clone(), key.clone(), member.clone());
    let hook: PublishHook = Arc::new(move |n| {
        let (store, gate, key, member) = (store.clone(), gate.clone(), k.clone(), m.clone());
        async move {
            if n == 1_500 {
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
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 2_000), "{r:?}");
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

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_between_pages_resumes_where_it_stopped() {
    let h = PollHarness::start(config(3_000), embedded()).await;
    // Page 2 fails through the whole retry budget.
    h.sim
        .control()
        .add_fault(&FaultRule::new("/threats", FaultKind::Reset, 4).after(1))
        .await
        .unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.pages, r.published), (Outcome::Failed, 1, 1_000), "{r:?}");
    assert!(r.error.as_deref().unwrap().contains("/threats"), "{r:?}");
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    assert_eq!(r.new, 2_000, "resumed after page 1");
    assert_each_once(&h.events("threat.created"), 3_000);
    assert_eq!(h.receiver.deliveries().len(), 3_000);
}

/// Issue 21 item 5: an answer cut short (the JSON ends early) says nothing about the data; it is
/// read again like any transient fault, and the run completes with every threat once.
#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_answer_from_s1_is_read_again_and_the_run_completes() {
    let h = PollHarness::start(config(3_000), embedded()).await;
    h.sim
        .control()
        .add_fault(&FaultRule::new("/threats", FaultKind::Truncate, 2).after(1))
        .await
        .unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.error.as_deref()), (Outcome::Completed, None), "{r:?}");
    assert_each_once(&h.events("threat.created"), 3_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn threats_sharing_one_updated_at_across_pages_are_neither_lost_nor_doubled() {
    let flaky = FlakyTable::new(embedded());
    let h = PollHarness::start(
        SimConfig {
            same_updated_at: 700,
            ..config(2_300)
        },
        flaky.clone(),
    )
    .await;
    // Groups of 700 share an instant, so every page boundary splits one. Crash at the
    // checkpoint after page 2 (page 2's stories go with it; page 3 was sent meanwhile): the rerun
    // starts inside the shared instant page 1 ended on, skips page 1's ids listed at it and
    // repeats pages 2 and 3.
    flaky.fail_puts_after("CURSOR#", 1, 1);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Failed, 2_300), "{r:?}");
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    assert_eq!((r.new, r.published), (1_300, 1_300), "pages 2 and 3 again: {r:?}");
    assert_each_once(&h.events("threat.created"), 2_300);
    let deliveries = h.receiver.deliveries();
    assert_eq!(
        deliveries.iter().filter(|d| d.duplicate).count(),
        1_300,
        "pages 2 and 3, recognised"
    );
    assert_eq!(deliveries.len(), 3_600);
    let again = h.poll().await.tenants.remove(0);
    assert_eq!(
        (again.published, again.unchanged),
        (0, 200),
        "the last instant's 200 are re-read and recognised"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_storms_and_server_error_bursts_are_ridden_out() {
    let h = PollHarness::start(config(1_200), embedded()).await;
    let c = h.sim.control();
    c.add_fault(&FaultRule::new(
        "/threats",
        FaultKind::Status {
            status: 429,
            retry_after: None,
            code: None,
        },
        3,
    ))
    .await
    .unwrap();
    c.add_fault(
        &FaultRule::new(
            "/threats",
            FaultKind::Status {
                status: 503,
                retry_after: None,
                code: None,
            },
            2,
        )
        .after(1),
    )
    .await
    .unwrap();
    h.receiver.fail_next(2, 503);
    h.receiver.fail_next(1, 429);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    assert_each_once(&h.events("threat.created"), 1_200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_platform_outage_holds_the_checkpoint_and_a_refused_event_is_not_retried_forever() {
    let h = PollHarness::start(config(300), embedded()).await;
    h.receiver.fail_next(1_000, 503);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Failed, 0), "{r:?}");
    assert!(r.error.as_deref().unwrap().contains("unavailable"), "{r:?}");
    assert!(h.receiver.deliveries().is_empty());
    assert_eq!(
        h.store.get_checkpoint("acme", "threats").await.unwrap(),
        None,
        "the checkpoint did not move"
    );

    let h = PollHarness::start(config(300), embedded()).await;
    h.receiver.fail_next(1, 400);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(
        (r.outcome, r.failed, r.published),
        (Outcome::Completed, 1, 299),
        "{r:?}"
    );
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.published, 0, "the refused event is recorded, not retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn after_an_outage_the_next_run_delivers_everything_once() {
    let h = PollHarness::start(config(300), embedded()).await;
    // Down for longer than the retry budget of every delivery in flight.
    h.receiver.fail_next(100_000, 503);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Failed, 0), "{r:?}");
    assert!(r.error.as_deref().unwrap().contains("HTTP 503"), "{r:?}");
    assert_eq!(h.store.get_checkpoint("acme", "threats").await.unwrap(), None);
    h.receiver.recover();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 300), "{r:?}");
    assert_each_once(&h.events("threat.created"), 300);
}

/// The cached token was rotated away (S1 refuses it) and the secret now holds the new one: the
/// run re-reads the secret once after the 401 and polls with the new token.
#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_token_is_reread_once_after_a_401_and_the_poll_runs() {
    let mut h = PollHarness::start(config(30), embedded()).await;
    let tokens = integration_tests::tokens::CachingTokens::over(h.tokens.clone());
    let source = s1_shared::store::TokenSource::Env {
        var: "S1_TOKEN_acme".into(),
    };
    let set = |v: &str| h.env.lock().unwrap().insert("S1_TOKEN_acme".into(), v.into());
    set("rotated-away-token");
    use s1_shared::secrets::TokenProvider;
    tokens.token(&source).await.unwrap();
    set(s1_bridge_sim::DEFAULT_TOKEN);
    h.deps.consoles = integration_tests::poll::consoles_over(tokens.clone());
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 30), "{r:?}");
    assert_eq!((tokens.invalidations(), tokens.reads()), (1, 2), "one re-read");
    assert_each_once(&h.events("threat.created"), 30);
}

/// One client per tenant per process: the poll runs, the asset sync and the token watch of one
/// process call the tenant's console through the same client, so they share its rate budget.
#[tokio::test(flavor = "multi_thread")]
async fn one_client_per_tenant_serves_every_run_of_the_process() {
    let h = PollHarness::start(config(20), embedded()).await;
    let t = h.store.get_tenant("acme").await.unwrap().unwrap();
    let token = s1_shared::ApiToken::new(s1_bridge_sim::DEFAULT_TOKEN);
    assert_eq!(h.poll().await.tenants[0].outcome, Outcome::Completed);
    let first = h.deps.consoles.client((&t).into(), &token).unwrap();
    assert_eq!(h.poll().await.tenants[0].outcome, Outcome::Completed);
    let r = s1_shared::usecase::sync_assets::sync_all(&h.asset_deps(), Instant::now() + Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(r[0].error, None);
    let now = time::OffsetDateTime::now_utc();
    let r = s1_shared::usecase::token_expiry::check_all(&h.token_deps(), now)
        .await
        .unwrap();
    assert_eq!(r[0].error, None);
    let later = h.deps.consoles.client((&t).into(), &token).unwrap();
    assert!(
        first.shares_budget_with(&later),
        "the same client, the same rate budget"
    );
    assert_eq!(h.deps.consoles.clients_built(), 1, "built once for four runs");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_fails_its_tenant_only() {
    let h = PollHarness::start(config(400), embedded()).await;
    let mut broken = tenant("broken", &h.sim.base_url(), &h.receiver.url());
    broken.token = s1_shared::store::TokenSource::Env {
        var: "S1_TOKEN_broken".into(),
    };
    h.env
        .lock()
        .unwrap()
        .insert("S1_TOKEN_broken".into(), "revoked-token".into());
    h.store.put_tenant(&broken).await.unwrap();
    let report = h.poll().await;
    let by: HashMap<_, _> = report.tenants.iter().map(|t| (t.tenant.as_str(), t)).collect();
    assert_eq!(by["acme"].outcome, Outcome::Completed);
    assert_eq!(by["acme"].published, 400);
    assert_eq!(by["broken"].outcome, Outcome::Failed);
    assert!(
        by["broken"].error.as_deref().unwrap().contains("401"),
        "{:?}",
        by["broken"]
    );
    assert!(
        !by["broken"].error.as_deref().unwrap().contains("revoked-token"),
        "no token in the report"
    );
    assert_eq!(report.totals().outcome, Outcome::Failed);
    let emf = report.emf_lines("poll-threats", time::OffsetDateTime::now_utc());
    assert_eq!(emf.len(), 2);
    assert!(
        emf.iter()
            .any(|l| l.contains("\"Tenant\":\"broken\"") && l.contains("\"RunFailed\":1.0"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn our_own_writeback_does_not_echo_but_a_console_side_change_does() {
    let h = PollHarness::start(config(50), embedded()).await;
    h.poll().await;
    let created = h.events("threat.created");
    let id = created[0]["data"]["s1"]["threat_id"].as_str().unwrap().to_owned();
    let story_key = created[0]["data"]["story"]["id"]
        .as_str()
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_owned();

    // What the writeback does: write to S1 and remember what it wrote.
    let client = S1Client::new(
        &h.sim.base_url(),
        &s1_shared::ApiToken::new(s1_bridge_sim::DEFAULT_TOKEN),
        fast_retry_options(),
    )
    .unwrap();
    client
        .set_incident_status(
            std::slice::from_ref(&id),
            s1_shared::s1::dto::IncidentStatus::Resolved,
            Some(s1_shared::s1::dto::AnalystVerdict::FalsePositive),
        )
        .await
        .unwrap();
    let mut story = h.store.get_story("acme", &story_key).await.unwrap().unwrap();
    let m = story.value.members.get_mut(id.as_str()).unwrap();
    m.written_status = Some(s1_shared::s1::dto::IncidentStatus::Resolved);
    m.written_verdict = Some(s1_shared::s1::dto::AnalystVerdict::FalsePositive);
    assert!(h.store.put_story("acme", &story.value, story.version).await.unwrap());

    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.echoes, r.published), (1, 0), "{r:?}");
    assert!(h.events("threat.updated").is_empty());

    // Someone reopens it in the S1 console: that must reach the platform.
    h.sim
        .control()
        .console_update(&id, Some("in_progress"), None)
        .await
        .unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.changed, r.published), (1, 1), "{r:?}");
    let updated = h.events("threat.updated");
    assert_eq!(threat_ids(&updated), [id.as_str()]);
    assert_eq!(updated[0]["data"]["s1"]["status"], "in_progress");
    assert_eq!(updated[0]["data"]["alert_key"], created[0]["data"]["alert_key"]);

    // And resolving it in the console again is not mistaken for our old echo.
    h.sim
        .control()
        .console_update(&id, Some("resolved"), None)
        .await
        .unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.changed, r.echoes), (1, 0), "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn new_threats_join_reopen_and_roll_stories() {
    let h = PollHarness::start(config(20), embedded()).await;
    h.poll().await;
    let threats = all_threats(&h).await;
    let t = threats.iter().find(|t| t.file_hash().is_some()).unwrap();
    let uuid = t.agent_uuid().unwrap().to_owned();
    let sha1 = t.threat_info.sha1.clone().unwrap();
    let first_alert = h
        .events("threat.created")
        .into_iter()
        .find(|e| e["data"]["s1"]["threat_id"] == t.id.as_str())
        .unwrap();
    let alert_key = first_alert["data"]["alert_key"].as_str().unwrap().to_owned();
    let c = h.sim.control();
    let same = NewThreats {
        count: 1,
        agent_uuid: Some(uuid.clone()),
        sha1: Some(sha1.clone()),
        detected_at: t.threat_info.created_at.map(|d| d + time::Duration::days(3)),
    };

    let joined = c.add_threats(&same).await.unwrap();
    h.poll().await;
    let e = h
        .events("threat.created")
        .into_iter()
        .find(|e| e["data"]["s1"]["threat_id"] == joined[0].as_str())
        .unwrap();
    assert_eq!(e["data"]["alert_key"], alert_key.as_str(), "joins the open story");
    assert_eq!(
        (
            e["data"]["story"]["new_alert"].clone(),
            e["data"]["story"]["reopened"].clone()
        ),
        (Value::Bool(false), Value::Bool(false))
    );

    // The platform closed the alert (as the writeback records it); a new threat reopens it.
    let key = domain::story_key(t, Grouping::Story);
    let mut s = h.store.get_story("acme", &key).await.unwrap().unwrap();
    s.value.status = StoryStatus::Closed;
    assert!(h.store.put_story("acme", &s.value, s.version).await.unwrap());
    let again = c.add_threats(&same).await.unwrap();
    h.poll().await;
    let e = h
        .events("threat.created")
        .into_iter()
        .find(|e| e["data"]["s1"]["threat_id"] == again[0].as_str())
        .unwrap();
    assert_eq!(e["data"]["alert_key"], alert_key.as_str());
    assert_eq!(e["data"]["story"]["reopened"], true);
    assert_eq!(
        h.store.get_story("acme", &key).await.unwrap().unwrap().value.status,
        StoryStatus::Open
    );

    // 91 days after the story's first detection: a new story and a new alert.
    let late = NewThreats {
        detected_at: t.threat_info.created_at.map(|d| d + time::Duration::days(91)),
        ..same.clone()
    };
    let rolled = c.add_threats(&late).await.unwrap();
    h.poll().await;
    let e = h
        .events("threat.created")
        .into_iter()
        .find(|e| e["data"]["s1"]["threat_id"] == rolled[0].as_str())
        .unwrap();
    assert_ne!(e["data"]["alert_key"], alert_key.as_str());
    assert_eq!(e["data"]["story"]["new_alert"], true);
    // The old story is archived with its threats, and a change to one of them still finds it.
    let current = h.store.get_story("acme", &key).await.unwrap().unwrap().value;
    assert_eq!(current.previous.len(), 1);
    let archived = h
        .store
        .get_story("acme", &current.previous[0])
        .await
        .unwrap()
        .unwrap()
        .value;
    assert_eq!(archived.members.len(), 3);
    let other = if t.threat_info.incident_status == Some(s1_shared::s1::dto::IncidentStatus::InProgress) {
        "resolved"
    } else {
        "in_progress"
    };
    c.console_update(&t.id, Some(other), None).await.unwrap();
    h.poll().await;
    let u = h.events("threat.updated");
    assert_eq!(threat_ids(&u), [t.id.as_str()]);
    assert_eq!(
        u[0]["data"]["alert_key"],
        alert_key.as_str(),
        "updates go to the archived story's alert"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_near_its_deadline_stops_and_the_next_one_continues() {
    let h = PollHarness::start(config(500), embedded()).await;
    let r = run(&h.deps, &Selection::All, Instant::now())
        .await
        .unwrap()
        .tenants
        .remove(0);
    assert_eq!((r.outcome, r.pages, r.published), (Outcome::Partial, 0, 0), "{r:?}");
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 500));
    let err = run(
        &h.deps,
        &Selection::Tenant("nobody".into()),
        Instant::now() + Duration::from_secs(60),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("nobody"), "{err}");
}

/// The real recorded response of four threats on one agent (tests/fixtures/s1).
fn recorded_four_threats() -> Value {
    let path = integration_tests::fixtures_dir().join("s1/threats_list_v21_same_agent.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// Serves `body` as a console's `GET /threats` would; returns the console URL.
async fn serve_threats(body: &Value) -> String {
    let body = serde_json::to_vec(body).unwrap();
    let app = axum::Router::new().route(
        "/web/api/v2.1/threats",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let console = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    console
}

#[tokio::test(flavor = "multi_thread")]
async fn the_recorded_four_threats_on_one_agent_form_three_stories() {
    let console = serve_threats(&recorded_four_threats()).await;

    let h = PollHarness::start(config(1), embedded()).await;
    h.store
        .put_tenant(&tenant("acme", &console, &h.receiver.url()))
        .await
        .unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.new, r.published), (Outcome::Completed, 4, 4), "{r:?}");
    let created = h.events("threat.created");
    let alert_of: HashMap<String, String> = created
        .iter()
        .map(|e| {
            (
                e["data"]["s1"]["threat_id"].as_str().unwrap().to_owned(),
                e["data"]["alert_key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let alerts: HashSet<_> = alert_of.values().collect();
    assert_eq!(alerts.len(), 3, "three distinct SHA1s on one agent: three stories");
    assert_eq!(
        alert_of["715723437013282014"], alert_of["715723444638526700"],
        "the two sharing a SHA1 share an alert"
    );
    assert_ne!(alert_of["715718962991148224"], alert_of["715723450678324472"]);
    assert_eq!(
        created
            .iter()
            .filter(|e| e["data"]["story"]["new_alert"] == true)
            .count(),
        3
    );
    let joined = created
        .iter()
        .find(|e| e["data"]["s1"]["threat_id"] == "715723444638526700")
        .unwrap();
    assert_eq!(joined["data"]["story"]["threat_count"], 2);
    assert_eq!(joined["data"]["asset"]["hostname"], "EC2AMAZ-AJ0KANC");

    // The same stories with one alert per threat when the tenant asks for it.
    let h = PollHarness::start(config(1), embedded()).await;
    let mut per_threat = tenant("acme", &console, &h.receiver.url());
    per_threat.grouping = Grouping::Threat;
    h.store.put_tenant(&per_threat).await.unwrap();
    h.poll().await;
    let alerts: HashSet<_> = h
        .events("threat.created")
        .iter()
        .map(|e| e["data"]["alert_key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(alerts.len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn star_alerts_are_polled_by_creation_and_deduplicated_by_alert_id() {
    let h = PollHarness::start(
        SimConfig {
            cloud_alerts: 40,
            ..config(100)
        },
        embedded(),
    )
    .await;
    let mut t = tenant("acme", &h.sim.base_url(), &h.receiver.url());
    t.poll_cloud_alerts = true;
    h.store.put_tenant(&t).await.unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.new, r.published), (Outcome::Completed, 140, 140), "{r:?}");
    let star: Vec<_> = h
        .events("threat.created")
        .into_iter()
        .filter(|e| e["data"]["title"].as_str().unwrap().starts_with("STAR:"))
        .collect();
    assert_eq!(star.len(), 40);
    assert_each_once(&star, 40);
    assert!(
        star.iter().all(|e| e["data"]["s1"]["status"] == "unresolved"),
        "display casing normalised"
    );
    assert!(
        star.iter()
            .all(|e| ["critical", "high", "medium", "low"].contains(&e["data"]["severity"].as_str().unwrap()))
    );
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.published, 0, "{r:?}");
    assert_eq!(
        h.store
            .get_checkpoint("acme", "alerts")
            .await
            .unwrap()
            .unwrap()
            .ids_at_watermark
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_strings_from_s1_count_as_absent() {
    // Consoles send "" for fields they have no value for; it must read as absent, not as text.
    let mut body = recorded_four_threats();
    let t0 = &mut body["data"][0];
    t0["threatInfo"]["threatName"] = "".into();
    t0["threatInfo"]["classification"] = "".into();
    t0["threatInfo"]["filePath"] = " ".into();
    let t1 = &mut body["data"][1];
    t1["agentRealtimeInfo"]["agentComputerName"] = "".into();
    t1["agentRealtimeInfo"]["siteName"] = "".into();
    let (id0, id1) = (
        body["data"][0]["id"].as_str().unwrap().to_owned(),
        body["data"][1]["id"].as_str().unwrap().to_owned(),
    );
    let console = serve_threats(&body).await;
    let h = PollHarness::start(config(1), embedded()).await;
    h.store
        .put_tenant(&tenant("acme", &console, &h.receiver.url()))
        .await
        .unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 4), "{r:?}");
    let created = h.events("threat.created");
    let event = |id: &str| {
        created
            .iter()
            .find(|e| e["data"]["s1"]["threat_id"] == id)
            .unwrap()
            .clone()
    };
    let e0 = event(&id0);
    assert_eq!(e0["data"]["title"], "S1 threat on EC2AMAZ-AJ0KANC", "{e0}");
    assert_eq!(e0["data"]["s1"]["classification"], Value::Null, "{e0}");
    assert_eq!(e0["data"]["file"]["path"], Value::Null, "{e0}");
    let e1 = event(&id1);
    let title = e1["data"]["title"].as_str().unwrap();
    assert!(title.ends_with(" on an unknown endpoint"), "{title}");
    assert_eq!(e1["data"]["asset"]["hostname"], Value::Null, "{e1}");
    assert_ne!(e1["data"]["site"]["name"], "", "{e1}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_5000_threat_story_is_delivered_once() {
    integration_tests::poll::a_5000_threat_story_is_delivered_once(embedded()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_thousand_threats_sharing_one_instant_are_delivered_once() {
    integration_tests::poll::twenty_thousand_threats_sharing_one_instant_are_delivered_once(embedded()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_lost_its_lease_saves_nothing() {
    integration_tests::poll::a_run_that_lost_its_lease_saves_nothing(embedded()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_runs_lease_lapses_quickly() {
    integration_tests::poll::a_killed_runs_lease_lapses_quickly(embedded()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stories_changed_on_every_attempt_fail_the_run_as_a_conflict() {
    integration_tests::poll::stories_changed_on_every_attempt_fail_the_run_as_a_conflict(embedded()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_event_becomes_a_publish_dead_letter_replayed_once() {
    integration_tests::poll::a_refused_event_becomes_a_publish_dead_letter_replayed_once(embedded()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_wide_refusal_holds_the_checkpoint_and_fails_the_run() {
    for status in [401, 403, 404, 405, 410] {
        let h = PollHarness::start(config(100), embedded()).await;
        h.receiver.fail_next(1, status);
        let report = h.poll().await;
        let r = &report.tenants[0];
        // Deliveries in flight before the refusal was heard may have been taken (how many
        // depends on timing): every one the platform took is recorded.
        assert_eq!((r.outcome, r.failed), (Outcome::Failed, 0), "{r:?}");
        assert_eq!(h.receiver.deliveries().len() as u64, r.published, "{r:?}");
        let before = r.published;
        let error = r.error.as_deref().unwrap();
        assert!(
            error.contains(&format!("HTTP {status}")) && error.contains("refused"),
            "{error}"
        );
        assert_eq!(h.store.get_checkpoint("acme", "threats").await.unwrap(), None);
        assert!(publish_dead_letters(&h.store).await.is_empty());
        let emf = report.emf_lines("poll-threats", time::OffsetDateTime::now_utc());
        assert!(emf[0].contains("\"RunFailed\":1.0"), "{}", emf[0]);
        // Once the receiver takes events again, the next run delivers everything once.
        let r = h.poll().await.tenants.remove(0);
        assert_eq!(
            (r.outcome, r.published),
            (Outcome::Completed, 100 - before),
            "{status}: {r:?}"
        );
        assert_each_once(&h.events("threat.created"), 100);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_of_refusals_of_different_events_is_the_platform_refusing() {
    let h = PollHarness::start(config(30), embedded()).await;
    // The platform refuses every event (say, a receiver that cannot read our events at all).
    h.receiver.fail_next(1_000, 400);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Failed, 0), "{r:?}");
    assert!(h.receiver.deliveries().is_empty());
    assert!(
        r.error.as_deref().unwrap().contains("10 different events in a row"),
        "{r:?}"
    );
    assert_eq!(h.store.get_checkpoint("acme", "threats").await.unwrap(), None);
    assert!(
        publish_dead_letters(&h.store).await.is_empty(),
        "none of them is kept as one item's fault"
    );
    h.receiver.recover();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 30), "{r:?}");
    assert_each_once(&h.events("threat.created"), 30);

    // Fewer in a row are each the item's own fault.
    let h = PollHarness::start(config(30), embedded()).await;
    h.receiver.fail_next(9, 400);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(
        (r.outcome, r.published, r.publish_dead_letters),
        (Outcome::Completed, 21, 9),
        "{r:?}"
    );
    assert_eq!(publish_dead_letters(&h.store).await.len(), 9);
}

/// A kill while deliveries are in flight (the platform has taken some of them, the run has not
/// heard): the next run repeats only the unfinished page, under the same webhook ids, so the
/// receiver sees every threat once and nothing is missed.
#[tokio::test(flavor = "multi_thread")]
async fn a_kill_with_deliveries_in_flight_repeats_only_its_page_under_the_same_ids() {
    use futures_util::FutureExt;
    use integration_tests::poll::{Hooked, PublishHook};
    let mut h = PollHarness::start(config(2_500), embedded()).await;
    let in_flight = s1_shared::store::DEFAULT_MAX_IN_FLIGHT as usize;
    // Page 2 starts at the 1,000th publish: 200 of its events go through, then every delivery
    // hangs once the platform has taken it, until all the slots are held.
    let kill_from = 1_200;
    let (entered, mut hung) = tokio::sync::mpsc::unbounded_channel::<()>();
    let before: PublishHook = Arc::new(|_| async {}.boxed());
    let after: PublishHook = Arc::new(move |n| {
        let entered = entered.clone();
        async move {
            if n >= kill_from {
                let _ = entered.send(());
                std::future::pending::<()>().await;
            }
        }
        .boxed()
    });
    let plain = h.deps.platforms.clone();
    h.deps.platforms = Hooked::wrap_both(plain.clone(), before, after);
    {
        let run = run(&h.deps, &Selection::All, Instant::now() + Duration::from_secs(600));
        let slots_full = async {
            for _ in 0..in_flight {
                tokio::time::timeout(Duration::from_secs(60), hung.recv())
                    .await
                    .expect("the run fills its delivery slots")
                    .expect("hook alive");
            }
        };
        tokio::select! {
            r = run => panic!("the run ended while its deliveries hung: {r:?}"),
            () = slots_full => {}
        }
        // Every slot holds a delivery the platform took; the process dies here (the run is
        // dropped with them).
    }
    let taken = h.receiver.deliveries().len();
    assert_eq!(taken, kill_from + in_flight, "the platform took the events in flight");

    h.deps.platforms = plain;
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    assert_eq!(r.published, 1_500, "page 1 was recorded; page 2 and 3 are sent: {r:?}");
    assert_each_once(&h.events("threat.created"), 2_500);
    let repeated = h.receiver.deliveries().iter().filter(|d| d.duplicate).count();
    assert_eq!(
        repeated,
        kill_from + in_flight - 1_000,
        "only page 2's events sent before the kill were repeated, each under its own id"
    );
}

/// With deliveries in flight, a story's events still arrive one after another: its first one
/// opens the alert, and each later one counts one more threat.
#[tokio::test(flavor = "multi_thread")]
async fn a_storys_events_arrive_in_order_with_deliveries_in_flight() {
    let h = PollHarness::start(config(2_500), embedded()).await;
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 2_500), "{r:?}");
    let mut counts: HashMap<String, Vec<u64>> = HashMap::new();
    for e in h.events("threat.created") {
        let story = &e["data"]["story"];
        let seen = counts
            .entry(story["alert_key"].as_str().unwrap().to_owned())
            .or_default();
        assert_eq!(
            story["new_alert"],
            seen.is_empty(),
            "the first event of a story opens its alert: {e}"
        );
        seen.push(story["threat_count"].as_u64().unwrap());
    }
    let multi = counts.values().filter(|c| c.len() > 1).count();
    assert!(multi > 10, "the backlog has stories of several threats ({multi})");
    for (key, c) in &counts {
        assert_eq!(*c, (1..=c.len() as u64).collect::<Vec<_>>(), "story {key} in order");
    }
}

/// Batched delivery (generic platform): a `threat.batch` request carries up to 100 events, each
/// under its own id; a batch the platform refuses is sent again one event at a time, so only
/// an event the platform refuses on its own is kept as a dead letter.
#[tokio::test(flavor = "multi_thread")]
async fn batched_delivery_sends_each_event_once_in_far_fewer_requests() {
    let h = PollHarness::start(config(2_500), embedded()).await;
    let mut t = h.store.get_tenant("acme").await.unwrap().unwrap();
    t.generic_mut().batch = Some(s1_shared::platform::Batch::default());
    h.store.put_tenant(&t).await.unwrap();
    h.receiver.fail_next(1, 400);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(
        (r.outcome, r.published, r.failed),
        (Outcome::Completed, 2_500, 0),
        "{r:?}"
    );
    assert_each_once(&h.events("threat.created"), 2_500);
    let (requests, batches) = h.receiver.requests();
    // 25 batches of 100, one refused and sent as 100 single events.
    assert_eq!((requests, batches), (124, 24), "requests and batches");
    assert_eq!(h.receiver.deliveries().len(), 2_500, "no event twice");
    let again = h.poll().await.tenants.remove(0);
    assert_eq!(again.published, 0, "{again:?}");
}

/// Another writer changes a story while a page is published, and an event of the page is
/// refused: the page is decided again from the store, the story whose decision changed is left
/// alone, and the page is held. The next run sends what was not recorded, under the same ids:
/// nothing is missed, nothing reaches the receiver twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_story_changed_while_its_page_is_published_holds_the_page() {
    use futures_util::FutureExt;
    use integration_tests::poll::{Hooked, PublishHook};
    let mut h = PollHarness::start(config(1_500), embedded()).await;
    let mut threats = all_threats(&h).await;
    threats.sort_by_key(|t| t.threat_info.updated_at);
    // A story of page 1 that another writer creates meanwhile (so it is not the one planned).
    let key = domain::story_key(&threats[500], Grouping::Story);
    // Opened an hour before the threat's detection: the threat now joins it instead of opening
    // the story the platform was told of.
    let detected = domain::detected_at(&threats[500]).expect("the simulator dates its threats");
    let theirs = s1_shared::domain::correlate::new_story(&key, detected - time::Duration::hours(1), vec![]);
    let store = h.store.clone();
    let hook: PublishHook = Arc::new(move |n| {
        let (store, theirs) = (store.clone(), theirs.clone());
        async move {
            if n == 5 {
                store.put_stories("acme", &[(theirs, 0, false)]).await.unwrap();
            }
        }
        .boxed()
    });
    let plain = h.deps.platforms.clone();
    h.deps.platforms = Hooked::wrap(plain.clone(), hook);
    h.receiver.fail_next(1, 422);
    let r = h.poll().await.tenants.remove(0);
    assert_page_held(&r);
    assert_eq!(
        h.store.get_checkpoint("acme", "threats").await.unwrap(),
        None,
        "the page is held"
    );

    h.deps.platforms = plain;
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    let letters = publish_dead_letters(&h.store).await;
    assert_eq!(letters.len(), 1, "the refused event is kept, once");
    let created = threat_ids(&h.events("threat.created"));
    let distinct: HashSet<_> = created.iter().collect();
    assert_eq!(created.len(), distinct.len(), "no threat reached the receiver twice");
    assert_eq!(
        distinct.len() + 1,
        1_500,
        "every threat but the refused one was delivered"
    );
    assert!(!distinct.contains(&letters[0].id.to_string()));
}

/// A refused threat's next version gets through: its dead letter is retired before the page's
/// stories and checkpoint are written. A crash between the two sends that version again under
/// the same id (its story still says refused), retires nothing twice, and loses nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_a_dead_letter_is_retired_sends_its_threat_again_under_the_same_id() {
    let flaky = FlakyTable::new(embedded());
    let h = PollHarness::start(
        SimConfig {
            threats: 30,
            agents: 20,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        flaky.clone(),
    )
    .await;
    h.receiver.fail_next(1, 422);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.publish_dead_letters), (Outcome::Completed, 1), "{r:?}");
    let letter = publish_dead_letters(&h.store).await.remove(0);
    let id = letter.id.to_string();
    let for_it = |h: &PollHarness| {
        h.receiver
            .deliveries()
            .into_iter()
            .filter(|d| d.body["data"]["s1"]["threat_id"] == id.as_str())
            .collect::<Vec<_>>()
    };
    assert!(for_it(&h).is_empty(), "refused: the receiver recorded nothing");

    // Someone changes it in the console; its new version is accepted, the letter retired, and
    // the run dies writing the page's stories and checkpoint.
    let now = h.sim.control().threat(&id).await.unwrap();
    let other = if now["threatInfo"]["incidentStatus"] == "in_progress" {
        "resolved"
    } else {
        "in_progress"
    };
    h.sim.control().console_update(&id, Some(other), None).await.unwrap();
    flaky.fail_story_writes(1);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Failed, 1), "{r:?}");
    assert!(
        publish_dead_letters(&h.store).await.is_empty(),
        "retired before the crash"
    );

    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published, r.failed), (Outcome::Completed, 1, 0), "{r:?}");
    let sent = for_it(&h);
    assert_eq!(sent.len(), 2, "accepted, then repeated: {sent:?}");
    assert_eq!(sent[0].webhook_id, sent[1].webhook_id, "the repeat carries the same id");
    assert!(
        !sent[0].duplicate && sent[1].duplicate,
        "and the receiver recognised it"
    );
    assert!(publish_dead_letters(&h.store).await.is_empty());
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(
        (r.published, r.publish_dead_letters),
        (0, 0),
        "recorded as delivered: {r:?}"
    );
    assert_eq!(for_it(&h).len(), 2);
}

/// A story rolls over on a page while the writeback records our write to S1 on the old story
/// (under its key): the archived copy keeps what the writeback recorded, so S1's echo of it is
/// recognised later instead of published as a change.
#[tokio::test(flavor = "multi_thread")]
async fn a_story_rolled_over_while_the_writeback_changed_it_keeps_the_writebacks_record() {
    use futures_util::FutureExt;
    use integration_tests::poll::{Hooked, PublishHook};
    use s1_shared::s1::dto::IncidentStatus;
    let mut h = PollHarness::start(config(20), embedded()).await;
    h.poll().await;
    let threats = all_threats(&h).await;
    let t = threats.iter().find(|t| t.file_hash().is_some()).unwrap().clone();
    let key = domain::story_key(&t, Grouping::Story);
    let old_id = h.store.get_story("acme", &key).await.unwrap().unwrap().value.id;
    let late = NewThreats {
        count: 1,
        agent_uuid: Some(t.agent_uuid().unwrap().to_owned()),
        sha1: t.threat_info.sha1.clone(),
        detected_at: t.threat_info.created_at.map(|d| d + time::Duration::days(91)),
    };
    h.sim.control().add_threats(&late).await.unwrap();
    // While the rolling page is published, the writeback records a status it wrote to S1 for
    // `t`, on the old story (still the key's current one in the store).
    let (store, (k, tid)) = (h.store.clone(), (key.clone(), t.id.clone()));
    let hook: PublishHook = Arc::new(move |n| {
        let (store, k, tid) = (store.clone(), k.clone(), tid.clone());
        async move {
            if n == 0 {
                let mut s = store.get_story("acme", &k).await.unwrap().unwrap();
                let m = s.value.members.get_mut(tid.as_str()).unwrap();
                m.written_status = Some(IncidentStatus::Resolved);
                assert!(store.put_story("acme", &s.value, s.version).await.unwrap());
            }
        }
        .boxed()
    });
    let plain = h.deps.platforms.clone();
    h.deps.platforms = Hooked::wrap(plain.clone(), hook);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.new, r.published), (Outcome::Completed, 1, 1), "{r:?}");
    h.deps.platforms = plain;

    let current = h.store.get_story("acme", &key).await.unwrap().unwrap().value;
    assert_ne!(current.id, old_id, "the key holds the new story");
    assert_eq!(current.previous.len(), 1);
    assert_eq!(current.previous[0], old_id);
    let archived = h.store.get_story("acme", &old_id).await.unwrap().unwrap().value;
    assert_eq!(
        archived.members[t.id.as_str()].written_status,
        Some(IncidentStatus::Resolved),
        "the writeback's record survived the roll"
    );
    // S1 then shows what we wrote: recognised as our echo, nothing published.
    h.sim
        .control()
        .console_update(&t.id, Some("resolved"), None)
        .await
        .unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.echoes, r.changed, r.published), (1, 0, 0), "{r:?}");
}
