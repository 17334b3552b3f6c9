//! Lambda `poll-threats`: every new or changed S1 threat reaches the platform once.
//!
//! Composition root: settings, clients and ports are built once per cold start and borrowed by
//! every invocation.

mod handler;

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{LambdaEvent, service_fn};
use s1_shared::config::Settings;
use s1_shared::platform::Adapters;
use s1_shared::s1::ClientOptions;
use s1_shared::secrets::SecretsManagerTokenProvider;
use s1_shared::store::{DynamoTable, Store};
use s1_shared::usecase::poll_threats::PollDeps;
use s1_shared::usecase::writeback::WritebackDeps;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store = Store::new(Arc::new(DynamoTable::new(
        aws_sdk_dynamodb::Client::new(&aws),
        settings.table_name.clone(),
    )));
    let tokens = Arc::new(SecretsManagerTokenProvider::new(
        aws_sdk_secretsmanager::Client::new(&aws),
        settings.secret_cache_ttl,
    ));
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()?;
    let options = ClientOptions::default();
    let deps = PollDeps {
        progress: None,
        store: store.clone(),
        tokens: tokens.clone(),
        platforms: Arc::new(Adapters::new(http.clone(), tokens.clone(), options.retry.clone())),
        http: http.clone(),
        client_options: options.clone(),
        owner: String::new(),
        concurrency: settings.poll_concurrency,
        writeback: Some(WritebackDeps {
            store: store.clone(),
            tokens: tokens.clone(),
            http: http.clone(),
            inline_options: WritebackDeps::inline_client_options(),
            retry_options: options.clone(),
        }),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| handler::handle(&deps, event))).await
}
