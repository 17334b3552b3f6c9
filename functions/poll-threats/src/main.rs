//! Lambda `poll-threats`: every new or changed S1 threat reaches the platform once.
//!
//! Composition root: settings, clients and ports are built once per cold start and borrowed by
//! every invocation.

mod handler;

use std::time::Duration;

use lambda_runtime::{LambdaEvent, service_fn};
use s1_shared::lambda::LambdaPorts;
use s1_shared::usecase::poll_threats::PollDeps;
use s1_shared::usecase::writeback::WritebackDeps;
use serde_json::Value;

// One invocation at a time, its tenants polled as futures of one task: a single thread spares
// the cross-thread wake-ups of a worker pool (a fifth of a backlog's CPU: scripts/bench.sh).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let ports = LambdaPorts::from_env(Duration::from_secs(5), Duration::from_secs(30)).await?;
    let platforms = ports.platforms();
    let deps = PollDeps {
        progress: None,
        platforms: platforms.clone(),
        store: ports.store.clone(),
        consoles: ports.consoles.clone(),
        owner: String::new(),
        concurrency: ports.settings.poll_concurrency,
        // Each run also retries the pending writebacks that are due.
        writeback: Some(WritebackDeps {
            platforms,
            store: ports.store,
            tokens: ports.tokens,
            consoles: ports.consoles,
            inline_retry: WritebackDeps::inline_retry_policy(),
        }),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| handler::handle(&deps, event))).await
}
