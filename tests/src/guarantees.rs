//! The poller's delivery guarantees where the platform acted and the run did not hear it, or the
//! console changed while a run was under way; each body runs on both stores.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use s1_bridge_sim::{FaultKind, FaultRule, SimConfig};
use s1_shared::platform::Adapters;
use s1_shared::store::{ItemTable, Source};
use s1_shared::usecase::poll_threats::{Outcome, Selection, run};
use serde_json::Value;

use crate::poll::{FlakyTable, Hooked, PollHarness, PublishHook, hang_hook, run_until_hung};
use crate::{fast_retry_options, loopback_hosts};

/// Every (threat, `updatedAt`) the receiver took, with the webhook ids it came under.
pub fn ids_per_version(receiver: &s1_bridge_sim::WebhookReceiver) -> HashMap<(String, String), HashSet<String>> {
    let mut out: HashMap<(String, String), HashSet<String>> = HashMap::new();
    for d in receiver.deliveries() {
        let s1 = &d.body["data"]["s1"];
        let version = (
            s1["threat_id"].as_str().unwrap_or_default().to_owned(),
            s1["updated_at"].as_str().unwrap_or_default().to_owned(),
        );
        out.entry(version).or_default().insert(d.webhook_id);
    }
    out
}

/// A threat first seen on page 1 (`threat.created` v1) changes before page 2 is read (S1 slow to
/// answer it), so page 2, planned against page 1's stories as they will be stored, sends it as
/// `threat.updated` v2. Page 1's commit then fails: the next run starts from the old checkpoint,
/// where the threat is not yet a member, and tells v2 as new. Both deliveries of v2 carry one
/// webhook id, so a receiver that de-duplicates on it shows v2 once.
///
/// With `kill`, page 1's commit is held instead and the run is killed once the platform took
/// page 2's events, before it hears the answers (the commit window).
pub async fn a_version_sent_as_an_update_and_again_as_new_keeps_one_webhook_id(
    table: Arc<dyn ItemTable>,
    source: Source,
    kill: bool,
) {
    let unified = source == Source::Unified;
    // A page of threats holds 1,000, of unified alerts 100.
    let page = if unified { 100 } else { 1_000 };
    let flaky = FlakyTable::new(table);
    let mut h = PollHarness::start(
        SimConfig {
            threats: if unified { 0 } else { page + 2 },
            unified_alerts: if unified { page + 2 } else { 0 },
            unified_threat_every: 0,
            agents: 300,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        flaky.clone(),
    )
    .await;
    h.read_only(&[source]).await;
    let control = h.sim.control();
    // The page-th item by `updatedAt` is page 1's last.
    let client = s1_shared::s1::S1Client::new(
        &h.sim.base_url(),
        &s1_shared::ApiToken::new(s1_bridge_sim::DEFAULT_TOKEN),
        fast_retry_options(),
    )
    .unwrap();
    let changed = if unified {
        // Listed oldest first.
        let alerts = crate::items(client.unified_alerts(&s1_shared::s1::UnifiedAlertQuery::default()))
            .await
            .unwrap();
        alerts[page - 1].id.clone()
    } else {
        let mut threats = crate::items(client.threats(&s1_shared::s1::ThreatQuery::default()))
            .await
            .unwrap();
        threats.sort_by_key(|t| t.threat_info.updated_at);
        threats[page - 1].id.clone()
    };
    // Page 2's request is answered after 2.5 s; the console changes the item meanwhile.
    let (listing, method) = if unified {
        (crate::writeback_uam::GRAPHQL, "POST")
    } else {
        ("/threats", "GET")
    };
    control
        .add_fault(
            &FaultRule::new(listing, FaultKind::Slow { millis: 2_500 }, 1)
                .method(method)
                .after(1),
        )
        .await
        .unwrap();
    let (sim_url, id) = (h.sim.base_url(), changed.clone());
    let hook: PublishHook = Arc::new(move |n| {
        let (sim_url, id) = (sim_url.clone(), id.clone());
        async move {
            if n == 0 {
                console_sets(&s1_bridge_sim::SimControl::new(&sim_url), source, &id, "in_progress").await;
            }
        }
        .boxed()
    });
    let plain = h.deps.platforms.clone();
    if kill {
        // Page 1's commit waits; page 2's three events are taken, then the process dies.
        flaky.hold_story_writes(true);
        let (taken, mut hung) = tokio::sync::mpsc::unbounded_channel::<()>();
        let after: PublishHook = Arc::new(move |n| {
            let taken = taken.clone();
            async move {
                if n >= page {
                    let _ = taken.send(());
                    std::future::pending::<()>().await;
                }
            }
            .boxed()
        });
        h.deps.platforms = Hooked::wrap_both(plain.clone(), hook, after);
        let run = run(&h.deps, &Selection::All, Instant::now() + Duration::from_secs(600));
        let page_2_taken = async {
            for _ in 0..3 {
                hung.recv().await;
            }
        };
        tokio::select! {
            r = run => panic!("the run ended while page 1's commit was held: {r:?}"),
            () = page_2_taken => {}
        }
        flaky.hold_story_writes(false);
    } else {
        h.deps.platforms = Hooked::wrap(plain.clone(), hook);
        // Page 1's commit (its stories and checkpoint) fails after page 2 went out.
        flaky.fail_story_writes(1);
        let r = h.poll().await.tenants.remove(0);
        assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    }
    let updated: Vec<Value> = h.events("threat.updated");
    assert!(
        updated.iter().any(|e| e["data"]["s1"]["threat_id"] == changed.as_str()),
        "page 2 told the change as an update: {:?}",
        updated.len()
    );

    h.deps.platforms = plain;
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    let versions = ids_per_version(&h.receiver);
    let doubled: Vec<_> = versions.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(
        doubled.is_empty(),
        "a threat version came under two webhook ids: {doubled:?}"
    );
    let theirs: Vec<_> = versions.keys().filter(|(t, _)| *t == changed).collect();
    assert_eq!(
        theirs.len(),
        2,
        "v1 and v2 of the changed threat, each once: {theirs:?}"
    );
    assert_eq!(
        versions.keys().map(|(t, _)| t).collect::<HashSet<_>>().len(),
        page + 2,
        "every threat reached the receiver"
    );
}

/// The newest event the receiver took for `threat` (by arrival).
pub fn last_told(h: &PollHarness, threat: &str) -> Value {
    h.receiver
        .deliveries()
        .into_iter()
        .rev()
        .find(|d| d.body["data"]["s1"]["threat_id"] == threat)
        .map(|d| d.body)
        .unwrap_or_else(|| panic!("threat {threat} never reached the receiver"))
}

/// The console moves item `id` of `source` to another status (in progress, or back to
/// unresolved when it is in progress already): a real change, so a poll publishes it.
pub async fn console_moves_on(control: &s1_bridge_sim::SimControl, source: Source, id: &str) {
    let in_progress = if source == Source::Unified {
        control.unified_alert(id).await.unwrap()["status"] == "IN_PROGRESS"
    } else {
        control.threat(id).await.unwrap()["threatInfo"]["incidentStatus"] == "in_progress"
    };
    let to = if in_progress { "unresolved" } else { "in_progress" };
    console_sets(control, source, id, to).await;
}

/// Sets item `id` of `source` to `status` (`unresolved`, `in_progress`, `resolved`) in the console, as an
/// analyst would: a threat through the threats API, a unified alert in UAM.
pub async fn console_sets(control: &s1_bridge_sim::SimControl, source: Source, id: &str, status: &str) {
    if source == Source::Unified {
        let uam = match status {
            "unresolved" => "NEW",
            "in_progress" => "IN_PROGRESS",
            "resolved" => "RESOLVED",
            other => panic!("no UAM status for {other}"),
        };
        let change = s1_bridge_sim::UnifiedAlertChange {
            status: Some(uam.into()),
            ..Default::default()
        };
        control.change_unified_alert(id, &change).await.unwrap();
    } else {
        control.console_update(id, Some(status), None).await.unwrap();
    }
}

/// A small console of 20 threats (or unified alerts, by `source`), polled once so every one is a
/// recorded member; returns one of its unresolved items, which the console then moves to in
/// progress.
async fn polled_console(table: Arc<dyn ItemTable>, source: Source) -> (PollHarness, String) {
    let unified = source == Source::Unified;
    let h = PollHarness::start(
        SimConfig {
            threats: if unified { 0 } else { 20 },
            unified_alerts: if unified { 20 } else { 0 },
            unified_threat_every: 0,
            agents: 10,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        table,
    )
    .await;
    h.read_only(&[source]).await;
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 20), "{r:?}");
    let item = h
        .events("threat.created")
        .iter()
        .find(|e| e["data"]["s1"]["status"] == "unresolved")
        .map(|e| e["data"]["s1"]["threat_id"].as_str().unwrap().to_owned())
        .expect("an unresolved item");
    // The analyst moves it on; the run that tells the platform is the one the tests disturb.
    console_sets(&h.sim.control(), source, &item, "in_progress").await;
    (h, item)
}

