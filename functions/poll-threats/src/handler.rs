//! Turns an SQS batch (one tenant per message, from the dispatcher), an operator's
//! `{"tenant": "acme"}` or a schedule event into poll runs, and the runs into a report.

use lambda_runtime::LambdaEvent;
use s1_shared::lambda::{FunctionError, deadline, sqs_batch};
use s1_shared::queue::{is_sqs_event, operator_input};
use s1_shared::usecase::fanout::consume;
use s1_shared::usecase::poll_threats::{PollDeps, PollReport, Selection, run};
use serde_json::Value;

/// An operator's input: `{"tenant": "acme"}`. An EventBridge scheduled event (or `{}`) polls
/// every enabled tenant in this one invocation (the deployed stack fans out through the queue
/// instead).
fn selection(event: &Value) -> Result<Selection, FunctionError> {
    Ok(
        match operator_input("poll-threats", event).map_err(FunctionError::bad_input)? {
            Some(t) => Selection::Tenant(t),
            None => Selection::All,
        },
    )
}

pub(crate) async fn handle(deps: &PollDeps, event: LambdaEvent<Value>) -> Result<Value, FunctionError> {
    let mut deps = deps.clone();
    deps.owner = if event.context.request_id.is_empty() {
        "local".into()
    } else {
        event.context.request_id.clone()
    };
    let deadline = deadline(&event.context);
    if is_sqs_event(&event.payload) {
        let batch = sqs_batch("poll-threats", event.payload)?;
        let (answer, consumed) = consume(&deps, &batch, deadline).await;
        let report = PollReport {
            tenants: consumed.runs.clone(),
        };
        emit(&report);
        consumed.log(batch.records.len());
        // Lambda reads only `batchItemFailures`: the messages to be received again.
        return FunctionError::answer(&answer);
    }
    let selection = selection(&event.payload)?;
    let report = run(&deps, &selection, deadline).await?;
    emit(&report);
    FunctionError::answer(&report)
}

/// The run's metrics (CloudWatch turns these stdout lines into metrics) and a summary line.
fn emit(report: &PollReport) {
    for line in report.emf_lines("poll-threats", time::OffsetDateTime::now_utc()) {
        println!("{line}");
    }
    let totals = report.totals();
    tracing::info!(
        tenants = report.tenants.len(),
        published = totals.published,
        failed = totals.failed,
        "poll run done"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    use s1_bridge_sim::{DEFAULT_TOKEN, Sim, SimConfig, WebhookReceiver};
    use s1_shared::store::*;
    use s1_shared::test_util::LoopbackPorts;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn inputs() {
        let cases = [
            (
                serde_json::json!({"detail-type": "Scheduled Event", "source": "aws.events"}),
                Some(Selection::All),
            ),
            (serde_json::json!({}), Some(Selection::All)),
            (
                serde_json::json!({"tenant": "acme"}),
                Some(Selection::Tenant("acme".into())),
            ),
            (serde_json::json!({"shard": 1, "shards": 4}), None),
            (serde_json::json!({"tenant": 5}), None),
        ];
        for (input, want) in cases {
            assert_eq!(selection(&input).ok(), want, "{input}");
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_schedule_event_polls_and_reports() {
        let sim = Sim::start(SimConfig {
            threats: 30,
            agents: 10,
            cloud_alerts: 0,
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
        let deps = PollDeps {
            progress: None,
            store,
            consoles: ports.consoles,
            platforms: ports.platforms,
            owner: String::new(),
            concurrency: 2,
            writeback: None,
        };
        let event = LambdaEvent::new(
            serde_json::json!({"detail-type": "Scheduled Event"}),
            lambda_runtime::Context::default(),
        );
        let out = handle(&deps, event).await.unwrap();
        assert_eq!(out["tenants"][0]["tenant"], "acme");
        assert_eq!(out["tenants"][0]["published"], 30);
        assert_eq!(receiver.events().len(), 30);
        let bad = LambdaEvent::new(
            serde_json::json!({"tenant": "nobody"}),
            lambda_runtime::Context::default(),
        );
        let err = lambda_runtime::Diagnostic::from(handle(&deps, bad).await.unwrap_err());
        assert!(err.error_message.contains("nobody"), "{err:?}");
        assert_eq!(err.error_type, "BadInput");
    }
}
