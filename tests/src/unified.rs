//! The unified (UAM) source's guarantees, through the simulator's GraphQL endpoint over HTTP
//! and a receiver that de-duplicates on `webhook-id`; each body runs on both stores
//! (`poll_unified.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use s1_bridge_sim::{FaultKind, FaultRule, SimConfig};
use s1_shared::store::{ItemTable, Source};
use s1_shared::usecase::poll_threats::{Outcome, UNIFIED_CHECKPOINT};
use serde_json::Value;

use crate::guarantees::ids_per_version;
use crate::poll::{FlakyTable, PollHarness};

const GRAPHQL: &str = "/unifiedalerts/graphql";

/// A console with `threats` threats and `unified` unified alerts (every `twin_every`-th an EDR
/// twin of a threat; none when 0), its tenant reading `sources`.
async fn harness(
    table: Arc<dyn ItemTable>,
    threats: usize,
    unified: usize,
    twin_every: usize,
    sources: &[Source],
) -> PollHarness {
    let h = PollHarness::start(
        SimConfig {
            threats,
            agents: 100,
            cloud_alerts: 0,
            unified_alerts: unified,
            unified_threat_every: twin_every,
            ..SimConfig::default()
        },
        table,
    )
    .await;
    h.read_only(sources).await;
    h
}