/// The analyst sets the item back, and a clean poll runs: the platform's last word on it must
/// be the console's latest state.
async fn set_back_and_poll(h: &PollHarness, source: Source, item: &str) {
    console_sets(&h.sim.control(), source, item, "unresolved").await;
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    let last = last_told(h, item);
    assert_eq!(
        last["data"]["s1"]["status"], "unresolved",
        "the platform ends on the console's latest state, not the update whose answer was lost: {last}"
    );
    if source == Source::Threats {
        let now = h.sim.control().threat(item).await.unwrap();
        assert_eq!(
            last["data"]["s1"]["updated_at"].as_str(),
            now["threatInfo"]["updatedAt"].as_str()
        );
    }
    let again = h.poll().await.tenants.remove(0);
    assert_eq!((again.outcome, again.published), (Outcome::Completed, 0), "{again:?}");
}

/// A threat's update (unresolved -> in progress) is taken by the platform and the run is killed
/// before it hears the answer; the analyst then sets the threat back to unresolved. The next
/// run must tell the platform so: its story still holds "unresolved", but the platform shows
/// "in progress".
pub async fn a_threat_set_back_after_a_kill_in_its_update_reaches_the_platform(
    table: Arc<dyn ItemTable>,
    source: Source,
) {
    let (mut h, threat) = polled_console(table, source).await;
    let plain = h.deps.platforms.clone();
    let (hang, mut hung) = hang_hook();
    let before: PublishHook = Arc::new(|_| async {}.boxed());
    h.deps.platforms = Hooked::wrap_both(plain.clone(), before, hang);
    run_until_hung(
        run(&h.deps, &Selection::All, Instant::now() + Duration::from_secs(600)),
        &mut hung,
    )
    .await;
    assert_eq!(
        last_told(&h, &threat)["data"]["s1"]["status"],
        "in_progress",
        "the platform took the update before the kill"
    );
    h.deps.platforms = plain;
    set_back_and_poll(&h, source, &threat).await;
}

