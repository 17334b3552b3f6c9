//! The writeback scenarios that involve the store (ordering, claims, kills) against DynamoDB
//! Local, reached only through `AWS_ENDPOINT_URL_DYNAMODB` (set by scripts/test.sh, which starts
//! it). A fresh table per test.

use std::sync::Arc;

use s1_shared::store::{DynamoTable, ItemTable, create_table};

async fn dynamo() -> Arc<dyn ItemTable> {
    assert!(
        std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_ok(),
        "AWS_ENDPOINT_URL_DYNAMODB is not set: run scripts/test.sh, which starts DynamoDB Local"
    );
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let name = format!(
        "s1bridge-writeback-{}",
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    );
    create_table(&client, &name).await.unwrap();
    Arc::new(DynamoTable::new(client, name))
}

integration_tests::writeback_scenarios!(dynamo().await);
