//! The poller under chaos (see `integration_tests::chaos`): one seeded run of each source
//! (threats with STAR alerts; unified alerts) on the embedded store per test command;
//! `CHAOS_SEED=<n>` replays a seed.

use std::sync::Arc;

use s1_shared::store::{EmbeddedTable, Source};

#[tokio::test(flavor = "multi_thread")]
async fn the_platform_ends_on_s1s_latest_state_under_chaos() {
    let seed = integration_tests::chaos::seed();
    integration_tests::chaos::chaos(seed, Arc::new(EmbeddedTable::in_memory().unwrap()), Source::Threats).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_platform_ends_on_uams_latest_state_under_chaos() {
    let seed = integration_tests::chaos::seed();
    integration_tests::chaos::chaos(seed, Arc::new(EmbeddedTable::in_memory().unwrap()), Source::Unified).await;
}