/// The same without a crash: the platform takes the update every time but never answers in
/// time, so the run fails with the platform unavailable.
pub async fn a_threat_set_back_after_its_update_went_unanswered_reaches_the_platform(
    table: Arc<dyn ItemTable>,
    source: Source,
) {
    let (mut h, threat) = polled_console(table, source).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let plain = h.deps.platforms.clone();
    h.deps.platforms = Arc::new(
        Adapters::new(impatient, h.tokens.clone(), fast_retry_options().retry).with_allowed_hosts(loopback_hosts()),
    );
    h.receiver.stall_next(50, Duration::from_secs(5));
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    assert_eq!(last_told(&h, &threat)["data"]["s1"]["status"], "in_progress");
    h.receiver.recover();
    h.deps.platforms = plain;
    set_back_and_poll(&h, source, &threat).await;
}

/// One story of 151 threats in one page, a receiver answering each delivery in 40 ms, and
/// 3-second invocations cut at their deadline (as Lambda does): every run returns its report
/// before the deadline, records what the platform took, and the next one goes on from there, so
/// the tenant gets through however slow the receiver, each threat delivered once.
pub async fn one_long_story_never_stalls_a_tenant(table: Arc<dyn ItemTable>) {
    let h = PollHarness::start(
        SimConfig {
            threats: 1,
            agents: 5,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        table,
    )
    .await;
    let first = h.sim.control().threat("1500000000000000001").await.unwrap();
    let agent = first["agentRealtimeInfo"]["agentUuid"].as_str().unwrap().to_owned();
    let sha1 = first["threatInfo"]["sha1"].as_str().unwrap().to_owned();
    h.sim
        .control()
        .add_threats(&s1_bridge_sim::NewThreats {
            count: 150,
            agent_uuid: Some(agent),
            sha1: Some(sha1),
            detected_at: None,
        })
        .await
        .unwrap();
    h.receiver.stall_next(10_000, Duration::from_millis(40));
    let mut runs = Vec::new();
    loop {
        let deadline = Instant::now() + Duration::from_secs(3);
        let report = tokio::time::timeout_at(deadline.into(), run(&h.deps, &Selection::All, deadline))
            .await
            .expect("the run returns before its invocation's deadline, with its report")
            .unwrap();
        let r = report.tenants[0].clone();
        assert!(
            matches!(r.outcome, Outcome::Partial | Outcome::Completed),
            "a slow platform is no failure: {r:?}"
        );
        runs.push(r.published);
        if r.outcome == Outcome::Completed {
            break;
        }
        assert!(r.published > 0, "every run makes progress: {runs:?}");
        assert!(runs.len() < 10, "the tenant moves on: {runs:?}");
    }
    assert!(runs.len() >= 2, "one invocation could not take it all: {runs:?}");
    assert_eq!(runs.iter().sum::<u64>(), 151, "{runs:?}");
    let deliveries = h.receiver.deliveries();
    assert_eq!(deliveries.len(), 151, "nothing sent twice, nothing missed");
    let threats: HashSet<_> = deliveries
        .iter()
        .map(|d| d.body["data"]["s1"]["threat_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(threats.len(), 151);
    assert!(h.store.get_checkpoint("acme", "threats").await.unwrap().is_some());
}
