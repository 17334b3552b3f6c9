//! Outbound safety through real HTTP: the console allow-list enforced where every function builds
//! its S1 client, platform URLs that are (or resolve to) inside addresses refused unless named,
//! redirects never followed, response bodies capped.

use std::sync::Arc;

use integration_tests::outbound::{CountingListener, answering, consoles_off_the_allow_list_are_never_called};
use integration_tests::poll::{PollHarness, WEBHOOK_SECRET, tenant};
use integration_tests::{fast_retry_options, loopback_hosts};
use s1_bridge_sim::{FakePagerDuty, SimConfig, WebhookReceiver};
use s1_shared::ApiToken;
use s1_shared::config::AllowedHosts;
use s1_shared::net::outbound_client;
use s1_shared::platform::{Adapters, Notice, PlatformError, PlatformResolver};
use s1_shared::s1::{ClientOptions, S1Client, S1Error};
use s1_shared::secrets::LocalTokenProvider;
use s1_shared::store::{EmbeddedTable, TenantConfig};

use time::OffsetDateTime;

#[tokio::test(flavor = "multi_thread")]
async fn a_console_off_the_allow_list_is_refused_at_run_time_by_every_use_case() {
    consoles_off_the_allow_list_are_never_called(Arc::new(EmbeddedTable::in_memory().unwrap())).await;
}

const PD_KEY: &str = "R0UT1NGKEY0000000000000000000001";

fn generic(url: &str) -> TenantConfig {
    tenant("acme", "https://acme.sentinelone.net", url)
}

fn pagerduty(events_url: &str) -> TenantConfig {
    let mut t = generic("https://unused.example.com");
    t.platform = s1_shared::test_util::pagerduty(events_url, "PD_KEY");
    t
}

/// Adapters as a function builds them: the production HTTP client and allow-list check.
fn adapters(allowed: &str) -> Adapters {
    let allowed = AllowedHosts::parse(allowed).unwrap();
    let secrets = Arc::new(LocalTokenProvider::with_lookup(|k| match k {
        "WEBHOOK_SECRET" => Some(WEBHOOK_SECRET.to_owned()),
        "PD_KEY" => Some(PD_KEY.to_owned()),
        _ => None,
    }));
    let http = outbound_client(
        std::time::Duration::from_secs(2),
        std::time::Duration::from_secs(5),
        &allowed,
    )
    .unwrap();
    Adapters::new(http, secrets, fast_retry_options().retry).with_allowed_hosts(allowed)
}

fn test_notice() -> Notice {
    Notice::Test {
        id: format!("msg_{}", OffsetDateTime::now_utc().unix_timestamp_nanos()),
        timestamp: OffsetDateTime::now_utc(),
        tenant: "acme".into(),
        message: "test".into(),
    }
}

async fn notify(a: &Adapters, t: &TenantConfig) -> Result<(), PlatformError> {
    a.resolve(t).await?.notify(&test_notice()).await.map(drop)
}

