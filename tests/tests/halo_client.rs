//! The Halo API client against the fake Halo, which checks every request against Halo's own
//! OpenAPI document: token discovery and fallback, hosted tenants, refresh on 401, refused
//! credentials, 429 pacing, paging, and lenient write answers.

use std::time::Duration;

use s1_bridge_sim::{FakeHalo, HaloAuthInfo, HaloConfig, HaloEntity};
use s1_shared::platform::PlatformError;
use s1_shared::platform::halo::{HaloAuth, HaloClient};
use s1_shared::s1::RetryPolicy;
use secrecy::SecretString;
use serde_json::json;

fn retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(2),
    }
}

fn client_for(halo: &FakeHalo, secret: &str, limit: (u32, Duration)) -> HaloClient {
    client_with_token_url(halo, secret, limit, None)
}

fn client_with_token_url(
    halo: &FakeHalo,
    secret: &str,
    limit: (u32, Duration),
    token_url: Option<String>,
) -> HaloClient {
    let allowed = integration_tests::loopback_hosts();
    let http = s1_shared::net::outbound_client(Duration::from_secs(2), Duration::from_secs(10), &allowed).unwrap();
    let auth = HaloAuth {
        base_url: halo.base_url(),
        tenant: halo.config().tenant.clone(),
        client_id: SecretString::from(halo.config().client_id.clone()),
        client_secret: SecretString::from(secret.to_owned()),
        scope: "all".into(),
        token_url,
    };
    HaloClient::new(http, auth, &allowed, limit, retry()).unwrap()
}

fn client(halo: &FakeHalo) -> HaloClient {
    let secret = halo.config().client_secret.clone();
    client_for(halo, &secret, s1_shared::platform::halo::client::HALO_LIMIT)
}

fn assert_nothing_refused(halo: &FakeHalo) {
    let refused = halo.refused();
    assert!(refused.is_empty(), "the fake refused requests: {refused:?}");
}

#[tokio::test]
async fn the_token_endpoint_is_found_through_authinfo() {
    // The token endpoint lives only under /identity here: the fallback location would fail.
    let halo = FakeHalo::start(HaloConfig {
        auth_path: "/identity".into(),
        ..HaloConfig::default()
    })
    .await
    .unwrap();
    let c = client(&halo);
    let statuses = c.list_all("Status", "statuses").await.unwrap();
    assert!(statuses.iter().any(|s| s["name"] == "Closed"), "{statuses:?}");
    let paths: Vec<String> = halo.requests().iter().map(|r| r.path.clone()).collect();
    assert!(paths.contains(&"/api/AuthInfo".to_owned()), "{paths:?}");
    assert!(paths.contains(&"/identity/token".to_owned()), "{paths:?}");
    assert_nothing_refused(&halo);
}

#[tokio::test]
async fn without_authinfo_the_token_comes_from_the_default_location_with_the_tenant() {
    let halo = FakeHalo::start(HaloConfig {
        auth_info: HaloAuthInfo::Fail(500),
        tenant: Some("acme".into()),
        ..HaloConfig::default()
    })
    .await
    .unwrap();
    let c = client(&halo);
    c.get("Tickets", &[("count", "1".into())]).await.unwrap();
    let token = halo
        .requests()
        .into_iter()
        .find(|r| r.path == "/auth/token")
        .expect("a token request");
    assert!(
        token.query.contains(&("tenant".into(), "acme".into())),
        "{:?}",
        token.query
    );
    assert_eq!(halo.stats().tokens_issued, 1);
}

#[tokio::test]
async fn a_token_is_reused_and_fetched_again_once_after_a_401() {
    let halo = FakeHalo::start(HaloConfig::default()).await.unwrap();
    let c = client(&halo);
    c.get("Tickets", &[]).await.unwrap();
    c.get("Tickets", &[]).await.unwrap();
    assert_eq!(halo.stats().tokens_issued, 1, "the cached token is reused");
    halo.revoke_tokens();
    c.get("Tickets", &[]).await.unwrap();
    assert_eq!(halo.stats().tokens_issued, 2, "one new token after the 401");
    assert_eq!(halo.stats().unauthorized, 1);
}

#[tokio::test]
async fn an_expired_token_is_replaced_before_use() {
    // Halo says the token lives 30 s, less than the minute's margin the client keeps: every call
    // fetches a new one first, and none meets a 401.
    let halo = FakeHalo::start(HaloConfig {
        expires_in: 30,
        ..HaloConfig::default()
    })
    .await
    .unwrap();
    let c = client(&halo);
    c.get("Tickets", &[]).await.unwrap();
    c.get("Tickets", &[]).await.unwrap();
    assert_eq!(halo.stats().tokens_issued, 2);
    assert_eq!(halo.stats().unauthorized, 0);
}

