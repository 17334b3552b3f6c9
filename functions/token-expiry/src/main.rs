//! Lambda `token-expiry`: watch S1 API token expiry.
//!
//! Composition root only. The use case arrives with issue #6; until then the function
//! answers every invocation with a typed, non-retryable error instead of pretending to work.

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    lambda_runtime::run(service_fn(handle)).await
}

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    tracing::warn!(request_id = %event.context.request_id, "token-expiry invoked before its use case exists");
    Err(Diagnostic {
        error_type: "NotImplemented".into(),
        error_message: "token-expiry is not implemented yet (issue #6); nothing was done".into(),
    })
}