/// Every event's member (`s1.threat_id`: the threat for a threat or its EDR twin, the UAM alert
/// id otherwise) with how many `threat.created` the receiver took for it.
fn created_per_member(h: &PollHarness) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for e in h.events("threat.created") {
        *out.entry(e["data"]["s1"]["threat_id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    out
}

/// Asserts the receiver took one `threat.created` for each of `n` members.
fn each_created_once(h: &PollHarness, n: usize) {
    let created = created_per_member(h);
    let told_twice: Vec<_> = created.iter().filter(|(_, n)| **n > 1).collect();
    assert!(told_twice.is_empty(), "members told twice: {told_twice:?}");
    assert_eq!(created.len(), n);
}

/// Asserts no (member, version) went out under two webhook ids.
fn one_id_per_version(h: &PollHarness) {
    for (version, ids) in ids_per_version(&h.receiver) {
        assert_eq!(ids.len(), 1, "{version:?} went out under {ids:?}");
    }
}

/// What [`each_detection_once`] found: the console's unified alerts and the threat ids their EDR
/// twins name.
struct Detections {
    alerts: Vec<Value>,
    twins: HashSet<String>,
}

/// Polls `h` (threats and unified alerts, `twins` of the alerts EDR twins of threats) until a run
/// completes, and asserts each of the `detections` is one story member that reached the receiver
/// once (one `threat.created` by detection id, never repeated at the wire): a twin as its threat,
/// never as its UAM alert too; the next run sends nothing.
async fn each_detection_once(h: &PollHarness, detections: usize, twins: usize) -> Detections {
    let alerts = h.sim.control().unified_alert_ids().await.unwrap();
    let twin_ids: HashSet<String> = alerts
        .iter()
        .filter(|a| a["source"] == "edr")
        .filter_map(|a| a["externalId"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(twin_ids.len(), twins, "the twins: {:?}", &alerts[..3]);
    // The simulator's twins are all NEW and undefined, and later than their threats: a twin of a
    // threat the console already moved on is, by the later reading, one update (once).
    let client = crate::client_for(&h.sim, s1_bridge_sim::DEFAULT_TOKEN, crate::fast_retry_options());
    let threats = crate::items(client.threats(&s1_shared::s1::ThreatQuery::default()))
        .await
        .unwrap();
    let moved_on = threats
        .iter()
        .filter(|t| twin_ids.contains(&t.id))
        .filter(|t| {
            (
                t.threat_info.incident_status.map(|s| s.as_str()),
                t.threat_info.analyst_verdict.map(|v| v.as_str()),
            ) != (Some("unresolved"), Some("undefined"))
        })
        .count() as u64;
    let r = h.poll().await.tenants.remove(0);
    let detections_n = detections as u64;
    assert_eq!(
        (r.outcome, r.new, r.changed, r.published),
        (Outcome::Completed, detections_n, moved_on, detections_n + moved_on),
        "{r:?}"
    );
    each_created_once(h, detections);
    let created = created_per_member(h);
    assert!(
        twin_ids.iter().all(|t| created.contains_key(t)),
        "a twin is its threat's member"
    );
    let twin_alerts: Vec<&str> = alerts
        .iter()
        .filter(|a| a["source"] == "edr" && a["externalId"].is_string())
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert!(
        twin_alerts.iter().all(|a| !created.contains_key(*a)),
        "a twin was told as its UAM alert too"
    );
    let repeated = h.receiver.deliveries().iter().filter(|d| d.duplicate).count();
    assert_eq!(repeated, 0, "a delivery went out twice");
    // The non-twins say where they came from.
    let unified: Vec<Value> = h
        .events("threat.created")
        .into_iter()
        .filter(|e| e["data"]["s1"]["source"] == "unified")
        .collect();
    assert_eq!(unified.len(), alerts.len() - twins);
    assert!(
        unified.iter().all(|e| e["data"]["s1"]["product"].is_string()),
        "{}",
        unified[0]
    );
    let again = h.poll().await.tenants.remove(0);
    assert_eq!((again.outcome, again.published), (Outcome::Completed, 0), "{again:?}");
    one_id_per_version(h);
    one_story_each(h, detections, &twin_ids, &twin_alerts).await;
    Detections {
        alerts,
        twins: twin_ids,
    }
}

/// The stored stories hold `detections` members, none in two stories; each twin is there as its
/// threat and never as its UAM alert.
async fn one_story_each(h: &PollHarness, detections: usize, twins: &HashSet<String>, twin_alerts: &[&str]) {
    let mut story_of: HashMap<String, String> = HashMap::new();
    let mut next = None;
    loop {
        let page = h
            .store
            .table()
            .query("TENANT#acme", "STORY#", next.as_deref(), 500)
            .await
            .unwrap();
        for item in &page.items {
            let story: s1_shared::domain::StoryRecord = serde_json::from_str(&item.data).unwrap();
            for m in story.members.keys() {
                if let Some(other) = story_of.insert(m.to_string(), item.sk.clone()) {
                    panic!("member {m} in two stories: {other} and {}", item.sk);
                }
            }
        }
        next = page.next;
        if next.is_none() {
            break;
        }
    }
    assert_eq!(story_of.len(), detections, "one member per detection");
    assert!(
        twins.iter().all(|t| story_of.contains_key(t)),
        "a twin's threat is a member"
    );
    let as_alert: Vec<&&str> = twin_alerts
        .iter()
        .filter(|a| story_of.contains_key(&s1_shared::domain::MemberId::unified(a).to_string()))
        .collect();
    assert!(as_alert.is_empty(), "twins stored as their UAM alerts: {as_alert:?}");
}

/// Threats and unified alerts read together, a third of the unified alerts the same detections
/// as threats: each detection is one member and reaches the platform once, whichever listing
/// reads it; the next run sends nothing.
pub async fn threats_and_unified_together_send_each_detection_once(table: Arc<dyn ItemTable>) {
    let h = harness(table, 150, 150, 3, &[Source::Threats, Source::Unified]).await;
    let Detections { alerts, twins } = each_detection_once(&h, 250, 50).await;
    let moved_on = h.events("threat.updated").len();

    // Resolved in UAM: the threat's one member is updated once, and the other listing does not
    // set it back.
    let twin = alerts
        .iter()
        .find(|a| a["externalId"].as_str().is_some_and(|x| twins.contains(x)))
        .unwrap();
    let change = s1_bridge_sim::UnifiedAlertChange {
        status: Some("RESOLVED".into()),
        analyst_verdict: Some("TRUE_POSITIVE_MALWARE".into()),
        ..Default::default()
    };
    h.sim
        .control()
        .change_unified_alert(twin["id"].as_str().unwrap(), &change)
        .await
        .unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 1), "{r:?}");
    let updated = h.events("threat.updated");
    assert_eq!(updated.len(), moved_on + 1);
    let last = &updated[updated.len() - 1]["data"]["s1"];
    assert_eq!(last["threat_id"], twin["externalId"]);
    // The console keeps a threat and its EDR alert in step (the simulator too): whichever
    // listing the run reads first tells it, once.
    assert_eq!(last["status"], "resolved");
    assert!(last["source"] == "threats" || last["source"] == "unified", "{last}");
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 0), "{r:?}");
}

