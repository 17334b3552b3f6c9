//! Lambda `status-writeback`, behind a Function URL: platform webhooks -> S1 status, verdict
//! and notes. `POST /generic/<tenant>` or `POST /pagerduty/<tenant>`.

mod handler;

use std::sync::Arc;
use std::time::Duration;

use lambda_http::{Request, service_fn};
use s1_shared::config::Settings;
use s1_shared::s1::ClientOptions;
use s1_shared::secrets::SecretsManagerTokenProvider;
use s1_shared::store::{DynamoTable, Store};
use s1_shared::usecase::writeback::WritebackDeps;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let deps = WritebackDeps {
        store: Store::new(Arc::new(DynamoTable::new(
            aws_sdk_dynamodb::Client::new(&aws),
            settings.table_name.clone(),
        ))),
        tokens: Arc::new(SecretsManagerTokenProvider::new(
            aws_sdk_secretsmanager::Client::new(&aws),
            settings.secret_cache_ttl,
        )),
        http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(3))
            .build()?,
        inline_options: WritebackDeps::inline_client_options(),
        retry_options: ClientOptions::default(),
    };
    lambda_http::run(service_fn(|req: Request| handler::handle(&deps, req))).await
}
