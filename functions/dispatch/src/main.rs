//! Lambda `dispatch`: on each job's schedule, one message per enabled tenant due on that job's
//! queue, so `poll-threats`, `sync-assets` and `token-expiry` run every tenant in its own
//! invocation (docs/fleet.md).
//!
//! Composition root: settings, clients and the queue are built once per cold start.

mod handler;

use std::time::Duration;

use lambda_runtime::{LambdaEvent, service_fn};
use s1_shared::lambda::LambdaPorts;
use std::sync::Arc;

use s1_shared::config;
use s1_shared::queue::{SqsQueue, TenantQueue};
use s1_shared::usecase::fanout::Job;
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let ports = LambdaPorts::from_env(Duration::from_secs(5), Duration::from_secs(30)).await?;
    let sqs = aws_sdk_sqs::Client::new(&ports.aws);
    let s = &ports.settings;
    let mut queues = std::collections::HashMap::new();
    for (job, url, var) in [
        (Job::Poll, &s.poll_queue_url, config::POLL_QUEUE_URL),
        (Job::Assets, &s.assets_queue_url, config::ASSETS_QUEUE_URL),
        (Job::Tokens, &s.tokens_queue_url, config::TOKENS_QUEUE_URL),
    ] {
        let url = url
            .clone()
            .ok_or_else(|| format!("environment variable {var} is required by the dispatcher"))?;
        let queue: Arc<dyn TenantQueue> = Arc::new(SqsQueue::new(sqs.clone(), url));
        queues.insert(job, queue);
    }
    let deps = handler::DispatchDeps {
        store: ports.store.clone(),
        queues,
        spread: s.dispatch_spread,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| handler::handle(&deps, event))).await
}
