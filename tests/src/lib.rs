//! Support for the cross-crate integration tests: the vendored fixtures, a
//! simulator-plus-client harness, and a Swagger 2.0 schema checker.

pub mod chaos;
pub mod fault_sweep;
pub mod guarantees;
pub mod halo;
pub mod held;
pub mod outbound;
pub mod poll;
pub mod sqs;
pub mod store_contract;
pub mod swagger;
pub mod tokens;
pub mod unified;
pub mod writeback;
pub mod writeback_uam;

use std::path::PathBuf;
use std::time::Duration;

use s1_bridge_sim::{DEFAULT_TOKEN, Sim, SimConfig};
use s1_shared::ApiToken;
use s1_shared::s1::{ClientOptions, RateLimits, RetryPolicy, S1Client};

/// The vendored test material (`tests/fixtures`: the S1 and Halo API exports, recorded S1
/// responses, real platform webhooks), each folder with its PROVENANCE.md.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The allow-list of local runs: the simulator, receivers and stand-ins are on 127.0.0.1.
pub fn loopback_hosts() -> s1_shared::config::AllowedHosts {
    s1_shared::config::AllowedHosts::parse("127.0.0.1").expect("a valid host")
}

/// Client options for tests: S1's real rate limits, but short backoffs so retries are quick;
/// consoles on loopback allowed.
pub fn fast_retry_options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_attempts: 4,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
            max_retry_after: Duration::from_secs(5),
        },
        rate_limits: RateLimits::default(),
        allowed_hosts: loopback_hosts(),
        ..ClientOptions::default()
    }
}

/// A simulator and a tenant-scope client pointed at it.
pub async fn sim_and_client(config: SimConfig) -> (Sim, S1Client) {
    let sim = Sim::start(config).await.expect("simulator starts");
    let client = client_for(&sim, DEFAULT_TOKEN, fast_retry_options());
    (sim, client)
}

/// A client for `sim` with `token`.
pub fn client_for(sim: &Sim, token: &str, options: ClientOptions) -> S1Client {
    S1Client::new(&sim.base_url(), &ApiToken::new(token), options).expect("client builds")
}

/// Every item of a paged stream, in order.
///
/// # Errors
/// The first error the stream yields.
pub async fn items<T>(
    pages: impl futures_util::Stream<Item = Result<s1_shared::s1::Page<T>, s1_shared::s1::S1Error>>,
) -> Result<Vec<T>, s1_shared::s1::S1Error> {
    use futures_util::TryStreamExt;
    pages.map_ok(|p| p.items).try_concat().await
}

/// A fresh table on DynamoDB Local (`AWS_ENDPOINT_URL_DYNAMODB`, set by scripts/test.sh), named
/// `<prefix>-<nanos>`.
/// Two stores on one fresh DynamoDB Local table, each with its own client (as two processes
/// have), with the SDK configuration and the table's name (to read it back raw).
pub async fn dynamodb_twins(prefix: &str) -> ([s1_shared::store::Store; 2], aws_config::SdkConfig, String) {
    assert!(
        std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_ok(),
        "AWS_ENDPOINT_URL_DYNAMODB is not set: run scripts/test.sh, which starts DynamoDB Local"
    );
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let name = format!("{prefix}-{}", time::OffsetDateTime::now_utc().unix_timestamp_nanos());
    s1_shared::store::create_table(&aws_sdk_dynamodb::Client::new(&config), &name)
        .await
        .unwrap();
    let store = || {
        let t: std::sync::Arc<dyn s1_shared::store::ItemTable> = std::sync::Arc::new(
            s1_shared::store::DynamoTable::new(aws_sdk_dynamodb::Client::new(&config), name.clone()),
        );
        s1_shared::store::Store::new(t)
    };
    ([store(), store()], config, name)
}

pub async fn dynamodb_table(prefix: &str) -> std::sync::Arc<dyn s1_shared::store::ItemTable> {
    assert!(
        std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_ok(),
        "AWS_ENDPOINT_URL_DYNAMODB is not set: run scripts/test.sh, which starts DynamoDB Local"
    );
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let name = format!("{prefix}-{}", time::OffsetDateTime::now_utc().unix_timestamp_nanos());
    s1_shared::store::create_table(&client, &name).await.unwrap();
    std::sync::Arc::new(s1_shared::store::DynamoTable::new(client, name))
}
