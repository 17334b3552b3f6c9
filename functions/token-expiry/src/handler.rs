//! An SQS batch (one tenant per message, from the dispatcher) runs the watch per tenant, as do
//! an operator's `{"tenant": "acme"}` and a schedule event (every enabled tenant); a Secrets
//! Manager rotation event runs one rotation step.

use lambda_runtime::LambdaEvent;
use s1_shared::lambda::{FunctionError, named_tenant, sqs_batch};
use s1_shared::queue::{is_sqs_event, operator_input};
use s1_shared::usecase::fanout::consume_tokens;
use s1_shared::usecase::token_expiry::{
    RotationDeps, RotationEvent, TokenDeps, TokenReport, check_all, check_tenant, rotate,
};
use serde_json::{Value, json};

pub(crate) async fn handle(
    watch: &TokenDeps,
    rotation: &RotationDeps,
    event: LambdaEvent<Value>,
) -> Result<Value, FunctionError> {
    if event.payload.get("Step").is_some() {
        let ev: RotationEvent = serde_json::from_value(event.payload.clone())
            .map_err(|e| FunctionError::bad_input(format!("rotation event: {e}")))?;
        // A failed step is an error so Secrets Manager retries it; the current version stays.
        rotate(rotation, &ev).await?;
        return Ok(json!({"step": ev.step, "secret": ev.secret_id, "done": true}));
    }
    let now = time::OffsetDateTime::now_utc();
    if is_sqs_event(&event.payload) {
        let batch = sqs_batch("token-expiry", event.payload)?;
        let (answer, consumed) = consume_tokens(watch, &batch, now).await;
        emit(&consumed.runs, now);
        consumed.log(batch.records.len());
        // Lambda reads only `batchItemFailures`: the messages to be received again.
        return FunctionError::answer(&answer);
    }
    let reports = match operator_input("token-expiry", &event.payload).map_err(FunctionError::bad_input)? {
        Some(id) => {
            let tenant = named_tenant(&watch.store, &id).await?;
            vec![check_tenant(watch, &tenant, now).await]
        }
        None => check_all(watch, now).await?,
    };
    emit(&reports, now);
    FunctionError::answer(&reports)
}

/// CloudWatch turns these stdout lines into metrics.
fn emit(reports: &[TokenReport], now: time::OffsetDateTime) {
    for r in reports {
        println!("{}", r.emf(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use s1_bridge_sim::{Sim, SimConfig, TokenSpec, WebhookReceiver};
    use s1_shared::secrets::MemorySecretVersions;
    use s1_shared::store::*;
    use s1_shared::test_util::LoopbackPorts;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[tokio::test(flavor = "multi_thread")]
    async fn a_schedule_event_checks_tokens_and_a_bad_rotation_event_is_refused() {
        let sim = Sim::start(SimConfig {
            threats: 1,
            agents: 1,
            cloud_alerts: 0,
            tokens: vec![TokenSpec::tenant("t5", 5)],
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let receiver = WebhookReceiver::start(SECRET).await.unwrap();
        let LoopbackPorts {
            consoles, platforms, ..
        } = LoopbackPorts::new([("S1_TOKEN_acme", "t5".to_owned()), ("HOOK", SECRET.to_owned())]);
        let tenant = TenantConfig::for_test(
            "acme",
            &sim.base_url(),
            s1_shared::test_util::generic(&receiver.url(), "HOOK"),
        );
        let store = s1_shared::test_util::store_with(&tenant).await;
        let watch = TokenDeps {
            store: store.clone(),
            consoles: consoles.clone(),
            platforms: platforms.clone(),
        };
        let rotation = RotationDeps {
            store,
            secrets: Arc::new(MemorySecretVersions::default()),
            platforms,
            consoles,
        };
        let out = handle(
            &watch,
            &rotation,
            LambdaEvent::new(
                json!({"detail-type": "Scheduled Event"}),
                lambda_runtime::Context::default(),
            ),
        )
        .await
        .unwrap();
        assert_eq!(out[0]["days_left"], 4);
        assert_eq!(out[0]["alerted"], 7);
        assert_eq!(receiver.events()[0]["type"], "token.expiring");
        let bad = handle(
            &watch,
            &rotation,
            LambdaEvent::new(json!({"Step": "createSecret"}), lambda_runtime::Context::default()),
        )
        .await
        .unwrap_err();
        assert_eq!(lambda_runtime::Diagnostic::from(bad).error_type, "BadInput");
        let unknown = handle(
            &watch,
            &rotation,
            LambdaEvent::new(
                json!({"SecretId": "s1/acme", "ClientRequestToken": "r1", "Step": "rollSecret"}),
                lambda_runtime::Context::default(),
            ),
        )
        .await
        .unwrap_err();
        let unknown = lambda_runtime::Diagnostic::from(unknown);
        assert_eq!(unknown.error_type, "BadInput");
        assert!(unknown.error_message.contains("rollSecret"), "{unknown:?}");
    }
}
