//! The poller's delivery guarantees where the platform acted and we did not hear it, or the
//! console changed while a run was under way: one id per threat version whatever path sends it,
//! the platform always ending on S1's latest state, no console text able to stop a checkpoint.
//! The simulator over HTTP and a real receiver that de-duplicates on `webhook-id`; on DynamoDB
//! Local too where the store is involved (`poll_dynamodb.rs`).

use std::sync::Arc;

use integration_tests::guarantees;
use integration_tests::poll::{PollHarness, tenant};
use s1_bridge_sim::SimConfig;
use s1_shared::store::{EmbeddedTable, ItemTable, Source};
use s1_shared::usecase::poll_threats::Outcome;
use serde_json::{Value, json};

fn embedded() -> Arc<dyn ItemTable> {
    Arc::new(EmbeddedTable::in_memory().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_sent_as_an_update_and_again_as_new_keeps_one_webhook_id() {
    guarantees::a_version_sent_as_an_update_and_again_as_new_keeps_one_webhook_id(embedded(), Source::Threats, false)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_sent_as_an_update_then_killed_in_the_commit_window_keeps_one_webhook_id() {
    guarantees::a_version_sent_as_an_update_and_again_as_new_keeps_one_webhook_id(embedded(), Source::Threats, true)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_threat_set_back_after_a_kill_in_its_update_reaches_the_platform() {
    guarantees::a_threat_set_back_after_a_kill_in_its_update_reaches_the_platform(embedded(), Source::Threats).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_threat_set_back_after_its_update_went_unanswered_reaches_the_platform() {
    guarantees::a_threat_set_back_after_its_update_went_unanswered_reaches_the_platform(embedded(), Source::Threats)
        .await;
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

#[tokio::test(flavor = "multi_thread")]
async fn one_long_story_never_stalls_a_tenant() {
    guarantees::one_long_story_never_stalls_a_tenant(embedded()).await;
}

/// A poll with more to publish than its invocation allows still leaves the tenant's pending
/// writebacks their turn: the change accepted while S1 was down lands in that same run, and the
/// run returns before its deadline.
#[tokio::test(flavor = "multi_thread")]
async fn pending_writebacks_get_their_turn_when_the_poll_runs_out_of_time() {
    use integration_tests::writeback::{
        INBOUND_SECRET, deps, fail_incident, post_generic, s1_state, setup, status_changed,
    };
    use s1_shared::usecase::poll_threats::{Selection, run};
    use std::time::{Duration, Instant};
    let (h, base, stories) = setup(40, embedded()).await;
    let (alert, ids) = &stories[0];
    fail_incident(&h, 503, 4).await;
    let body = status_changed(alert, "acknowledged", None, time::OffsetDateTime::now_utc());
    let (code, resp) = post_generic(&base, "acme", "late-1", &body, INBOUND_SECRET).await;
    assert_eq!((code, resp["writeback"].as_str()), (202, Some("pending")), "{resp}");
    let mut p = h.store.list_pending("acme", None, 10).await.unwrap().items.remove(0);
    p.next_attempt_at = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    h.store.put_pending("acme", &p).await.unwrap();
    h.sim.control().clear_faults().await.unwrap();
    // A backlog the slow receiver cannot take in one invocation.
    h.sim
        .control()
        .add_threats(&s1_bridge_sim::NewThreats {
            count: 200,
            agent_uuid: None,
            sha1: None,
            detected_at: None,
        })
        .await
        .unwrap();
    h.receiver.stall_next(10_000, Duration::from_millis(40));
    let mut t = h.store.get_tenant("acme").await.unwrap().unwrap();
    t.max_in_flight = 1;
    h.store.put_tenant(&t).await.unwrap();
    let mut poll = h.deps.clone();
    poll.writeback = Some(deps(&h));
    let deadline = Instant::now() + Duration::from_secs(3);
    let r = tokio::time::timeout_at(deadline.into(), run(&poll, &Selection::All, deadline))
        .await
        .expect("the run returns before its deadline")
        .unwrap()
        .tenants
        .remove(0);
    assert_eq!(r.outcome, Outcome::Partial, "{r:?}");
    assert!(r.published > 0 && r.published < 200, "{r:?}");
    assert_eq!(r.writebacks_applied, 1, "{r:?}");
    assert_eq!(s1_state(&h, &ids[0]).await.0, "in_progress");
}

/// A threat joins a story while the analyst's close of that story is being applied (S1 slow to
/// answer the close): the poll tells the platform it joined the open alert, the close then
/// lands, and the story is recorded closed. The new threat must not sit unresolved in an alert
/// the bridge calls closed: it gets the same change in S1.
#[tokio::test(flavor = "multi_thread")]
async fn a_threat_joining_while_its_storys_close_is_applied_gets_the_close_too() {
    joining_while_closed(false).await;
}

/// As above, but S1 fails the joined threat's close (503s through the retry budget) after the
/// story's own threats took it: the change stays pending, and its retry, holding the alert's
/// status still, gives the joined threat the close. (The retry used to skip it: only the first
/// attempt held the alert's lock, which the step asks for.)
#[tokio::test(flavor = "multi_thread")]
async fn a_joined_threat_whose_close_failed_gets_it_on_the_retry() {
    joining_while_closed(true).await;
}

/// The first story of a file (not a fileless storyline): a threat with the same agent and file
/// joins it.
fn file_story(stories: &[(String, Vec<String>)]) -> (String, Vec<String>) {
    stories
        .iter()
        .find(|(key, _)| !key.contains(":storyline:"))
        .expect("a story of a file")
        .clone()
}

/// The story's threats `ids` and the one that `joined` it all hold `want` (status, verdict) in S1.
async fn every_threat_holds(h: &PollHarness, ids: &[String], joined: &str, want: (&str, &str)) {
    for id in ids.iter().map(String::as_str).chain(std::iter::once(joined)) {
        let (status, verdict, _) = integration_tests::writeback::s1_state(h, id).await;
        assert_eq!(
            (status.as_str(), verdict.as_str()),
            want,
            "threat {id} (joined: {})",
            id == joined
        );
    }
}

/// A new threat in the simulator on `first`'s agent and file, detected a minute after it: the
/// poll adds it to `first`'s story.
async fn joiner_of(h: &PollHarness, first: &str) -> String {
    let first = h.sim.control().threat(first).await.unwrap();
    let agent = first["agentRealtimeInfo"]["agentUuid"].as_str().unwrap().to_owned();
    let sha1 = first["threatInfo"]["sha1"].as_str().unwrap().to_owned();
    // Detected within the story's window, so it joins the story rather than rolling it over.
    let detected = time::OffsetDateTime::parse(
        first["threatInfo"]["identifiedAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
        + time::Duration::minutes(1);
    h.sim
        .control()
        .add_threats(&s1_bridge_sim::NewThreats {
            count: 1,
            agent_uuid: Some(agent),
            sha1: Some(sha1),
            detected_at: Some(detected),
        })
        .await
        .unwrap()
        .remove(0)
}

/// A close (true positive) lands on the story's threats but S1 fails its note, so it stays
/// pending; a threat joins the story; a comment with verdict false positive (newer) lands on
/// every member, the joined one too. The close's retry gives the joined threat the close's
/// status, not its older verdict (found by review: the retry sent the close's verdict over the
/// comment's).
#[tokio::test(flavor = "multi_thread")]
async fn a_retried_close_gives_a_joined_threat_its_status_not_an_older_verdict() {
    use integration_tests::writeback::scenarios::retry_at;
    use integration_tests::writeback::{
        INBOUND_SECRET, comment_with_verdict, post_generic, s1_fault, s1_state, setup, status_changed,
    };
    use s1_bridge_sim::FaultKind;
    let (h, base, stories) = setup(40, embedded()).await;
    let (alert, ids) = file_story(&stories);
    let now = time::OffsetDateTime::now_utc();
    let down = FaultKind::Status {
        status: 503,
        retry_after: None,
        code: None,
    };
    s1_fault(&h, "/threats/notes", down, 1).await;
    let close = status_changed(
        &alert,
        "resolved",
        Some("true_positive"),
        now - time::Duration::minutes(2),
    );
    let (_, resp) = post_generic(&base, "acme", "close-tp", &close, INBOUND_SECRET).await;
    assert_eq!(resp["writeback"].as_str(), Some("pending"), "{resp}");
    assert_eq!(
        s1_state(&h, &ids[0]).await.1,
        "true_positive",
        "the close's fields landed"
    );
    let joined = joiner_of(&h, &ids[0]).await;
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.new), (Outcome::Completed, 1), "{r:?}");
    let fp = comment_with_verdict(
        &alert,
        "not malware",
        Some("false_positive"),
        now - time::Duration::minutes(1),
    );
    let (_, resp) = post_generic(&base, "acme", "comment-fp", &fp, INBOUND_SECRET).await;
    assert_eq!(resp["writeback"].as_str(), Some("applied"), "{resp}");
    let r = retry_at(&h, now + time::Duration::minutes(10)).await;
    assert_eq!(r.applied, 1, "{r:?}");
    every_threat_holds(&h, &ids, &joined, ("resolved", "false_positive")).await;
}

async fn joining_while_closed(joiner_fails: bool) {
    use integration_tests::writeback::scenarios::retry_at;
    use integration_tests::writeback::{INBOUND_SECRET, incident_fault, post_generic, s1_state, setup, status_changed};
    use s1_bridge_sim::FaultKind;
    use std::time::Duration;
    let (h, base, stories) = setup(40, embedded()).await;
    let (alert, ids) = file_story(&stories);
    incident_fault(&h, FaultKind::Slow { millis: 1_500 }, 1).await;
    if joiner_fails {
        let tries = integration_tests::fast_retry_options().retry.max_attempts;
        integration_tests::writeback::fail_incident(&h, 503, tries).await;
    }
    let body = status_changed(
        &alert,
        "resolved",
        Some("false positive"),
        time::OffsetDateTime::now_utc(),
    );
    let close = {
        let base = base.clone();
        tokio::spawn(async move { post_generic(&base, "acme", "close-while-joining", &body, INBOUND_SECRET).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let joined = joiner_of(&h, &ids[0]).await;
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.new), (Outcome::Completed, 1), "{r:?}");
    let told = guarantees::last_told(&h, &joined);
    assert_eq!(told["data"]["alert_key"], alert.as_str(), "it joined the story: {told}");
    let (code, resp) = close.await.unwrap();
    if joiner_fails {
        assert_eq!((code, resp["writeback"].as_str()), (202, Some("pending")), "{resp}");
        assert_eq!(
            s1_state(&h, &ids[0]).await.0,
            "resolved",
            "the story's own threats took it"
        );
        assert_eq!(s1_state(&h, &joined).await.0, "unresolved", "the joined one did not");
        let r = retry_at(&h, time::OffsetDateTime::now_utc() + time::Duration::minutes(10)).await;
        assert_eq!(r.applied, 1, "{r:?}");
    } else {
        assert_eq!((code, resp["writeback"].as_str()), (202, Some("applied")), "{resp}");
    }
    every_threat_holds(&h, &ids, &joined, ("resolved", "false_positive")).await;
    // And the poller takes S1's change of the joined threat for our own.
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Completed, 0), "{r:?}");
}
