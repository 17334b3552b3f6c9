//! The store contract against AWS's DynamoDB Local, reached only through
//! `AWS_ENDPOINT_URL_DYNAMODB` (set by scripts/test.sh, which starts it). A fresh table per test.

use std::sync::Arc;

use s1_shared::store::{DynamoTable, Store, StoreError, create_table};

async fn client() -> aws_sdk_dynamodb::Client {
    assert!(
        std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_ok(),
        "AWS_ENDPOINT_URL_DYNAMODB is not set: run scripts/test.sh, which starts DynamoDB Local"
    );
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_sdk_dynamodb::Client::new(&config)
}

async fn fresh_store() -> Store {
    let client = client().await;
    let name = format!("s1bridge-test-{}", uuid_ish());
    create_table(&client, &name).await.expect("create the test table");
    Store::new(Arc::new(DynamoTable::new(client, name)))
}

fn uuid_ish() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    format!("{nanos:x}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

integration_tests::store_contract!(fresh_store());

#[tokio::test]
async fn a_missing_table_is_named_in_the_error() {
    let store = Store::new(Arc::new(DynamoTable::new(client().await, "no-such-table")));
    let err = store.get_tenant("t1").await.unwrap_err();
    assert!(
        matches!(&err, StoreError::TableMissing { table } if table == "no-such-table"),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("TABLE_NAME"), "{err}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_retryable_unavailability() {
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let conf = aws_sdk_dynamodb::config::Builder::from(&config)
        .endpoint_url("http://127.0.0.1:9")
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
        .build();
    let store = Store::new(Arc::new(DynamoTable::new(
        aws_sdk_dynamodb::Client::from_conf(conf),
        "t",
    )));
    let err = store.get_tenant("t1").await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(err.is_retryable());
}
