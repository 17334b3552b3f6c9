//! status-writeback through real HTTP: signed webhooks in, S1 (the simulator) updated, with the
//! state store deciding replays, order and retries.

use std::sync::Arc;

use integration_tests::poll::{PollHarness, WEBHOOK_SECRET, tenant};
use integration_tests::writeback::{
    INBOUND_SECRET, deps, fail_incident, incident_fault, post_generic, s1_state, s1_writes, status_changed,
};
use s1_bridge_sim::{FaultKind, FaultRule};
use s1_shared::store::{Cond, EmbeddedTable, Item, ItemTable, StoreError, StoryStatus};
use s1_shared::usecase::writeback::{MAX_ATTEMPTS, retry_pending};
use serde_json::json;
use time::{Duration, OffsetDateTime};

fn embedded() -> Arc<dyn ItemTable> {
    Arc::new(EmbeddedTable::in_memory().unwrap())
}

/// A retry pass's deadline with plenty of time.
fn soon() -> std::time::Instant {
    std::time::Instant::now() + std::time::Duration::from_secs(120)
}

async fn setup(threats: usize, table: Arc<dyn ItemTable>) -> (PollHarness, String, Vec<(String, Vec<String>)>) {
    integration_tests::writeback::setup(threats, table).await
}

integration_tests::writeback_scenarios!(embedded());

