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
use crate::poll::{FlakyTable, PollHarness, tenant};

const GRAPHQL: &str = "/unifiedalerts/graphql";

/// A console with `threats` threats and `unified` unified alerts (every third an EDR twin of a
/// threat when `twins`), its tenant reading `sources`.
async fn harness(
    table: Arc<dyn ItemTable>,
    threats: usize,
    unified: usize,
    twins: bool,
    sources: &[Source],
) -> PollHarness {
    let h = PollHarness::start(
        SimConfig {
            threats,
            agents: 100,
            cloud_alerts: 0,
            unified_alerts: unified,
            unified_threat_every: if twins { 3 } else { 0 },
            ..SimConfig::default()
        },
        table,
    )
    .await;
    set_sources(&h, sources).await;
    h
}

async fn set_sources(h: &PollHarness, sources: &[Source]) {
    let mut t = tenant("acme", &h.sim.base_url(), &h.receiver.url());
    t.sources = sources.to_vec();
    h.store.put_tenant(&t).await.unwrap();
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

/// Asserts no (member, version) went out under two webhook ids.
fn one_id_per_version(h: &PollHarness) {
    for (version, ids) in ids_per_version(&h.receiver) {
        assert_eq!(ids.len(), 1, "{version:?} went out under {ids:?}");
    }
}

/// Threats and unified alerts read together, a third of the unified alerts the same detections
/// as threats: each detection is one member and reaches the platform once, whichever listing
/// reads it; the next run sends nothing.
pub async fn threats_and_unified_together_send_each_detection_once(table: Arc<dyn ItemTable>) {
    let h = harness(table, 150, 150, true, &[Source::Threats, Source::Unified]).await;
    let alerts = h.sim.control().unified_alert_ids().await.unwrap();
    let twins: HashSet<String> = alerts
        .iter()
        .filter(|a| a["source"] == "edr")
        .filter_map(|a| a["externalId"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(twins.len(), 50, "a third are threats' twins: {:?}", &alerts[..3]);
    // The simulator's twins are all NEW and undefined, and later than their threats: a twin of a
    // threat the console already moved on is, by the later reading, one update (once).
    let client = crate::client_for(&h.sim, s1_bridge_sim::DEFAULT_TOKEN, crate::fast_retry_options());
    let threats = crate::items(client.threats(&s1_shared::s1::ThreatQuery::default()))
        .await
        .unwrap();
    let moved_on = threats
        .iter()
        .filter(|t| twins.contains(&t.id))
        .filter(|t| {
            (
                t.threat_info.incident_status.map(|s| s.as_str()),
                t.threat_info.analyst_verdict.map(|v| v.as_str()),
            ) != (Some("unresolved"), Some("undefined"))
        })
        .count() as u64;
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(
        (r.outcome, r.new, r.changed, r.published),
        (Outcome::Completed, 250, moved_on, 250 + moved_on),
        "{r:?}"
    );
    let created = created_per_member(&h);
    assert_eq!(created.len(), 250);
    assert!(created.values().all(|n| *n == 1), "a member told twice");
    assert!(
        twins.iter().all(|t| created.contains_key(t)),
        "a twin is its threat's member"
    );
    // The non-twins say where they came from.
    let unified: Vec<Value> = h
        .events("threat.created")
        .into_iter()
        .filter(|e| e["data"]["s1"]["source"] == "unified")
        .collect();
    assert_eq!(unified.len(), 100);
    assert!(
        unified.iter().all(|e| e["data"]["s1"]["product"].is_string()),
        "{}",
        unified[0]
    );
    let again = h.poll().await.tenants.remove(0);
    assert_eq!((again.outcome, again.published), (Outcome::Completed, 0), "{again:?}");
    one_id_per_version(&h);

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
    assert_eq!(updated.len() as u64, moved_on + 1);
    let last = &updated[updated.len() - 1]["data"]["s1"];
    assert_eq!(last["threat_id"], twin["externalId"]);
    // The console keeps a threat and its EDR alert in step (the simulator too): whichever
    // listing the run reads first tells it, once.
    assert_eq!(last["status"], "resolved");
    assert!(last["source"] == "threats" || last["source"] == "unified", "{last}");
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 0), "{r:?}");
}

/// A unified page whose commit fails, and a later page's stories that fail to save: the next
/// runs repeat what was not recorded under the same webhook ids, so every alert version reaches
/// the platform once and none is lost.
pub async fn a_unified_backlog_with_failed_commits_reaches_the_platform_once(table: Arc<dyn ItemTable>) {
    let flaky = FlakyTable::new(table);
    let h = harness(flaky.clone(), 0, 250, false, &[Source::Unified]).await;
    // Page 2's checkpoint fails; page 3 was sent meanwhile (and is not recorded either).
    flaky.fail_puts_after("CURSOR#", 1, 1);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    flaky.fail_story_writes(1);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    let created = created_per_member(&h);
    assert_eq!(created.len(), 250);
    assert!(created.values().all(|n| *n == 1));
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
    let h = harness(table, 0, 250, false, &[Source::Unified]).await;
    let control = h.sim.control();
    let error = FaultKind::GraphqlError {
        code: "INTERNAL_SERVER_ERROR".into(),
        message: Some("the alerts surface failed".into()),
    };
    // The requests: the first page, the one read of an alert's link (the listing learns the
    // console's link shape from the first alert that is no threat), then the second page.
    control
        .add_fault(&FaultRule::new(GRAPHQL, error, 1).after(2))
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
    let created = created_per_member(&h);
    assert_eq!(created.len(), 250);
    assert!(created.values().all(|n| *n == 1));
    one_id_per_version(&h);
}

/// A tenant on threats switches to unified: the unified listing starts where the threats
/// checkpoint stood, so the twins of threats already told are not told again, and a later
/// change in UAM comes through.
pub async fn switching_from_threats_to_unified_replays_nothing(table: Arc<dyn ItemTable>) {
    let h = harness(table, 150, 150, true, &[Source::Threats]).await;
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
    set_sources(&h, &[Source::Unified]).await;
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
    set_sources(&h, &[Source::Unified]).await;
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
