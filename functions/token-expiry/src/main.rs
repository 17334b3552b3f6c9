//! Lambda `token-expiry`: a daily watch on every tenant's S1 token, and the Secrets Manager
//! rotation function for tenants that opt in (Secrets Manager invokes it with a `Step`).

mod handler;

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{LambdaEvent, service_fn};
use s1_shared::config::Settings;
use s1_shared::platform::Adapters;
use s1_shared::s1::ClientOptions;
use s1_shared::secrets::SecretsManagerTokenProvider;
use s1_shared::store::{DynamoTable, Store};
use s1_shared::usecase::token_expiry::{RotationDeps, TokenDeps};
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
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    let tokens = Arc::new(SecretsManagerTokenProvider::new(
        secrets.clone(),
        settings.secret_cache_ttl,
    ));
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()?;
    let options = ClientOptions::default();
    let watch = TokenDeps {
        store: store.clone(),
        tokens: tokens.clone(),
        platforms: Arc::new(Adapters::new(http.clone(), tokens, options.retry.clone())),
        http: http.clone(),
        client_options: options.clone(),
    };
    let rotation = RotationDeps {
        store,
        secrets,
        http,
        client_options: options,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler::handle(&watch, &rotation, event)
    }))
    .await
}
