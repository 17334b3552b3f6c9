//! Lambda `dispatch`: each minute, one queue message per enabled tenant due, so `poll-threats`
//! runs every tenant in its own invocation (docs/design.md, Fan-out).
//!
//! Composition root: settings, clients and the queue are built once per cold start.

mod handler;

use std::time::Duration;

use lambda_runtime::{LambdaEvent, service_fn};
use s1_shared::lambda::LambdaPorts;
use s1_shared::queue::SqsQueue;
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let ports = LambdaPorts::from_env(Duration::from_secs(5), Duration::from_secs(30)).await?;
    let url = ports
        .settings
        .poll_queue_url
        .clone()
        .ok_or("environment variable POLL_QUEUE_URL is required by the dispatcher")?;
    let deps = handler::DispatchDeps {
        store: ports.store.clone(),
        queue: std::sync::Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&ports.aws), url)),
        spread: ports.settings.dispatch_spread,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| handler::handle(&deps, event))).await
}
