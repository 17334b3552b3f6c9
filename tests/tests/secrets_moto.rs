//! The Secrets Manager token provider against moto's server, reached only through
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER` (set by scripts/test.sh, which starts moto).

use std::sync::Arc;
use std::time::Duration;

use integration_tests::{fast_retry_options, sim_and_client};
use s1_bridge_sim::{SimConfig, TokenSpec};
use s1_shared::s1::{Console, Consoles};
use s1_shared::secrets::{SecretError, SecretsManagerTokenProvider, TokenCallError, TokenProvider};
use s1_shared::store::TokenSource;

async fn sm() -> aws_sdk_secretsmanager::Client {
    assert!(
        std::env::var("AWS_ENDPOINT_URL_SECRETS_MANAGER").is_ok(),
        "AWS_ENDPOINT_URL_SECRETS_MANAGER is not set: run scripts/test.sh, which starts moto"
    );
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_sdk_secretsmanager::Client::new(&config)
}

fn unique(name: &str) -> String {
    format!(
        "s1-bridge/test/{name}-{}",
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    )
}

async fn create(client: &aws_sdk_secretsmanager::Client, name: &str, value: &str) -> TokenSource {
    client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .unwrap();
    TokenSource::SecretsManager {
        secret_id: name.to_owned(),
    }
}

async fn update(client: &aws_sdk_secretsmanager::Client, name: &str, value: &str) {
    client
        .put_secret_value()
        .secret_id(name)
        .secret_string(value)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn reads_bare_and_json_secrets() {
    let client = sm().await;
    let provider = SecretsManagerTokenProvider::new(client.clone(), Duration::from_secs(60));
    let bare = create(&client, &unique("bare"), "tok-bare-123\n").await;
    let json = create(
        &client,
        &unique("json"),
        r#"{"apiToken":"tok-json-456","console":"acme"}"#,
    )
    .await;
    assert_eq!(provider.token(&bare).await.unwrap().expose(), "tok-bare-123");
    assert_eq!(provider.token(&json).await.unwrap().expose(), "tok-json-456");
    let shown = format!("{provider:?} {:?}", provider.token(&bare).await.unwrap());
    assert!(!shown.contains("tok-bare"), "{shown}");
}

#[tokio::test]
async fn caches_for_the_ttl_and_rereads_after_invalidate() {
    let client = sm().await;
    let name = unique("cached");
    let source = create(&client, &name, "tok-v1").await;
    let provider = SecretsManagerTokenProvider::new(client.clone(), Duration::from_secs(3600));
    assert_eq!(provider.token(&source).await.unwrap().expose(), "tok-v1");
    update(&client, &name, "tok-v2").await;
    assert_eq!(
        provider.token(&source).await.unwrap().expose(),
        "tok-v1",
        "cached across warm invocations"
    );
    provider.invalidate(&source).await;
    assert_eq!(provider.token(&source).await.unwrap().expose(), "tok-v2");

    let short = SecretsManagerTokenProvider::new(client.clone(), Duration::from_millis(200));
    assert_eq!(short.token(&source).await.unwrap().expose(), "tok-v2");
    update(&client, &name, "tok-v3").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        short.token(&source).await.unwrap().expose(),
        "tok-v3",
        "re-read once the TTL passed"
    );
}

#[tokio::test]
async fn missing_and_empty_secrets_are_named() {
    let client = sm().await;
    let provider = SecretsManagerTokenProvider::new(client.clone(), Duration::from_secs(60));
    let missing = TokenSource::SecretsManager {
        secret_id: "s1-bridge/test/does-not-exist".into(),
    };
    let err = provider.token(&missing).await.unwrap_err();
    assert!(
        matches!(&err, SecretError::NotFound { secret } if secret == "s1-bridge/test/does-not-exist"),
        "{err:?}"
    );
    let empty = create(&client, &unique("empty"), r#"{"note":"no token here"}"#).await;
    assert!(matches!(provider.token(&empty).await, Err(SecretError::Empty { .. })));
    let env = TokenSource::Env { var: "X".into() };
    assert!(matches!(
        provider.token(&env).await,
        Err(SecretError::Unsupported { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_rereads_the_secret_once_and_retries_with_a_rotated_token() {
    let client = sm().await;
    let (sim, _) = sim_and_client(SimConfig {
        threats: 5,
        agents: 5,
        cloud_alerts: 0,
        ..SimConfig::default()
    })
    .await;
    let name = unique("rotated");
    let source = create(&client, &name, "old-token").await; // the simulator does not know it
    let provider = Arc::new(SecretsManagerTokenProvider::new(
        client.clone(),
        Duration::from_secs(3600),
    ));
    provider.token(&source).await.unwrap(); // cached: old-token

    // Someone rotated the secret; the simulator accepts only the new token.
    sim.control()
        .add_token(&TokenSpec::tenant("new-token", 30))
        .await
        .unwrap();
    update(&client, &name, "new-token").await;
    let base = sim.base_url();
    let consoles = Consoles::new(reqwest::Client::new(), provider.clone(), fast_retry_options());
    let console = |tenant, token| Console {
        tenant,
        url: &base,
        token,
    };
    let info = consoles
        .with_token(console("acme", &source), |c| async move {
            c.system_info().await.map_err(TokenCallError::from)
        })
        .await
        .unwrap();
    assert!(info.version.is_some());
    let stats = sim.control().stats().await.unwrap();
    assert_eq!(stats.requests["GET /system/info"], 2, "one 401, one success");

    // When the secret still holds the rejected token, the 401 stands after one re-read.
    sim.control().clear_requests().await.unwrap();
    let stale = create(&client, &unique("stale"), "revoked-token").await;
    let err = consoles
        .with_token(console("stale", &stale), |c| async move {
            c.system_info().await.map_err(TokenCallError::from)
        })
        .await
        .unwrap_err();
    assert!(matches!(&err, TokenCallError::S1(e) if e.is_unauthorized()), "{err:?}");
    assert_eq!(
        sim.control().stats().await.unwrap().requests["GET /system/info"],
        1,
        "no pointless retry"
    );
    assert!(!format!("{err} {err:?}").contains("revoked-token"));
}
