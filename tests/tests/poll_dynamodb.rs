//! poll-threats against DynamoDB Local (started by scripts/test.sh): the same guarantees as on
//! the embedded store, with the production backend.

use std::collections::HashSet;
use std::sync::Arc;

use integration_tests::poll::{FlakyTable, PollHarness, threat_ids};
use s1_bridge_sim::SimConfig;
use s1_shared::store::{DynamoTable, ItemTable, Source, create_table};
use s1_shared::usecase::poll_threats::Outcome;

async fn table() -> Arc<dyn ItemTable> {
    assert!(
        std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_ok(),
        "AWS_ENDPOINT_URL_DYNAMODB is not set: run scripts/test.sh, which starts DynamoDB Local"
    );
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let name = format!(
        "s1bridge-poll-{}",
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    );
    create_table(&client, &name).await.unwrap();
    Arc::new(DynamoTable::new(client, name))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_with_a_crash_reaches_the_platform_exactly_once() {
    let flaky = FlakyTable::new(table().await);
    let h = PollHarness::start(
        SimConfig {
            threats: 2_100,
            agents: 300,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        flaky.clone(),
    )
    .await;
    // Page 2's commit fails; page 3 was sent meanwhile (and is not recorded either).
    flaky.fail_puts_after("CURSOR#", 1, 1);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.outcome, r.published), (Outcome::Failed, 2_100), "{r:?}");
    flaky.fail_story_writes(1);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.outcome, Outcome::Completed, "{r:?}");
    let ids = threat_ids(&h.events("threat.created"));
    assert_eq!(ids.len(), 2_100);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 2_100);
    let again = h.poll().await.tenants.remove(0);
    assert_eq!(again.published, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_5000_threat_story_is_delivered_once() {
    integration_tests::poll::a_5000_threat_story_is_delivered_once(table().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_thousand_threats_sharing_one_instant_are_delivered_once() {
    integration_tests::poll::twenty_thousand_threats_sharing_one_instant_are_delivered_once(table().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_lost_its_lease_saves_nothing() {
    integration_tests::poll::a_run_that_lost_its_lease_saves_nothing(table().await, Source::Threats).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_runs_lease_lapses_quickly() {
    integration_tests::poll::a_killed_runs_lease_lapses_quickly(table().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stories_changed_on_every_attempt_fail_the_run_as_a_conflict() {
    integration_tests::poll::stories_changed_on_every_attempt_fail_the_run_as_a_conflict(table().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_event_becomes_a_publish_dead_letter_replayed_once() {
    integration_tests::poll::a_refused_event_becomes_a_publish_dead_letter_replayed_once(
        table().await,
        Source::Threats,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_sent_as_an_update_and_again_as_new_keeps_one_webhook_id() {
    integration_tests::guarantees::a_version_sent_as_an_update_and_again_as_new_keeps_one_webhook_id(
        table().await,
        Source::Threats,
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_threat_set_back_after_a_kill_in_its_update_reaches_the_platform() {
    integration_tests::guarantees::a_threat_set_back_after_a_kill_in_its_update_reaches_the_platform(
        table().await,
        Source::Threats,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_threat_set_back_after_its_update_went_unanswered_reaches_the_platform() {
    integration_tests::guarantees::a_threat_set_back_after_its_update_went_unanswered_reaches_the_platform(
        table().await,
        Source::Threats,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_long_story_never_stalls_a_tenant() {
    integration_tests::guarantees::one_long_story_never_stalls_a_tenant(table().await).await;
}
