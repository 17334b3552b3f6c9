//! The unified (UAM) source through the simulator's GraphQL endpoint: exactly once with threats
//! read too, crash and kill windows, GraphQL errors, the switch-over; on the embedded store and
//! on DynamoDB Local (started by scripts/test.sh). docs/testing.md lists which threats scenario
//! each one mirrors.

use std::sync::Arc;

use integration_tests::{dynamodb_table, guarantees, poll, unified};
use s1_shared::store::{EmbeddedTable, ItemTable, Source};

fn embedded() -> Arc<dyn ItemTable> {
    Arc::new(EmbeddedTable::in_memory().unwrap())
}

/// One test per store for each scenario: `name` on the embedded store, `name_on_dynamodb` on a
/// fresh DynamoDB Local table.
macro_rules! on_both_stores {
    ($($name:ident, $dynamo:ident => $body:expr;)+) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                ($body)(embedded()).await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn $dynamo() {
                ($body)(dynamodb_table("s1bridge-uam").await).await;
            }
        )+
    };
}

on_both_stores! {
    threats_and_unified_together_send_each_detection_once,
    threats_and_unified_together_send_each_detection_once_on_dynamodb =>
        unified::threats_and_unified_together_send_each_detection_once;
    a_unified_backlog_with_failed_commits_reaches_the_platform_once,
    a_unified_backlog_with_failed_commits_reaches_the_platform_once_on_dynamodb =>
        unified::a_unified_backlog_with_failed_commits_reaches_the_platform_once;
    graphql_errors_fail_the_run_and_lose_nothing,
    graphql_errors_fail_the_run_and_lose_nothing_on_dynamodb =>
        unified::graphql_errors_fail_the_run_and_lose_nothing;
    switching_from_threats_to_unified_replays_nothing,
    switching_from_threats_to_unified_replays_nothing_on_dynamodb =>
        unified::switching_from_threats_to_unified_replays_nothing;
    unified_alerts_sharing_one_instant_across_pages_are_sent_once,
    unified_alerts_sharing_one_instant_across_pages_are_sent_once_on_dynamodb =>
        unified::unified_alerts_sharing_one_instant_across_pages_are_sent_once;
    a_kill_with_unified_deliveries_in_flight_repeats_only_its_page,
    a_kill_with_unified_deliveries_in_flight_repeats_only_its_page_on_dynamodb =>
        unified::a_kill_with_unified_deliveries_in_flight_repeats_only_its_page;
    a_kill_in_the_unified_commit_window_repeats_under_the_same_ids,
    a_kill_in_the_unified_commit_window_repeats_under_the_same_ids_on_dynamodb =>
        unified::a_kill_in_the_unified_commit_window_repeats_under_the_same_ids;
    a_run_racing_a_held_unified_commit_is_kept_out_and_sends_nothing,
    a_run_racing_a_held_unified_commit_is_kept_out_and_sends_nothing_on_dynamodb =>
        unified::a_run_racing_a_held_unified_commit_is_kept_out_and_sends_nothing;
    a_unified_run_that_lost_its_lease_saves_nothing,
    a_unified_run_that_lost_its_lease_saves_nothing_on_dynamodb =>
        |table| poll::a_run_that_lost_its_lease_saves_nothing(table, Source::Unified);
    a_refused_unified_event_becomes_a_publish_dead_letter_replayed_once,
    a_refused_unified_event_becomes_a_publish_dead_letter_replayed_once_on_dynamodb =>
        |table| poll::a_refused_event_becomes_a_publish_dead_letter_replayed_once(table, Source::Unified);
    a_crash_after_a_unified_dead_letter_is_retired_sends_it_again_under_the_same_id,
    a_crash_after_a_unified_dead_letter_is_retired_sends_it_again_under_the_same_id_on_dynamodb =>
        |table| poll::a_crash_after_a_dead_letter_is_retired_sends_it_again_under_the_same_id(table, Source::Unified);
    a_unified_alert_set_back_after_a_kill_in_its_update_reaches_the_platform,
    a_unified_alert_set_back_after_a_kill_in_its_update_reaches_the_platform_on_dynamodb =>
        |table| guarantees::a_threat_set_back_after_a_kill_in_its_update_reaches_the_platform(table, Source::Unified);
    a_unified_alert_set_back_after_its_update_went_unanswered_reaches_the_platform,
    a_unified_alert_set_back_after_its_update_went_unanswered_reaches_the_platform_on_dynamodb =>
        |table| guarantees::a_threat_set_back_after_its_update_went_unanswered_reaches_the_platform(table, Source::Unified);
    a_unified_version_sent_as_an_update_and_again_as_new_keeps_one_webhook_id,
    a_unified_version_sent_as_an_update_and_again_as_new_keeps_one_webhook_id_on_dynamodb =>
        |table| guarantees::a_version_sent_as_an_update_and_again_as_new_keeps_one_webhook_id(table, Source::Unified, false);
    a_unified_version_sent_as_an_update_then_killed_in_the_commit_window_keeps_one_webhook_id,
    a_unified_version_sent_as_an_update_then_killed_in_the_commit_window_keeps_one_webhook_id_on_dynamodb =>
        |table| guarantees::a_version_sent_as_an_update_and_again_as_new_keeps_one_webhook_id(table, Source::Unified, true);
    ten_thousand_detections_a_third_in_both_listings_are_each_one_member_told_once,
    ten_thousand_detections_a_third_in_both_listings_are_each_one_member_told_once_on_dynamodb =>
        unified::ten_thousand_detections_a_third_in_both_listings_are_each_one_member_told_once;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_keeps_under_the_uam_rate_limit() {
    unified::the_client_keeps_under_the_uam_rate_limit().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_listing_keeps_to_the_scope_and_pages_every_alert_once() {
    unified::the_listing_keeps_to_the_scope_and_pages_every_alert_once().await;
}