/// Issue 26: threats and unified alerts on together for 10,000 detections, a third of them
/// (3,333) the same detection in both listings (6,667 threats, 6,666 unified alerts, every
/// second an EDR twin): each detection is one story member and reaches the platform once.
pub async fn ten_thousand_detections_a_third_in_both_listings_are_each_one_member_told_once(table: Arc<dyn ItemTable>) {
    let h = harness(table, 6_667, 6_666, 2, &[Source::Threats, Source::Unified]).await;
    each_detection_once(&h, 10_000, 3_333).await;
}

/// A kill while unified deliveries are in flight (mid-page: the platform took them, the run did
/// not hear): the next run repeats only that page's deliveries, under the same webhook ids.
pub async fn a_kill_with_unified_deliveries_in_flight_repeats_only_its_page(table: Arc<dyn ItemTable>) {
    let h = harness(table, 0, 250, 0, &[Source::Unified]).await;
    crate::poll::a_kill_with_deliveries_in_flight_repeats_only_its_page(h, 100, 250).await;
}

/// Page 1's commit (its stories and the unified checkpoint, one transaction) is held while page 2
/// goes out; the platform takes page 2's first events and the process dies before it hears them
/// or the commit lands. The next run repeats pages 1 and 2 under their webhook ids: every alert
/// reaches the receiver once, and nothing is lost.
pub async fn a_kill_in_the_unified_commit_window_repeats_under_the_same_ids(table: Arc<dyn ItemTable>) {
    let flaky = FlakyTable::new(table);
    let mut h = harness(flaky.clone(), 0, 250, 0, &[Source::Unified]).await;
    flaky.hold_story_writes(true);
    let (plain, mut hung) = crate::poll::hang_once_taken(&mut h, 100);
    // Page 2's first three events are taken; the process dies, its commit never made.
    let what = "page 2 goes out while page 1's commit is held";
    crate::poll::kill_once_taken(&h, &mut hung, 3, what, async {}).await;
    flaky.hold_story_writes(false);
    let checkpoint = h.store.get_checkpoint("acme", UNIFIED_CHECKPOINT).await.unwrap();
    assert!(checkpoint.is_none(), "page 1's commit never landed: {checkpoint:?}");
    let taken = crate::poll::settled_deliveries(&h).await;
    assert!(taken >= 103, "page 1 and page 2's first events were taken: {taken}");

    h.deps.platforms = plain;
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 250), "{r:?}");
    each_created_once(&h, 250);
    one_id_per_version(&h);
    let repeated = h.receiver.deliveries().iter().filter(|d| d.duplicate).count();
    assert_eq!(
        repeated, taken,
        "everything taken before the kill came again under its id"
    );
    let again = h.poll().await.tenants.remove(0);
    assert_eq!((again.outcome, again.published), (Outcome::Completed, 0), "{again:?}");
}

