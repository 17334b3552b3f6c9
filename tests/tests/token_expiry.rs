//! token-expiry: the watch against the simulator and a real receiver; rotation end to end
//! against moto's Secrets Manager and the simulator.

use std::sync::Arc;

use integration_tests::fast_retry_options;
use integration_tests::poll::{PollHarness, tenant};

use s1_bridge_sim::{FaultKind, FaultRule, SimConfig, TokenSpec};
use s1_shared::s1::Consoles;
use s1_shared::s1::S1Client;
use s1_shared::secrets::{SecretsManagerTokenProvider, SecretsManagerVersions, TokenCallError, TokenProvider};
use s1_shared::store::{EmbeddedTable, TokenSource};
use s1_shared::usecase::token_expiry::{RotationDeps, RotationEvent, TokenDeps, check_all, rotate};
use time::{Duration, OffsetDateTime};

async fn harness() -> PollHarness {
    PollHarness::start(
        SimConfig {
            threats: 1,
            agents: 1,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        Arc::new(EmbeddedTable::in_memory().unwrap()),
    )
    .await
}

fn deps(h: &PollHarness) -> TokenDeps {
    h.token_deps()
}

#[tokio::test(flavor = "multi_thread")]
async fn thresholds_alert_once_each_and_a_401_alerts_at_once() {
    let h = harness().await;
    let d = deps(&h);
    let set_expiry = |days: i64| TokenSpec {
        expires_at: OffsetDateTime::now_utc() + Duration::days(days) + Duration::hours(1),
        ..TokenSpec::tenant("watched-token", 0)
    };
    h.sim.control().add_token(&set_expiry(5)).await.unwrap();
    h.env
        .lock()
        .unwrap()
        .insert("S1_TOKEN_acme".into(), "watched-token".into());
    let alerts = || h.events("token.expiring");

    let r = check_all(&d, OffsetDateTime::now_utc()).await.unwrap().remove(0);
    assert_eq!((r.days_left, r.alerted), (Some(5), Some(7)), "{r:?}");
    assert_eq!(
        alerts().len(),
        1,
        "one alert for the tightest threshold crossed (30, 14, 7)"
    );
    assert_eq!(alerts()[0]["data"]["threshold_days"], 7);
    assert!(r.emf(OffsetDateTime::now_utc()).contains("\"TokenDaysRemaining\":5.0"));
    for _ in 0..3 {
        assert_eq!(check_all(&d, OffsetDateTime::now_utc()).await.unwrap()[0].alerted, None);
    }
    assert_eq!(alerts().len(), 1, "never repeated");

    h.sim.control().add_token(&set_expiry(2)).await.unwrap();
    assert_eq!(
        check_all(&d, OffsetDateTime::now_utc()).await.unwrap()[0].alerted,
        Some(3)
    );
    // The same token, a day later by the clock: the 1-day threshold, once.
    let tomorrow = OffsetDateTime::now_utc() + Duration::days(1);
    assert_eq!(check_all(&d, tomorrow).await.unwrap()[0].alerted, Some(1));
    assert_eq!(check_all(&d, tomorrow).await.unwrap()[0].alerted, None);
    assert_eq!(alerts().len(), 3);

    // Revoked: a 401 alerts at once, and only once.
    h.env
        .lock()
        .unwrap()
        .insert("S1_TOKEN_acme".into(), "revoked-token".into());
    let r = check_all(&d, OffsetDateTime::now_utc()).await.unwrap().remove(0);
    assert!(r.unauthorized, "{r:?}");
    assert_eq!(h.events("token.unauthorized").len(), 1);
    assert!(check_all(&d, OffsetDateTime::now_utc()).await.unwrap()[0].unauthorized);
    assert_eq!(h.events("token.unauthorized").len(), 1);
    assert!(
        !format!("{:?}", h.receiver.events()).contains("revoked-token"),
        "the token is never sent"
    );

    // A fresh 60-day token: no alert, and its thresholds start afresh.
    h.sim
        .control()
        .add_token(&TokenSpec::tenant("fresh-token", 60))
        .await
        .unwrap();
    h.env
        .lock()
        .unwrap()
        .insert("S1_TOKEN_acme".into(), "fresh-token".into());
    let r = check_all(&d, OffsetDateTime::now_utc()).await.unwrap().remove(0);
    assert_eq!(
        (r.days_left, r.alerted, r.unauthorized),
        (Some(59), None, false),
        "{r:?}"
    );
    let state = h.store.get_token_state("acme").await.unwrap().unwrap();
    assert!(state.alerted_thresholds.is_empty() && !state.unauthorized_alerted);
}

async fn sm() -> aws_sdk_secretsmanager::Client {
    assert!(
        std::env::var("AWS_ENDPOINT_URL_SECRETS_MANAGER").is_ok(),
        "AWS_ENDPOINT_URL_SECRETS_MANAGER is not set: run scripts/test.sh, which starts moto"
    );
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_sdk_secretsmanager::Client::new(&config)
}

async fn current(client: &aws_sdk_secretsmanager::Client, name: &str) -> String {
    client
        .get_secret_value()
        .secret_id(name)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap()
        .secret_string()
        .unwrap()
        .to_owned()
}

/// A tenant whose token lives in a moto secret, and the rotation deps for it.
async fn rotation_setup(h: &PollHarness, token: &str) -> (aws_sdk_secretsmanager::Client, String, RotationDeps) {
    let client = sm().await;
    let name = format!(
        "s1-bridge/rotation/{}",
        OffsetDateTime::now_utc().unix_timestamp_nanos()
    );
    client
        .create_secret()
        .name(&name)
        .secret_string(token)
        .send()
        .await
        .unwrap();
    h.sim.control().add_token(&TokenSpec::tenant(token, 20)).await.unwrap();
    let mut t = tenant("acme", &h.sim.base_url(), &h.receiver.url());
    t.token = TokenSource::SecretsManager {
        secret_id: name.clone(),
    };
    h.store.put_tenant(&t).await.unwrap();
    let d = rotation_deps(h, client.clone());
    (client, name, d)
}

fn rotation_deps(h: &PollHarness, secrets: aws_sdk_secretsmanager::Client) -> RotationDeps {
    RotationDeps {
        store: h.store.clone(),
        secrets: Arc::new(SecretsManagerVersions::new(secrets)),
        platforms: h.deps.platforms.clone(),
        consoles: integration_tests::poll::consoles_over(h.tokens.clone()),
    }
}

/// Fails Secrets Manager's `PutSecretValue` calls: the first `before` never reach it, the next
/// `after` reach it and store the value but their answer is lost. Counts the puts it saw.
#[derive(Debug, Clone, Default)]
struct FailPuts(Arc<FailState>);

#[derive(Debug, Default)]
struct FailState {
    before: std::sync::atomic::AtomicU32,
    after: std::sync::atomic::AtomicU32,
    seen: std::sync::atomic::AtomicU32,
    /// The call in flight is a put (the calls of one rotation step are sequential).
    in_put: std::sync::atomic::AtomicBool,
}

fn take_one(n: &std::sync::atomic::AtomicU32) -> bool {
    use std::sync::atomic::Ordering;
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

impl aws_sdk_secretsmanager::config::Intercept for FailPuts {
    fn name(&self) -> &'static str {
        "FailPuts"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_secretsmanager::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_secretsmanager::config::RuntimeComponents,
        _: &mut aws_sdk_secretsmanager::config::ConfigBag,
    ) -> Result<(), aws_sdk_secretsmanager::error::BoxError> {
        use std::sync::atomic::Ordering;
        let put = context
            .request()
            .headers()
            .get("x-amz-target")
            .is_some_and(|t| t.ends_with(".PutSecretValue"));
        self.0.in_put.store(put, Ordering::SeqCst);
        if put {
            self.0.seen.fetch_add(1, Ordering::SeqCst);
            if take_one(&self.0.before) {
                return Err("injected: Secrets Manager unreachable".into());
            }
        }
        Ok(())
    }

    fn read_after_transmit(
        &self,
        _: &aws_sdk_secretsmanager::config::interceptors::BeforeDeserializationInterceptorContextRef<'_>,
        _: &aws_sdk_secretsmanager::config::RuntimeComponents,
        _: &mut aws_sdk_secretsmanager::config::ConfigBag,
    ) -> Result<(), aws_sdk_secretsmanager::error::BoxError> {
        if self.0.in_put.load(std::sync::atomic::Ordering::SeqCst) && take_one(&self.0.after) {
            return Err("injected: the answer was lost".into());
        }
        Ok(())
    }
}

/// A Secrets Manager client (moto) whose `PutSecretValue` calls fail as [`FailPuts`] says.
async fn flaky_sm(before: u32, after: u32) -> (aws_sdk_secretsmanager::Client, FailPuts) {
    let fail = FailPuts::default();
    fail.0.before.store(before, std::sync::atomic::Ordering::SeqCst);
    fail.0.after.store(after, std::sync::atomic::Ordering::SeqCst);
    sm().await; // the endpoint check
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let conf = aws_sdk_secretsmanager::config::Builder::from(&config)
        .interceptor(fail.clone())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    (aws_sdk_secretsmanager::Client::from_conf(conf), fail)
}

fn step(secret: &str, token: &str, step: &str) -> RotationEvent {
    RotationEvent {
        secret_id: secret.into(),
        token: token.into(),
        step: step.parse().unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_end_to_end_promotes_a_working_new_token() {
    let h = harness().await;
    let (client, name, d) = rotation_setup(&h, "rotate-me-1").await;
    for s in [
        "createSecret",
        "createSecret",
        "setSecret",
        "testSecret",
        "finishSecret",
        "finishSecret",
    ] {
        rotate(&d, &step(&name, "5f0c1a7e-1111-4b2a-9c3d-000000000001", s))
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    let fresh = current(&client, &name).await;
    assert_ne!(fresh, "rotate-me-1");
    let works = S1Client::new(
        &h.sim.base_url(),
        &s1_shared::ApiToken::new(&fresh),
        fast_retry_options(),
    )
    .unwrap();
    assert!(works.system_info().await.is_ok(), "the promoted token works");
    let old = S1Client::new(
        &h.sim.base_url(),
        &s1_shared::ApiToken::new("rotate-me-1"),
        fast_retry_options(),
    )
    .unwrap();
    assert!(
        old.system_info().await.unwrap_err().is_unauthorized(),
        "S1 revoked the old one"
    );
    assert_eq!(
        h.sim.control().stats().await.unwrap().requests["POST /users/generate-api-token"],
        1,
        "a repeated createSecret made no second token"
    );
    // An arn-style secret id finds the tenant too.
    let err = rotate(
        &d,
        &step(
            "arn:aws:secretsmanager:us-east-1:1:secret:unknown-AbCdEf",
            "r",
            "setSecret",
        ),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("no tenant"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_test_step_leaves_the_current_version_and_the_bridge_keeps_working() {
    let h = harness().await;
    let (client, name, d) = rotation_setup(&h, "rotate-me-2").await;
    rotate(&d, &step(&name, "5f0c1a7e-2222-4b2a-9c3d-000000000002", "createSecret"))
        .await
        .unwrap();
    h.sim
        .control()
        .add_fault(&FaultRule::new(
            "/system/info",
            FaultKind::Status {
                status: 500,
                retry_after: None,
                code: None,
            },
            100,
        ))
        .await
        .unwrap();
    let err = rotate(&d, &step(&name, "5f0c1a7e-2222-4b2a-9c3d-000000000002", "testSecret"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not work"), "{err}");
    assert_eq!(current(&client, &name).await, "rotate-me-2", "AWSCURRENT untouched");
    h.sim.control().clear_faults().await.unwrap();

    // S1 already revoked the old token; the provider falls back to the pending one on a 401.
    let provider = Arc::new(SecretsManagerTokenProvider::new(
        client.clone(),
        std::time::Duration::from_secs(300),
    ));
    let source = TokenSource::SecretsManager {
        secret_id: name.clone(),
    };
    assert_eq!(provider.token(&source).await.unwrap().expose(), "rotate-me-2");
    let mut t = tenant("acme", &h.sim.base_url(), &h.receiver.url());
    t.token = source;
    let consoles = Consoles::new(reqwest::Client::new(), provider, fast_retry_options());
    let info = consoles
        .with_token(
            &t,
            |c| async move { c.system_info().await.map_err(TokenCallError::from) },
        )
        .await;
    assert!(info.is_ok(), "{info:?}");
    // Secrets Manager retries the rotation later; then it completes.
    rotate(&d, &step(&name, "5f0c1a7e-2222-4b2a-9c3d-000000000002", "testSecret"))
        .await
        .unwrap();
    rotate(&d, &step(&name, "5f0c1a7e-2222-4b2a-9c3d-000000000002", "finishSecret"))
        .await
        .unwrap();
    assert_ne!(current(&client, &name).await, "rotate-me-2");
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_rotation_the_provider_reads_the_promoted_token() {
    let h = harness().await;
    let (client, name, d) = rotation_setup(&h, "rotate-me-3").await;
    let token = "5f0c1a7e-3333-4b2a-9c3d-000000000003";
    for s in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        rotate(&d, &step(&name, token, s)).await.unwrap();
    }
    let provider = SecretsManagerTokenProvider::new(client, std::time::Duration::from_secs(300));
    let got = provider
        .token(&TokenSource::SecretsManager { secret_id: name })
        .await
        .unwrap();
    assert_ne!(got.expose(), "rotate-me-3");
    let works = S1Client::new(&h.sim.base_url(), &got, fast_retry_options()).unwrap();
    assert!(works.system_info().await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generated_token_is_stored_even_when_secrets_manager_fails_at_first() {
    let h = harness().await;
    let (client, name, _) = rotation_setup(&h, "rotate-me-4").await;
    // One put never arrives, the next arrives but its answer is lost.
    let (flaky, fail) = flaky_sm(1, 1).await;
    let d = rotation_deps(&h, flaky);
    let token = "5f0c1a7e-4444-4b2a-9c3d-000000000004";
    rotate(&d, &step(&name, token, "createSecret")).await.unwrap();
    assert!(fail.0.seen.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    let pending = client
        .get_secret_value()
        .secret_id(&name)
        .version_id(token)
        .version_stage("AWSPENDING")
        .send()
        .await
        .unwrap();
    let fresh = pending.secret_string().unwrap().to_owned();
    assert_ne!(fresh, "rotate-me-4");
    let works = S1Client::new(
        &h.sim.base_url(),
        &s1_shared::ApiToken::new(&fresh),
        fast_retry_options(),
    )
    .unwrap();
    assert!(
        works.system_info().await.is_ok(),
        "the stored token is the one S1 issued"
    );
    assert_eq!(
        h.sim.control().stats().await.unwrap().requests["POST /users/generate-api-token"],
        1
    );
    for s in ["setSecret", "testSecret", "finishSecret"] {
        rotate(&d, &step(&name, token, s)).await.unwrap();
    }
    assert_eq!(current(&client, &name).await, fresh);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generated_token_that_cannot_be_stored_is_reported_to_the_platform() {
    let h = harness().await;
    let (client, name, _) = rotation_setup(&h, "rotate-me-5").await;
    let (flaky, _) = flaky_sm(1_000, 0).await;
    let d = rotation_deps(&h, flaky);
    let err = rotate(&d, &step(&name, "5f0c1a7e-5555-4b2a-9c3d-000000000005", "createSecret"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("could not be stored"), "{err}");
    let alerts = h.events("token.rotation_failed");
    assert_eq!(alerts.len(), 1, "{:?}", h.receiver.events());
    let message = alerts[0]["data"]["message"].as_str().unwrap();
    for needle in [name.as_str(), "put-secret-value", "revoked", "cancel-rotate-secret"] {
        assert!(message.contains(needle), "{needle} not in {message}");
    }
    assert_eq!(current(&client, &name).await, "rotate-me-5", "AWSCURRENT untouched");
    let shown = alerts[0].to_string();
    assert!(!shown.contains("rotate-me-5"), "no token in the alert: {shown}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_finds_the_tenant_of_exactly_its_secret() {
    let h = harness().await;
    let client = sm().await;
    let base = format!("s1-bridge/exact/{}", OffsetDateTime::now_utc().unix_timestamp_nanos());
    let mut arns = Vec::new();
    for (tenant_id, secret, token) in [
        ("acme", base.clone(), "exact-acme"),
        ("acme-eu", format!("{base}-eu"), "exact-eu"),
    ] {
        let out = client
            .create_secret()
            .name(&secret)
            .secret_string(token)
            .send()
            .await
            .unwrap();
        arns.push(out.arn().unwrap().to_owned());
        h.sim.control().add_token(&TokenSpec::tenant(token, 20)).await.unwrap();
        let mut t = tenant(tenant_id, &h.sim.base_url(), &h.receiver.url());
        t.token = TokenSource::SecretsManager { secret_id: secret };
        if tenant_id == "acme" {
            // A prefix match would rotate through this tenant's console, which answers nothing.
            t.console_url = "http://127.0.0.1:9".into();
        }
        h.store.put_tenant(&t).await.unwrap();
    }
    let d = rotation_deps(&h, client.clone());
    let token = "5f0c1a7e-6666-4b2a-9c3d-000000000006";
    rotate(&d, &step(&arns[1], token, "createSecret")).await.unwrap();
    assert_eq!(current(&client, &format!("{base}-eu")).await, "exact-eu");
    let err = rotate(
        &d,
        &step(
            &format!("{}x", arns[0]),
            "5f0c1a7e-6666-4b2a-9c3d-000000000007",
            "createSecret",
        ),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("no tenant"), "{err}");
}
