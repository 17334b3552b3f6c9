//! Lambda `sync-assets`: S1 accounts, sites and agents -> platform customers, sites and assets,
//! one tenant per message of the asset queue (daily per tenant by default; a sync that stops
//! with more to do continues itself through the queue).
//!
//! Composition root: settings, clients and ports are built once per cold start and borrowed by
//! every invocation.

mod handler;

use std::time::Duration;

use lambda_runtime::{LambdaEvent, service_fn};
use s1_shared::lambda::LambdaPorts;
use s1_shared::queue::SqsQueue;
use s1_shared::usecase::sync_assets::AssetDeps;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let ports = LambdaPorts::from_env(Duration::from_secs(5), Duration::from_secs(30)).await?;
    let url = ports
        .settings
        .assets_queue_url
        .clone()
        .ok_or("environment variable ASSETS_QUEUE_URL is required by sync-assets (its continuations)")?;
    let continuations = SqsQueue::new(aws_sdk_sqs::Client::new(&ports.aws), url);
    let deps = AssetDeps {
        progress: None,
        platforms: ports.platforms(),
        store: ports.store,
        consoles: ports.consoles,
        owner: String::new(),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler::handle(&deps, &continuations, event)
    }))
    .await
}
