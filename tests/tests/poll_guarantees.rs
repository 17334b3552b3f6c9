//! The poller's delivery guarantees where the platform acted and we did not hear it, or the
//! console changed while a run was under way: one id per threat version whatever path sends it,
//! the platform always ending on S1's latest state, no console text able to stop a checkpoint.
//! The simulator over HTTP and a real receiver that de-duplicates on `webhook-id`; on DynamoDB
//! Local too where the store is involved (`poll_dynamodb.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use integration_tests::poll::{FlakyTable, Hooked, PollHarness, PublishHook, tenant};
use s1_bridge_sim::{FaultKind, FaultRule, SimConfig};
use s1_shared::store::{EmbeddedTable, ItemTable};
use s1_shared::usecase::poll_threats::Outcome;
use serde_json::{Value, json};

fn embedded() -> Arc<dyn ItemTable> {
    Arc::new(EmbeddedTable::in_memory().unwrap())
}

/// Every (threat, `updatedAt`) the receiver took, with the webhook ids it came under.
fn ids_per_version(h: &PollHarness) -> HashMap<(String, String), HashSet<String>> {
    let mut out: HashMap<(String, String), HashSet<String>> = HashMap::new();
    for d in h.receiver.deliveries() {
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
#[tokio::test(flavor = "multi_thread")]
async fn a_version_sent_as_an_update_and_again_as_new_keeps_one_webhook_id() {
    let flaky = FlakyTable::new(embedded());
    let mut h = PollHarness::start(
        SimConfig {
            threats: 1_002,
            agents: 300,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        flaky.clone(),
    )
    .await;
    let control = h.sim.control();
    // The 1,000th threat by `updatedAt` is page 1's last.
    let mut threats = integration_tests::items(
        s1_shared::s1::S1Client::new(
            &h.sim.base_url(),
            &s1_shared::ApiToken::new(s1_bridge_sim::DEFAULT_TOKEN),
            integration_tests::fast_retry_options(),
        )
        .unwrap()
        .threats(&s1_shared::s1::ThreatQuery::default()),
    )
    .await
    .unwrap();
    threats.sort_by_key(|t| t.threat_info.updated_at);
    let changed = threats[999].id.clone();
    // Page 2's request is answered after 2.5 s; the console changes the threat meanwhile.
    control
        .add_fault(
            &FaultRule::new("/threats", FaultKind::Slow { millis: 2_500 }, 1)
                .method("GET")
                .after(1),
        )
        .await
        .unwrap();
    let (sim_url, id) = (h.sim.base_url(), changed.clone());
    let hook: PublishHook = Arc::new(move |n| {
        let (sim_url, id) = (sim_url.clone(), id.clone());
        async move {
            if n == 0 {
                s1_bridge_sim::SimControl::new(&sim_url)
                    .console_update(&id, Some("in_progress"), None)
                    .await
                    .unwrap();
            }
        }
        .boxed()
    });
    let plain = h.deps.platforms.clone();
    h.deps.platforms = Hooked::wrap(plain.clone(), hook);
    // Page 1's commit (its stories and checkpoint) fails after page 2 went out.
    flaky.fail_story_writes(1);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    let updated: Vec<Value> = h.events("threat.updated");
    assert!(
        updated.iter().any(|e| e["data"]["s1"]["threat_id"] == changed.as_str()),
        "page 2 told the change as an update: {:?}",
        updated.len()
    );

    h.deps.platforms = plain;
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    let versions = ids_per_version(&h);
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
        1_002,
        "every threat reached the receiver"
    );
}

/// A console that answers `GET /threats` with nothing and `GET /cloud-detection/alerts` with
/// `alerts`; returns its URL.
async fn serve_alerts(alerts: Vec<Value>) -> String {
    let empty = serde_json::to_vec(&json!({"data": [], "pagination": {"nextCursor": null, "totalItems": 0}})).unwrap();
    let total = alerts.len();
    let body =
        serde_json::to_vec(&json!({"data": alerts, "pagination": {"nextCursor": null, "totalItems": total}})).unwrap();
    let json_of = |b: Vec<u8>| {
        axum::routing::get(move || {
            let b = b.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], b) }
        })
    };
    let app = axum::Router::new()
        .route("/web/api/v2.1/threats", json_of(empty))
        .route("/web/api/v2.1/cloud-detection/alerts", json_of(body));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let console = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    console
}

/// A STAR alert as a console sends it, its rule named `rule` (no rule id).
fn star_alert(id: &str, rule: &str, at: &str) -> Value {
    json!({
        "alertInfo": {"alertId": id, "createdAt": at, "reportedAt": at, "updatedAt": at,
                      "incidentStatus": "Unresolved", "analystVerdict": "Undefined", "source": "STAR"},
        "ruleInfo": {"name": rule, "severity": "High"},
        "agentDetectionInfo": {"uuid": "6f1d2c0b9a8e4d7cb1f0e2d3c4b5a697", "name": "FIN-LAPTOP-07"},
    })
}

/// STAR rule names are console text: one far longer than a store key, one with a control
/// character. Their alerts are delivered, grouped per rule, and the alerts checkpoint moves.
#[tokio::test(flavor = "multi_thread")]
async fn console_text_in_a_story_key_never_stops_a_checkpoint() {
    let long = format!("Detect {} exfiltration", "very ".repeat(60));
    let odd = "Beacon\u{7}to\ttemp #folder";
    let console = serve_alerts(vec![
        star_alert("9001", &long, "2026-11-30T10:00:00.000000Z"),
        star_alert("9002", odd, "2026-11-30T10:00:01.000000Z"),
        star_alert("9003", &long, "2026-11-30T10:00:02.000000Z"),
    ])
    .await;
    let h = PollHarness::start(SimConfig::default(), embedded()).await;
    let mut t = tenant("acme", &console, &h.receiver.url());
    t.poll_cloud_alerts = true;
    h.store.put_tenant(&t).await.unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 3), "{r:?}");
    let checkpoint = h.store.get_checkpoint("acme", "alerts").await.unwrap();
    assert!(
        checkpoint.is_some_and(|c| c.watermark.is_some()),
        "the alerts checkpoint moved"
    );
    let created = h.events("threat.created");
    let alert_of = |id: &str| {
        created
            .iter()
            .find(|e| e["data"]["s1"]["threat_id"].as_str().is_some_and(|t| t.ends_with(id)))
            .map(|e| e["data"]["alert_key"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(alert_of("9001"), alert_of("9003"), "one rule, one story");
    assert_ne!(alert_of("9001"), alert_of("9002"));
    assert!(
        created
            .iter()
            .all(|e| e["data"]["alert_key"].as_str().unwrap().len() < 250)
    );
    let again = h.poll().await.tenants.remove(0);
    assert_eq!((again.outcome, again.published), (Outcome::Completed, 0), "{again:?}");
}
