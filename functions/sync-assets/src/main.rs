//! Lambda `sync-assets`: daily, S1 accounts, sites and agents -> platform customers, sites and
//! assets.

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use s1_shared::config::Settings;
use s1_shared::platform::Adapters;
use s1_shared::s1::ClientOptions;
use s1_shared::secrets::SecretsManagerTokenProvider;
use s1_shared::store::{DynamoTable, Store};
use s1_shared::usecase::sync_assets::{AssetDeps, sync_all};
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
    let deps = AssetDeps {
        progress: None,
        store,
        tokens: tokens.clone(),
        platforms: Arc::new(Adapters::new(http.clone(), tokens, options.retry.clone())),
        http,
        client_options: options,
        owner: String::new(),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| handle(&deps, event))).await
}

async fn handle(deps: &AssetDeps, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    let mut deps = deps.clone();
    deps.owner = event.context.request_id.clone();
    let reports = sync_all(&deps).await.map_err(|e| Diagnostic {
        error_type: "StoreError".into(),
        error_message: e.to_string(),
    })?;
    let now = time::OffsetDateTime::now_utc();
    for r in &reports {
        println!("{}", r.emf(now));
    }
    serde_json::to_value(&reports).map_err(|e| Diagnostic {
        error_type: "Internal".into(),
        error_message: e.to_string(),
    })
}