#[tokio::test(flavor = "multi_thread")]
async fn every_mapping_row_reaches_every_threat_of_a_story_and_single_threats() {
    let (h, base, stories) = setup(400, embedded()).await;
    assert!(stories[0].1.len() >= 2, "some stories hold several threats");
    let rows: [(&str, Option<&str>, &str, Option<&str>); 18] = [
        ("new", None, "unresolved", None),
        ("reopened", None, "unresolved", None),
        ("investigating", None, "in_progress", None),
        ("acknowledged", None, "in_progress", None),
        ("closed", Some("activity_blocked"), "resolved", Some("true_positive")),
        ("resolved", Some("attack_failed"), "resolved", Some("true_positive")),
        ("closed", Some("incident"), "resolved", Some("true_positive")),
        ("closed", Some("true_positive"), "resolved", Some("true_positive")),
        ("closed", Some("benign"), "resolved", Some("false_positive")),
        ("closed", Some("false_positive"), "resolved", Some("false_positive")),
        ("closed", Some("testing"), "resolved", Some("false_positive")),
        ("closed", Some("suppressed"), "resolved", Some("false_positive")),
        (
            "closed",
            Some("Suppressed - New device"),
            "resolved",
            Some("false_positive"),
        ),
        (
            "closed",
            Some("Suppressed - Threshold exceeded"),
            "resolved",
            Some("false_positive"),
        ),
        ("closed", Some("IT misconfiguration"), "resolved", Some("suspicious")),
        (
            "closed",
            Some("possible policy violation"),
            "resolved",
            Some("suspicious"),
        ),
        ("closed", Some("PUP/PUA"), "resolved", Some("suspicious")),
        ("closed", Some("other"), "resolved", Some("suspicious")),
    ];
    let multi: Vec<_> = stories.iter().filter(|(_, t)| t.len() >= 2).collect();
    let single: Vec<_> = stories.iter().filter(|(_, t)| t.len() == 1).collect();
    assert!(
        multi.len() >= rows.len() && single.len() >= rows.len(),
        "{} multi, {} single",
        multi.len(),
        single.len()
    );
    for (n, (state, reason, want_status, want_verdict)) in rows.iter().enumerate() {
        for (kind, (alert, ids)) in [("story", multi[n]), ("threat", single[n])] {
            let before: Vec<_> = futures_util::future::join_all(ids.iter().map(|id| s1_state(&h, id))).await;
            let body = status_changed(alert, state, *reason, OffsetDateTime::now_utc());
            let (code, resp) = post_generic(&base, "acme", &format!("evt-{kind}-{n}"), &body, INBOUND_SECRET).await;
            assert_eq!(
                (code, resp["writeback"].as_str()),
                (202, Some("applied")),
                "{state} {reason:?} ({kind}): {resp}"
            );
            for (id, (_, old_verdict, _)) in ids.iter().zip(before) {
                let (status, verdict, notes) = s1_state(&h, id).await;
                assert_eq!(status, *want_status, "{state} {reason:?} ({kind}) threat {id}");
                assert_eq!(
                    verdict,
                    want_verdict.map_or(old_verdict, str::to_owned),
                    "{state} {reason:?} ({kind}) threat {id}"
                );
                let note = notes.last().unwrap();
                assert!(
                    note.starts_with(&format!("[generic] {state} by Ana <ana@example.com>")),
                    "{note}"
                );
                assert!(note.ends_with("checked the process tree"), "{note}");
            }
        }
    }
    // Our own writes do not come back to the platform as changes.
    let before = h.receiver.events().len();
    let r = h.poll().await.tenants.remove(0);
    assert!(r.echoes > 0 && r.published == 0, "{r:?}");
    assert_eq!(h.receiver.events().len(), before);
    // And the outbound request log recorded the calls, per-threat results included.
    let out = h.store.list_outbound("acme", None, 1000).await.unwrap().items;
    assert!(out.iter().any(|r| r.path == "/threats/incident"
        && r.status == Some(200)
        && r.result.as_deref().is_some_and(|s| s.contains("updated="))));
    assert!(out.iter().any(|r| r.path == "/threats/notes"));
    let dump = format!("{out:?}");
    assert!(
        !dump.contains("sim-tenant-token") && !dump.contains("whsec_"),
        "no secrets in the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replays_reordering_tampering_and_bad_input_change_nothing() {
    let (h, base, stories) = setup(60, embedded()).await;
    let (alert, ids) = &stories[0];
    let t0 = OffsetDateTime::now_utc();
    let closed = status_changed(alert, "closed", Some("benign"), t0);
    assert_eq!(
        post_generic(&base, "acme", "evt-1", &closed, INBOUND_SECRET).await.0,
        202
    );
    let writes = s1_writes(&h).await;
    let notes = s1_state(&h, &ids[0]).await.2.len();

    // Replay: 200, nothing new in S1.
    let (code, body) = post_generic(&base, "acme", "evt-1", &closed, INBOUND_SECRET).await;
    assert_eq!(code, 200, "{body}");
    // Older than the applied change: 409.
    let older = status_changed(alert, "investigating", None, t0 - Duration::minutes(5));
    assert_eq!(
        post_generic(&base, "acme", "evt-2", &older, INBOUND_SECRET).await.0,
        409
    );
    // Tampered body, wrong secret, stale timestamp: 401.
    let ts = OffsetDateTime::now_utc().unix_timestamp();
    let good_sig = s1_shared::platform::sign(
        &s1_shared::platform::WebhookSecret::parse(INBOUND_SECRET).unwrap(),
        "evt-3",
        ts,
        &closed,
    );
    let mut tampered = closed.clone();
    let i = tampered.iter().position(|b| *b == b'b').unwrap();
    tampered[i] = b'B';
    let r = reqwest::Client::new()
        .post(format!("{base}/generic/acme"))
        .header("webhook-id", "evt-3")
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", good_sig)
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        post_generic(&base, "acme", "evt-4", &closed, WEBHOOK_SECRET).await.0,
        401,
        "the outbound secret is not the inbound one"
    );
    let no_sig = reqwest::Client::new()
        .post(format!("{base}/generic/acme"))
        .body(closed.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(no_sig.status(), 401);
    // Malformed, unknown alert, unknown tenant, oversize.
    assert_eq!(
        post_generic(&base, "acme", "evt-5", b"{not json", INBOUND_SECRET)
            .await
            .0,
        400
    );
    let no_status = serde_json::to_vec(
        &json!({"type": "alert.status_changed", "timestamp": "2026-01-01T00:00:00Z", "data": {"alert_key": alert}}),
    )
    .unwrap();
    let (code, body) = post_generic(&base, "acme", "evt-6", &no_status, INBOUND_SECRET).await;
    assert_eq!(code, 400);
    assert!(body["message"].as_str().unwrap().contains("data.status"), "{body}");
    let bad_state = status_changed(alert, "snoozed", None, OffsetDateTime::now_utc());
    assert_eq!(
        post_generic(&base, "acme", "evt-7", &bad_state, INBOUND_SECRET).await.0,
        400
    );
    let unknown = status_changed(
        "s1:127.0.0.1:nobody:nothing@1",
        "closed",
        Some("benign"),
        OffsetDateTime::now_utc(),
    );
    assert_eq!(
        post_generic(&base, "acme", "evt-8", &unknown, INBOUND_SECRET).await.0,
        404
    );
    assert_eq!(
        post_generic(&base, "globex", "evt-9", &closed, INBOUND_SECRET).await.0,
        401
    );
    let huge = vec![b' '; 300 * 1024];
    assert_eq!(
        post_generic(&base, "acme", "evt-10", &huge, INBOUND_SECRET).await.0,
        413
    );

    assert_eq!(s1_writes(&h).await, writes, "none of these reached S1");
    assert_eq!(s1_state(&h, &ids[0]).await.2.len(), notes);
}

#[tokio::test(flavor = "multi_thread")]
async fn s1_down_during_a_webhook_then_recovering_lands_the_change_once() {
    let (h, base, stories) = setup(60, embedded()).await;
    let d = deps(&h);
    let tenant = h.store.get_tenant("acme").await.unwrap().unwrap();
    for (n, fault) in [
        FaultKind::Status {
            status: 503,
            retry_after: None,
            code: None,
        },
        FaultKind::Status {
            status: 429,
            retry_after: None,
            code: None,
        },
        FaultKind::Reset,
    ]
    .into_iter()
    .enumerate()
    {
        let (alert, ids) = &stories[n];
        h.sim
            .control()
            .add_fault(&FaultRule::new("/threats/incident", fault.clone(), 3))
            .await
            .unwrap();
        let body = status_changed(alert, "closed", Some("true_positive"), OffsetDateTime::now_utc());
        let (code, resp) = post_generic(&base, "acme", &format!("down-{n}"), &body, INBOUND_SECRET).await;
        assert_eq!(
            (code, resp["writeback"].as_str()),
            (202, Some("pending")),
            "{fault:?}: {resp}"
        );
        assert_ne!(s1_state(&h, &ids[0]).await.0, "resolved", "{fault:?}: not applied yet");
        // Not due yet: nothing happens.
        let early = retry_pending(&d, &tenant, OffsetDateTime::now_utc(), 10, soon())
            .await
            .unwrap();
        assert_eq!(early.applied, 0);
        h.sim.control().clear_faults().await.unwrap();
        let later = retry_pending(
            &d,
            &tenant,
            OffsetDateTime::now_utc() + Duration::minutes(5),
            10,
            soon(),
        )
        .await
        .unwrap();
        assert_eq!(later.applied, 1, "{fault:?}: {later:?}");
        for id in ids {
            let (status, verdict, notes) = s1_state(&h, id).await;
            assert_eq!(
                (status.as_str(), verdict.as_str()),
                ("resolved", "true_positive"),
                "{fault:?}"
            );
            assert_eq!(
                notes.iter().filter(|n| n.contains("true_positive")).count(),
                1,
                "{fault:?}: one note"
            );
        }
    }
    assert!(h.store.list_pending("acme", None, 10).await.unwrap().items.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn s1_down_for_good_ends_in_the_dead_letters_and_replays_from_there() {
    let (h, base, stories) = setup(60, embedded()).await;
    let d = deps(&h);
    let tenant = h.store.get_tenant("acme").await.unwrap().unwrap();
    let (alert, ids) = &stories[0];
    fail_incident(&h, 500, 10_000).await;
    let body = status_changed(alert, "resolved", Some("benign"), OffsetDateTime::now_utc());
    assert_eq!(
        post_generic(&base, "acme", "gone-1", &body, INBOUND_SECRET).await.0,
        202
    );
    let mut at = OffsetDateTime::now_utc();
    for _ in 0..MAX_ATTEMPTS {
        at += Duration::hours(2);
        retry_pending(&d, &tenant, at, 10, soon()).await.unwrap();
    }
    assert!(h.store.list_pending("acme", None, 10).await.unwrap().items.is_empty());
    let dead = h.store.list_dead("acme", None, 10).await.unwrap().items;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, MAX_ATTEMPTS);
    assert!(
        dead[0].last_error.as_deref().unwrap().contains("HTTP 500"),
        "{:?}",
        dead[0].last_error
    );

    // S1 is back; the operator replays the dead letter.
    h.sim.control().clear_faults().await.unwrap();
    h.store
        .replay_dead("acme", &dead[0].id, OffsetDateTime::now_utc())
        .await
        .unwrap();
    let r = retry_pending(&d, &tenant, OffsetDateTime::now_utc(), 10, soon())
        .await
        .unwrap();
    assert_eq!(r.applied, 1, "{r:?}");
    assert_eq!(s1_state(&h, &ids[0]).await.1, "false_positive");
    // The writeback marked the story closed, so a new threat on it would reopen it.
    let key = alert.split(':').skip(2).collect::<Vec<_>>().join(":");
    let key = key.rsplit_once('@').unwrap().0.to_owned();
    assert_eq!(
        h.store.get_story("acme", &key).await.unwrap().unwrap().value.status,
        StoryStatus::Closed
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_permissions_in_s1_is_not_retried_forever() {
    let (h, base, stories) = setup(40, embedded()).await;
    h.sim
        .control()
        .add_token(&s1_bridge_sim::TokenSpec {
            can_write: false,
            ..s1_bridge_sim::TokenSpec::tenant("viewer", 10)
        })
        .await
        .unwrap();
    h.env.lock().unwrap().insert("S1_TOKEN_acme".into(), "viewer".into());
    let (alert, _) = &stories[0];
    let body = status_changed(alert, "closed", Some("benign"), OffsetDateTime::now_utc());
    let (code, resp) = post_generic(&base, "acme", "viewer-1", &body, INBOUND_SECRET).await;
    assert_eq!((code, resp["writeback"].as_str()), (202, Some("dead_letter")), "{resp}");
    let dead = h.store.list_dead("acme", None, 10).await.unwrap().items;
    assert!(
        dead[0].last_error.as_deref().unwrap().contains("missing_permissions"),
        "{dead:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bearer_token_endpoint_is_the_weaker_alternative() {
    let (h, base, stories) = setup(30, embedded()).await;
    let mut t = h.store.get_tenant("acme").await.unwrap().unwrap();
    t.generic_mut().inbound_secrets.clear();
    t.generic_mut().inbound_bearer = Some(s1_shared::test_util::env("BEARER"));
    h.store.put_tenant(&t).await.unwrap();
    h.env
        .lock()
        .unwrap()
        .insert("BEARER".into(), "0123456789abcdef0123456789abcdef".into());
    let body = status_changed(&stories[0].0, "investigating", None, OffsetDateTime::now_utc());
    let send = |token: &'static str| {
        let body = body.clone();
        let base = base.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{base}/generic/acme"))
                .header("webhook-id", format!("bearer-{token}"))
                .bearer_auth(token)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(send("wrong-token-wrong-token-wrong-tok").await, 401);
    assert_eq!(send("0123456789abcdef0123456789abcdef").await, 202);
    // Nothing is signed in this mode, so the event's own time must be recent.
    let old = status_changed(
        &stories[0].0,
        "closed",
        Some("benign"),
        OffsetDateTime::now_utc() - Duration::days(2),
    );
    let r = reqwest::Client::new()
        .post(format!("{base}/generic/acme"))
        .header("webhook-id", "bearer-old")
        .bearer_auth("0123456789abcdef0123456789abcdef")
        .body(old)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("older than"));
}

/// The real PagerDuty v3 bodies and signatures in tests/fixtures/platforms/pagerduty-v3.
mod pagerduty {
    use super::*;
    use s1_shared::store::{MemberState, StoryRecord};
    use serde_json::Value;
    use std::collections::BTreeMap;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(
            integration_tests::fixtures_dir()
                .join("platforms/pagerduty-v3")
                .join(name),
        )
        .unwrap()
    }

    fn cases() -> Vec<Value> {
        serde_json::from_slice::<Value>(&fixture("signatures.json")).unwrap()["cases"]
            .as_array()
            .unwrap()
            .clone()
    }

    async fn post(base: &str, body: &[u8], signature: &str) -> (u16, Value) {
        post_as(base, body, signature, "any-delivery").await
    }

    /// A delivery with its (unsigned) `X-Webhook-Id` header.
    async fn post_as(base: &str, body: &[u8], signature: &str, webhook_id: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{base}/pagerduty/pd"))
            .header("X-PagerDuty-Signature", signature)
            .header("X-Webhook-Id", webhook_id)
            .header("Content-Type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The recorded deliveries were made on 2025-04-07 (03:00-03:50 UTC); the endpoint judges
    /// them at that time.
    fn fixture_clock() -> OffsetDateTime {
        time::macros::datetime!(2025-04-07 03:50:00 UTC)
    }

    /// A recorded delivery changed by `edit` and signed again with the tenant's first secret.
    fn resigned(file: &str, edit: impl FnOnce(&mut Value)) -> (Vec<u8>, String) {
        let mut v: Value = serde_json::from_slice(&fixture(file)).unwrap();
        edit(&mut v);
        let body = serde_json::to_vec(&v).unwrap();
        let sig = s1_shared::platform::sign_pagerduty(cases()[0]["secret"].as_str().unwrap(), &body);
        (body, sig)
    }

    fn valid_signature(file: &str) -> String {
        cases()
            .iter()
            .find(|c| c["file"] == file && c["expect_valid"] == true)
            .unwrap()["header"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A PagerDuty tenant whose story is the incident the fixtures talk about.
    async fn setup_pd() -> (PollHarness, String, Vec<String>) {
        let (h, base_now, stories) = setup(30, embedded()).await;
        let mut t = tenant("pd", &h.sim.base_url(), &h.receiver.url());
        t.token = s1_shared::store::TokenSource::Env {
            var: "S1_TOKEN_acme".into(),
        };
        t.platform = s1_shared::test_util::pagerduty("https://events.pagerduty.com/v2/enqueue", "PD_KEY");
        if let s1_shared::platform::PlatformConfig::PagerDuty(s) = &mut t.platform {
            s.inbound_secrets = vec![s1_shared::test_util::env("PD_1"), s1_shared::test_util::env("PD_2")];
        }
        h.store.put_tenant(&t).await.unwrap();
        let secrets: Vec<String> = cases()
            .iter()
            .map(|c| c["secret"].as_str().unwrap().to_owned())
            .collect();
        h.env.lock().unwrap().insert("PD_1".into(), secrets[0].clone());
        h.env.lock().unwrap().insert(
            "PD_2".into(),
            secrets.iter().find(|s| **s != secrets[0]).unwrap().clone(),
        );
        let ids = stories[0].1.clone();
        let member = MemberState {
            updated_at: None,
            digest: String::new(),
            status: None,
            verdict: None,
            verdict_detail: None,
            written_status: None,
            written_verdict: None,
            publish_error: None,
            unsure: false,
        };
        let story = StoryRecord {
            key: "pd-story".into(),
            id: "pd-story@0".into(),
            window_start: OffsetDateTime::UNIX_EPOCH,
            status: StoryStatus::Open,
            platform: Some(s1_shared::platform::PlatformKind::PagerDuty),
            // The dedup key our Events API trigger used, which PagerDuty reports as incident_key.
            platform_ref: Some("dfead9d88e0649e8b7dee514b1875756".into()),
            members: ids
                .iter()
                .map(|id| (s1_shared::domain::MemberId::threat(id.as_str()), member.clone()))
                .collect::<BTreeMap<_, _>>(),
            previous: vec![],
        };
        assert!(h.store.put_story("pd", &story, 0).await.unwrap());
        let options = s1_shared::usecase::writeback::WebhookOptions {
            now: Some(fixture_clock()),
            ..Default::default()
        };
        let base = integration_tests::writeback::serve_with(deps(&h), options).await;
        let _ = base_now;
        (h, base, ids)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_redelivery_under_another_x_webhook_id_is_still_a_duplicate() {
        let (h, base, ids) = setup_pd().await;
        let file = "aldaviva-incident.triggered.json";
        assert_eq!(post(&base, &fixture(file), &valid_signature(file)).await.0, 202);
        let file = "aldaviva-incident.annotated.json";
        let (body, sig) = (fixture(file), valid_signature(file));
        let (code, resp) = post_as(&base, &body, &sig, "delivery-1").await;
        assert_eq!((code, resp["writeback"].as_str()), (202, Some("applied")), "{resp}");
        let writes = s1_writes(&h).await;
        let (code, resp) = post_as(&base, &body, &sig, "delivery-2").await;
        assert_eq!(code, 200, "the signed event.id is the same: {resp}");
        assert_eq!(s1_writes(&h).await, writes);
        let notes = s1_state(&h, &ids[0]).await.2;
        assert_eq!(
            notes.iter().filter(|n| n.contains("Resolution Note")).count(),
            1,
            "{notes:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn signed_deliveries_older_than_the_replay_window_or_from_the_future_are_refused() {
        let (h, base, ids) = setup_pd().await;
        let writes = s1_writes(&h).await;
        for (label, at, want) in [
            (
                "a day and an hour old",
                fixture_clock() - Duration::hours(25),
                "older than",
            ),
            ("ten minutes ahead", fixture_clock() + Duration::minutes(10), "future"),
        ] {
            let (body, sig) = resigned("aldaviva-incident.resolved.json", |v| {
                v["event"]["id"] = json!(format!("replay-{label}"));
                v["event"]["occurred_at"] = json!(s1_shared::s1::dto::format_time(at));
            });
            let (code, resp) = post(&base, &body, &sig).await;
            assert_eq!(code, 400, "{label}: {resp}");
            assert!(resp["message"].as_str().unwrap().contains(want), "{label}: {resp}");
        }
        assert_eq!(s1_writes(&h).await, writes);
        assert_ne!(s1_state(&h, &ids[0]).await.0, "resolved");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_negated_verdict_word_in_a_resolution_note_sets_no_verdict() {
        let (h, base, ids) = setup_pd().await;
        let file = "aldaviva-incident.triggered.json";
        assert_eq!(post(&base, &fixture(file), &valid_signature(file)).await.0, 202);
        for (n, (text, want)) in [
            ("Resolution Note: this is not a false positive, keep watching", None),
            ("Resolution Note: not malicious; the user ran a test", None),
            ("Resolution Note: benign, IT installed it", Some("false_positive")),
        ]
        .into_iter()
        .enumerate()
        {
            let before = s1_state(&h, &ids[0]).await.1;
            let (body, sig) = resigned("aldaviva-incident.annotated.json", |v| {
                v["event"]["id"] = json!(format!("note-{n}"));
                v["event"]["data"]["content"] = json!(text);
            });
            let (code, resp) = post(&base, &body, &sig).await;
            assert_eq!(code, 202, "{text}: {resp}");
            assert_eq!(s1_state(&h, &ids[0]).await.1, want.unwrap_or(&before), "{text}");
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_recorded_signatures_verify_byte_for_byte_and_tampered_copies_do_not() {
        let (_h, base, _) = setup_pd().await;
        for c in cases() {
            let file = c["file"].as_str().unwrap();
            let body = fixture(file);
            let (status, resp) = post(&base, &body, c["header"].as_str().unwrap()).await;
            if c["expect_valid"] == true {
                assert_ne!(status, 401, "{file} {}: {resp}", c["source"]);
            } else {
                assert_eq!(status, 401, "{file} {}: {resp}", c["source"]);
            }
            let mut tampered = body.clone();
            let last = tampered.len() - 2;
            tampered[last] ^= 0x01;
            assert_eq!(
                post(&base, &tampered, c["header"].as_str().unwrap()).await.0,
                401,
                "tampered {file}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_incident_lifecycle_reaches_s1_and_the_late_resolution_note_becomes_a_note() {
        let (h, base, ids) = setup_pd().await;
        let steps = [
            ("aldaviva-incident.triggered.json", "unresolved"),
            ("aldaviva-incident.acknowledged.json", "in_progress"),
            ("aldaviva-incident.resolved.json", "resolved"),
        ];
        for (file, want) in steps {
            let (status, resp) = post(&base, &fixture(file), &valid_signature(file)).await;
            assert_eq!(
                (status, resp["writeback"].as_str()),
                (202, Some("applied")),
                "{file}: {resp}"
            );
            for id in &ids {
                assert_eq!(s1_state(&h, id).await.0, want, "{file} -> threat {id}");
            }
        }
        // The resolution note arrives after the resolve, naming only the incident id.
        let file = "aldaviva-incident.annotated.json";
        let (status, resp) = post(&base, &fixture(file), &valid_signature(file)).await;
        assert_eq!((status, resp["writeback"].as_str()), (202, Some("applied")), "{resp}");
        let (status_now, _, notes) = s1_state(&h, &ids[0]).await;
        assert_eq!(status_now, "resolved");
        assert!(notes.iter().any(|n| n.contains("Resolution Note: I'm resolving it") && n.starts_with("[pagerduty] comment by Ben")), "{notes:?}");
        assert!(
            notes.iter().any(|n| n.starts_with("[pagerduty] resolved by Ben")),
            "{notes:?}"
        );
        // PagerDuty redelivers: nothing happens twice. An older event after the resolve is refused.
        let file = "aldaviva-incident.resolved.json";
        assert_eq!(post(&base, &fixture(file), &valid_signature(file)).await.0, 200);
        let writes = s1_writes(&h).await;
        let ping = "aldaviva-pagey.ping.json";
        let (status, resp) = post(&base, &fixture(ping), &valid_signature(ping)).await;
        assert_eq!(status, 200, "{resp}");
        assert_eq!(s1_writes(&h).await, writes);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn echoes_of_our_own_events_api_calls_are_ignored() {
        let (h, base, _) = setup_pd().await;
        let mut body: Value = serde_json::from_slice(&fixture("aldaviva-incident.resolved.json")).unwrap();
        body["event"]["agent"]["type"] = "inbound_integration_reference".into();
        body["event"]["id"] = "echo-1".into();
        let raw = serde_json::to_vec(&body).unwrap();
        let secret = cases()[0]["secret"].as_str().unwrap().to_owned();
        let sig = {
            use hmac::{Hmac, KeyInit, Mac};
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(&raw);
            format!("v1={}", hex::encode(mac.finalize().into_bytes()))
        };
        let writes = s1_writes(&h).await;
        let (status, resp) = post(&base, &raw, &sig).await;
        assert_eq!(status, 200, "{resp}");
        assert!(resp["message"].as_str().unwrap().contains("echo"), "{resp}");
        assert_eq!(s1_writes(&h).await, writes);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scheduled_poll_run_retries_pending_writebacks() {
    let (h, base, stories) = setup(40, embedded()).await;
    let (alert, ids) = &stories[0];
    fail_incident(&h, 503, 4).await;
    let body = status_changed(alert, "acknowledged", None, OffsetDateTime::now_utc());
    let (code, resp) = post_generic(&base, "acme", "sched-1", &body, INBOUND_SECRET).await;
    assert_eq!((code, resp["writeback"].as_str()), (202, Some("pending")), "{resp}");
    // Make it due now, as it would be a minute later.
    let mut p = h.store.list_pending("acme", None, 10).await.unwrap().items.remove(0);
    p.next_attempt_at = OffsetDateTime::now_utc() - Duration::seconds(1);
    h.store.put_pending("acme", &p).await.unwrap();
    h.sim.control().clear_faults().await.unwrap();
    let mut poll = h.deps.clone();
    poll.writeback = Some(deps(&h));
    let r = s1_shared::usecase::poll_threats::run(
        &poll,
        &s1_shared::usecase::poll_threats::Selection::All,
        std::time::Instant::now() + std::time::Duration::from_secs(60),
    )
    .await
    .unwrap()
    .tenants
    .remove(0);
    assert_eq!(r.writebacks_applied, 1, "{r:?}");
    assert_eq!(s1_state(&h, &ids[0]).await.0, "in_progress");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_s1_gets_a_pending_answer_within_the_budget_and_the_retry_lands_it_once() {
    let (h, base, stories) = setup(40, embedded()).await;
    let (alert, ids) = &stories[0];
    // Slower than the whole webhook budget, whatever the HTTP client's own timeouts.
    incident_fault(&h, FaultKind::Slow { millis: 8_000 }, 1).await;
    let body = status_changed(alert, "closed", Some("true_positive"), OffsetDateTime::now_utc());
    let (code, resp) = post_generic(&base, "acme", "slow-1", &body, INBOUND_SECRET).await;
    assert_eq!((code, resp["writeback"].as_str()), (202, Some("pending")), "{resp}");
    let tenant = h.store.get_tenant("acme").await.unwrap().unwrap();
    // The stalled attempt's claim lapses; the next run lands the change.
    let r = retry_pending(
        &deps(&h),
        &tenant,
        OffsetDateTime::now_utc() + Duration::minutes(10),
        10,
        soon(),
    )
    .await
    .unwrap();
    assert_eq!(r.applied, 1, "{r:?}");
    for id in ids {
        let (status, verdict, notes) = s1_state(&h, id).await;
        assert_eq!((status.as_str(), verdict.as_str()), ("resolved", "true_positive"));
        assert_eq!(
            notes.iter().filter(|n| n.contains("closed by Ana")).count(),
            1,
            "{notes:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_pass_honours_its_deadline() {
    let (h, base, stories) = setup(40, embedded()).await;
    let d = deps(&h);
    let tenant = h.store.get_tenant("acme").await.unwrap().unwrap();
    fail_incident(&h, 503, 2).await;
    let body = status_changed(&stories[0].0, "acknowledged", None, OffsetDateTime::now_utc());
    let (_, resp) = post_generic(&base, "acme", "deadline-1", &body, INBOUND_SECRET).await;
    assert_eq!(resp["writeback"], "pending", "{resp}");
    let later = OffsetDateTime::now_utc() + Duration::minutes(10);
    // No time left: nothing is tried, nothing reaches S1.
    let writes = s1_writes(&h).await;
    let r = retry_pending(&d, &tenant, later, 10, std::time::Instant::now())
        .await
        .unwrap();
    assert_eq!((r.applied, r.rescheduled, r.waiting), (0, 0, 1), "{r:?}");
    assert_eq!(s1_writes(&h).await, writes);
    // A deadline that comes while S1 is slow cuts the attempt: the change stays pending.
    incident_fault(&h, FaultKind::Slow { millis: 8_000 }, 1).await;
    let r = retry_pending(
        &d,
        &tenant,
        later,
        10,
        std::time::Instant::now() + std::time::Duration::from_secs(2),
    )
    .await
    .unwrap();
    assert_eq!((r.applied, r.rescheduled), (0, 1), "{r:?}");
    assert_eq!(h.store.list_pending("acme", None, 10).await.unwrap().items.len(), 1);
    // With time, it lands.
    let r = retry_pending(&d, &tenant, later + Duration::minutes(10), 10, soon())
        .await
        .unwrap();
    assert_eq!(r.applied, 1, "{r:?}");
}

/// A pending item that does not read as a pending writeback (damaged, or written by another
/// version) does not hold up the others: the retry pass leaves it where it is, counts it, and
/// applies the rest.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_pending_item_is_left_alone_and_the_others_are_retried() {
    let (h, base, stories) = setup(40, embedded()).await;
    let (alert, ids) = &stories[0];
    let d = deps(&h);
    let tenant = h.store.get_tenant("acme").await.unwrap().unwrap();
    fail_incident(&h, 503, 2).await;
    let body = status_changed(alert, "acknowledged", None, OffsetDateTime::now_utc());
    let (_, resp) = post_generic(&base, "acme", "unreadable-1", &body, INBOUND_SECRET).await;
    assert_eq!(resp["writeback"], "pending", "{resp}");
    let bad = Item {
        pk: "TENANT#acme".into(),
        sk: "PENDING#0-damaged".into(),
        data: r#"{"id":"0-damaged","alert_key":"k","change":{"note":"x"},"attempts":0,"created_at":"2026-01-01T00:00:00Z","next_attempt_at":"2026-01-01T00:00:00Z"}"#.into(),
        ..Item::default()
    };
    assert!(h.store.table().put(&bad, &Cond::Always).await.unwrap());
    let later = OffsetDateTime::now_utc() + Duration::minutes(10);
    let r = retry_pending(&d, &tenant, later, 10, soon()).await.unwrap();
    assert_eq!((r.applied, r.unreadable, r.dead), (1, 1, 0), "{r:?}");
    assert_eq!(s1_state(&h, &ids[0]).await.0, "in_progress");
    let left = h.store.list_pending_entries("acme", None, 10).await.unwrap().items;
    assert!(
        matches!(left.as_slice(), [Err(StoreError::Corrupt { sk, .. })] if sk == "PENDING#0-damaged"),
        "{left:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_disabled_and_unverified_requests_all_get_one_401_and_nothing_leaks() {
    let flaky = integration_tests::poll::FlakyTable::new(embedded());
    let (h, base, stories) = setup(30, flaky.clone()).await;
    let (alert, ids) = &stories[0];
    let body = status_changed(alert, "closed", Some("benign"), OffsetDateTime::now_utc());
    let (_, unknown) = post_generic(&base, "globex", "enum-1", &body, INBOUND_SECRET).await;
    assert_eq!(unknown["status"], 401, "{unknown}");
    let mut refusals = vec![
        (
            "bad signature",
            post_generic(&base, "acme", "enum-2", &body, WEBHOOK_SECRET).await,
        ),
        (
            "odd tenant id",
            post_generic(&base, "a%23b", "enum-3", &body, INBOUND_SECRET).await,
        ),
    ];
    let r = reqwest::Client::new()
        .post(format!("{base}/pagerduty/acme"))
        .header("X-PagerDuty-Signature", "v1=00")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    refusals.push(("other platform", (r.status().as_u16(), r.json().await.unwrap())));
    let writes = s1_writes(&h).await;
    let mut t = h.store.get_tenant("acme").await.unwrap().unwrap();
    t.enabled = false;
    h.store.put_tenant(&t).await.unwrap();
    refusals.push((
        "disabled tenant",
        post_generic(&base, "acme", "enum-4", &body, INBOUND_SECRET).await,
    ));
    for (what, (code, answer)) in &refusals {
        assert_eq!(
            (*code, answer),
            (401, &unknown),
            "{what}: the same answer as an unknown tenant"
        );
    }
    for word in ["globex", "acme", "generic", "pagerduty", "tenant", "signature"] {
        assert!(!unknown.to_string().contains(word), "{word} in {unknown}");
    }
    // A disabled tenant's pending changes are not sent to S1 either.
    t.enabled = true;
    h.store.put_tenant(&t).await.unwrap();
    fail_incident(&h, 503, 2).await;
    let (_, resp) = post_generic(&base, "acme", "enum-5", &body, INBOUND_SECRET).await;
    assert_eq!(resp["writeback"], "pending", "{resp}");
    t.enabled = false;
    h.store.put_tenant(&t).await.unwrap();
    let writes_before_retry = s1_writes(&h).await;
    let later = OffsetDateTime::now_utc() + Duration::hours(1);
    let r = retry_pending(&deps(&h), &t, later, 10, soon()).await.unwrap();
    assert_eq!(r.applied + r.rescheduled + r.dead, 0, "{r:?}");
    assert_eq!(s1_writes(&h).await, writes_before_retry);
    assert!(writes <= writes_before_retry);
    assert_ne!(s1_state(&h, &ids[0]).await.0, "resolved");
    // The state store failing: 503, and none of its text in the answer.
    t.enabled = true;
    h.store.put_tenant(&t).await.unwrap();
    // The acceptance write (replay marker and pending change) fails.
    flaky.fail_puts("PENDING#", 1);
    let body = status_changed(alert, "investigating", None, OffsetDateTime::now_utc());
    let (code, answer) = post_generic(&base, "acme", "enum-6", &body, INBOUND_SECRET).await;
    assert_eq!(code, 503, "{answer}");
    let text = answer.to_string();
    assert!(!text.contains("injected") && !text.contains("put_all"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_dated_in_the_future_is_refused_and_blocks_nothing() {
    let (h, base, stories) = setup(30, embedded()).await;
    let (alert, ids) = &stories[0];
    let ahead = status_changed(
        alert,
        "closed",
        Some("benign"),
        OffsetDateTime::now_utc() + Duration::days(1),
    );
    let (code, resp) = post_generic(&base, "acme", "future-1", &ahead, INBOUND_SECRET).await;
    assert_eq!(code, 400, "{resp}");
    assert!(resp["message"].as_str().unwrap().contains("future"), "{resp}");
    let now = status_changed(alert, "investigating", None, OffsetDateTime::now_utc());
    let (code, resp) = post_generic(&base, "acme", "future-2", &now, INBOUND_SECRET).await;
    assert_eq!((code, resp["writeback"].as_str()), (202, Some("applied")), "{resp}");
    assert_eq!(s1_state(&h, &ids[0]).await.0, "in_progress");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_comment_delivered_twice_is_one_note() {
    let (h, base, stories) = setup(30, embedded()).await;
    let (alert, ids) = &stories[0];
    let note = integration_tests::writeback::comment_added(alert, "escalated to IR", OffsetDateTime::now_utc());
    let (code, resp) = post_generic(&base, "acme", "comment-1", &note, INBOUND_SECRET).await;
    assert_eq!((code, resp["writeback"].as_str()), (202, Some("applied")), "{resp}");
    let (code, resp) = post_generic(&base, "acme", "comment-2", &note, INBOUND_SECRET).await;
    assert_eq!(code, 200, "{resp}");
    let other = integration_tests::writeback::comment_added(alert, "IR confirmed", OffsetDateTime::now_utc());
    let (code, _) = post_generic(&base, "acme", "comment-3", &other, INBOUND_SECRET).await;
    assert_eq!(code, 202);
    let notes = s1_state(&h, &ids[0]).await.2;
    assert_eq!(
        notes.iter().filter(|n| n.contains("escalated to IR")).count(),
        1,
        "{notes:?}"
    );
    assert_eq!(
        notes.iter().filter(|n| n.contains("IR confirmed")).count(),
        1,
        "{notes:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_comment_becomes_one_note_s1_accepts() {
    let (h, base, stories) = setup(30, embedded()).await;
    let (alert, ids) = &stories[0];
    // ~200 KiB, under the 256 KiB body limit; S1 takes notes of at most 10,000 characters.
    let text = "é".repeat(100 * 1024);
    let body = integration_tests::writeback::comment_added(alert, &text, OffsetDateTime::now_utc());
    assert!(body.len() > 200 * 1024 && body.len() < 256 * 1024);
    let (code, resp) = post_generic(&base, "acme", "huge-1", &body, INBOUND_SECRET).await;
    assert_eq!((code, resp["writeback"].as_str()), (202, Some("applied")), "{resp}");
    let notes = s1_state(&h, &ids[0]).await.2;
    let note = notes
        .iter()
        .find(|n| n.starts_with("[generic] comment by Ana"))
        .unwrap();
    assert!(note.chars().count() <= 10_000, "{} characters", note.chars().count());
    assert!(
        note.contains("éééé") && note.ends_with("[truncated]"),
        "{}",
        &note[note.len() - 60..]
    );
    // Over the body limit: 413, nothing stored.
    let text = "x".repeat(300 * 1024);
    let body = integration_tests::writeback::comment_added(alert, &text, OffsetDateTime::now_utc());
    assert_eq!(
        post_generic(&base, "acme", "huge-2", &body, INBOUND_SECRET).await.0,
        413
    );
    assert!(h.store.list_pending("acme", None, 10).await.unwrap().items.is_empty());
}

/// The writeback's cached S1 token was rotated away (S1 refuses it) and the secret now holds
/// the new one: the 401 invalidates the cached token, the secret is re-read once, and the change
/// lands inline with the new token.
#[tokio::test(flavor = "multi_thread")]
async fn a_401_invalidates_the_cached_token_and_the_change_lands_with_the_reread_one() {
    let (h, _, stories) = setup(20, embedded()).await;
    let (alert, ids) = &stories[0];
    let mut d = deps(&h);
    let tokens = integration_tests::tokens::CachingTokens::over(d.tokens.clone());
    let source = s1_shared::store::TokenSource::Env {
        var: "S1_TOKEN_acme".into(),
    };
    let set = |v: &str| h.env.lock().unwrap().insert("S1_TOKEN_acme".into(), v.into());
    set("rotated-away-token");
    use s1_shared::secrets::TokenProvider;
    tokens.token(&source).await.unwrap();
    set(s1_bridge_sim::DEFAULT_TOKEN);
    d.consoles = integration_tests::poll::consoles_over(tokens.clone());
    let base = integration_tests::writeback::serve(d).await;
    h.sim.control().clear_requests().await.unwrap();
    let body = status_changed(alert, "closed", Some("benign"), OffsetDateTime::now_utc());
    let (code, resp) = post_generic(&base, "acme", "evt-rotated", &body, INBOUND_SECRET).await;
    assert_eq!((code, resp["writeback"].as_str()), (202, Some("applied")), "{resp}");
    assert_eq!(s1_state(&h, &ids[0]).await.0, "resolved");
    assert_eq!(
        tokens.invalidations(),
        1,
        "the refused token was dropped from the cache"
    );
    assert_eq!(
        h.sim.control().stats().await.unwrap().requests["POST /threats/incident"],
        2,
        "one 401, then the call with the re-read token"
    );
}
