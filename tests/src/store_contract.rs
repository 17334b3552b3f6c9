//! One contract suite for every [`ItemTable`](s1_shared::store::ItemTable) backend: the same
//! test bodies run against the embedded store and against DynamoDB Local. Each backend's test
//! file invokes [`store_contract!`](crate::store_contract) with an expression that makes a fresh,
//! empty `Store`.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::future::join_all;
use s1_shared::domain::MemberId;
use s1_shared::platform::{PlatformKind, ThreatEvent};
use s1_shared::s1::dto::{AnalystVerdict, IncidentStatus};
use s1_shared::store::*;
use time::{Duration, OffsetDateTime};

fn tenant(id: &str) -> TenantConfig {
    TenantConfig {
        name: format!("Tenant {id}"),
        grouping: Grouping::Story,
        ..TenantConfig::new(
            id,
            "https://acme.sentinelone.net",
            TokenSource::SecretsManager {
                secret_id: format!("s1-bridge/{id}/s1-token"),
            },
            s1_shared::test_util::generic("https://hooks.example.com/s1", "HOOK"),
        )
    }
}

/// A threat id as S1 spells them.
fn threat_id(i: usize) -> String {
    format!("{}", 1_500_000_000_000_000_000u64 + i as u64)
}

fn asset(i: usize) -> AssetRecord {
    AssetRecord {
        kind: AssetKind::Asset,
        id: format!("agent-{i:06}"),
        digest: format!("d{i}"),
        platform_ref: None,
        active: true,
    }
}

/// A story member as the poller records one first seen (`i` varies its stamp and digest).
pub fn member(i: usize) -> MemberState {
    MemberState {
        updated_at: Some(OffsetDateTime::UNIX_EPOCH + Duration::seconds(i as i64)),
        digest: format!("d{i}"),
        status: Some(IncidentStatus::Unresolved),
        verdict: Some(AnalystVerdict::Undefined),
        verdict_detail: None,
        written_status: None,
        written_verdict: None,
        publish_error: None,
        unsure: false,
    }
}

fn story(key: &str, n: usize) -> StoryRecord {
    StoryRecord {
        key: key.into(),
        id: format!("{key}@0"),
        window_start: OffsetDateTime::UNIX_EPOCH,
        status: StoryStatus::Open,
        platform: Some(PlatformKind::PagerDuty),
        platform_ref: Some(format!("PD-{key}")),
        members: (0..n).map(|i| (MemberId::threat(threat_id(i)), member(i))).collect(),
        previous: vec![],
    }
}

pub async fn tenants_round_trip_and_list_in_order(store: Store) {
    for id in ["beta", "alpha", "gamma"] {
        store.put_tenant(&tenant(id)).await.unwrap();
    }
    let mut changed = tenant("beta");
    changed.enabled = false;
    store.put_tenant(&changed).await.unwrap();
    let all = store.list_tenants().await.unwrap();
    let ids: Vec<_> = all.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["alpha", "beta", "gamma"]);
    assert!(!all[1].enabled, "the second put replaced the first");
    let enabled: Vec<_> = store
        .enabled_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(enabled, ["alpha", "gamma"], "the scheduled jobs skip a disabled tenant");
    assert_eq!(store.get_tenant("gamma").await.unwrap(), Some(tenant("gamma")));
    assert_eq!(store.get_tenant("nobody").await.unwrap(), None);
    let err = store.put_tenant(&tenant("bad#id")).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
}

pub async fn checkpoints_are_per_tenant_and_name(store: Store) {
    let c = Checkpoint {
        watermark: Some(OffsetDateTime::UNIX_EPOCH + Duration::days(3)),
        ids_at_watermark: vec!["1".into(), "2".into()],
    };
    store.put_checkpoint("t1", "threats", &c).await.unwrap();
    assert_eq!(store.get_checkpoint("t1", "threats").await.unwrap(), Some(c));
    assert_eq!(store.get_checkpoint("t1", "alerts").await.unwrap(), None);
    assert_eq!(store.get_checkpoint("t2", "threats").await.unwrap(), None);
}

pub async fn batch_writes_and_reads_beyond_the_api_limits(store: Store) {
    // 260 records: eleven BatchWriteItem calls of at most 25, three BatchGetItem calls of at most 100.
    let records: Vec<_> = (0..260).map(asset).collect();
    store.put_assets("t1", &records).await.unwrap();
    let mut ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    ids.push("agent-unknown".into()); // unknown: simply absent
    ids.push(records[0].id.clone()); // asked twice: still one answer
    let got = store.get_assets("t1", AssetKind::Asset, &ids).await.unwrap();
    assert_eq!(got.len(), 260);
    for r in &records {
        assert_eq!(got.get(&r.id), Some(r), "asset {}", r.id);
    }
    assert!(
        store
            .get_assets("other-tenant", AssetKind::Asset, &ids)
            .await
            .unwrap()
            .is_empty(),
        "tenants are isolated"
    );
}

pub async fn story_writes_are_optimistic(store: Store) {
    let s = story("a1:h1", 2);
    assert!(store.put_story("t1", &s, 0).await.unwrap(), "new story");
    assert!(!store.put_story("t1", &s, 0).await.unwrap(), "a second creator loses");
    let read = store.get_story("t1", "a1:h1").await.unwrap().unwrap();
    assert_eq!(read.version, 1);
    let mut grown = read.value.clone();
    grown.members.insert("3".into(), member(3));
    // Two writers update from the same version: exactly one wins.
    let results = join_all((0..6).map(|_| {
        let store = store.clone();
        let grown = grown.clone();
        async move { store.put_story("t1", &grown, 1).await.unwrap() }
    }))
    .await;
    assert_eq!(results.iter().filter(|w| **w).count(), 1, "{results:?}");
    let found = store
        .story_by_platform_ref("t1", PlatformKind::PagerDuty, "PD-a1:h1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.value.members.len(), 3);
    assert_eq!(found.version, 2);
    assert!(
        store
            .story_by_platform_ref("t1", PlatformKind::PagerDuty, "PD-unknown")
            .await
            .unwrap()
            .is_none()
    );
    // A story given another platform id is found by the new one only, and one without any by
    // neither.
    let mut moved = found.value.clone();
    moved.platform_ref = Some("PD-moved".into());
    assert!(store.put_story("t1", &moved, 2).await.unwrap());
    let by = |r: &'static str| {
        let store = store.clone();
        async move {
            store
                .story_by_platform_ref("t1", PlatformKind::PagerDuty, r)
                .await
                .unwrap()
                .map(|v| v.version)
        }
    };
    assert_eq!((by("PD-a1:h1").await, by("PD-moved").await), (None, Some(3)));
    moved.platform_ref = None;
    assert!(store.put_story("t1", &moved, 3).await.unwrap());
    assert_eq!((by("PD-a1:h1").await, by("PD-moved").await), (None, None));
}

