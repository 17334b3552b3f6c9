//! Lambda `status-writeback`, behind a Function URL: platform webhooks -> S1 status, verdict
//! and notes. `POST /generic/<tenant>` or `POST /pagerduty/<tenant>`.

mod handler;

use std::time::Duration;

use lambda_http::{Request, service_fn};
use s1_shared::lambda::LambdaPorts;
use s1_shared::usecase::writeback::WritebackDeps;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    // Short HTTP bounds: the platform wants an answer within 5 s; what does not fit is retried
    // by the scheduled poll run.
    let ports = LambdaPorts::from_env(Duration::from_secs(1), Duration::from_secs(3)).await?;
    let deps = WritebackDeps {
        platforms: ports.platforms(),
        store: ports.store,
        tokens: ports.tokens,
        consoles: ports.consoles,
        inline_retry: WritebackDeps::inline_retry_policy(),
    };
    lambda_http::run(service_fn(|req: Request| handler::handle(&deps, req))).await
}
