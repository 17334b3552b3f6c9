//! The S1 client against the simulator over real HTTP: paging, retries, error classes, scopes,
//! writes and client-side rate limits.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use integration_tests::{client_for, fast_retry_options, items, sim_and_client};
use s1_bridge_sim::{CursorEnd, FaultKind, FaultRule, SimConfig, TokenScope, TokenSpec};
use s1_shared::ApiToken;
use s1_shared::s1::dto::{ActionResult, AnalystVerdict, IncidentStatus, format_time};
use s1_shared::s1::{AgentQuery, ClientOptions, S1Client, S1Error, SiteQuery, ThreatQuery};

fn small() -> SimConfig {
    SimConfig {
        threats: 120,
        agents: 40,
        cloud_alerts: 5,
        ..SimConfig::default()
    }
}

fn status(code: u16) -> FaultKind {
    FaultKind::Status {
        status: code,
        retry_after: None,
        code: None,
    }
}

async fn all_threat_ids(client: &S1Client, query: &ThreatQuery) -> Result<Vec<String>, S1Error> {
    client
        .threats(query)
        .map_ok(|p| p.items.into_iter().map(|t| t.id).collect::<Vec<_>>())
        .try_concat()
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_to_the_end_whichever_way_the_last_page_says_so() {
    let (sim, client) = sim_and_client(SimConfig {
        threats: 2_500,
        ..small()
    })
    .await;
    for end in [CursorEnd::Null, CursorEnd::NullString, CursorEnd::Empty] {
        sim.control().set_cursor_end(end).await.unwrap();
        sim.control().clear_requests().await.unwrap();
        let ids = all_threat_ids(&client, &ThreatQuery::default()).await.unwrap();
        assert_eq!(ids.len(), 2_500, "{end:?}: every threat once");
        assert_eq!(
            ids.iter().collect::<HashSet<_>>().len(),
            2_500,
            "{end:?}: no duplicates"
        );
        let stats = sim.control().stats().await.unwrap();
        assert_eq!(
            stats.requests.get("GET /threats"),
            Some(&3),
            "{end:?}: 3 pages of 1000, then stop"
        );
    }
    // Sites come object-shaped and page the same way.
    let sites: Vec<_> = client
        .sites(&SiteQuery {
            limit: 2,
            ..SiteQuery::default()
        })
        .try_collect()
        .await
        .unwrap();
    assert_eq!(sites.iter().map(|p| p.items.len()).sum::<usize>(), 6);
    assert_eq!(sites.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn threats_sharing_one_updated_at_across_pages_are_neither_lost_nor_doubled() {
    let (_sim, client) = sim_and_client(SimConfig {
        threats: 2_300,
        same_updated_at: 700,
        ..small()
    })
    .await;
    let pages: Vec<_> = client.threats(&ThreatQuery::default()).try_collect().await.unwrap();
    let ids: Vec<_> = pages
        .iter()
        .flat_map(|p| p.items.iter().map(|t| t.id.clone()))
        .collect();
    assert_eq!(ids.len(), 2_300);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 2_300);
    let times: Vec<_> = pages
        .iter()
        .flat_map(|p| p.items.iter().map(|t| t.threat_info.updated_at.unwrap()))
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "ascending updatedAt");
    assert!(
        pages[0].items.last().unwrap().threat_info.updated_at == pages[1].items[0].threat_info.updated_at,
        "a timestamp group straddles the page boundary"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_since_returns_only_later_changes_and_the_boundary() {
    let (_sim, client) = sim_and_client(small()).await;
    let all: Vec<_> = items(client.threats(&ThreatQuery::default())).await.unwrap();
    let pivot = all[50].threat_info.updated_at.unwrap();
    let since: Vec<_> = items(client.threats(&ThreatQuery::changed_since(pivot))).await.unwrap();
    assert_eq!(since.len(), 70, "gte includes the boundary threat");
    assert_eq!(since[0].id, all[50].id);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limited_with_retry_after_waits_as_told_then_succeeds() {
    let (sim, client) = sim_and_client(small()).await;
    let fault = FaultKind::Status {
        status: 429,
        retry_after: Some("1".into()),
        code: None,
    };
    sim.control()
        .add_fault(&FaultRule::new("/threats", fault, 2))
        .await
        .unwrap();
    let started = Instant::now();
    let ids = all_threat_ids(&client, &ThreatQuery::default()).await.unwrap();
    assert_eq!(ids.len(), 120);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "two Retry-After: 1 waits were honoured"
    );
    assert_eq!(sim.control().stats().await.unwrap().requests["GET /threats"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limited_without_retry_after_backs_off_and_gives_up_after_the_budget() {
    let (sim, client) = sim_and_client(small()).await;
    sim.control()
        .add_fault(&FaultRule::new("/agents", status(429), 2))
        .await
        .unwrap();
    let agents: Vec<_> = client.agents(&AgentQuery::default()).try_collect().await.unwrap();
    assert_eq!(agents[0].items.len(), 40, "succeeds after two 429s");

    sim.control()
        .add_fault(&FaultRule::new("/agents", status(429), 100))
        .await
        .unwrap();
    let err = client
        .agents(&AgentQuery::default())
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            S1Error::RateLimited {
                attempts: 4,
                retry_after: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(err.to_string().contains("/agents"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_retried_then_reported() {
    let (sim, client) = sim_and_client(small()).await;
    sim.control()
        .add_fault(&FaultRule::new("/system/info", status(503), 2))
        .await
        .unwrap();
    assert!(client.system_info().await.is_ok(), "5xx then success");

    sim.control()
        .add_fault(&FaultRule::new("/system/info", status(500), 10))
        .await
        .unwrap();
    let err = client.system_info().await.unwrap_err();
    assert!(
        matches!(
            err,
            S1Error::Server {
                status: 500,
                attempts: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), Some(5000010));
    sim.control().clear_faults().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_note_is_never_posted_twice_after_an_ambiguous_failure() {
    let (sim, client) = sim_and_client(small()).await;
    let id = "1500000000000000001".to_string();
    sim.control()
        .add_fault(&FaultRule::new("/threats/notes", status(502), 1))
        .await
        .unwrap();
    let err = client.add_note(std::slice::from_ref(&id), "first").await.unwrap_err();
    assert!(
        matches!(err, S1Error::Server { attempts: 1, .. }),
        "not retried: {err:?}"
    );
    // A 429 means S1 did not take the call, so that one is retried.
    sim.control()
        .add_fault(&FaultRule::new("/threats/notes", status(429), 1))
        .await
        .unwrap();
    client.add_note(std::slice::from_ref(&id), "second").await.unwrap();
    let notes: Vec<_> = items(client.threat_notes(&id)).await.unwrap();
    let texts: Vec<_> = notes.iter().filter_map(|n| n.text.as_deref()).collect();
    assert_eq!(texts, ["second"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_and_expired_tokens_are_unauthorized() {
    let (sim, _) = sim_and_client(small()).await;
    let expired = TokenSpec {
        expires_at: time::OffsetDateTime::now_utc() - time::Duration::hours(1),
        ..TokenSpec::tenant("expired-token", 0)
    };
    sim.control().add_token(&expired).await.unwrap();
    for token in ["not-a-token", "expired-token"] {
        let client = client_for(&sim, token, fast_retry_options());
        let err = all_threat_ids(&client, &ThreatQuery::default()).await.unwrap_err();
        assert!(err.is_unauthorized(), "{token}: {err:?}");
        assert_eq!(err.code(), Some(4010010));
        assert!(!err.is_retryable());
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(token), "the token must not appear in errors: {shown}");
    }
    assert_eq!(
        sim.control().stats().await.unwrap().requests["GET /threats"],
        2,
        "401 is not retried"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn site_scoped_tokens_see_their_site_and_are_refused_accounts() {
    let (sim, tenant) = sim_and_client(small()).await;
    let sites: Vec<_> = items(tenant.sites(&SiteQuery::default())).await.unwrap();
    let site_id = sites[1].id.clone().unwrap();
    sim.control()
        .add_token(&TokenSpec {
            scope: TokenScope::Sites(vec![site_id.clone()]),
            ..TokenSpec::tenant("site-token", 10)
        })
        .await
        .unwrap();
    let client = client_for(&sim, "site-token", fast_retry_options());
    let err = client.accounts().try_collect::<Vec<_>>().await.unwrap_err();
    assert!(matches!(err, S1Error::Forbidden { .. }), "{err:?}");
    assert_eq!(err.code(), Some(4030010));
    assert!(err.to_string().contains("not allowed to site users"), "{err}");

    let threats: Vec<_> = items(client.threats(&ThreatQuery::default())).await.unwrap();
    assert!(!threats.is_empty());
    assert!(
        threats
            .iter()
            .all(|t| t.agent_realtime_info.as_ref().unwrap().site_id.as_deref() == Some(site_id.as_str()))
    );
    let user = client.user().await.unwrap();
    assert_eq!(user.scope.as_deref(), Some("site"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_carry_s1s_code_and_detail() {
    let (sim, client) = sim_and_client(small()).await;
    let fault = FaultKind::Status {
        status: 400,
        retry_after: None,
        code: Some(4000010),
    };
    sim.control()
        .add_fault(&FaultRule::new("/threats", fault, 1))
        .await
        .unwrap();
    let err = all_threat_ids(&client, &ThreatQuery::default()).await.unwrap_err();
    assert!(matches!(err, S1Error::BadRequest { .. }), "{err:?}");
    assert_eq!(err.code(), Some(4000010));
    // And the simulator itself refuses a cursor that does not belong to the query.
    let raw = reqwest::Client::new()
        .get(format!(
            "{}/web/api/v2.1/threats?limit=5&cursor=dHJhc2g",
            sim.base_url()
        ))
        .header("Authorization", "ApiToken sim-tenant-token")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert!(raw.text().await.unwrap().contains("Invalid cursor value received"));
}

/// A body cut short (the JSON ends early) is not S1 refusing or sending bad data: whether the
/// call did anything is unknown. A read is simply made again; cut on every attempt, it is a
/// retryable `Truncated` error naming the endpoint, never a `Decode` error.
#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_answer_is_read_again_and_cut_for_good_is_retryable_not_a_decode_error() {
    let (sim, client) = sim_and_client(small()).await;
    sim.control()
        .add_fault(&FaultRule::new("/threats", FaultKind::Truncate, 1))
        .await
        .unwrap();
    let ids = all_threat_ids(&client, &ThreatQuery::default()).await.unwrap();
    assert_eq!(ids.len(), 120);
    sim.control()
        .add_fault(&FaultRule::new("/threats", FaultKind::Truncate, 100))
        .await
        .unwrap();
    let err = all_threat_ids(&client, &ThreatQuery::default()).await.unwrap_err();
    match &err {
        S1Error::Truncated { endpoint, attempts, .. } => {
            assert_eq!((endpoint.as_str(), *attempts), ("/threats", 4));
        }
        other => panic!("expected a truncated answer, got {other:?}"),
    }
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("cut short"), "{err}");
    // A note S1 may have taken is not posted again blindly: one try, then the caller looks.
    sim.control().clear_faults().await.unwrap();
    sim.control()
        .add_fault(&FaultRule::new("/threats/notes", FaultKind::Truncate, 1))
        .await
        .unwrap();
    let err = client.add_note(&ids[..1], "cut answer").await.unwrap_err();
    assert!(matches!(err, S1Error::Truncated { attempts: 1, .. }), "{err:?}");
    let notes = items(client.threat_notes(&ids[0])).await.unwrap();
    assert_eq!(
        notes.iter().filter(|n| n.text.as_deref() == Some("cut answer")).count(),
        1
    );
}

/// A write whose first answer is lost (cut short: S1 applied it) and whose retries then get
/// 503s does not end as "S1 made no change": the 503 is the last try's word, not the call's. It
/// is `OutcomeUnknown`, retryable, and S1 does hold the change. A read failing the same way
/// stays the last try's error (nothing to leave behind).
#[tokio::test(flavor = "multi_thread")]
async fn a_write_whose_first_answer_was_lost_and_then_got_503s_may_have_landed() {
    let (sim, client) = sim_and_client(small()).await;
    let ids = all_threat_ids(&client, &ThreatQuery::default()).await.unwrap();
    let one = &ids[..1];
    for rule in [
        FaultRule::new("/threats/incident", FaultKind::Truncate, 1),
        FaultRule::new("/threats/incident", status(503), 10),
    ] {
        sim.control().add_fault(&rule).await.unwrap();
    }
    let err = client
        .set_incident_status(one, IncidentStatus::Resolved, Some(AnalystVerdict::FalsePositive))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, S1Error::OutcomeUnknown { endpoint, attempts: 4, .. } if endpoint == "/threats/incident"),
        "{err:?}"
    );
    assert!(!err.made_no_change() && err.is_retryable(), "{err}");
    assert!(
        err.to_string().contains("503"),
        "the last try's failure is named: {err}"
    );
    sim.control().clear_faults().await.unwrap();
    let held = client
        .threats(&ThreatQuery {
            ids: one.to_vec(),
            ..ThreatQuery::default()
        })
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let threat = &held[0].items[0];
    assert_eq!(
        threat.threat_info.incident_status,
        Some(IncidentStatus::Resolved),
        "the lost first try landed"
    );
    for rule in [
        FaultRule::new("/system/info", FaultKind::Truncate, 1),
        FaultRule::new("/system/info", status(503), 10),
    ] {
        sim.control().add_fault(&rule).await.unwrap();
    }
    let err = client.system_info().await.unwrap_err();
    assert!(matches!(err, S1Error::Server { status: 503, .. }), "{err:?}");
}

/// A UAM write of 150 alerts goes in two triggers (100, then 50). The first lands; the second
/// fails (503). The write is not "no change": the first 100 alerts are applied, the other 50
/// are to be retried, each named.
#[tokio::test(flavor = "multi_thread")]
async fn a_uam_write_whose_second_trigger_fails_reports_the_first_as_applied() {
    use s1_bridge_sim::{DetectionSource, NewUnifiedAlerts};
    use s1_shared::s1::dto::uam_actions::UamStatus;
    use s1_shared::s1::uam_writes::AlertOutcome;
    let (sim, client) = sim_and_client(small()).await;
    let spec = NewUnifiedAlerts {
        count: 150,
        ..NewUnifiedAlerts::one(DetectionSource::Identity)
    };
    let ids = sim.control().add_unified_alerts(&spec).await.unwrap();
    // The action discovery and the first trigger pass; the second trigger fails.
    sim.control()
        .add_fault(&FaultRule::new("/unifiedalerts/graphql", status(503), 10).after(2))
        .await
        .unwrap();
    let r = client
        .uam_set_fields(&ids, Some(UamStatus::Resolved), None, None)
        .await
        .expect("part of the write landed: a result, not an error");
    assert!(r.any_applied());
    let applied = r.alerts.values().filter(|o| **o == AlertOutcome::Applied).count();
    let retry: Vec<&str> = r
        .problems()
        .filter(|(_, _, retry)| *retry)
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!((applied, retry.len(), r.alerts.len()), (100, 50, 150), "{r:?}");
    sim.control().clear_faults().await.unwrap();
    let first = sim.control().unified_alert(&ids[0]).await.unwrap();
    assert_eq!(first["status"], "RESOLVED");
    let last = sim.control().unified_alert(&ids[149]).await.unwrap();
    assert_ne!(last["status"], "RESOLVED");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_decode_error_names_the_field() {
    // A threat whose updatedAt is not a timestamp: the error must point at it.
    let body = r#"{"data":[{"id":"1","threatInfo":{"updatedAt":"2025-01-01T00:00:00Z"}},{"id":"2","threatInfo":{"updatedAt":"last tuesday"}}],"pagination":{"nextCursor":null,"totalItems":2}}"#;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(resp.as_bytes()).await.unwrap();
    });
    let client = S1Client::new(&format!("http://{addr}"), &ApiToken::new("t"), fast_retry_options()).unwrap();
    let err = all_threat_ids(&client, &ThreatQuery::default()).await.unwrap_err();
    match err {
        S1Error::Decode { path, message, .. } => {
            assert_eq!(path, "data[1].threatInfo.updatedAt");
            assert!(message.contains("last tuesday"), "{message}");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_resets_and_slow_answers_are_retried_within_the_budget() {
    let (sim, client) = sim_and_client(small()).await;
    sim.control()
        .add_fault(&FaultRule::new("/sites", FaultKind::Reset, 2))
        .await
        .unwrap();
    let sites: Vec<_> = client.sites(&SiteQuery::default()).try_collect().await.unwrap();
    assert_eq!(sites[0].items.len(), 6);

    sim.control()
        .add_fault(&FaultRule::new("/sites", FaultKind::Reset, 10))
        .await
        .unwrap();
    let err = client
        .sites(&SiteQuery::default())
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert!(matches!(err, S1Error::Transport { attempts: 4, .. }), "{err:?}");
    sim.control().clear_faults().await.unwrap();

    let impatient = ClientOptions {
        request_timeout: Duration::from_millis(300),
        ..fast_retry_options()
    };
    let client = client_for(&sim, "sim-tenant-token", impatient);
    sim.control()
        .add_fault(&FaultRule::new("/user", FaultKind::Slow { millis: 1_500 }, 1))
        .await
        .unwrap();
    let user = client.user().await.unwrap();
    assert_eq!(user.scope.as_deref(), Some("tenant"), "timed out once, then answered");
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_change_later_reads_and_report_per_threat_results() {
    let (sim, client) = sim_and_client(small()).await;
    let ids = vec!["1500000000000000002".to_string(), "1500000000000000003".to_string()];
    let before = items(client.threats(&ThreatQuery {
        ids: ids.clone(),
        ..ThreatQuery::default()
    }))
    .await
    .unwrap();

    let r = client
        .set_incident_status(&ids, IncidentStatus::Resolved, Some(AnalystVerdict::FalsePositive))
        .await
        .unwrap();
    assert_eq!(r.details.len(), 2);
    assert!(r.details.iter().all(|d| d.result.is_some_and(|x| x.is_applied())));
    let again = client
        .set_incident_status(&ids, IncidentStatus::Resolved, Some(AnalystVerdict::FalsePositive))
        .await
        .unwrap();
    assert_eq!(again.affected, 0);
    assert!(again.details.iter().all(|d| d.result == Some(ActionResult::AlreadySet)));

    client
        .add_note(&ids, "Closed as false positive in PagerDuty")
        .await
        .unwrap();
    client.set_external_ticket_id(&ids, "PD-42").await.unwrap();
    let after = items(client.threats(&ThreatQuery {
        ids: ids.clone(),
        ..ThreatQuery::default()
    }))
    .await
    .unwrap();
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a.threat_info.incident_status, Some(IncidentStatus::Resolved));
        assert_eq!(a.threat_info.analyst_verdict, Some(AnalystVerdict::FalsePositive));
        assert_eq!(a.threat_info.external_ticket_id.as_deref(), Some("PD-42"));
        assert!(
            a.threat_info.updated_at > b.threat_info.updated_at,
            "a write bumps updatedAt"
        );
    }
    // The changed threats now come last in an updatedAt-ordered poll.
    let all = all_threat_ids(&client, &ThreatQuery::default()).await.unwrap();
    assert_eq!(&all[all.len() - 2..], &ids[..]);
    let view = sim.control().threat(&ids[0]).await.unwrap();
    assert_eq!(view["notes"][0]["text"], "Closed as false positive in PagerDuty");

    let viewer = TokenSpec {
        can_write: false,
        ..TokenSpec::tenant("viewer-token", 10)
    };
    sim.control().add_token(&viewer).await.unwrap();
    let r = client_for(&sim, "viewer-token", fast_retry_options())
        .set_incident_status(&ids, IncidentStatus::InProgress, None)
        .await
        .unwrap();
    assert_eq!(r.affected, 0);
    assert!(
        r.details
            .iter()
            .all(|d| d.result == Some(ActionResult::MissingPermissions)),
        "HTTP 200 but nothing applied"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn token_details_generation_and_system_checks() {
    let (sim, client) = sim_and_client(small()).await;
    let soon = TokenSpec::tenant("five-day-token", 5);
    sim.control().add_token(&soon).await.unwrap();
    let details = client
        .api_token_details(&ApiToken::new("five-day-token"))
        .await
        .unwrap();
    let days = (details.expires_at.unwrap() - time::OffsetDateTime::now_utc()).whole_days();
    assert_eq!(days, 4, "4 whole days and some hours left");
    assert_eq!(format_time(details.expires_at.unwrap()), format_time(soon.expires_at));

    let five = client_for(&sim, "five-day-token", fast_retry_options());
    let fresh = five.generate_api_token().await.unwrap();
    assert!(!fresh.is_empty());
    let err = five.system_info().await.unwrap_err();
    assert!(err.is_unauthorized(), "the old token is revoked: {err:?}");
    let renewed = S1Client::new(&sim.base_url(), &fresh, fast_retry_options()).unwrap();
    assert!(renewed.system_info().await.is_ok());
    assert_eq!(client.system_status().await.unwrap().health.as_deref(), Some("ok"));
}

#[tokio::test(flavor = "multi_thread")]
async fn client_side_rate_limit_keeps_agents_under_25_per_second() {
    let (sim, client) = sim_and_client(SimConfig {
        agents: 400,
        decommissioned_every: 0,
        ..small()
    })
    .await;
    let pages: Vec<_> = client
        .agents(&AgentQuery {
            limit: 5,
            ..AgentQuery::default()
        })
        .try_collect()
        .await
        .unwrap();
    assert_eq!(pages.len(), 80);
    let log = sim.control().requests().await.unwrap();
    let times: Vec<u64> = log.iter().filter(|r| r.path == "/agents").map(|r| r.at_ms).collect();
    assert_eq!(times.len(), 80);
    // In any one-second window, at most 25 requests (plus one for window-edge rounding).
    let worst = times
        .iter()
        .map(|&t| times.iter().filter(|&&u| u >= t && u < t + 1000).count())
        .max()
        .unwrap();
    assert!(worst <= 26, "{worst} /agents requests within one second");
}

#[tokio::test(flavor = "multi_thread")]
async fn threat_actions_may_go_a_few_at_once_but_never_over_100_in_a_second() {
    let (sim, client) = sim_and_client(small()).await;
    let ids = vec![
        items(client.threats(&ThreatQuery::default())).await.unwrap()[0]
            .id
            .clone(),
    ];
    sim.control().clear_requests().await.unwrap();
    // A burst of concurrent writers on one client: the limiter is shared, so they queue.
    let calls = (0..150).map(|n| {
        let client = &client;
        let ids = &ids;
        async move { client.add_note(ids, &format!("note {n}")).await }
    });
    let done = futures_util::future::join_all(calls).await;
    assert!(done.iter().all(Result::is_ok));
    let log = sim.control().requests().await.unwrap();
    let times: Vec<u64> = log
        .iter()
        .filter(|r| r.path == "/threats/notes")
        .map(|r| r.at_ms)
        .collect();
    assert_eq!(times.len(), 150);
    let worst = times
        .iter()
        .map(|&t| times.iter().filter(|&&u| u >= t && u < t + 1000).count())
        .max()
        .unwrap();
    assert!(worst <= 101, "{worst} /threats/notes requests within one second");
}

#[tokio::test(flavor = "multi_thread")]
async fn decommissioned_agents_are_listed_when_asked() {
    let (_sim, client) = sim_and_client(small()).await;
    let all: Vec<_> = items(client.agents(&AgentQuery::default())).await.unwrap();
    let active: Vec<_> = items(client.agents(&AgentQuery {
        include_decommissioned: false,
        ..AgentQuery::default()
    }))
    .await
    .unwrap();
    assert_eq!(all.len(), 40);
    assert_eq!(active.len(), 36, "every tenth agent is decommissioned");
    assert!(all.iter().filter(|a| a.is_decommissioned == Some(true)).count() == 4);
    let first = client
        .threats(&ThreatQuery::default())
        .boxed()
        .next()
        .await
        .unwrap()
        .unwrap();
    assert!(first.total_items == Some(120));
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_errors_name_their_cause() {
    let one_try = ClientOptions {
        retry: s1_shared::s1::RetryPolicy {
            max_attempts: 1,
            ..fast_retry_options().retry
        },
        allowed_hosts: s1_shared::config::AllowedHosts::parse("127.0.0.1,acme.invalid").unwrap(),
        ..fast_retry_options()
    };
    let cause = |e: S1Error| match e {
        S1Error::Transport { cause, attempts: 1, .. } => cause,
        other => panic!("expected a transport error after one attempt, got {other:?}"),
    };
    // DNS: a name that cannot resolve (RFC 6761).
    let c = S1Client::new("https://acme.invalid", &ApiToken::new("t"), one_try.clone()).unwrap();
    let err = c.system_status().await.unwrap_err();
    assert!(err.to_string().contains("(1 attempt)"), "{err}");
    assert!(cause(err).starts_with("DNS lookup failed for acme.invalid"));
    // Refused: nothing listens on the port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let c = S1Client::new(&format!("http://{closed}"), &ApiToken::new("t"), one_try.clone()).unwrap();
    assert_eq!(
        cause(c.system_status().await.unwrap_err()),
        format!("connection refused by {closed}")
    );
    // TLS: https to a server that speaks plain http.
    let (sim, _) = sim_and_client(small()).await;
    let plain = sim.base_url().replace("http://", "https://");
    let c = S1Client::new(&plain, &ApiToken::new("t"), one_try.clone()).unwrap();
    let tls = cause(c.system_status().await.unwrap_err());
    assert!(tls.starts_with("TLS handshake with 127.0.0.1:"), "{tls}");
    // Timeout: the console accepts but does not answer in time.
    sim.control()
        .add_fault(&FaultRule::new("/system/status", FaultKind::Slow { millis: 1_500 }, 1))
        .await
        .unwrap();
    let impatient = ClientOptions {
        request_timeout: Duration::from_millis(300),
        ..one_try
    };
    let c = client_for(&sim, "sim-tenant-token", impatient);
    let slow = cause(c.system_status().await.unwrap_err());
    assert!(slow.contains("did not answer within the request timeout"), "{slow}");
}