/// A second run (another process) starts while the first one's page-1 commit is held: the lease
/// keeps it out, it sends nothing; once the commit lands, the first run completes, and every
/// alert reached the receiver once.
pub async fn a_run_racing_a_held_unified_commit_is_kept_out_and_sends_nothing(table: Arc<dyn ItemTable>) {
    use s1_shared::usecase::poll_threats::{Selection, run};
    use std::time::{Duration, Instant};
    let flaky = FlakyTable::new(table);
    let h = harness(flaky.clone(), 0, 250, 0, &[Source::Unified]).await;
    flaky.hold_story_writes(true);
    let first = run(&h.deps, &Selection::All, Instant::now() + Duration::from_secs(600));
    let second = async {
        crate::writeback::wait_until("page 1 went out", || async { h.receiver.deliveries().len() >= 100 }).await;
        let mut other = h.deps.clone();
        other.owner = "another-process".into();
        let r = tokio::time::timeout(
            Duration::from_secs(60),
            run(&other, &Selection::All, Instant::now() + Duration::from_secs(600)),
        )
        .await;
        flaky.hold_story_writes(false);
        r.expect("the second run was not kept out: it waited on the first one's held commit")
            .unwrap()
    };
    let (first, second) = tokio::join!(first, second);
    let second = &second.tenants[0];
    assert_eq!((second.outcome, second.published), (Outcome::Skipped, 0), "{second:?}");
    let first = &first.unwrap().tenants[0];
    assert_eq!((first.outcome, first.published), (Outcome::Completed, 250), "{first:?}");
    each_created_once(&h, 250);
    assert_eq!(h.receiver.deliveries().len(), 250, "nothing sent twice");
}

/// A unified page whose commit fails, and a later page's stories that fail to save: the next
/// runs repeat what was not recorded under the same webhook ids, so every alert version reaches
/// the platform once and none is lost.
pub async fn a_unified_backlog_with_failed_commits_reaches_the_platform_once(table: Arc<dyn ItemTable>) {
    let flaky = FlakyTable::new(table);
    let h = harness(flaky.clone(), 0, 250, 0, &[Source::Unified]).await;
    // Page 2's checkpoint fails; page 3 was sent meanwhile (and is not recorded either).
    flaky.fail_puts_after("CURSOR#", 1, 1);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    flaky.fail_story_writes(1);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    each_created_once(&h, 250);
    one_id_per_version(&h);
    let checkpoint = h
        .store
        .get_checkpoint("acme", UNIFIED_CHECKPOINT)
        .await
        .unwrap()
        .unwrap();
    assert!(checkpoint.watermark.is_some());
    let again = h.poll().await.tenants.remove(0);
    assert_eq!((again.outcome, again.published), (Outcome::Completed, 0), "{again:?}");
}

/// GraphQL errors with HTTP 200 (no data, then partial data) fail the run with what UAM said
/// and hold the checkpoint: never read as an empty page, nothing lost; UAM's throttling is
/// waited out within the run.
pub async fn graphql_errors_fail_the_run_and_lose_nothing(table: Arc<dyn ItemTable>) {
    let h = harness(table, 0, 250, 0, &[Source::Unified]).await;
    let control = h.sim.control();
    let error = FaultKind::GraphqlError {
        code: "INTERNAL_SERVER_ERROR".into(),
        message: Some("the alerts surface failed".into()),
    };
    // The console's link shape is settled first (cached per console address, process-wide: a
    // port an earlier test used may have left it), so the poll's requests are the pages alone
    // and the fault meets the second page.
    let client = crate::client_for(&h.sim, s1_bridge_sim::DEFAULT_TOKEN, crate::fast_retry_options());
    client.learn_alert_link("no-such-alert").await;
    control
        .add_fault(&FaultRule::new(GRAPHQL, error, 1).after(1))
        .await
        .unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Failed, 100), "{r:?}");
    let why = r.error.unwrap();
    assert!(
        why.contains("GraphQL errors") && why.contains("the alerts surface failed"),
        "{why}"
    );
    control
        .add_fault(&FaultRule::new(GRAPHQL, FaultKind::PartialData, 1))
        .await
        .unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Failed, 0), "{r:?}");
    assert!(r.error.as_deref().unwrap().contains("partial data"), "{r:?}");
    let throttled = FaultKind::GraphqlError {
        code: "SURFACE_TOO_MANY_REQUESTS".into(),
        message: None,
    };
    control.add_fault(&FaultRule::new(GRAPHQL, throttled, 2)).await.unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 150), "{r:?}");
    each_created_once(&h, 250);
    one_id_per_version(&h);
}

