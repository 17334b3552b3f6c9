//! Lambda `token-expiry`: a daily watch on every tenant's S1 token, and the Secrets Manager
//! rotation function for tenants that opt in (Secrets Manager invokes it with a `Step`).

mod handler;

use std::time::Duration;

use lambda_runtime::{LambdaEvent, service_fn};
use s1_shared::lambda::LambdaPorts;
use s1_shared::usecase::token_expiry::{RotationDeps, TokenDeps};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let ports = LambdaPorts::from_env(Duration::from_secs(5), Duration::from_secs(30)).await?;
    let platforms = ports.platforms();
    let watch = TokenDeps {
        platforms: platforms.clone(),
        store: ports.store.clone(),
        consoles: ports.consoles.clone(),
    };
    let rotation = RotationDeps {
        store: ports.store,
        secrets: ports.secrets,
        platforms,
        consoles: ports.consoles,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler::handle(&watch, &rotation, event)
    }))
    .await
}
