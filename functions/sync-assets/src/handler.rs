//! Turns an SQS batch (one tenant per message, from the dispatcher or a continuation), an
//! operator's `{"tenant": "acme"}` or a schedule event into asset syncs, and the syncs into a
//! report.

use lambda_runtime::LambdaEvent;
use s1_shared::lambda::{FunctionError, deadline, named_tenant, sqs_batch};
use s1_shared::queue::{TenantQueue, is_sqs_event, operator_input};
use s1_shared::usecase::fanout::consume_assets;
use s1_shared::usecase::sync_assets::{AssetDeps, AssetReport, sync_all, sync_tenant};
use serde_json::Value;

/// A message per tenant from the asset queue (a sync that ends `partial` sends its continuation
/// to `continuations`); `{"tenant": "acme"}` syncs that tenant, a schedule event or `{}` every
/// enabled tenant, within this one invocation.
pub(crate) async fn handle(
    deps: &AssetDeps,
    continuations: &dyn TenantQueue,
    event: LambdaEvent<Value>,
) -> Result<Value, FunctionError> {
    let mut deps = deps.clone();
    deps.owner = if event.context.request_id.is_empty() {
        "local".into()
    } else {
        event.context.request_id.clone()
    };
    let deadline = deadline(&event.context);
    if is_sqs_event(&event.payload) {
        let batch = sqs_batch("sync-assets", event.payload)?;
        let (answer, consumed) = consume_assets(&deps, continuations, &batch, deadline).await;
        emit(&consumed.runs);
        consumed.log(batch.records.len());
        // Lambda reads only `batchItemFailures`: the messages to be received again.
        return FunctionError::answer(&answer);
    }
    let reports = match operator_input("sync-assets", &event.payload).map_err(FunctionError::bad_input)? {
        Some(id) => {
            let tenant = named_tenant(&deps.store, &id).await?;
            vec![sync_tenant(&deps, &tenant, deadline).await]
        }
        None => sync_all(&deps, deadline).await?,
    };
    emit(&reports);
    FunctionError::answer(&reports)
}

/// CloudWatch turns these stdout lines into metrics.
fn emit(reports: &[AssetReport]) {
    let now = time::OffsetDateTime::now_utc();
    for r in reports {
        println!("{}", r.emf(now));
    }
    tracing::info!(tenants = reports.len(), "asset sync done");
}

#[cfg(test)]
mod tests {
    use super::*;

    use s1_bridge_sim::{DEFAULT_TOKEN, Sim, SimConfig, WebhookReceiver};
    use s1_shared::store::*;
    use s1_shared::test_util::LoopbackPorts;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[tokio::test(flavor = "multi_thread")]
    async fn a_schedule_event_syncs_every_tenant_and_reports() {
        let sim = Sim::start(SimConfig {
            threats: 1,
            agents: 10,
            cloud_alerts: 0,
            decommissioned_every: 0,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let receiver = WebhookReceiver::start(SECRET).await.unwrap();
        let ports = LoopbackPorts::new([("S1_TOKEN_acme", DEFAULT_TOKEN.to_owned()), ("HOOK", SECRET.to_owned())]);
        let tenant = TenantConfig::for_test(
            "acme",
            &sim.base_url(),
            s1_shared::test_util::generic(&receiver.url(), "HOOK"),
        );
        let store = s1_shared::test_util::store_with(&tenant).await;
        let deps = AssetDeps {
            progress: None,
            store,
            consoles: ports.consoles,
            platforms: ports.platforms,
            owner: String::new(),
        };
        let queue = s1_shared::test_util::MemoryQueue::default();
        let schedule = || {
            LambdaEvent::new(
                serde_json::json!({"detail-type": "Scheduled Event", "source": "aws.events"}),
                lambda_runtime::Context::default(),
            )
        };
        let out = handle(&deps, &queue, schedule()).await.unwrap();
        assert_eq!(out[0]["tenant"], "acme");
        assert_eq!(out[0]["outcome"], "completed");
        assert_eq!(out[0]["created"], 3 + 6 + 10, "{out}");
        assert_eq!(out[0]["error"], Value::Null);
        assert_eq!(receiver.events().len(), 3 + 6 + 10);
        // The lease is given back: the next run syncs again, finding nothing changed.
        let out = handle(&deps, &queue, schedule()).await.unwrap();
        assert_eq!(
            (out[0]["created"].as_u64(), out[0]["unchanged"].as_u64()),
            (Some(0), Some(19))
        );
        // One tenant by hand, and from its queue: a sync that completes sends no continuation.
        let input = |payload: Value| LambdaEvent::new(payload, lambda_runtime::Context::default());
        let out = handle(&deps, &queue, input(serde_json::json!({"tenant": "acme"})))
            .await
            .unwrap();
        assert_eq!(out[0]["unchanged"], 19, "{out}");
        let record = serde_json::json!({"messageId": "m1", "body": "{\"tenant\":\"acme\"}", "eventSource": "aws:sqs"});
        let out = handle(&deps, &queue, input(serde_json::json!({"Records": [record]})))
            .await
            .unwrap();
        assert_eq!(out, serde_json::json!({"batchItemFailures": []}));
        assert!(queue.sent.lock().unwrap().is_empty());
        for (bad, says) in [
            (serde_json::json!({"tenant": "nobody"}), "no tenant \"nobody\""),
            (serde_json::json!({"shard": 0, "shards": 4}), "unknown field `shard`"),
        ] {
            let err = lambda_runtime::Diagnostic::from(handle(&deps, &queue, input(bad)).await.unwrap_err());
            assert_eq!(err.error_type, "BadInput");
            assert!(err.error_message.contains(says), "{err:?}");
        }
    }
}
