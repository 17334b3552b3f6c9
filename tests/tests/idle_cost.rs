//! What an idle tenant-run costs (issue 25's target: at most one DynamoDB write on average and
//! one S1 request per enabled source), counted where the bill is made: at the DynamoDB endpoint
//! (DynamoDB Local, started by scripts/test.sh; every request the SDK sends, retries included)
//! and at the simulator's request log. The runs go through the queue consumer, as on Lambda,
//! with the pending writebacks' retry the deployed function does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration_tests::poll::PollHarness;
use s1_bridge_sim::SimConfig;
use s1_shared::queue::SqsEvent;
use s1_shared::store::{DynamoTable, ItemTable, create_table};
use s1_shared::usecase::fanout::consume;
use s1_shared::usecase::poll_threats::{LEASE_JOB, Outcome, POLL_LEASE};
use s1_shared::usecase::writeback::WritebackDeps;
use serde_json::json;

/// DynamoDB requests by operation (`PutItem`, `BatchGetItem`, ...), as sent.
#[derive(Debug, Clone, Default)]
struct Counts(Arc<Mutex<BTreeMap<String, u64>>>);

impl Counts {
    fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl aws_sdk_dynamodb::config::Intercept for Counts {
    fn name(&self) -> &'static str {
        "Counts"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let op = context
            .request()
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("?")
            .to_owned();
        *self.0.lock().unwrap().entry(op).or_default() += 1;
        Ok(())
    }
}

const WRITES: [&str; 5] = [
    "PutItem",
    "DeleteItem",
    "UpdateItem",
    "TransactWriteItems",
    "BatchWriteItem",
];

async fn counted_table() -> (Arc<dyn ItemTable>, Counts) {
    assert!(
        std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_ok(),
        "AWS_ENDPOINT_URL_DYNAMODB is not set: run scripts/test.sh, which starts DynamoDB Local"
    );
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let counts = Counts::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&config)
            .interceptor(counts.clone())
            .build(),
    );
    let name = format!(
        "s1bridge-idle-{}",
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    );
    create_table(&client, &name).await.unwrap();
    (Arc::new(DynamoTable::new(client, name)), counts)
}

fn message(tenant: &str, n: usize) -> SqsEvent {
    serde_json::from_value(json!({"Records": [{
        "messageId": format!("m-{n}"), "receiptHandle": "rh", "body": json!({"tenant": tenant}).to_string(),
        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "md5OfBody": "",
        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
        "awsRegion": "us-east-1"
    }]}))
    .unwrap()
}

/// What the minute between two of a tenant's messages does to the lease an idle run kept:
/// it lapses (taken as of after it lapsed, then let go now).
async fn lapse_poll_lease(h: &PollHarness, tenant: &str) {
    let later = time::OffsetDateTime::now_utc() + POLL_LEASE + time::Duration::seconds(1);
    let lease = h
        .store
        .take_lease(tenant, LEASE_JOB, "the-minute-between", POLL_LEASE, later)
        .await
        .unwrap()
        .expect("the idle run's lease lapses within the minute");
    assert!(h.store.release(&lease, time::OffsetDateTime::now_utc()).await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_tenant_run_costs_at_most_one_write_and_one_s1_request() {
    let (table, counts) = counted_table().await;
    let mut h = PollHarness::start(
        SimConfig {
            threats: 20,
            agents: 10,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        table,
    )
    .await;
    // As the composition root builds it: S1 calls also keep to the token's budgets in the table
    // (an idle run's one request goes on its allowance, with no table write).
    h.deps.consoles = h.deps.consoles.sharing_budgets(Arc::new(h.store.clone()));
    h.deps.writeback = Some(WritebackDeps {
        platforms: h.deps.platforms.clone(),
        store: h.store.clone(),
        tokens: h.tokens.clone(),
        consoles: h.deps.consoles.clone(),
        inline_retry: WritebackDeps::inline_retry_policy(),
    });
    let deadline = || Instant::now() + Duration::from_secs(120);
    // The first run publishes the console's threats and writes the status; then it is idle.
    let (_, first) = consume(&h.deps, &message("acme", 0), deadline()).await;
    assert_eq!(first.runs[0].published, 20, "{first:?}");
    let (_, second) = consume(&h.deps, &message("acme", 1), deadline()).await;
    assert_eq!(second.runs[0].published, 0, "{second:?}");

    let runs = 30;
    h.sim.control().clear_requests().await.unwrap();
    let mut by_op = BTreeMap::new();
    for n in 0..runs {
        // A tenant's messages come a minute apart, so each finds the idle run before it has
        // let its lease lapse: here the lease is made to lapse at once (not counted).
        lapse_poll_lease(&h, "acme").await;
        counts.take();
        let (answer, consumed) = consume(&h.deps, &message("acme", n + 2), deadline()).await;
        assert!(answer.batch_item_failures.is_empty());
        let r = &consumed.runs[0];
        assert_eq!((r.outcome, r.published), (Outcome::Completed, 0), "{r:?}");
        for (op, k) in counts.take() {
            *by_op.entry(op).or_default() += k;
        }
    }
    let writes: u64 = by_op
        .iter()
        .filter(|(op, _)| WRITES.contains(&op.as_str()))
        .map(|(_, n)| n)
        .sum();
    let requests: u64 = by_op.values().sum();
    let s1 = h.sim.control().requests().await.unwrap().len();
    let per_run = |n: u64| n as f64 / runs as f64;
    eprintln!(
        "idle run: {:.2} DynamoDB requests, {:.2} writes, {:.2} S1 requests; by operation over {runs} runs: {by_op:?}",
        per_run(requests),
        per_run(writes),
        s1 as f64 / runs as f64
    );
    assert!(
        per_run(writes) <= 1.0,
        "an idle run makes {:.2} DynamoDB writes on average (at most 1): {by_op:?}",
        per_run(writes)
    );
    assert_eq!(s1, runs, "one S1 request per run (one source: threats)");

    // The status record was not written by the idle runs, yet `s1-bridge status` tells when the
    // last one succeeded: from its lease, once that lapsed.
    let stored = h.store.get_status("acme").await.unwrap().unwrap();
    let later = time::OffsetDateTime::now_utc() + POLL_LEASE + time::Duration::seconds(1);
    let shown = h.store.statuses_as_of(&["acme"], LEASE_JOB, later).await.unwrap();
    let shown = &shown[0].1;
    assert!(shown.last_success > stored.last_success, "{shown:?} / {stored:?}");
    assert!(
        later - shown.last_success.unwrap() < time::Duration::seconds(30),
        "{shown:?}"
    );
    // Another invocation's message within the lease's short hold finds it held and ends at once;
    // after it, the lease is free without ever having been given back.
    h.deps.owner = "another-invocation".into();
    let (_, consumed) = consume(&h.deps, &message("acme", 99), deadline()).await;
    assert_eq!(consumed.lease_held, 1, "{consumed:?}");
    let free = h
        .store
        .take_lease("acme", LEASE_JOB, "next-minute", POLL_LEASE, later)
        .await
        .unwrap();
    assert!(free.is_some(), "the next minute's run takes the lapsed lease");
}
