//! The `pagerduty` platform end to end: poll-threats, the token watch and the asset sync against
//! the simulator, publishing to a fake PagerDuty Events API v2 over HTTP that validates every
//! event the way PagerDuty does and keeps the alerts an on-call engineer would see.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use integration_tests::poll::{PollHarness, tenant};
use integration_tests::{fast_retry_options, loopback_hosts};
use s1_bridge_sim::{FakePagerDuty, NewThreats, SimConfig};
use s1_shared::domain;
use s1_shared::platform::PlatformConfig;
use s1_shared::platform::{Adapters, Notice, PlatformError, PlatformResolver};
use s1_shared::s1::{S1Client, ThreatQuery};
use s1_shared::store::{EmbeddedTable, Grouping, TenantConfig};
use s1_shared::usecase::sync_assets::sync_all;
use serde_json::json;
use time::OffsetDateTime;

/// A made-up Events API v2 integration key: 32 characters, like PagerDuty's.
const ROUTING_KEY: &str = "R0UT1NGKEYF0RTESTS0NLY0000000001";
/// A made-up webhook subscription secret.
const PD_WEBHOOK_SECRET: &str = "pd-subscription-secret-for-tests";

fn pagerduty_tenant(h: &PollHarness, events_url: &str) -> TenantConfig {
    TenantConfig {
        platform: serde_json::from_value(json!({"kind": "pagerduty", "settings": {
            "routing_key": {"kind": "env", "var": "PD_ROUTING_KEY"},
            "events_url": events_url,
            "events_per_minute": 60_000,
            "inbound_secrets": [{"kind": "env", "var": "PD_WEBHOOK_SECRET"}],
        }}))
        .unwrap(),
        ..tenant("acme", &h.sim.base_url(), &h.receiver.url())
    }
}

