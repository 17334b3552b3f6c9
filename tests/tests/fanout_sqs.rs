//! Fan-out through a real SQS-compatible queue (moto on loopback, started by scripts/test.sh)
//! over DynamoDB Local: the dispatcher sends one message per enabled tenant, and the
//! poll-threats consumer answers each message as the design says, from the SQS-shaped events
//! Lambda would hand it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_tests::poll::{PollHarness, tenant};
use s1_bridge_sim::{DEFAULT_TOKEN, SimConfig};
use s1_shared::queue::{SqsEvent, SqsQueue};
use s1_shared::store::{DynamoTable, ItemTable, LEASE_TTL, create_table};
use s1_shared::usecase::fanout::{consume, dispatch};
use s1_shared::usecase::poll_threats::{LEASE_JOB, Outcome};
use serde_json::{Value, json};
use time::OffsetDateTime;

async fn aws() -> aws_config::SdkConfig {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok() && std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_ok(),
        "AWS_ENDPOINT_URL(_DYNAMODB) not set: run scripts/test.sh, which starts moto and DynamoDB Local"
    );
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

async fn table(config: &aws_config::SdkConfig) -> Arc<dyn ItemTable> {
    let client = aws_sdk_dynamodb::Client::new(config);
    let name = format!("s1bridge-fanout-{}", OffsetDateTime::now_utc().unix_timestamp_nanos());
    create_table(&client, &name).await.unwrap();
    Arc::new(DynamoTable::new(client, name))
}

/// A fresh queue on moto: its URL.
async fn queue(sqs: &aws_sdk_sqs::Client) -> String {
    let name = format!("s1bridge-poll-{}", OffsetDateTime::now_utc().unix_timestamp_nanos());
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned()
}

/// Receives what is visible now, as the event source mapping would, and builds the event Lambda
/// hands the consumer (one record per message, Lambda's field names).
async fn receive(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<Value> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    out.messages()
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .map(|a| a.iter().map(|(k, v)| (k.as_str().to_owned(), json!(v))).collect())
                .unwrap_or_default();
            json!({
                "messageId": m.message_id().unwrap(),
                "receiptHandle": m.receipt_handle().unwrap(),
                "body": m.body().unwrap(),
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body().unwrap_or_default(),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:s1bridge-poll",
                "awsRegion": "us-east-1"
            })
        })
        .collect()
}

fn event(records: &[Value]) -> SqsEvent {
    let raw = json!({ "Records": records });
    assert!(s1_shared::queue::is_sqs_event(&raw));
    serde_json::from_value(raw).unwrap()
}

/// A record shaped as Lambda sends it, with any body.
fn record(id: &str, body: &str) -> Value {
    json!({"messageId": id, "receiptHandle": "rh", "body": body, "attributes": {"ApproximateReceiveCount": "1"},
           "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
           "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"})
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(120)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dispatcher_sends_one_message_per_enabled_tenant_and_each_is_answered_as_designed() {
    let config = aws().await;
    let h = PollHarness::start(
        SimConfig {
            threats: 20,
            agents: 10,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        table(&config).await,
    )
    .await;
    h.env
        .lock()
        .unwrap()
        .insert("S1_TOKEN_beta".into(), DEFAULT_TOKEN.into());
    h.store
        .put_tenant(&tenant("beta", &h.sim.base_url(), &h.receiver.url()))
        .await
        .unwrap();
    let mut off = tenant("off", &h.sim.base_url(), &h.receiver.url());
    off.enabled = false;
    h.store.put_tenant(&off).await.unwrap();

    let sqs = aws_sdk_sqs::Client::new(&config);
    let url = queue(&sqs).await;
    let q = SqsQueue::new(sqs.clone(), &url);
    let report = dispatch(&h.store, &q, Duration::ZERO, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(
        (report.tenants, report.sent, report.backed_off),
        (2, 2, 0),
        "{report:?}"
    );
    assert!(report.not_sent.is_empty());
    let records = receive(&sqs, &url).await;
    let mut bodies: Vec<&str> = records.iter().map(|r| r["body"].as_str().unwrap()).collect();
    bodies.sort();
    assert_eq!(
        bodies,
        [r#"{"tenant":"acme"}"#, r#"{"tenant":"beta"}"#],
        "the disabled tenant gets none"
    );

    // Each message is one tenant's run; none is to be received again.
    let (answer, consumed) = consume(&h.deps, &event(&records), deadline()).await;
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    assert_eq!(
        consumed
            .runs
            .iter()
            .map(|r| (r.tenant.as_str(), r.outcome, r.published))
            .collect::<Vec<_>>(),
        [("acme", Outcome::Completed, 20), ("beta", Outcome::Completed, 20)]
    );
    assert_eq!(
        serde_json::to_value(&answer).unwrap(),
        json!({"batchItemFailures": []}),
        "the answer Lambda reads"
    );
    let delivered = h.receiver.events().len();
    assert_eq!(delivered, 40);

    // The same message again while another run holds the tenant's lease: ends at once, counted.
    let held = h
        .store
        .take_lease(
            "acme",
            LEASE_JOB,
            "the-previous-run",
            LEASE_TTL,
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap()
        .unwrap();
    let started = Instant::now();
    let (answer, consumed) = consume(&h.deps, &event(&records[..1]), deadline()).await;
    assert!(answer.batch_item_failures.is_empty());
    assert_eq!(consumed.lease_held, 1);
    assert_eq!(consumed.runs[0].outcome, Outcome::Skipped);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    h.store.give_back(&held).await.unwrap();
    // And once the lease is free: a duplicate sends nothing twice.
    let (_, consumed) = consume(&h.deps, &event(&records), deadline()).await;
    assert!(
        consumed
            .runs
            .iter()
            .all(|r| r.published == 0 && r.outcome == Outcome::Completed)
    );
    assert_eq!(h.receiver.events().len(), delivered);

    // A disabled or deleted tenant's message ends at once; a malformed one is left to the
    // dead-letter queue (received again until the queue's limit), never dropped.
    let batch = event(&[
        record("m-off", r#"{"tenant":"off"}"#),
        record("m-gone", r#"{"tenant":"gone"}"#),
        record("m-number", r#"{"tenant":5}"#),
        record("m-text", "poll everything"),
        record("m-shard", r#"{"shard":0,"shards":4}"#),
    ]);
    let (answer, consumed) = consume(&h.deps, &batch, deadline()).await;
    let mut again: Vec<&str> = answer
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    again.sort();
    assert_eq!(again, ["m-number", "m-shard", "m-text"]);
    assert_eq!((consumed.disabled, consumed.unknown, consumed.malformed), (1, 1, 3));
    assert!(consumed.runs.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_are_spread_over_the_minute_by_a_stable_per_tenant_delay() {
    use s1_shared::queue::{TenantMessage, TenantQueue};
    let config = aws().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let url = queue(&sqs).await;
    let q = SqsQueue::new(sqs.clone(), &url);
    let failed = q
        .send_batch(&[
            TenantMessage {
                tenant: "now".into(),
                delay_seconds: 0,
            },
            TenantMessage {
                tenant: "later".into(),
                delay_seconds: 30,
            },
        ])
        .await
        .unwrap();
    assert!(failed.is_empty());
    let visible = receive(&sqs, &url).await;
    assert_eq!(
        visible.len(),
        1,
        "the delayed message is held by the queue: {visible:?}"
    );
    assert_eq!(visible[0]["body"], r#"{"tenant":"now"}"#);
}
