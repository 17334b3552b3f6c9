//! Turns the schedule's event into one message per tenant due.

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::LambdaEvent;
use s1_shared::lambda::FunctionError;
use s1_shared::queue::TenantQueue;
use s1_shared::store::Store;
use s1_shared::usecase::fanout::dispatch;
use serde_json::Value;

pub(crate) struct DispatchDeps {
    pub store: Store,
    pub queue: Arc<dyn TenantQueue>,
    pub spread: Duration,
}

/// The schedule's event, or `{}`: anything else is a mistake, named.
fn check_input(event: &Value) -> Result<(), FunctionError> {
    match event {
        Value::Object(o) if o.is_empty() || o.contains_key("detail-type") => Ok(()),
        other => Err(FunctionError::bad_input(format!(
            "dispatch takes a schedule event or {{}}, not {other}"
        ))),
    }
}

pub(crate) async fn handle(deps: &DispatchDeps, event: LambdaEvent<Value>) -> Result<Value, FunctionError> {
    check_input(&event.payload)?;
    let report = dispatch(
        &deps.store,
        deps.queue.as_ref(),
        deps.spread,
        time::OffsetDateTime::now_utc(),
    )
    .await?;
    tracing::info!(
        tenants = report.tenants,
        sent = report.sent,
        backed_off = report.backed_off,
        not_sent = report.not_sent.len(),
        "dispatch done"
    );
    if !report.not_sent.is_empty() {
        // The whole invocation fails (alarmed) so the queue's trouble is seen; the tenants sent
        // are in the queue and the rest go out with the next minute's dispatch.
        return Err(FunctionError {
            kind: s1_shared::lambda::FailureKind::Retryable,
            message: format!(
                "the queue did not take {} of {} messages (tenants {})",
                report.not_sent.len(),
                report.sent + report.not_sent.len(),
                report.not_sent.join(", ")
            ),
        });
    }
    FunctionError::answer(&report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_schedule_event_or_nothing_is_taken() {
        assert!(check_input(&serde_json::json!({})).is_ok());
        assert!(check_input(&serde_json::json!({"detail-type": "Scheduled Event", "source": "aws.events"})).is_ok());
        let err = check_input(&serde_json::json!({"tenant": "acme"})).unwrap_err();
        assert_eq!(err.kind, s1_shared::lambda::FailureKind::BadInput);
        assert!(err.message.contains("schedule event"), "{}", err.message);
    }
}