#[tokio::test(flavor = "multi_thread")]
async fn platform_urls_inside_the_network_are_refused_unless_the_host_is_named() {
    let inside = CountingListener::start().await;
    let port = inside.addr.port();
    // An IP literal: refused when the adapter is built.
    for url in [
        format!("http://127.0.0.1:{port}/hooks"),
        format!("https://127.0.0.1:{port}/hooks"),
        "https://10.0.0.8/hooks".to_owned(),
        "https://169.254.169.254/latest/meta-data".to_owned(),
    ] {
        let err = notify(&adapters("*.sentinelone.net"), &generic(&url))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, PlatformError::Config(m) if m.contains("private, loopback or link-local") || m.contains("must be https")),
            "{url}: {err}"
        );
    }
    let err = notify(
        &adapters("*.sentinelone.net"),
        &pagerduty(&format!("http://127.0.0.1:{port}/v2/enqueue")),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PlatformError::Config(_)), "{err}");
    // A name that resolves inside: refused when it resolves, before any connection.
    let err = notify(
        &adapters("*.sentinelone.net"),
        &generic(&format!("https://localhost:{port}/hooks")),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("localhost resolves only to private, loopback or link-local addresses"),
        "{err}"
    );
    assert_eq!(inside.connections(), 0, "nothing reached the inside address");

    // Named by the operator, a receiver inside is legitimate (plain http only on loopback).
    let receiver = WebhookReceiver::start(WEBHOOK_SECRET).await.unwrap();
    notify(&adapters("*.sentinelone.net,127.0.0.1"), &generic(&receiver.url()))
        .await
        .unwrap();
    let by_name = receiver.url().replace("127.0.0.1", "localhost");
    notify(&adapters("*.sentinelone.net,localhost"), &generic(&by_name))
        .await
        .unwrap();
    assert_eq!(receiver.events().len(), 2);
    let pd = FakePagerDuty::start(PD_KEY, 1_000).await.unwrap();
    notify(&adapters("*.sentinelone.net,127.0.0.1"), &pagerduty(&pd.url()))
        .await
        .unwrap();
    assert!(!pd.events().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_never_followed() {
    let target = CountingListener::start().await;
    let elsewhere = format!("http://{}/web/api/v2.1/system/info", target.addr);
    let redirecting = answering(302, vec![("location", elsewhere.clone())], Vec::new(), false).await;

    // The S1 client: the console redirects; the token does not follow.
    let client = S1Client::new(&redirecting, &ApiToken::new("tok"), fast_retry_options()).unwrap();
    let err = client.system_info().await.unwrap_err();
    assert!(
        matches!(&err, S1Error::Redirected { status: 302, location: Some(l), .. } if *l == elsewhere),
        "{err:?}"
    );
    assert!(err.to_string().contains("redirects are not followed"), "{err}");
    // Shared with the production client, as the functions do.
    let http = outbound_client(
        std::time::Duration::from_secs(2),
        std::time::Duration::from_secs(5),
        &loopback_hosts(),
    )
    .unwrap();
    let client = S1Client::with_http(http, &redirecting, &ApiToken::new("tok"), fast_retry_options()).unwrap();
    assert!(matches!(client.user().await, Err(S1Error::Redirected { .. })));

    // A platform: the webhook is not re-posted elsewhere.
    let err = notify(&adapters("127.0.0.1"), &generic(&format!("{redirecting}/hooks")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("redirects are not followed"), "{err}");
    assert_eq!(target.connections(), 0, "the redirect target received nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_over_size_body_is_refused() {
    // S1, with a small cap: announced by Content-Length, and found while reading a chunked body.
    let page = br#"{"data":[],"pagination":{"nextCursor":null,"totalItems":0}}"#.repeat(40);
    let small = ClientOptions {
        max_response_bytes: 1024,
        ..fast_retry_options()
    };
    for chunked in [false, true] {
        let base = answering(200, vec![], page.clone(), chunked).await;
        let client = S1Client::new(&base, &ApiToken::new("tok"), small.clone()).unwrap();
        let err = client.system_info().await.unwrap_err();
        assert!(
            matches!(
                err,
                S1Error::TooLarge {
                    limit: 1024,
                    status: 200,
                    ..
                }
            ),
            "chunked {chunked}: {err:?}"
        );
        assert!(err.to_string().contains("1024-byte cap"), "{err}");
    }
    // The default cap holds too: a body longer than it is cut off, not read into memory.
    let cap = ClientOptions::default().max_response_bytes;
    let huge = answering(200, vec![], vec![b' '; cap + 1], true).await;
    let client = S1Client::new(&huge, &ApiToken::new("tok"), fast_retry_options()).unwrap();
    assert!(matches!(client.system_info().await, Err(S1Error::TooLarge { .. })));

    // A platform's refusal with a huge body: described, not read.
    let refusing = answering(400, vec![], vec![b'x'; 1 << 20], true).await;
    let err = notify(&adapters("127.0.0.1"), &generic(&format!("{refusing}/hooks")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("over the 65536-byte cap"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_poll_harness_still_runs_on_loopback_with_the_allow_list() {
    // The tests' own wiring (consoles and receivers on 127.0.0.1, named) keeps working.
    let h = PollHarness::start(
        SimConfig {
            threats: 5,
            agents: 3,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        Arc::new(EmbeddedTable::in_memory().unwrap()),
    )
    .await;
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.error, r.published), (None, 5));
}

#[tokio::test(flavor = "multi_thread")]
async fn run_reports_and_platform_errors_name_the_transport_cause() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // A platform that refuses connections.
    let err = notify(&adapters("127.0.0.1"), &generic(&format!("http://{closed}/hooks")))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PlatformError::Unavailable { detail, .. } if *detail == format!("connection refused by {closed}")),
        "{err}"
    );
    // A poll run whose console refuses connections says so in its report.
    let h = PollHarness::start(
        SimConfig {
            threats: 3,
            agents: 2,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        Arc::new(EmbeddedTable::in_memory().unwrap()),
    )
    .await;
    h.store
        .put_tenant(&tenant("acme", &format!("http://{closed}"), &h.receiver.url()))
        .await
        .unwrap();
    let r = h.poll().await.tenants.remove(0);
    let error = r.error.unwrap_or_default();
    assert!(error.contains(&format!("connection refused by {closed}")), "{error}");
}