/// Halo ticket #1001 exists in every Halo instance: each tenant's reference finds that tenant's
/// story, wherever the other tenants' entries sort (more of them than one index page holds),
/// and a tenant without one finds none. The index entries are the ones stories have always had,
/// so stories written before the lookup was scoped resolve the same way.
pub async fn a_platform_reference_finds_only_its_own_tenants_story(store: Store) {
    let tenants: Vec<String> = (0..105).map(|n| format!("t{n:03}")).collect();
    for (n, t) in tenants.iter().enumerate() {
        let mut s = story(&format!("a{n}:h"), 1);
        s.platform = Some(PlatformKind::Halo);
        s.platform_ref = Some("1001".into());
        assert!(store.put_story(t, &s, 0).await.unwrap());
    }
    for (n, t) in tenants
        .iter()
        .enumerate()
        .filter(|(n, _)| [0, 50, 99, 100, 104].contains(n))
    {
        let found = store
            .story_by_platform_ref(t, PlatformKind::Halo, "1001")
            .await
            .unwrap();
        assert_eq!(found.map(|v| v.value.key), Some(format!("a{n}:h")), "tenant {t}");
    }
    for t in ["t", "t0500", "u"] {
        assert!(
            store
                .story_by_platform_ref(t, PlatformKind::Halo, "1001")
                .await
                .unwrap()
                .is_none(),
            "{t}"
        );
    }
    assert!(
        store
            .story_by_platform_ref("t000", PlatformKind::Halo, "1002")
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn many_stories_write_in_transactions_and_report_conflicts(store: Store) {
    // 230 stories: three transactions of at most 100.
    let stories: Vec<_> = (0..230)
        .map(|i| (story(&format!("agent{i}:hash"), 2), 0, false))
        .collect();
    assert_eq!(store.put_stories("t1", &stories).await.unwrap(), Vec::<usize>::new());
    let keys: Vec<String> = stories.iter().map(|(s, _, _)| s.key.clone()).collect();
    let read = store.get_stories("t1", &keys).await.unwrap();
    assert_eq!(read.len(), 230);
    assert!(read.values().all(|v| v.version == 1 && v.value.members.len() == 2));

    // Another writer changes two of them; a batch based on the old versions reports exactly those
    // two and still writes every other story.
    for i in [5, 150] {
        let mut s = read[&keys[i]].value.clone();
        s.status = StoryStatus::Closed;
        assert!(store.put_story("t1", &s, 1).await.unwrap());
    }
    let updates: Vec<_> = keys
        .iter()
        .map(|k| {
            let mut s = read[k].value.clone();
            s.members.insert("new".into(), member(9));
            (s, 1, false)
        })
        .collect();
    let mut conflicts = store.put_stories("t1", &updates).await.unwrap();
    conflicts.sort();
    assert_eq!(conflicts, [5, 150]);
    let after = store.get_stories("t1", &keys).await.unwrap();
    assert_eq!(
        after[&keys[5]].value.status,
        StoryStatus::Closed,
        "the other writer's change survived"
    );
    assert_eq!(after[&keys[5]].value.members.len(), 2);
    assert_eq!(after[&keys[6]].value.members.len(), 3);
    assert_eq!(after[&keys[229]].version, 2);

    // An archived story stays reachable by its id and by its platform alert.
    let mut old = after[&keys[7]].value.clone();
    old.platform_ref = Some("PD-archived".into());
    assert_eq!(
        store.put_stories("t1", &[(old.clone(), 0, true)]).await.unwrap(),
        Vec::<usize>::new()
    );
    assert_eq!(store.get_story("t1", &old.id).await.unwrap().unwrap().value, old);
    let via_ref = store
        .story_by_platform_ref("t1", PlatformKind::PagerDuty, "PD-archived")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(via_ref.value.id, old.id);
}

/// A page's checkpoint rides in its stories' last transaction, and only when every story went
/// in: a story lost to another writer, in any transaction, leaves the checkpoint where it was.
pub async fn the_checkpoint_goes_in_with_the_stories_only_when_all_went_in(store: Store) {
    let at = |s: i64| Checkpoint {
        watermark: Some(OffsetDateTime::UNIX_EPOCH + Duration::seconds(s)),
        ids_at_watermark: vec![threat_id(s as usize)],
    };
    let current = || async { store.get_checkpoint("t1", "threats").await.unwrap() };
    // Nothing to write but the checkpoint.
    let none: &[(StoryRecord, u64, bool)] = &[];
    assert!(
        store
            .put_stories_and_checkpoint("t1", none, "threats", &at(1))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(current().await, Some(at(1)));
    // 230 stories: three DynamoDB transactions, the checkpoint in the last.
    let stories: Vec<_> = (0..230)
        .map(|i| (story(&format!("agent{i}:hash"), 2), 0, false))
        .collect();
    let written = store
        .put_stories_and_checkpoint("t1", &stories, "threats", &at(2))
        .await
        .unwrap();
    assert!(written.is_empty(), "{written:?}");
    assert_eq!(current().await, Some(at(2)));
    let keys: Vec<String> = stories.iter().map(|(s, _, _)| s.key.clone()).collect();
    let mut saved = at(2);

    // Another writer changes a story of the first transaction, then one of the last: each time
    // the other stories are written and the checkpoint is not.
    for (n, (lost, base)) in [(5usize, 1u64), (229, 2)].into_iter().enumerate() {
        let read = store.get_stories("t1", &keys).await.unwrap();
        let mut theirs = read[&keys[lost]].value.clone();
        theirs.status = StoryStatus::Closed;
        assert!(store.put_story("t1", &theirs, read[&keys[lost]].version).await.unwrap());
        let ours: Vec<_> = keys
            .iter()
            .map(|k| {
                let mut s = read[k].value.clone();
                s.members.insert(MemberId::threat(threat_id(100 + n)), member(9));
                (s, read[k].version, false)
            })
            .collect();
        let conflicts = store
            .put_stories_and_checkpoint("t1", &ours, "threats", &at(3 + n as i64))
            .await
            .unwrap();
        assert_eq!(conflicts, [lost]);
        assert_eq!(
            current().await,
            Some(saved.clone()),
            "the checkpoint stays after a conflict at {lost}"
        );
        let after = store.get_stories("t1", &keys).await.unwrap();
        assert_eq!(after[&keys[100]].version, base + 1, "the other stories were written");
        assert_eq!(after[&keys[lost]].value.status, StoryStatus::Closed);

        // The lost story, merged and retried alone, brings the checkpoint with it.
        let mut merged = after[&keys[lost]].value.clone();
        merged.members.insert(MemberId::threat(threat_id(100 + n)), member(9));
        let retried = [(merged, after[&keys[lost]].version, false)];
        saved = at(3 + n as i64);
        assert!(
            store
                .put_stories_and_checkpoint("t1", &retried, "threats", &saved)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(current().await, Some(saved.clone()));
    }
}

pub async fn one_of_many_concurrent_writers_gets_a_lease(store: Store) {
    let now = OffsetDateTime::now_utc();
    let ttl = Duration::minutes(5);
    let results = join_all((0..10).map(|i| {
        let store = store.clone();
        async move {
            store
                .take_lease("t1", "poll", &format!("worker-{i}"), ttl, now)
                .await
                .unwrap()
        }
    }))
    .await;
    let winners: Vec<&Lease> = results.iter().flatten().collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let holder = winners[0].owner.clone();
    let other = if holder == "worker-0" { "worker-1" } else { "worker-0" };
    let held = store
        .take_lease("t1", "poll", &holder, ttl, now)
        .await
        .unwrap()
        .expect("the holder may take it again");
    assert!(store.renew(&held, now).await.unwrap());
    let pretender = Lease {
        owner: other.into(),
        ..held.clone()
    };
    assert!(!store.renew(&pretender, now).await.unwrap(), "only the holder renews");
    assert!(
        !store.give_back(&pretender).await.unwrap(),
        "only the holder gives it back"
    );
    assert!(
        store
            .take_lease("t1", "assets", other, ttl, now)
            .await
            .unwrap()
            .is_some(),
        "leases are per job"
    );
    assert!(
        store.take_lease("t2", "poll", other, ttl, now).await.unwrap().is_some(),
        "and per tenant"
    );
    // After the lease lapses, another worker takes it and the old holder can no longer renew.
    let later = now + Duration::minutes(6);
    let taken = store
        .take_lease("t1", "poll", other, ttl, later)
        .await
        .unwrap()
        .unwrap();
    assert!(!store.renew(&held, later).await.unwrap());
    assert!(store.give_back(&taken).await.unwrap());
    assert!(
        store
            .take_lease("t1", "poll", &holder, ttl, later)
            .await
            .unwrap()
            .is_some(),
        "given back means free"
    );
}

/// Accepting a webhook's change is atomic and exactly once per delivery id (and per comment
/// dedupe key) within its lifetime, per tenant: a replay writes nothing.
pub async fn a_webhook_event_is_accepted_exactly_once(store: Store) {
    let now = OffsetDateTime::now_utc();
    let pending = |id: &str| PendingWriteback {
        id: id.into(),
        alert_key: "story-w".into(),
        change: PendingChange::for_test("story-w", now),
        attempts: 0,
        last_error: None,
        created_at: now,
        next_attempt_at: now,
    };
    let week = Duration::days(7);
    let results = join_all((0..16).map(|n| {
        let (store, p) = (store.clone(), pending(&format!("chg-{n}")));
        async move {
            store
                .accept_change("t1", &[("pd:event-123", week)], &p, now)
                .await
                .unwrap()
        }
    }))
    .await;
    let accepted = results.iter().filter(|r| **r == Acceptance::Accepted).count();
    assert_eq!(accepted, 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Acceptance::Accepted | Acceptance::Duplicate))
    );
    assert_eq!(
        store.list_pending("t1", None, 100).await.unwrap().items.len(),
        1,
        "replays wrote nothing"
    );
    assert_eq!(
        store
            .accept_change("t2", &[("pd:event-123", week)], &pending("chg-0"), now)
            .await
            .unwrap(),
        Acceptance::Accepted,
        "tenants are isolated"
    );
    // A second delivery of the same note is a duplicate note, and nothing of it is written.
    let note = [("pd:event-a", week), ("note:abc", Duration::hours(24))];
    let again = [("pd:event-b", week), ("note:abc", Duration::hours(24))];
    assert_eq!(
        store.accept_change("t1", &note, &pending("chg-a"), now).await.unwrap(),
        Acceptance::Accepted
    );
    assert_eq!(
        store.accept_change("t1", &again, &pending("chg-b"), now).await.unwrap(),
        Acceptance::DuplicateNote
    );
    assert!(store.get_pending_entry("t1", "chg-b").await.unwrap().is_none());
    // A marker whose lifetime has passed no longer counts, even if the backend has not deleted it.
    let gone = [("pd:event-old", Duration::ZERO)];
    assert_eq!(
        store.accept_change("t1", &gone, &pending("chg-o1"), now).await.unwrap(),
        Acceptance::Accepted
    );
    assert_eq!(
        store.accept_change("t1", &gone, &pending("chg-o2"), now).await.unwrap(),
        Acceptance::Accepted,
        "an expired marker is absent"
    );
    let err = store
        .accept_change("t1", &[("", week)], &pending("chg-e"), now)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
}

pub async fn ttl_marked_items_read_as_absent(store: Store) {
    let now = OffsetDateTime::now_utc();
    let record = |at: OffsetDateTime, id: &str| OutboundRequest {
        id: id.into(),
        at,
        method: "POST".into(),
        path: "/threats/incident".into(),
        status: Some(200),
        result: Some("updated=2".into()),
        latency_ms: 41,
        attempt: 1,
        error: None,
    };
    store
        .record_outbound("t1", &record(now - Duration::days(31), "old"))
        .await
        .unwrap();
    store
        .record_outbound("t1", &record(now - Duration::days(2), "recent"))
        .await
        .unwrap();
    store.record_outbound("t1", &record(now, "new")).await.unwrap();
    let page = store.list_outbound("t1", None, 10).await.unwrap();
    let ids: Vec<_> = page.items.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["recent", "new"], "older than 30 days is gone; oldest first");
    assert_eq!(page.items[1], record(now, "new"));
}

pub async fn pending_writebacks_move_to_dead_letters_and_back(store: Store) {
    let now = OffsetDateTime::now_utc();
    let p = PendingWriteback {
        id: "chg-1".into(),
        alert_key: "story-1".into(),
        change: PendingChange {
            done: [WritebackStep::Status, WritebackStep::NoteStarted].into(),
            ..PendingChange::for_test("story-1", now)
        },
        attempts: 7,
        last_error: Some("S1 failed on /threats/incident with HTTP 503".into()),
        created_at: now,
        next_attempt_at: now + Duration::minutes(5),
    };
    store.put_pending("t1", &p).await.unwrap();
    assert_eq!(
        store.list_pending("t1", None, 10).await.unwrap().items,
        std::slice::from_ref(&p)
    );
    store.move_to_dead("t1", &p).await.unwrap();
    assert!(store.list_pending("t1", None, 10).await.unwrap().items.is_empty());
    assert_eq!(
        store.list_dead("t1", None, 10).await.unwrap().items,
        std::slice::from_ref(&p)
    );
    let replayed = store.replay_dead("t1", "chg-1", now).await.unwrap();
    assert_eq!(replayed.attempts, 0);
    assert_eq!(store.list_pending("t1", None, 10).await.unwrap().items, [replayed]);
    assert!(store.list_dead("t1", None, 10).await.unwrap().items.is_empty());
    assert!(matches!(
        store.replay_dead("t1", "chg-404", now).await,
        Err(StoreError::Invalid(_))
    ));
}

pub async fn assets_and_token_state_round_trip(store: Store) {
    let recs: Vec<_> = (0..30)
        .map(|i| AssetRecord {
            kind: AssetKind::Asset,
            id: format!("uuid{i:02}"),
            digest: format!("d{i}"),
            platform_ref: None,
            active: i % 5 != 0,
        })
        .collect();
    store.put_assets("t1", &recs).await.unwrap();
    let site = AssetRecord {
        kind: AssetKind::Site,
        id: "uuid00".into(),
        digest: "s".into(),
        platform_ref: Some("S-1".into()),
        active: true,
    };
    store.put_assets("t1", std::slice::from_ref(&site)).await.unwrap();
    let got = store
        .get_assets("t1", AssetKind::Asset, &["uuid00".into(), "uuid29".into()])
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert!(!got["uuid00"].active);
    let sites = store
        .get_assets("t1", AssetKind::Site, &["uuid00".into()])
        .await
        .unwrap();
    assert_eq!(sites["uuid00"], site, "kinds do not collide");
    let page = store.scan_assets("t1", AssetKind::Asset, None, 100).await.unwrap();
    assert_eq!(page.items.len(), 30);

    assert_eq!(store.get_token_state("t1").await.unwrap(), None);
    let s = TokenState {
        expires_at: Some(OffsetDateTime::UNIX_EPOCH + Duration::days(9)),
        alerted_thresholds: vec![30, 14],
        unauthorized_alerted: false,
    };
    store.put_token_state("t1", &s).await.unwrap();
    assert_eq!(store.get_token_state("t1").await.unwrap(), Some(s));
}

pub async fn a_corrupt_item_is_reported_with_its_key(store: Store) {
    let bad = Item {
        pk: "TENANT#t1".into(),
        sk: "CURSOR#threats".into(),
        data: "{not json".into(),
        ..Item::default()
    };
    store.table().put(&bad, &Cond::Always).await.unwrap();
    let err = store.get_checkpoint("t1", "threats").await.unwrap_err();
    match err {
        StoreError::Corrupt { pk, sk, what, .. } => {
            assert_eq!(
                (pk.as_str(), sk.as_str(), what),
                ("TENANT#t1", "CURSOR#threats", "checkpoint")
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let huge = Item {
        pk: "TENANT#t1".into(),
        sk: "BIG".into(),
        data: "x".repeat(500 * 1024),
        ..Item::default()
    };
    assert!(matches!(
        store.table().put(&huge, &Cond::Always).await,
        Err(StoreError::Invalid(_))
    ));
}

pub async fn a_100k_item_tenant_scans_page_by_page(store: Store) {
    const N: usize = 100_000;
    // Written by several tasks at once, as a backfill would.
    let chunks: Vec<Vec<AssetRecord>> = (0..N)
        .map(asset)
        .collect::<Vec<_>>()
        .chunks(N / 8)
        .map(<[_]>::to_vec)
        .collect();
    join_all(chunks.into_iter().map(|c| {
        let store = store.clone();
        async move { store.put_assets("big", &c).await.unwrap() }
    }))
    .await;
    store.put_assets("small", &[asset(1)]).await.unwrap();
    let site = AssetRecord {
        kind: AssetKind::Site,
        ..asset(2)
    };
    store.put_assets("big", &[site]).await.unwrap();
    let mut seen = HashSet::new();
    let mut pages = 0;
    let mut last: Option<String> = None;
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .scan_assets("big", AssetKind::Asset, cursor.as_deref(), 1000)
            .await
            .unwrap();
        pages += 1;
        for r in page.items {
            assert_eq!(r.kind, AssetKind::Asset);
            assert!(last.as_ref().is_none_or(|l| *l < r.id), "id order");
            last = Some(r.id.clone());
            assert!(seen.insert(r.id), "no duplicates");
        }
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(seen.len(), N);
    assert!(pages >= N / 1000, "{pages} pages of at most 1000");
}

pub async fn an_applied_writeback_ends_in_one_transaction(store: Store) {
    let now = OffsetDateTime::now_utc();
    let s = story("a9:h9", 2);
    assert!(store.put_story("t1", &s, 0).await.unwrap());
    let p = PendingWriteback {
        id: "chg-9".into(),
        alert_key: s.id.clone(),
        change: PendingChange::for_test("a9:h9", now),
        attempts: 0,
        last_error: None,
        created_at: now,
        next_attempt_at: now,
    };
    store.put_pending("t1", &p).await.unwrap();
    let call = |n: i64| OutboundRequest {
        id: format!("call-{n}"),
        at: now + Duration::milliseconds(n),
        method: "POST".into(),
        path: "/threats/incident".into(),
        status: Some(200),
        result: Some("updated=2".into()),
        latency_ms: 3,
        attempt: 1,
        error: None,
    };
    let mut closed = s.clone();
    closed.status = StoryStatus::Closed;

    // Another writer got in first: nothing of it is written, the pending item stays.
    let mut ahead = s.clone();
    ahead.members.insert("7".into(), member(7));
    assert!(store.put_story("t1", &ahead, 1).await.unwrap());
    let held = store.get_pending_entry("t1", "chg-9").await.unwrap().unwrap();
    assert_eq!(
        store
            .finish_claimed(
                "t1",
                Some((&closed, 1, false)),
                &p,
                held.version,
                None,
                &[call(1), call(2)]
            )
            .await
            .unwrap(),
        Finished::StoryChanged
    );
    assert_eq!(
        store.get_pending_entry("t1", "chg-9").await.unwrap().map(|e| e.value),
        Some(p.clone())
    );
    assert!(store.list_outbound("t1", None, 10).await.unwrap().items.is_empty());

    // At the current version: story, retired pending item and log land together.
    let current = store.get_story("t1", "a9:h9").await.unwrap().unwrap();
    let mut closed = current.value.clone();
    closed.status = StoryStatus::Closed;
    assert_eq!(
        store
            .finish_claimed(
                "t1",
                Some((&closed, current.version, false)),
                &p,
                held.version,
                None,
                &[call(1), call(2)]
            )
            .await
            .unwrap(),
        Finished::Done
    );
    let after = store.get_story("t1", "a9:h9").await.unwrap().unwrap();
    assert_eq!((after.version, after.value.status), (3, StoryStatus::Closed));
    assert_eq!(store.get_pending_entry("t1", "chg-9").await.unwrap(), None);
    assert!(store.list_pending("t1", None, 10).await.unwrap().items.is_empty());
    let log = store.list_outbound("t1", None, 10).await.unwrap().items;
    assert_eq!(log, [call(1), call(2)]);
}

pub async fn pending_writebacks_are_claimed_and_never_brought_back(store: Store) {
    let now = OffsetDateTime::now_utc();
    let p = PendingWriteback {
        id: "chg-c".into(),
        alert_key: "story-c".into(),
        change: PendingChange::for_test("story-c", now),
        attempts: 0,
        last_error: None,
        created_at: now,
        next_attempt_at: now,
    };
    store.put_pending("t1", &p).await.unwrap();
    let read = store.get_pending_entry("t1", "chg-c").await.unwrap().unwrap();
    assert_eq!(read.claim, None);
    // Of concurrent claims on what they read, exactly one wins.
    let claims = join_all((0..8).map(|n| {
        let (store, p) = (store.clone(), p.clone());
        async move {
            let c = Claim::new(format!("owner-{n}"), Duration::minutes(2), now);
            store.update_pending("t1", &p, read.version, Some(&c)).await.unwrap()
        }
    }))
    .await;
    assert_eq!(claims.iter().filter(|c| c.is_some()).count(), 1, "{claims:?}");
    let held = store.get_pending_entry("t1", "chg-c").await.unwrap().unwrap();
    let claim = held.claim.clone().unwrap();
    assert!(claim.blocks("someone-else", now) && !claim.blocks(&claim.owner, now));
    assert!(
        !claim.blocks("someone-else", now + Duration::minutes(3)),
        "a claim lapses"
    );
    // A write at a stale version is refused and changes nothing.
    assert_eq!(store.update_pending("t1", &p, read.version, None).await.unwrap(), None);
    // Retired (into the dead letters) by its holder: no later write brings it back.
    let mut dead = p.clone();
    dead.last_error = Some("superseded: test".into());
    assert!(store.retire_to_dead("t1", &dead, held.version, None).await.unwrap());
    assert_eq!(store.get_pending_entry("t1", "chg-c").await.unwrap(), None);
    assert_eq!(store.list_dead("t1", None, 10).await.unwrap().items, [dead.clone()]);
    assert_eq!(store.update_pending("t1", &p, held.version, None).await.unwrap(), None);
    assert_eq!(
        store.update_pending("t1", &p, held.version + 1, None).await.unwrap(),
        None
    );
    assert!(!store.retire_to_dead("t1", &dead, held.version, None).await.unwrap());
    assert!(store.list_pending("t1", None, 10).await.unwrap().items.is_empty());
}

/// Pending writebacks and dead letters as the code before typed pending changes wrote them (the
/// change a JSON object with sorted keys, its steps a list of names, `done` absent on the oldest)
/// still read, every field where it was, and are written over as before. An item that does not
/// read as a pending writeback is listed as corrupt, naming its key, beside the others.
pub async fn pending_written_before_typed_changes_still_read(store: Store) {
    use s1_shared::platform::PlatformKind;
    use s1_shared::platform::inbound::{AlertRef, ChangeAction, PlatformState};
    use s1_shared::s1::dto::{AnalystVerdict, IncidentStatus};
    let status = r#"{"id":"abc","alert_key":"agent1:hash1@1767225600","change":{"archived":false,"change":{"action":{"Status":{"close_reason":"false positive","state":"resolved","verdict":"false_positive"}},"actor":"Ana","alert":{"KeyAndId":["s1:acme.sentinelone.net:agent1:hash1@1767225600","PD123"]},"analysis":"signed installer","at":"2026-01-01T00:01:40Z","event_id":"evt-1","platform":"pagerduty"},"done":["status","note_started"],"note":"[pagerduty] resolved by Ana: false positive — signed installer","status":"resolved","story":"agent1:hash1","verdict":"false_positive"},"attempts":2,"last_error":"S1 failed","created_at":"2026-01-01T00:01:41Z","next_attempt_at":"2026-01-01T00:03:41Z"}"#;
    let note = r#"{"id":"def","alert_key":"agent2:hash2@1767225600","change":{"archived":true,"change":{"action":{"Note":{"verdict":null}},"actor":null,"alert":{"PlatformId":"Q1"},"analysis":"hi","at":"2026-01-01T00:00:00Z","event_id":"evt-2","platform":"generic"},"note":"[generic] comment by an automation — hi","status":null,"story":"agent2:hash2@1767225600","verdict":null},"attempts":0,"last_error":null,"created_at":"2026-01-01T00:00:01Z","next_attempt_at":"2026-01-01T00:00:01Z"}"#;
    let dead = r#"{"id":"ghi","alert_key":"agent3:hash3@1767225600","change":{"archived":false,"change":{"action":{"Status":{"close_reason":null,"state":"acknowledged","verdict":null}},"actor":null,"alert":{"Key":"s1:acme.sentinelone.net:agent3:hash3@1767225600"},"analysis":null,"at":"2026-01-01T00:00:00Z","event_id":"evt-3","platform":"generic"},"done":["status","superseded","note_started","note"],"note":"[generic] acknowledged by an automation (not applied to the status: a later change to this alert reached S1 first)","status":"in_progress","story":"agent3:hash3","verdict":null},"attempts":0,"last_error":"superseded: a later change to this alert reached S1 first; this change's status and verdict were not applied (its note was)","created_at":"2026-01-01T00:00:01Z","next_attempt_at":"2026-01-01T00:00:01Z"}"#;
    for (sk, data) in [("PENDING#abc", status), ("PENDING#def", note), ("DEAD#ghi", dead)] {
        let item = Item {
            pk: "TENANT#t1".into(),
            sk: sk.into(),
            data: data.into(),
            version: 4,
            ..Item::default()
        };
        assert!(store.table().put(&item, &Cond::Always).await.unwrap());
    }
    let at = |secs: i64| OffsetDateTime::UNIX_EPOCH + Duration::seconds(secs);
    let p = store.get_pending_entry("t1", "abc").await.unwrap().unwrap();
    assert_eq!(p.version, 4);
    let c = &p.value.change;
    assert_eq!(
        c.change,
        s1_shared::platform::inbound::StatusChange {
            event_id: "evt-1".into(),
            platform: PlatformKind::PagerDuty,
            alert: AlertRef::KeyAndId("s1:acme.sentinelone.net:agent1:hash1@1767225600".into(), "PD123".into()),
            action: ChangeAction::Status {
                state: PlatformState::Resolved,
                close_reason: Some("false positive".into()),
                verdict: Some(AnalystVerdict::FalsePositive),
            },
            analysis: Some("signed installer".into()),
            actor: Some("Ana".into()),
            at: at(1_767_225_700),
        }
    );
    assert_eq!(
        (c.story.as_str(), c.archived, c.status, c.verdict),
        (
            "agent1:hash1",
            false,
            Some(IncidentStatus::Resolved),
            Some(AnalystVerdict::FalsePositive)
        )
    );
    assert_eq!(c.note, "[pagerduty] resolved by Ana: false positive — signed installer");
    assert_eq!(c.done, [WritebackStep::Status, WritebackStep::NoteStarted].into());
    assert_eq!(
        (p.value.attempts, p.value.last_error.as_deref(), p.value.next_attempt_at),
        (2, Some("S1 failed"), at(1_767_225_821))
    );
    let listed = store.list_pending("t1", None, 10).await.unwrap().items;
    assert_eq!(listed.len(), 2);
    let n = &listed[1].change;
    assert_eq!(
        (&n.change.action, &n.change.alert, n.change.platform),
        (
            &ChangeAction::Note { verdict: None },
            &AlertRef::PlatformId("Q1".into()),
            PlatformKind::Generic
        )
    );
    assert!(n.archived && n.status.is_none() && n.done.is_empty(), "{n:?}");
    let d = store.list_dead("t1", None, 10).await.unwrap().items.remove(0);
    assert_eq!(
        d.change.done,
        [
            WritebackStep::Status,
            WritebackStep::Superseded,
            WritebackStep::NoteStarted,
            WritebackStep::Note
        ]
        .into()
    );
    assert_eq!(d.change.status, Some(IncidentStatus::InProgress));
    // Written over (progress under a claim) and read again unchanged.
    let mut more = p.value.clone();
    more.change.done.insert(WritebackStep::Note);
    let claim = Claim::new("a", Duration::minutes(2), OffsetDateTime::now_utc());
    assert_eq!(
        store.update_pending("t1", &more, 4, Some(&claim)).await.unwrap(),
        Some(5)
    );
    assert_eq!(store.get_pending_entry("t1", "abc").await.unwrap().unwrap().value, more);
    // A damaged item is listed as corrupt, with its key, beside the readable ones.
    let bad = Item {
        pk: "TENANT#t1".into(),
        sk: "PENDING#bad".into(),
        data: r#"{"id":"bad","alert_key":"k","change":{"note":"x"},"attempts":0,"created_at":"2026-01-01T00:00:00Z","next_attempt_at":"2026-01-01T00:00:00Z"}"#.into(),
        ..Item::default()
    };
    assert!(store.table().put(&bad, &Cond::Always).await.unwrap());
    let entries = store.list_pending_entries("t1", None, 10).await.unwrap().items;
    let ids: Vec<_> = entries
        .iter()
        .map(|e| match e {
            Ok(e) => e.value.id.clone(),
            Err(StoreError::Corrupt { sk, what, .. }) => format!("corrupt {what} {sk}"),
            Err(other) => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, ["abc", "corrupt pending writeback PENDING#bad", "def"]);
}

pub async fn an_alert_lock_is_held_by_one_attempt_and_keeps_its_mark(store: Store) {
    let now = OffsetDateTime::now_utc();
    assert_eq!(store.alert_order("t1", "story-l").await.unwrap(), AlertOrder::default());
    let a = Claim::new("a", Duration::minutes(2), now);
    let b = Claim::new("b", Duration::minutes(2), now);
    let mut lock = store.lock_alert("t1", "story-l", &a, now).await.unwrap().unwrap();
    assert_eq!(store.lock_alert("t1", "story-l", &b, now).await.unwrap(), None, "held");
    assert!(store.mark_alert("t1", &mut lock, 200, "chg-2").await.unwrap());
    let order = store.alert_order("t1", "story-l").await.unwrap();
    assert!(order.supersedes(100, "chg-1") && order.supersedes(200, "chg-x"));
    assert!(!order.supersedes(200, "chg-2") && !order.supersedes(300, "chg-3"));
    assert!(store.unlock_alert("t1", &lock).await.unwrap());
    assert!(!store.unlock_alert("t1", &lock).await.unwrap(), "only once");
    // Free again, with its mark; a lapsed lock is taken over, and the loser's writes fail.
    let lock_b = store.lock_alert("t1", "story-l", &b, now).await.unwrap().unwrap();
    assert_eq!(lock_b.order.applied_micros, Some(200));
    let later = now + Duration::minutes(3);
    let c = Claim::new("c", Duration::minutes(2), later);
    let lock_c = store.lock_alert("t1", "story-l", &c, later).await.unwrap().unwrap();
    let mut stale = lock_b.clone();
    assert!(!store.mark_alert("t1", &mut stale, 900, "chg-9").await.unwrap());
    assert!(store.unlock_alert("t1", &lock_c).await.unwrap());
    // Concurrent lockers: one wins.
    let got = join_all((0..8).map(|n| {
        let store = store.clone();
        async move {
            let c = Claim::new(format!("w{n}"), Duration::minutes(2), later);
            store.lock_alert("t1", "story-m", &c, later).await.unwrap()
        }
    }))
    .await;
    assert_eq!(got.iter().filter(|l| l.is_some()).count(), 1);
}

/// The status and the verdict each keep their own mark: a comment's verdict marks the verdict
/// only, a status change without a verdict the status only. An ordering item written before the
/// verdict had a mark reads its status mark as the verdict's too.
pub async fn an_alerts_status_and_verdict_keep_their_own_marks(store: Store) {
    let now = OffsetDateTime::now_utc();
    let a = Claim::new("a", Duration::minutes(2), now);
    let mut lock = store.lock_alert("t1", "story-v", &a, now).await.unwrap().unwrap();
    let comment = lock.order.marked(300, "comment-3", false, true);
    assert!(store.mark_alert_fields("t1", &mut lock, comment).await.unwrap());
    let status_only = lock.order.marked(200, "status-2", true, false);
    assert!(store.mark_alert_fields("t1", &mut lock, status_only).await.unwrap());
    let order = store.alert_order("t1", "story-v").await.unwrap();
    assert_eq!(
        (order.applied_micros, order.verdict_micros, order.verdict_by.as_deref()),
        (Some(200), Some(300), Some("comment-3"))
    );
    assert!(order.verdict_supersedes(250, "status-25") && !order.supersedes(250, "status-25"));
    assert!(!order.verdict_supersedes(300, "comment-3") && !order.verdict_supersedes(400, "x"));
    assert!(store.unlock_alert("t1", &lock).await.unwrap());

    let legacy = Item {
        pk: "TENANT#t1".into(),
        sk: "ORDER#story-old".into(),
        data: r#"{"at":500,"by":"chg-5"}"#.into(),
        order: Some(500),
        version: 1,
        ..Item::default()
    };
    assert!(store.table().put(&legacy, &Cond::Always).await.unwrap());
    let order = store.alert_order("t1", "story-old").await.unwrap();
    assert_eq!(
        (order.verdict_micros, order.verdict_by.as_deref()),
        (Some(500), Some("chg-5"))
    );
}

/// Items as the code before issue 12 wrote them (every optional member field spelled out as
/// `null`, the watermark's ids inline in the checkpoint) still read, and are written over as
/// before. Members' statuses and verdicts as the code before issue 13 wrote them (strings: S1's
/// words, `unknown` for one it did not know; a STAR alert's member id) read as the S1 enums and
/// are written back as the same words; a publish dead letter as that code wrote it (its event a
/// free-form JSON value, a verdict S1 did not know spelled `Unknown`) reads as a typed event.
pub async fn items_written_by_earlier_versions_still_read(store: Store) {
    let story = r#"{"key":"agent1:hash1","id":"agent1:hash1@1767225600","window_start":"2026-01-01T00:00:00Z","status":"open","platform":"generic","platform_ref":"s1:x:agent1:hash1@1767225600","members":{"1500000000000000001":{"updated_at":"2026-01-01T00:00:01Z","digest":"d1","status":"unresolved","verdict":"undefined","written_status":null,"written_verdict":null,"publish_error":null},"1500000000000000002":{"updated_at":"2026-01-01T00:00:02Z","digest":"d2","status":"resolved","verdict":"false_positive","written_status":"resolved","written_verdict":"false_positive","publish_error":"HTTP 400: bad"},"1500000000000000003":{"updated_at":"2026-01-01T00:00:03Z","digest":"d3","status":"in_progress","verdict":"true_positive","written_status":"in_progress","written_verdict":"suspicious"},"alert:0195":{"updated_at":"2026-01-01T00:00:04Z","digest":"d4","status":"unknown","verdict":"unknown"}},"previous":["agent1:hash1@1759276800"]}"#;
    let checkpoint =
        r#"{"watermark":"2026-01-01T00:00:02Z","ids_at_watermark":["1500000000000000001","1500000000000000002"]}"#;
    let letter = r#"{"id":"1500000000000000002","kind":"threat.updated","alert_key":"s1:acme.sentinelone.net:agent1:hash1@1767225600","event_id":"msg_5b0c0e0d6b0c4e1a9e0f3c2d1b0a9f8e","updated_at":"2026-01-01T00:00:02Z","status":422,"error":"title too long","created_at":"2026-01-01T00:01:00Z","attempts":1,"replay_requested":true,"event":{"kind":"threat.updated","id":"msg_5b0c0e0d6b0c4e1a9e0f3c2d1b0a9f8e","tenant":"t1","severity":"high","threat":{"threat_id":"1500000000000000002","title":"x.exe on SRV-1","status":"resolved","verdict":"Unknown","confidence":"malicious","classification":"Trojan","console_url":"https://acme.sentinelone.net/incidents/threats/1500000000000000002/overview","detected_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:02Z","customer":{"external_id":"225494730938493804","name":"Acme"},"site":{"external_id":null,"name":null},"asset":{"external_id":"agent1","hostname":"SRV-1","os":"windows","ip":["10.0.0.7"]},"file":{"path":"C:\\x.exe","sha1":"hash1","sha256":null}},"story":{"id":"agent1:hash1@1767225600","alert_key":"s1:acme.sentinelone.net:agent1:hash1@1767225600","threat_count":2,"new_alert":false,"reopened":false,"all_resolved":false}}}"#;
    for (sk, data, version) in [
        ("STORY#agent1:hash1", story, 3),
        ("CURSOR#threats", checkpoint, 0),
        ("PUBDEAD#1500000000000000002", letter, 0),
        ("PUBREPLAY#1500000000000000002", r#"{"id":"1500000000000000002"}"#, 0),
    ] {
        let item = Item {
            pk: "TENANT#t1".into(),
            sk: sk.into(),
            data: data.into(),
            version,
            ..Item::default()
        };
        assert!(store.table().put(&item, &Cond::Always).await.unwrap());
    }
    let c = store.get_checkpoint("t1", "threats").await.unwrap().unwrap();
    assert_eq!(
        c.watermark,
        Some(OffsetDateTime::UNIX_EPOCH + Duration::seconds(1_767_225_602))
    );
    assert_eq!(c.ids_at_watermark, ["1500000000000000001", "1500000000000000002"]);
    let s = store.get_story("t1", "agent1:hash1").await.unwrap().unwrap();
    assert_eq!(s.version, 3);
    assert_eq!(s.value.previous, ["agent1:hash1@1759276800"]);
    let m1 = &s.value.members["1500000000000000001"];
    assert_eq!((m1.written_status, m1.publish_error.as_deref()), (None, None));
    let m2 = &s.value.members["1500000000000000002"];
    assert_eq!(
        (m2.written_verdict, m2.publish_error.as_deref()),
        (Some(AnalystVerdict::FalsePositive), Some("HTTP 400: bad"))
    );
    let words = |m: &MemberState| (m.status, m.verdict, m.written_status, m.written_verdict);
    assert_eq!(
        words(m2),
        (
            Some(IncidentStatus::Resolved),
            Some(AnalystVerdict::FalsePositive),
            Some(IncidentStatus::Resolved),
            Some(AnalystVerdict::FalsePositive)
        )
    );
    assert_eq!(
        words(&s.value.members["1500000000000000003"]),
        (
            Some(IncidentStatus::InProgress),
            Some(AnalystVerdict::TruePositive),
            Some(IncidentStatus::InProgress),
            Some(AnalystVerdict::Suspicious)
        )
    );
    let (alert_id, alert) = s.value.members.get_key_value("alert:0195").unwrap();
    assert_eq!(alert_id.star_alert_id(), Some("0195"));
    assert_eq!(
        words(alert),
        (Some(IncidentStatus::Unknown), Some(AnalystVerdict::Unknown), None, None)
    );
    let mut changed = s.value.clone();
    changed.members.get_mut("1500000000000000001").unwrap().status = Some(IncidentStatus::InProgress);
    assert!(store.put_story("t1", &changed, 3).await.unwrap());
    let again = store.get_story("t1", "agent1:hash1").await.unwrap().unwrap();
    assert_eq!((again.version, again.value), (4, changed));
    // Written back in the words it was read in (absent fields left out, as since issue 12).
    let raw = store
        .table()
        .get("TENANT#t1", "STORY#agent1:hash1")
        .await
        .unwrap()
        .unwrap();
    let members = &serde_json::from_str::<serde_json::Value>(&raw.data).unwrap()["members"];
    assert_eq!(
        members,
        &serde_json::json!({
            "1500000000000000001": {"updated_at": "2026-01-01T00:00:01Z", "digest": "d1", "status": "in_progress", "verdict": "undefined"},
            "1500000000000000002": {"updated_at": "2026-01-01T00:00:02Z", "digest": "d2", "status": "resolved", "verdict": "false_positive", "written_status": "resolved", "written_verdict": "false_positive", "publish_error": "HTTP 400: bad"},
            "1500000000000000003": {"updated_at": "2026-01-01T00:00:03Z", "digest": "d3", "status": "in_progress", "verdict": "true_positive", "written_status": "in_progress", "written_verdict": "suspicious"},
            "alert:0195": {"updated_at": "2026-01-01T00:00:04Z", "digest": "d4", "status": "unknown", "verdict": "unknown"},
        })
    );

    // The publish dead letter: listed, and its event is the one that was refused.
    let listed = store.list_publish_dead("t1", None, 10).await.unwrap().items;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let l = &listed[0];
    assert_eq!(
        (l.id.threat_id(), l.status, l.replay_requested),
        (Some("1500000000000000002"), 422, true)
    );
    assert_eq!(
        (l.event.kind, l.event.id.as_str(), l.event.story.alert_key.as_str()),
        (
            s1_shared::platform::EventKind::Updated,
            "msg_5b0c0e0d6b0c4e1a9e0f3c2d1b0a9f8e",
            "s1:acme.sentinelone.net:agent1:hash1@1767225600"
        )
    );
    assert_eq!(
        (l.event.threat.status, l.event.threat.verdict),
        (Some(IncidentStatus::Resolved), Some(AnalystVerdict::Unknown))
    );
    assert_eq!(
        (
            l.event.threat.asset.ip.as_slice(),
            l.event.story.platform_ref.as_deref()
        ),
        (&["10.0.0.7".to_owned()][..], None)
    );
    assert_eq!(
        store.publish_replays("t1", 10).await.unwrap(),
        listed,
        "its replay mark"
    );
}

/// A lease's generation fences writes: once another run took the lease (after ours lapsed, or
/// the same owner id took it again), the old holder's checkpoint, story and asset writes fail
/// with `LeaseLost` and write nothing; the holder's own writes renew it.
pub async fn writes_are_fenced_by_the_lease_generation(store: Store) {
    let now = OffsetDateTime::now_utc();
    let ttl = LEASE_TTL;
    let first = store
        .take_lease("t1", "poll", "run-a", ttl, now)
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .take_lease("t1", "poll", "run-b", ttl, now)
            .await
            .unwrap()
            .is_none()
    );
    let a = store.fenced(first.clone());
    let c = Checkpoint {
        watermark: Some(now),
        ids_at_watermark: vec!["1".into()],
    };
    a.put_checkpoint("t1", "threats", &c).await.unwrap();
    assert_eq!(
        a.put_stories("t1", &[(story("k1", 3), 0, false)]).await.unwrap(),
        Vec::<usize>::new()
    );
    let asset = AssetRecord {
        kind: AssetKind::Asset,
        id: "agent-1".into(),
        digest: "d1".into(),
        platform_ref: None,
        active: true,
    };
    a.put_assets("t1", std::slice::from_ref(&asset)).await.unwrap();
    // Each fenced write renewed the lease: it runs a full time-to-live from the write.
    let held = store.table().get("TENANT#t1", "LEASE#poll").await.unwrap().unwrap();
    assert!(held.until.unwrap() >= ((now + ttl).unix_timestamp_nanos() / 1_000_000) as i64);

    // Our lease lapses unseen; another run takes it.
    let later = OffsetDateTime::now_utc() + ttl + Duration::seconds(1);
    let second = store
        .take_lease("t1", "poll", "run-b", ttl, later)
        .await
        .unwrap()
        .unwrap();
    let lost = |r: Result<(), StoreError>| matches!(r, Err(StoreError::LeaseLost { .. }));
    let stale = Checkpoint {
        watermark: Some(now - Duration::hours(1)),
        ids_at_watermark: vec![],
    };
    assert!(lost(a.put_checkpoint("t1", "threats", &stale).await));
    let mut changed = story("k1", 4);
    changed.status = StoryStatus::Closed;
    assert!(lost(
        a.put_stories("t1", &[(changed.clone(), 1, false)]).await.map(drop)
    ));
    assert!(lost(a.put_stories("t1", &[(story("k2", 1), 0, true)]).await.map(drop)));
    assert!(lost(a.put_assets("t1", std::slice::from_ref(&asset)).await));
    assert!(
        !store.renew(&first, later).await.unwrap(),
        "the old holder cannot renew"
    );
    assert!(!store.give_back(&first).await.unwrap(), "nor give it back");
    assert_eq!(store.get_checkpoint("t1", "threats").await.unwrap(), Some(c));
    let s = store.get_story("t1", "k1").await.unwrap().unwrap();
    assert_eq!((s.version, s.value.status), (1, StoryStatus::Open));
    assert!(store.get_story("t1", "k2@0").await.unwrap().is_none());

    // The new holder writes; the same owner id taking the lease again fences its earlier run too.
    let b = store.fenced(second.clone());
    assert_eq!(
        b.put_stories("t1", &[(changed, 1, false)]).await.unwrap(),
        Vec::<usize>::new()
    );
    let again = store
        .take_lease("t1", "poll", "run-b", ttl, later)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(again.generation, second.generation);
    assert!(lost(b.put_checkpoint("t1", "threats", &stale).await));
    assert!(
        store
            .fenced(again.clone())
            .put_checkpoint("t1", "threats", &stale)
            .await
            .is_ok()
    );
    assert!(store.give_back(&again).await.unwrap());
    assert!(
        store
            .take_lease("t1", "poll", "run-c", ttl, now)
            .await
            .unwrap()
            .is_some(),
        "given back means free"
    );
}

/// Publish dead letters: one per threat (a later one replaces it), listed, replay marks listed
/// with their letters, a refusal on replay keeps the letter without its mark, retiring removes
/// both; an id that could not be a key part is stored all the same.
pub async fn publish_dead_letters_are_kept_marked_and_retired(store: Store) {
    let now = OffsetDateTime::now_utc();
    let letter = |id: &str, status: u16| PublishDeadLetter {
        id: id.into(),
        kind: "threat.created".into(),
        alert_key: "s1:x:a:h@1".into(),
        event_id: format!("msg_{id}"),
        updated_at: Some(now),
        status,
        error: "refused".into(),
        created_at: now,
        attempts: 1,
        replay_requested: false,
        event: ThreatEvent::for_test("t1", id),
    };
    let odd = "alert:odd#id";
    store
        .put_publish_dead("t1", &[letter("123", 400), letter(odd, 413)])
        .await
        .unwrap();
    store.put_publish_dead("t1", &[letter("123", 422)]).await.unwrap();
    store.put_publish_dead("t2", &[letter("999", 400)]).await.unwrap();
    let listed = store.list_publish_dead("t1", None, 10).await.unwrap().items;
    let mut statuses: Vec<(String, u16)> = listed.iter().map(|l| (l.id.to_string(), l.status)).collect();
    statuses.sort();
    assert_eq!(statuses, [("123".to_owned(), 422), (odd.to_owned(), 413)]);
    assert_eq!(store.get_publish_dead("t1", odd).await.unwrap().unwrap().status, 413);
    assert!(store.publish_replays("t1", 10).await.unwrap().is_empty());

    assert!(store.request_publish_replay("t1", odd).await.unwrap().replay_requested);
    store.request_publish_replay("t1", "123").await.unwrap();
    let asked = store.publish_replays("t1", 10).await.unwrap();
    assert_eq!(asked.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(), ["123", odd]);
    assert!(matches!(
        store.request_publish_replay("t1", "404").await,
        Err(StoreError::Invalid(_))
    ));

    let mut again = asked[0].clone();
    again.replay_requested = false;
    again.attempts = 2;
    store.refused_again("t1", &again).await.unwrap();
    assert_eq!(
        store
            .publish_replays("t1", 10)
            .await
            .unwrap()
            .iter()
            .map(|l| l.id.as_str())
            .collect::<Vec<_>>(),
        [odd]
    );
    assert_eq!(store.get_publish_dead("t1", "123").await.unwrap(), Some(again));
    store.retire_publish_dead("t1", &[odd.into()]).await.unwrap();
    assert!(store.publish_replays("t1", 10).await.unwrap().is_empty());
    assert_eq!(store.list_publish_dead("t1", None, 10).await.unwrap().items.len(), 1);
    assert_eq!(store.list_publish_dead("t2", None, 10).await.unwrap().items.len(), 1);
}

/// Tenant items as the code before typed platform settings wrote them (a `{kind, settings}`
/// object with free-form settings, `mapping_overrides: null` or an object) still read, with
/// every setting where it was.
pub async fn tenants_written_before_typed_settings_still_read(store: Store) {
    use s1_shared::platform::PlatformConfig;
    let generic = r#"{"id":"g1","name":"Acme","enabled":true,"console_url":"https://acme.sentinelone.net","token":{"kind":"secrets_manager","secret_id":"s1-bridge/acme/s1"},"account_ids":[],"site_ids":["225494730938493804"],"platform":{"kind":"generic","settings":{"url":"https://hooks.example.com/s1","secret":{"kind":"secrets_manager","secret_id":"s1-bridge/acme/hook"},"inbound_secrets":[{"kind":"secrets_manager","secret_id":"s1-bridge/acme/inbound"}],"assets":{"no_create":true,"default_site":{"customer":"Unassigned","site":"Main"}}}},"grouping":"threat","poll_cloud_alerts":true,"mapping_overrides":{"states":{"triage":"in_progress"},"close_reasons":{"duplicate":"false_positive"}},"token_alert_days":[14,1]}"#;
    let pagerduty = r#"{"id":"p1","name":"","enabled":false,"console_url":"https://acme.sentinelone.net","token":{"kind":"env","var":"S1"},"account_ids":[],"site_ids":[],"platform":{"kind":"pagerduty","settings":{"routing_key":{"kind":"env","var":"PD"},"events_url":"https://events.eu.pagerduty.com/v2/enqueue","events_per_minute":60}},"grouping":"story","poll_cloud_alerts":false,"mapping_overrides":null,"token_alert_days":[30,14,7,3,1,0]}"#;
    for (id, data) in [("g1", generic), ("p1", pagerduty)] {
        let item = Item {
            pk: format!("TENANT#{id}"),
            sk: "CONFIG".into(),
            data: data.into(),
            gsi1pk: Some("TENANTS".into()),
            gsi1sk: Some(id.into()),
            ..Item::default()
        };
        assert!(store.table().put(&item, &Cond::Always).await.unwrap());
    }
    let g = store.get_tenant("g1").await.unwrap().unwrap();
    let PlatformConfig::Generic(s) = &g.platform else {
        panic!("{g:?}")
    };
    assert_eq!(s.url, "https://hooks.example.com/s1");
    assert_eq!(s.inbound_secrets.len(), 1);
    let assets = s.assets.as_deref().unwrap();
    assert!(assets.no_create && assets.default_site.is_some());
    assert_eq!((g.grouping, g.poll_cloud_alerts), (Grouping::Threat, true));
    assert_eq!(
        g.mapping_overrides.states.len() + g.mapping_overrides.close_reasons.len(),
        2
    );
    assert_eq!(g.token_alert_days, [14, 1]);
    let p = store.get_tenant("p1").await.unwrap().unwrap();
    let PlatformConfig::PagerDuty(s) = &p.platform else {
        panic!("{p:?}")
    };
    assert_eq!(
        (s.events_url.as_str(), s.events_per_minute.get()),
        ("https://events.eu.pagerduty.com/v2/enqueue", 60)
    );
    assert!(p.mapping_overrides.is_empty() && !p.enabled);
    assert_eq!(store.list_tenants().await.unwrap().len(), 2);
    // Written back and read again unchanged.
    store.put_tenant(&g).await.unwrap();
    assert_eq!(store.get_tenant("g1").await.unwrap().unwrap(), g);
}

/// Items as the code of main at c83c615 wrote them (before the model moved below the store:
/// tenants of all three platforms, a checkpoint and an in-flight page, an open and a closed
/// story, a pending writeback), captured byte for byte in `tests/fixtures/items/`: each reads
/// back, and encodes again to the same JSON, so nothing was renamed on the way.
pub async fn items_written_before_the_model_moved_still_read(store: Store) {
    let captured: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("../fixtures/items/main-c83c615.json")).expect("the fixture is JSON");
    let mut data = std::collections::BTreeMap::new();
    for c in &captured {
        let text = |k: &str| c[k].as_str().map(str::to_owned);
        let item = Item {
            pk: text("pk").unwrap(),
            sk: text("sk").unwrap(),
            data: text("data").unwrap(),
            version: c["version"].as_u64().unwrap(),
            gsi1pk: text("gsi1pk"),
            gsi1sk: text("gsi1sk"),
            ..Item::default()
        };
        data.insert((item.pk.clone(), item.sk.clone()), item.data.clone());
        assert!(store.table().put(&item, &Cond::Always).await.unwrap());
    }
    assert_eq!(data.len(), 8, "the fixture holds every kind of record");
    let same = |pk: &str, sk: &str, read: serde_json::Value| {
        let stored: serde_json::Value = serde_json::from_str(&data[&(pk.to_owned(), sk.to_owned())]).unwrap();
        assert_eq!(read, stored, "{pk} {sk} reads and encodes as it was written");
    };

    let tenants = store.list_tenants().await.unwrap();
    assert_eq!(tenants.len(), 3, "{tenants:?}");
    for t in &tenants {
        same(&format!("TENANT#{}", t.id), "CONFIG", serde_json::to_value(t).unwrap());
        let kind = [("g1", "generic"), ("p1", "pagerduty"), ("h1", "halo")];
        assert!(kind.contains(&(t.id.as_str(), t.platform.kind().as_str())), "{}", t.id);
    }
    let g = store.get_tenant("g1").await.unwrap().unwrap();
    assert_eq!((g.grouping, g.status_notices), (Grouping::Threat, true));
    let h = store.get_tenant("h1").await.unwrap().unwrap();
    assert_eq!(
        (h.max_in_flight, h.poll_cloud_alerts, h.token_alert_days.as_slice()),
        (4, true, &[7, 1][..])
    );

    let (checkpoint, pages) = store.get_checkpoint_and_in_flight("g1", "threats").await.unwrap();
    let checkpoint = checkpoint.unwrap();
    assert_eq!(checkpoint.ids_at_watermark.len(), 2);
    same(
        "TENANT#g1",
        "CURSOR#threats",
        serde_json::to_value(&checkpoint).unwrap(),
    );
    assert_eq!(pages.len(), 1, "the page the checkpoint has not passed");
    same(
        "TENANT#g1",
        "INFLIGHT#threats#1",
        serde_json::to_value(&pages[0]).unwrap(),
    );

    for (key, status, platform) in [
        ("agent1:hash1", StoryStatus::Open, "pagerduty"),
        ("agent2:hash2", StoryStatus::Closed, "halo"),
    ] {
        let s = store.get_story("g1", key).await.unwrap().unwrap();
        assert_eq!((s.version, s.value.status), (1, status));
        assert_eq!(
            s.value.platform.as_ref().map(ToString::to_string).as_deref(),
            Some(platform)
        );
        same(
            "TENANT#g1",
            &format!("STORY#{key}"),
            serde_json::to_value(&s.value).unwrap(),
        );
    }
    let by_ref = store
        .story_by_platform_ref("g1", PlatformKind::PagerDuty, "Q0RIJJZL24RC6W")
        .await
        .unwrap();
    assert_eq!(
        by_ref.map(|s| s.value.key).as_deref(),
        Some("agent1:hash1"),
        "found by its platform reference"
    );

    let pending = store.get_pending_entry("g1", "c0ffee").await.unwrap().unwrap().value;
    assert_eq!(
        (pending.attempts, pending.change.status),
        (2, Some(IncidentStatus::Resolved))
    );
    assert!(pending.change.done.contains(&WritebackStep::NoteStarted));
    same("TENANT#g1", "PENDING#c0ffee", serde_json::to_value(&pending).unwrap());
}

/// Runs the whole contract for one backend. `$make` is an async expression yielding a fresh,
/// empty `Store`.
#[macro_export]
macro_rules! store_contract {
    ($make:expr) => {
        $crate::store_contract!(@tests $make;
            tenants_round_trip_and_list_in_order,
            checkpoints_are_per_tenant_and_name,
            batch_writes_and_reads_beyond_the_api_limits,
            story_writes_are_optimistic,
            a_platform_reference_finds_only_its_own_tenants_story,
            many_stories_write_in_transactions_and_report_conflicts,
            the_checkpoint_goes_in_with_the_stories_only_when_all_went_in,
            one_of_many_concurrent_writers_gets_a_lease,
            a_webhook_event_is_accepted_exactly_once,
            ttl_marked_items_read_as_absent,
            pending_writebacks_move_to_dead_letters_and_back,
            pending_writebacks_are_claimed_and_never_brought_back,
            an_alert_lock_is_held_by_one_attempt_and_keeps_its_mark,
            an_alerts_status_and_verdict_keep_their_own_marks,
            an_applied_writeback_ends_in_one_transaction,
            pending_written_before_typed_changes_still_read,
            assets_and_token_state_round_trip,
            a_corrupt_item_is_reported_with_its_key,
            a_100k_item_tenant_scans_page_by_page,
            items_written_by_earlier_versions_still_read,
            tenants_written_before_typed_settings_still_read,
            items_written_before_the_model_moved_still_read,
            writes_are_fenced_by_the_lease_generation,
            publish_dead_letters_are_kept_marked_and_retired,
        );
    };
    (@tests $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store = $make.await;
                $crate::store_contract::$name(store).await;
            }
        )+
    };
}

/// A store over a fresh embedded database in memory.
pub async fn embedded_in_memory() -> Store {
    Store::new(Arc::new(EmbeddedTable::in_memory().expect("in-memory redb")))
}