async fn harness(threats: usize, pd: &FakePagerDuty) -> PollHarness {
    let h = PollHarness::start(
        SimConfig {
            threats,
            agents: 120,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        Arc::new(EmbeddedTable::in_memory().unwrap()),
    )
    .await;
    h.env
        .lock()
        .unwrap()
        .insert("PD_ROUTING_KEY".into(), ROUTING_KEY.into());
    h.env
        .lock()
        .unwrap()
        .insert("PD_WEBHOOK_SECRET".into(), PD_WEBHOOK_SECRET.into());
    h.store.put_tenant(&pagerduty_tenant(&h, &pd.url())).await.unwrap();
    h
}

#[tokio::test(flavor = "multi_thread")]
async fn one_alert_per_open_story_acknowledged_and_resolved_from_the_console_and_a_rerun_sends_nothing() {
    let pd = FakePagerDuty::start(ROUTING_KEY, 100_000).await.unwrap();
    let h = harness(400, &pd).await;
    let report = h.poll().await;
    let r = &report.tenants[0];
    assert_eq!((r.error.as_deref(), r.fetched, r.failed), (None, 400, 0), "{r:?}");
    assert!(pd.refused().is_empty(), "PagerDuty refused: {:?}", pd.refused());

    // What the service shows: one alert per story with a threat still open in S1; stories whose
    // threats were all resolved before we first saw them page nobody.
    let client = S1Client::new(
        &h.sim.base_url(),
        &s1_shared::ApiToken::new(s1_bridge_sim::DEFAULT_TOKEN),
        fast_retry_options(),
    )
    .unwrap();
    let threats = integration_tests::items(client.threats(&ThreatQuery::default()))
        .await
        .unwrap();
    let status = |t: &s1_shared::s1::dto::Threat| t.threat_info.incident_status.map(|s| s.as_str().to_owned());
    let open_stories: HashSet<String> = threats
        .iter()
        .filter(|t| status(t).as_deref() != Some("resolved"))
        .map(|t| domain::story_key(t, Grouping::Story))
        .collect();
    let alerts = pd.alerts();
    assert_eq!(alerts.len(), open_stories.len(), "one alert per open story");
    assert!(alerts.len() < 400 && !alerts.is_empty());
    let keys: HashSet<&str> = alerts.iter().map(|a| a.dedup_key.as_str()).collect();
    assert_eq!(keys.len(), alerts.len(), "one dedup key per alert");
    assert!(alerts.iter().all(|a| a.status != "resolved"));
    let a = &alerts[0];
    assert!(a.dedup_key.starts_with("s1:127.0.0.1:"), "{}", a.dedup_key);
    assert!(a.summary.starts_with("[S1] "), "{}", a.summary);
    assert!(["critical", "warning", "info"].contains(&a.severity.as_str()));
    assert!(
        a.links[0]["href"].as_str().unwrap().contains("/incidents/threats/"),
        "{}",
        a.links
    );
    assert!(a.custom_details["s1"]["threat_id"].is_string() && a.custom_details["story"]["threat_count"].is_number());
    let in_progress = threats
        .iter()
        .filter(|t| status(t).as_deref() == Some("in_progress"))
        .count();
    if in_progress > 0 {
        assert!(
            alerts.iter().any(|a| a.status == "acknowledged"),
            "in-progress threats acknowledge"
        );
    }

    let sent = pd.events().len();
    let again = h.poll().await;
    assert_eq!(again.tenants[0].published, 0);
    assert_eq!(pd.events().len(), sent, "a rerun sends PagerDuty nothing");

    // A story of one new threat: the console's "in progress" acknowledges it, "resolved" resolves it.
    let ids = h
        .sim
        .control()
        .add_threats(&NewThreats {
            count: 1,
            ..NewThreats::default()
        })
        .await
        .unwrap();
    h.poll().await;
    let alert_of = |pd: &FakePagerDuty| {
        let alerts: HashMap<String, String> = pd
            .alerts()
            .into_iter()
            .map(|a| (a.dedup_key.clone(), a.status.clone()))
            .collect();
        alerts
    };
    let new_key = pd.alerts().last().unwrap().dedup_key.clone();
    assert_eq!(alert_of(&pd)[&new_key], "triggered");
    h.sim
        .control()
        .console_update(&ids[0], Some("in_progress"), None)
        .await
        .unwrap();
    h.poll().await;
    assert_eq!(alert_of(&pd)[&new_key], "acknowledged");
    h.sim
        .control()
        .console_update(&ids[0], Some("resolved"), Some("false_positive"))
        .await
        .unwrap();
    h.poll().await;
    assert_eq!(alert_of(&pd)[&new_key], "resolved");
    assert!(pd.refused().is_empty(), "{:?}", pd.refused());
}

#[tokio::test(flavor = "multi_thread")]
async fn outages_are_ridden_out_and_refusals_are_told_apart() {
    use s1_shared::usecase::poll_threats::Outcome;
    let pd = FakePagerDuty::start(ROUTING_KEY, 100_000).await.unwrap();
    let h = harness(20, &pd).await;
    // 429 and 5xx: retried with backoff, then delivered.
    pd.fail_next(2, 429);
    pd.fail_next(1, 502);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.error.as_deref(), r.failed), (None, 0), "{r:?}");
    assert!(!pd.alerts().is_empty());

    // A routing key PagerDuty does not know (400 "Invalid routing key"): every event would be
    // refused, so the platform is unavailable for the tenant; nothing is recorded per threat.
    let wrong = "WR0NGKEYWR0NGKEYWR0NGKEYWR0NGKEY";
    h.env.lock().unwrap().insert("PD_ROUTING_KEY".into(), wrong.into());
    let before = pd.events().len();
    let checkpoint = h.store.get_checkpoint("acme", "threats").await.unwrap();
    h.sim
        .control()
        .add_threats(&NewThreats {
            count: 3,
            ..NewThreats::default()
        })
        .await
        .unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.failed, r.published), (Outcome::Failed, 0, 0), "{r:?}");
    assert!(r.error.as_deref().unwrap().contains("routing key"), "{r:?}");
    assert_eq!(pd.events().len(), before);
    assert!(pd.refused().iter().all(|e| e["routing_key"] == wrong));
    assert_eq!(h.store.get_checkpoint("acme", "threats").await.unwrap(), checkpoint);
    assert!(integration_tests::poll::publish_dead_letters(&h.store).await.is_empty());

    // 403 from the Events API: the same.
    h.env
        .lock()
        .unwrap()
        .insert("PD_ROUTING_KEY".into(), ROUTING_KEY.into());
    pd.fail_next(1, 403);
    let r = h.poll().await.tenants.remove(0);
    // Events in flight beside the refused one may have been taken (and are recorded).
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    assert!(r.published < 3, "{r:?}");
    let taken = r.published;
    assert!(r.error.as_deref().unwrap().contains("HTTP 403"), "{r:?}");

    // The key is right again: the rest are delivered; a refusal about one event is a dead letter.
    pd.fail_next(1, 400);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(
        (r.outcome, r.published, r.publish_dead_letters),
        (Outcome::Completed, 2 - taken, 1),
        "{r:?}"
    );
    let letters = integration_tests::poll::publish_dead_letters(&h.store).await;
    assert_eq!(letters.len(), 1);
    h.store.request_publish_replay("acme", &letters[0].id).await.unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(
        (r.outcome, r.replayed, r.published),
        (Outcome::Completed, 1, 0),
        "{r:?}"
    );
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.replayed, r.published, r.failed), (0, 0, 0), "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn token_alerts_and_the_configuration_test_and_no_asset_sync() {
    let pd = FakePagerDuty::start(ROUTING_KEY, 100_000).await.unwrap();
    let h = harness(1, &pd).await;
    let t = h.store.get_tenant("acme").await.unwrap().unwrap();
    let platform = Adapters::new(reqwest::Client::new(), h.tokens.clone(), fast_retry_options().retry)
        .with_allowed_hosts(loopback_hosts())
        .resolve(&t)
        .await
        .unwrap();
    assert_eq!(platform.kind().as_str(), "pagerduty");

    let notice = |days: i64| Notice::TokenExpiring {
        id: format!("msg_token_{days}"),
        timestamp: OffsetDateTime::now_utc(),
        tenant: "acme".into(),
        console: "acme.sentinelone.net".into(),
        expires_at: OffsetDateTime::now_utc() + time::Duration::days(days),
        days_left: days,
        threshold_days: days,
        message: format!("token expires in {days} days"),
    };
    platform.notify(&notice(14)).await.unwrap();
    platform.notify(&notice(3)).await.unwrap();
    let token_alerts: Vec<_> = pd
        .alerts()
        .into_iter()
        .filter(|a| a.dedup_key == "s1-bridge:acme:token")
        .collect();
    assert_eq!(token_alerts.len(), 1, "one alert per tenant's token, updated");
    assert_eq!(
        (token_alerts[0].severity.as_str(), token_alerts[0].triggers),
        ("warning", 2)
    );

    // The "Test configuration" button: accepted, and resolved at once so nobody is paged.
    let test = Notice::Test {
        id: "msg_test_0".into(),
        timestamp: OffsetDateTime::now_utc(),
        tenant: "acme".into(),
        message: "s1-bridge configuration test".into(),
    };
    let r = platform.notify(&test).await.unwrap();
    let test_alert = pd
        .alerts()
        .into_iter()
        .find(|a| Some(&a.dedup_key) == r.platform_ref.as_ref())
        .unwrap();
    assert_eq!(
        (test_alert.status.as_str(), test_alert.severity.as_str()),
        ("resolved", "info")
    );

    // PagerDuty keeps no customers or assets: the sync says so and sends nothing.
    let sent = pd.events().len();
    let deps = h.asset_deps();
    let r = sync_all(&deps, std::time::Instant::now() + std::time::Duration::from_secs(600))
        .await
        .unwrap()
        .remove(0);
    assert_eq!((r.error.as_deref(), r.created), (None, 0), "{r:?}");
    assert!(r.note.unwrap().contains("pagerduty keeps no customers"));
    assert_eq!(pd.events().len(), sent);
}

