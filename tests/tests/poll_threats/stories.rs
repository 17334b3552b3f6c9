//! poll-threats end to end: stories that join, reopen and roll; recorded and odd S1 answers;
//! the library's shared scenarios over the embedded store.

use super::*;

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
    integration_tests::poll::a_run_that_lost_its_lease_saves_nothing(embedded(), s1_shared::store::Source::Threats)
        .await;
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
    integration_tests::poll::a_refused_event_becomes_a_publish_dead_letter_replayed_once(
        embedded(),
        s1_shared::store::Source::Threats,
    )
    .await;
}
