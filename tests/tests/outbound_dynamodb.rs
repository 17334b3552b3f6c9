//! The run-time console allow-list against DynamoDB Local (started by scripts/test.sh): a tenant
//! item written straight to the table never gets its token sent off the list.

use integration_tests::dynamodb_table;
use integration_tests::outbound::consoles_off_the_allow_list_are_never_called;

#[tokio::test(flavor = "multi_thread")]
async fn a_console_off_the_allow_list_is_refused_at_run_time_by_every_use_case() {
    consoles_off_the_allow_list_are_never_called(dynamodb_table("s1bridge-outbound").await).await;
}
