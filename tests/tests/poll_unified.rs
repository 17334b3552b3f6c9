//! The unified (UAM) source through the simulator's GraphQL endpoint: exactly once with threats
//! read too, crash windows, GraphQL errors, the switch-over; on the embedded store and on
//! DynamoDB Local (started by scripts/test.sh).

use std::sync::Arc;

use integration_tests::{dynamodb_table, unified};
use s1_shared::store::{EmbeddedTable, ItemTable};

fn embedded() -> Arc<dyn ItemTable> {
    Arc::new(EmbeddedTable::in_memory().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn threats_and_unified_together_send_each_detection_once() {
    unified::threats_and_unified_together_send_each_detection_once(embedded()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn threats_and_unified_together_send_each_detection_once_on_dynamodb() {
    unified::threats_and_unified_together_send_each_detection_once(dynamodb_table("s1bridge-uam").await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_unified_backlog_with_failed_commits_reaches_the_platform_once() {
    unified::a_unified_backlog_with_failed_commits_reaches_the_platform_once(embedded()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_unified_backlog_with_failed_commits_reaches_the_platform_once_on_dynamodb() {
    unified::a_unified_backlog_with_failed_commits_reaches_the_platform_once(dynamodb_table("s1bridge-uam").await)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn graphql_errors_fail_the_run_and_lose_nothing() {
    unified::graphql_errors_fail_the_run_and_lose_nothing(embedded()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn graphql_errors_fail_the_run_and_lose_nothing_on_dynamodb() {
    unified::graphql_errors_fail_the_run_and_lose_nothing(dynamodb_table("s1bridge-uam").await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn switching_from_threats_to_unified_replays_nothing() {
    unified::switching_from_threats_to_unified_replays_nothing(embedded()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn switching_from_threats_to_unified_replays_nothing_on_dynamodb() {
    unified::switching_from_threats_to_unified_replays_nothing(dynamodb_table("s1bridge-uam").await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unified_alerts_sharing_one_instant_across_pages_are_sent_once() {
    unified::unified_alerts_sharing_one_instant_across_pages_are_sent_once(embedded()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unified_alerts_sharing_one_instant_across_pages_are_sent_once_on_dynamodb() {
    unified::unified_alerts_sharing_one_instant_across_pages_are_sent_once(dynamodb_table("s1bridge-uam").await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_keeps_under_the_uam_rate_limit() {
    unified::the_client_keeps_under_the_uam_rate_limit().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_listing_keeps_to_the_scope_and_pages_every_alert_once() {
    unified::the_listing_keeps_to_the_scope_and_pages_every_alert_once().await;
}
