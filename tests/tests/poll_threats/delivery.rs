//! poll-threats end to end: refusals, deliveries in flight, batching and dead letters.

use super::*;

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

/// A kill while deliveries are in flight repeats only its page under the same webhook ids
/// (`poll::a_kill_with_deliveries_in_flight_repeats_only_its_page`; unified alerts: `poll_unified`).
#[tokio::test(flavor = "multi_thread")]
async fn a_kill_with_deliveries_in_flight_repeats_only_its_page_under_the_same_ids() {
    let h = PollHarness::start(config(2_500), embedded()).await;
    integration_tests::poll::a_kill_with_deliveries_in_flight_repeats_only_its_page(h, 1_000, 2_500).await;
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
    held::assert_page_held(&r);
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

/// A refused threat's next version gets through, its dead letter retired; a crash before the
/// page is recorded sends it again under the same id (`poll::` has the scenario).
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_a_dead_letter_is_retired_sends_its_threat_again_under_the_same_id() {
    integration_tests::poll::a_crash_after_a_dead_letter_is_retired_sends_it_again_under_the_same_id(
        embedded(),
        s1_shared::store::Source::Threats,
    )
    .await;
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