#[tokio::test]
async fn refused_credentials_are_a_configuration_error_that_names_them() {
    let halo = FakeHalo::start(HaloConfig::default()).await.unwrap();
    let c = client_for(&halo, "not-the-secret", s1_shared::platform::halo::client::HALO_LIMIT);
    match c.get("Tickets", &[]).await {
        Err(PlatformError::Config(m)) => {
            assert!(m.contains("credentials"), "{m}");
            assert!(!m.contains("not-the-secret"), "the secret leaked: {m}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
    assert_eq!(
        halo.stats().api_requests,
        1,
        "only AuthInfo was called: {:?}",
        halo.requests()
    );
}

#[tokio::test]
async fn a_429_is_waited_out_and_the_call_succeeds() {
    let halo = FakeHalo::start(HaloConfig::default()).await.unwrap();
    let c = client(&halo);
    c.get("Tickets", &[]).await.unwrap();
    halo.fail_next(2, 429);
    let tickets = c.get("Tickets", &[]).await.unwrap();
    assert!(tickets.get("tickets").is_some(), "{tickets}");
    assert_eq!(halo.stats().faults, 2);
}

#[tokio::test]
async fn the_request_budget_keeps_the_client_under_the_limit() {
    // 20 requests per 2 s in the fake; the client keeps to 90% of that and never meets a 429.
    let window = Duration::from_secs(2);
    let halo = FakeHalo::start(HaloConfig {
        rate_limit: 20,
        rate_window: window,
        ..HaloConfig::default()
    })
    .await
    .unwrap();
    let secret = halo.config().client_secret.clone();
    let c = client_for(&halo, &secret, (20, window));
    for _ in 0..30 {
        c.get("Tickets", &[("count", "1".into())]).await.unwrap();
    }
    assert_eq!(halo.stats().rate_limited, 0);
}

#[tokio::test]
async fn lists_are_read_page_by_page_and_writes_answer_ids() {
    let halo = FakeHalo::start(HaloConfig::default()).await.unwrap();
    let c = client(&halo);
    let seeded = c.list("Client", &[], "clients").await.unwrap().len();
    let records: Vec<_> = (0..230).map(|n| json!({"name": format!("Customer {n:03}")})).collect();
    let written = c.post("Client", &records).await.unwrap();
    assert_eq!(written.len(), 230);
    let all = c.list("Client", &[], "clients").await.unwrap();
    assert_eq!(all.len(), seeded + 230);
    let pages: Vec<_> = halo
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == "/api/Client")
        .filter_map(|r| r.query.iter().find(|(k, _)| k == "page_no").map(|(_, v)| v.clone()))
        .collect();
    assert_eq!(pages, ["1", "1", "2", "3"], "one page before the writes, three after");

    let id = c.post_one("Client", json!({"name": "Initech"})).await.unwrap();
    c.post_one("Client", json!({"id": id, "name": "Initech Ltd"}))
        .await
        .unwrap();
    let renamed = halo.record(HaloEntity::Client, id).unwrap();
    assert_eq!(renamed["name"], "Initech Ltd");
    assert_nothing_refused(&halo);
}

#[tokio::test]
async fn a_refusal_is_reported_with_halos_reason() {
    let halo = FakeHalo::start(HaloConfig::default()).await.unwrap();
    let c = client(&halo);
    match c.post("Client", &[json!({"name": "x", "no_such_field": 1})]).await {
        Err(PlatformError::Rejected { status: 400, detail }) => assert!(detail.contains("no_such_field"), "{detail}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn the_client_secret_never_goes_to_another_origin_authinfo_names() {
    // AuthInfo is unauthenticated: whoever answers it (a spoofed or tampered answer) names
    // another server as the authorisation server.
    let elsewhere = FakeHalo::start(HaloConfig::default()).await.unwrap();
    let halo = FakeHalo::start(HaloConfig {
        auth_info: HaloAuthInfo::Answer(json!({"auth_url": format!("{}/auth", elsewhere.base_url())})),
        ..HaloConfig::default()
    })
    .await
    .unwrap();
    let c = client(&halo);
    match c.get("Tickets", &[]).await {
        Err(PlatformError::Config(m)) => {
            assert!(m.contains(&elsewhere.base_url()) && m.contains("token_url"), "{m}");
            assert!(!m.contains("halo-test-client-secret"), "{m}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
    assert!(
        elsewhere.requests().is_empty(),
        "the other server got {:?}",
        elsewhere.requests()
    );
    // The operator names the token endpoint: it is used as it is, AuthInfo is not asked.
    halo.clear_requests();
    let c = client_with_token_url(
        &halo,
        &halo.config().client_secret.clone(),
        s1_shared::platform::halo::client::HALO_LIMIT,
        Some(halo.token_url()),
    );
    c.get("Tickets", &[]).await.unwrap();
    let paths: Vec<String> = halo.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/auth/token", "/api/Tickets"]);
    assert!(elsewhere.requests().is_empty());
}

#[tokio::test]
async fn an_oversized_authinfo_answer_is_not_read_whole() {
    // A valid answer padded past the cap every other answer has: refused, never parsed.
    let halo = FakeHalo::start(HaloConfig {
        auth_path: "/identity".into(),
        ..HaloConfig::default()
    })
    .await
    .unwrap();
    let padding = "x".repeat(s1_shared::platform::halo::client::MAX_BODY + 1);
    halo.set_auth_info(HaloAuthInfo::Answer(
        json!({"auth_url": format!("{}/identity", halo.base_url()), "padding": padding}),
    ));
    match client(&halo).get("Tickets", &[]).await {
        Err(e) => assert!(e.to_string().contains("larger than"), "{e}"),
        Ok(v) => panic!("an oversized AuthInfo answer was read whole: {}", v.to_string().len()),
    }
    assert_eq!(halo.stats().tokens_issued, 0);
}