/// A tenant on threats switches to unified: the unified listing starts where the threats
/// checkpoint stood, so the twins of threats already told are not told again, and a later
/// change in UAM comes through.
pub async fn switching_from_threats_to_unified_replays_nothing(table: Arc<dyn ItemTable>) {
    let h = harness(table, 150, 150, 3, &[Source::Threats]).await;
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 150), "{r:?}");
    let watermark = h
        .store
        .get_checkpoint("acme", "threats")
        .await
        .unwrap()
        .unwrap()
        .watermark
        .unwrap();
    h.read_only(&[Source::Unified]).await;
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    // Only alerts updated at or after the watermark were read; no threat was told again.
    let told_again: Vec<String> = h
        .events("threat.created")
        .iter()
        .skip(150)
        .filter(|e| e["data"]["s1"]["source"] != "unified")
        .map(|e| e["data"]["s1"]["threat_id"].to_string())
        .collect();
    assert!(told_again.is_empty(), "{told_again:?}");
    assert!(h.events("threat.updated").is_empty());
    let client = crate::client_for(&h.sim, s1_bridge_sim::DEFAULT_TOKEN, crate::fast_retry_options());
    let listed = crate::items(client.unified_alerts(&s1_shared::s1::UnifiedAlertQuery::default()))
        .await
        .unwrap();
    let expected = listed
        .iter()
        .filter(|a| a.updated_at.is_some_and(|u| u >= watermark))
        .filter(|a| !(a.is_endpoint() && a.external_id.is_some()))
        .count() as u64;
    assert_eq!(r.published, expected, "{r:?}");
    assert!(r.fetched < 150, "the history before the watermark is not read: {r:?}");
    // A change in UAM to a threat already told comes through once, as its update.
    let twin = listed
        .iter()
        .find(|a| a.is_endpoint() && a.external_id.is_some())
        .unwrap();
    let change = s1_bridge_sim::UnifiedAlertChange {
        status: Some("IN_PROGRESS".into()),
        ..Default::default()
    };
    h.sim.control().change_unified_alert(&twin.id, &change).await.unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 1), "{r:?}");
    let updated = h.events("threat.updated");
    assert_eq!(updated.len(), 1);
    assert_eq!(
        updated[0]["data"]["s1"]["threat_id"].as_str(),
        twin.external_id.as_deref()
    );
    assert_eq!(updated[0]["data"]["s1"]["status"], "in_progress");
}

/// 250 unified alerts sharing one `updatedAt` (a bulk action in UAM), across three pages: each
/// reaches the platform once; the next run reads them again from the inclusive watermark and
/// sends nothing; newer ones still flow.
pub async fn unified_alerts_sharing_one_instant_across_pages_are_sent_once(table: Arc<dyn ItemTable>) {
    let h = PollHarness::start(
        SimConfig {
            threats: 0,
            cloud_alerts: 0,
            unified_alerts: 250,
            unified_threat_every: 0,
            same_updated_at: 250,
            ..SimConfig::default()
        },
        table,
    )
    .await;
    h.read_only(&[Source::Unified]).await;
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.pages, r.published), (Outcome::Completed, 3, 250), "{r:?}");
    let again = h.poll().await.tenants.remove(0);
    assert_eq!(
        (again.outcome, again.published, again.unchanged),
        (Outcome::Completed, 0, 250),
        "{again:?}"
    );
    let spec: s1_bridge_sim::NewUnifiedAlerts =
        serde_json::from_value(serde_json::json!({"count": 3, "source": "identity"})).unwrap();
    let added = h.sim.control().add_unified_alerts(&spec).await.unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 3), "{r:?}");
    let created = created_per_member(&h);
    assert_eq!(created.len(), 253);
    assert!(created.values().all(|n| *n == 1));
    assert!(added.iter().all(|id| created.contains_key(id)), "{added:?}");
}

