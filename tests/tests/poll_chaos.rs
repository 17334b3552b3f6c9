//! The poller under chaos (see `integration_tests::chaos`): one seeded run on the embedded store
//! per test command; `CHAOS_SEED=<n>` replays a seed.

use std::sync::Arc;

use s1_shared::store::EmbeddedTable;

#[tokio::test(flavor = "multi_thread")]
async fn the_platform_ends_on_s1s_latest_state_under_chaos() {
    let seed = integration_tests::chaos::seed();
    integration_tests::chaos::chaos(seed, Arc::new(EmbeddedTable::in_memory().unwrap())).await;
}
