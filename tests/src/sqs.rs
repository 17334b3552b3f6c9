//! Queues on moto's SQS (loopback, started by scripts/test.sh) and the events Lambda builds from
//! them: what the fan-out tests share.

use std::sync::Arc;

use s1_shared::queue::{SqsEvent, SqsQueue};
use s1_shared::store::{DynamoTable, ItemTable, create_table};
use serde_json::{Value, json};
use time::OffsetDateTime;

/// The emulators' AWS configuration (moto for SQS, DynamoDB Local for the table).
pub async fn aws() -> aws_config::SdkConfig {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok() && std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_ok(),
        "AWS_ENDPOINT_URL(_DYNAMODB) not set: run scripts/test.sh, which starts moto and DynamoDB Local"
    );
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// A fresh table on DynamoDB Local.
pub async fn table(config: &aws_config::SdkConfig) -> Arc<dyn ItemTable> {
    let client = aws_sdk_dynamodb::Client::new(config);
    let name = format!("s1bridge-fanout-{}", OffsetDateTime::now_utc().unix_timestamp_nanos());
    create_table(&client, &name).await.unwrap();
    Arc::new(DynamoTable::new(client, name))
}

/// A fresh queue on moto: its URL.
pub async fn queue(sqs: &aws_sdk_sqs::Client) -> String {
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

/// A client of moto's SQS, a fresh queue's URL, and the queue port over it.
pub async fn moto_queue(config: &aws_config::SdkConfig) -> (aws_sdk_sqs::Client, String, SqsQueue) {
    let sqs = aws_sdk_sqs::Client::new(config);
    let url = queue(&sqs).await;
    let q = SqsQueue::new(sqs.clone(), &url);
    (sqs, url, q)
}

/// Receives what is visible now, at most 10 messages, as the event source mapping would.
pub async fn receive(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<Value> {
    receive_up_to(sqs, url, 10).await
}

/// Receives at most `max` messages (the mapping's batch size) and turns them into the records
/// Lambda hands the consumer (one record per message, Lambda's field names).
pub async fn receive_up_to(sqs: &aws_sdk_sqs::Client, url: &str, max: i32) -> Vec<Value> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(max)
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

/// The event Lambda hands the consumer for `records`.
pub fn event(records: &[Value]) -> SqsEvent {
    let raw = json!({ "Records": records });
    assert!(s1_shared::queue::is_sqs_event(&raw));
    serde_json::from_value(raw).unwrap()
}

/// A record shaped as Lambda sends it, with any body.
pub fn record(id: &str, body: &str) -> Value {
    json!({"messageId": id, "receiptHandle": "rh", "body": body, "attributes": {"ApproximateReceiveCount": "1"},
           "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
           "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"})
}

/// Deletes a message a consumer handled (what the event source mapping does on success).
pub async fn delete(sqs: &aws_sdk_sqs::Client, url: &str, record: &Value) {
    sqs.delete_message()
        .queue_url(url)
        .receipt_handle(record["receiptHandle"].as_str().unwrap())
        .send()
        .await
        .unwrap();
}