/// The client keeps under UAM's budget (about 25 calls a second per token) however many
/// callers share it: 60 listings at once, as the console counts them.
pub async fn the_client_keeps_under_the_uam_rate_limit() {
    let sim = s1_bridge_sim::Sim::start(SimConfig {
        threats: 0,
        cloud_alerts: 0,
        unified_alerts: 20,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let client = crate::client_for(&sim, s1_bridge_sim::DEFAULT_TOKEN, crate::fast_retry_options());
    let calls = (0..60).map(|_| {
        let c = client.clone();
        async move { crate::items(c.unified_alerts(&s1_shared::s1::UnifiedAlertQuery::default())).await }
    });
    for listed in futures_util::future::join_all(calls).await {
        assert_eq!(listed.unwrap().len(), 20);
    }
    let stats = sim.control().stats().await.unwrap();
    assert!(
        (1..25).contains(&stats.uam_peak_per_second),
        "peak {} calls in a second",
        stats.uam_peak_per_second
    );
    assert_eq!(stats.uam_throttled, 0);
}

/// The listing keeps to the tenant's scope (its sites, else its accounts), and walking it in
/// small Relay pages gives every alert once, oldest first.
pub async fn the_listing_keeps_to_the_scope_and_pages_every_alert_once() {
    use s1_shared::s1::UnifiedAlertQuery;
    let sim = s1_bridge_sim::Sim::start(SimConfig {
        threats: 60,
        cloud_alerts: 0,
        unified_alerts: 90,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let client = crate::client_for(&sim, s1_bridge_sim::DEFAULT_TOKEN, crate::fast_retry_options());
    let list = |q: UnifiedAlertQuery| crate::items(client.unified_alerts(&q));
    let all = list(UnifiedAlertQuery::default()).await.unwrap();
    assert_eq!(all.len(), 90);
    let small = list(UnifiedAlertQuery {
        first: 7,
        ..UnifiedAlertQuery::default()
    })
    .await
    .unwrap();
    let ids: Vec<&str> = small.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(
        ids,
        all.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        "13 pages of 7, in order, once each"
    );
    assert!(
        small.windows(2).all(|w| w[0].updated_at <= w[1].updated_at),
        "oldest first"
    );
    let scope = |a: &s1_shared::s1::dto::UnifiedAlert| {
        let s = a.real_time.as_ref().and_then(|r| r.scope.as_ref()).unwrap();
        (
            s.account.as_ref().and_then(|x| x.id.clone()).unwrap(),
            s.site.as_ref().and_then(|x| x.id.clone()).unwrap(),
        )
    };
    let (account, site) = scope(&all[0]);
    let in_site = list(UnifiedAlertQuery {
        site_ids: vec![site.clone()],
        account_ids: vec![account.clone()],
        ..UnifiedAlertQuery::default()
    })
    .await
    .unwrap();
    assert!(!in_site.is_empty() && in_site.len() < all.len());
    assert!(in_site.iter().all(|a| scope(a).1 == site));
    let in_account = list(UnifiedAlertQuery {
        account_ids: vec![account.clone()],
        ..UnifiedAlertQuery::default()
    })
    .await
    .unwrap();
    assert!(in_account.len() >= in_site.len() && in_account.len() < all.len());
    assert!(in_account.iter().all(|a| scope(a).0 == account));
}