#[tokio::test]
async fn bad_settings_are_refused_with_what_is_wrong() {
    let pd = FakePagerDuty::start(ROUTING_KEY, 100).await.unwrap();
    let h = harness(1, &pd).await;
    let resolver = Adapters::new(reqwest::Client::new(), h.tokens.clone(), fast_retry_options().retry)
        .with_allowed_hosts(loopback_hosts());
    let base = pagerduty_tenant(&h, &pd.url());
    // Settings of the wrong shape are refused when read (as `tenant add` reads them); the rest
    // when the adapter is built.
    let with = |settings: serde_json::Value| -> Result<TenantConfig, PlatformError> {
        let platform: PlatformConfig = serde_json::from_value(json!({"kind": "pagerduty", "settings": settings}))
            .map_err(|e| PlatformError::Config(e.to_string()))?;
        Ok(TenantConfig {
            platform,
            ..base.clone()
        })
    };
    let cases = [
        (json!({}), "missing field `routing_key`"),
        (
            json!({"routing_key": {"kind": "env", "var": "NO_SUCH_VAR"}}),
            "PagerDuty routing key",
        ),
        (
            json!({"routing_key": {"kind": "env", "var": "PD_ROUTING_KEY"}, "events_url": "https://evil.example.com/v2/enqueue"}),
            "must be https on events.pagerduty.com",
        ),
        (
            json!({"routing_key": {"kind": "env", "var": "PD_ROUTING_KEY"}, "events_url": "http://events.pagerduty.com/v2/enqueue"}),
            "must be https",
        ),
        (
            json!({"routing_key": {"kind": "env", "var": "PD_ROUTING_KEY"}, "events_per_minute": "fast"}),
            "invalid type: string \"fast\", expected a nonzero u32",
        ),
    ];
    for (settings, expected) in cases {
        let resolved = match with(settings.clone()) {
            Ok(t) => resolver.resolve(&t).await.map(drop),
            Err(e) => Err(e),
        };
        let Err(err) = resolved else {
            panic!("{settings} was accepted")
        };
        assert!(matches!(err, PlatformError::Config(_)), "{err:?}");
        assert!(err.to_string().contains(expected), "{settings}: {err}");
        assert!(!err.to_string().contains(ROUTING_KEY), "never the key: {err}");
    }
    h.env.lock().unwrap().insert("SHORT_KEY".into(), "abc".into());
    let err = match resolver
        .resolve(&with(json!({"routing_key": {"kind": "env", "var": "SHORT_KEY"}})).unwrap())
        .await
    {
        Ok(_) => panic!("a 3-character key was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("3 characters") && err.contains("32"), "{err}");
    assert_eq!(resolver.resolve(&base).await.unwrap().kind().as_str(), "pagerduty");
}

/// PagerDuty's webhook for an incident our trigger opened: the recorded `incident.acknowledged`
/// capture, re-aimed at `dedup_key` (PagerDuty reports it as `incident_key`).
fn incident_event(event_type: &str, dedup_key: &str, n: u32) -> Vec<u8> {
    let raw = std::fs::read(
        integration_tests::fixtures_dir().join("platforms/pagerduty-v3/aldaviva-incident.acknowledged.json"),
    )
    .unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    v["event"]["id"] = json!(format!("01TESTEVENT{n:04}"));
    v["event"]["event_type"] = json!(event_type);
    v["event"]["occurred_at"] = json!(s1_shared::s1::dto::format_time(
        OffsetDateTime::now_utc() + time::Duration::seconds(i64::from(n))
    ));
    v["event"]["data"]["incident_key"] = json!(dedup_key);
    v["event"]["data"]["id"] = json!("PINCIDENT1");
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_loop_closes_an_alert_we_triggered_is_acknowledged_and_resolved_in_pagerduty_and_s1_follows() {
    use integration_tests::writeback::{deps, serve};
    use s1_shared::platform::sign_pagerduty;
    let pd = FakePagerDuty::start(ROUTING_KEY, 100_000).await.unwrap();
    let h = harness(200, &pd).await;
    h.poll().await;
    let alert = pd
        .alerts()
        .into_iter()
        .find(|a| a.status == "triggered")
        .expect("an open alert");
    let threat_ids: Vec<String> = pd
        .events()
        .iter()
        .filter(|e| e["dedup_key"] == alert.dedup_key.as_str() && e["event_action"] == "trigger")
        .map(|e| {
            e["payload"]["custom_details"]["s1"]["threat_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let base = serve(deps(&h)).await;
    let post = |body: Vec<u8>, signature: String| {
        let url = format!("{base}/pagerduty/acme");
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("X-PagerDuty-Signature", signature)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let status_in_s1 = |id: String| {
        let control = h.sim.control();
        async move { control.threat(&id).await.unwrap()["threatInfo"]["incidentStatus"].clone() }
    };

    let body = incident_event("incident.acknowledged", &alert.dedup_key, 1);
    let (code, answer) = post(body.clone(), "v1=00ff".into()).await;
    assert_eq!(code, 401, "a bad signature changes nothing: {answer}");
    let (code, answer) = post(body.clone(), sign_pagerduty(PD_WEBHOOK_SECRET, &body)).await;
    assert_eq!((code, &answer["writeback"]), (202, &json!("applied")), "{answer}");
    for id in &threat_ids {
        assert_eq!(status_in_s1(id.clone()).await, "in_progress", "threat {id}");
    }
    let sent = pd.events().len();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.echoes as usize, r.published), (threat_ids.len(), 0), "{r:?}");
    assert_eq!(
        pd.events().len(),
        sent,
        "our own writeback is not sent back to PagerDuty"
    );

    let body = incident_event("incident.resolved", &alert.dedup_key, 2);
    let (code, answer) = post(body.clone(), sign_pagerduty(PD_WEBHOOK_SECRET, &body)).await;
    assert_eq!((code, &answer["writeback"]), (202, &json!("applied")), "{answer}");
    for id in &threat_ids {
        assert_eq!(status_in_s1(id.clone()).await, "resolved", "threat {id}");
    }
    h.poll().await;
    assert_eq!(pd.events().len(), sent, "nothing echoes back");
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_are_sized_to_what_pagerduty_takes_in_a_minute() {
    // At PagerDuty's 120 a minute, a 1,000-threat page would take over 8 minutes to publish: longer
    // than the poller's Lambda may run, so it would be cut off and repeated forever.
    let pd = FakePagerDuty::start(ROUTING_KEY, 100_000).await.unwrap();
    let h = harness(30, &pd).await;
    let mut t = h.store.get_tenant("acme").await.unwrap().unwrap();
    let PlatformConfig::PagerDuty(s) = &mut t.platform else {
        panic!("a PagerDuty tenant")
    };
    s.events_per_minute = std::num::NonZeroU32::new(900).unwrap();
    h.store.put_tenant(&t).await.unwrap();
    h.sim.control().clear_requests().await.unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.error.as_deref(), r.published), (None, 30), "{r:?}");
    let lists: Vec<_> = h
        .sim
        .control()
        .requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|q| q.path == "/threats" && q.method == "GET")
        .collect();
    assert!(!lists.is_empty());
    for q in lists {
        assert!(
            q.query.contains(&("limit".to_owned(), "900".to_owned())),
            "one minute of events at 15 a second: {:?}",
            q.query
        );
    }
}
