//! Turns a job's schedule event into one message per tenant due, on the job's queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::LambdaEvent;
use s1_shared::lambda::FunctionError;
use s1_shared::queue::TenantQueue;
use s1_shared::store::{MAX_INTERVAL_MINUTES, Store};
use s1_shared::usecase::fanout::{Job, Plan, dispatch};
use serde::Deserialize;
use serde_json::Value;

pub(crate) struct DispatchDeps {
    pub store: Store,
    /// Each job's queue.
    pub queues: HashMap<Job, Arc<dyn TenantQueue>>,
    pub spread: Duration,
}

/// A schedule's input: `{"job": "assets", "every_minutes": 60}` (how often that schedule runs,
/// so a tenant is sent once per its interval). A bare schedule event or `{}` is the poll, each
/// minute.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    job: String,
    #[serde(default = "one")]
    every_minutes: u32,
}

fn one() -> u32 {
    1
}

/// The plan the input asks for: anything else is a mistake, named.
fn plan(event: &Value, spread: Duration) -> Result<Plan, FunctionError> {
    let poll = Plan {
        job: Job::Poll,
        every_minutes: 1,
        spread,
    };
    match event {
        Value::Object(o) if o.is_empty() || o.contains_key("detail-type") => return Ok(poll),
        _ => {}
    }
    let bad = |why: String| {
        FunctionError::bad_input(format!(
            "dispatch takes a schedule event, {{}} or {{\"job\": \"poll|assets|tokens\", \"every_minutes\": n}}: {why}"
        ))
    };
    let input: Input = serde_json::from_value(event.clone()).map_err(|e| bad(e.to_string()))?;
    let job = Job::parse(&input.job).ok_or_else(|| bad(format!("no job {:?}", input.job)))?;
    if !(1..=MAX_INTERVAL_MINUTES).contains(&input.every_minutes) {
        return Err(bad(format!(
            "every_minutes {} is not between 1 and {MAX_INTERVAL_MINUTES}",
            input.every_minutes
        )));
    }
    Ok(Plan {
        job,
        every_minutes: input.every_minutes,
        ..poll
    })
}

pub(crate) async fn handle(deps: &DispatchDeps, event: LambdaEvent<Value>) -> Result<Value, FunctionError> {
    let plan = plan(&event.payload, deps.spread)?;
    let queue = deps
        .queues
        .get(&plan.job)
        .ok_or_else(|| FunctionError::internal(format!("no queue for the {} job", plan.job.as_str())))?;
    let now = time::OffsetDateTime::now_utc();
    let report = dispatch(&deps.store, queue.as_ref(), plan, now).await?;
    // CloudWatch turns this stdout line into the fleet's metrics: the poll's alone, so the
    // hourly jobs' counts do not mix into the per-minute figures (their counts are logged).
    if plan.job == Job::Poll {
        println!("{}", report.emf(plan.job, now));
    }
    tracing::info!(
        job = plan.job.as_str(),
        tenants = report.tenants,
        sent = report.sent,
        not_due = report.not_due,
        backed_off = report.backed_off,
        not_sent = report.not_sent.len(),
        lagging = report.lagging,
        in_error = report.in_error,
        "dispatch done"
    );
    if !report.not_sent.is_empty() {
        // The whole invocation fails (alarmed) so the queue's trouble is seen; the tenants sent
        // are in the queue and the rest go out with the next dispatch.
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
    use serde_json::json;

    #[test]
    fn a_schedule_event_or_nothing_is_the_poll_and_a_jobs_input_names_it() {
        let spread = Duration::from_secs(50);
        let poll = plan(&json!({}), spread).unwrap();
        assert_eq!((poll.job, poll.every_minutes), (Job::Poll, 1));
        let scheduled = plan(
            &json!({"detail-type": "Scheduled Event", "source": "aws.events"}),
            spread,
        )
        .unwrap();
        assert_eq!(scheduled, poll);
        let assets = plan(&json!({"job": "assets", "every_minutes": 60}), spread).unwrap();
        assert_eq!((assets.job, assets.every_minutes), (Job::Assets, 60));
        assert_eq!(plan(&json!({"job": "tokens"}), spread).unwrap().every_minutes, 1);
        for (input, says) in [
            (json!({"tenant": "acme"}), "unknown field `tenant`"),
            (json!({"shard": 0, "shards": 4}), "unknown field `shard`"),
            (json!({"job": "backup"}), "no job \"backup\""),
            (json!({"job": "assets", "every_minutes": 0}), "every_minutes 0"),
            (json!([1]), "schedule event"),
        ] {
            let err = plan(&input, spread).unwrap_err();
            assert_eq!(err.kind, s1_shared::lambda::FailureKind::BadInput);
            assert!(err.message.contains(says), "{input}: {}", err.message);
        }
    }
}
