//! Lambda `sync-assets`: daily, S1 accounts, sites and agents -> platform customers, sites and
//! assets.

use std::time::Duration;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use s1_shared::lambda::LambdaPorts;
use s1_shared::usecase::sync_assets::{AssetDeps, sync_all};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let ports = LambdaPorts::from_env(Duration::from_secs(5), Duration::from_secs(30)).await?;
    let deps = AssetDeps {
        progress: None,
        platforms: ports.platforms(),
        store: ports.store,
        consoles: ports.consoles,
        owner: String::new(),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| handle(&deps, event))).await
}

async fn handle(deps: &AssetDeps, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    let mut deps = deps.clone();
    deps.owner = event.context.request_id.clone();
    let reports = sync_all(&deps, std::time::Instant::now() + Duration::from_secs(840))
        .await
        .map_err(|e| Diagnostic {
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
