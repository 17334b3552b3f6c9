//! The fault sweep on the embedded store: every store call of a multi-page poll run with
//! stories (of threats, and of unified alerts), and of a writeback with retries, fails in turn
//! (before and after its effect); after a rerun every threat reached the platform exactly once by
//! webhook-id, and S1 holds the last change with one note per change. (A sample of the same
//! points runs on DynamoDB Local in `fault_sweep_dynamodb.rs`.)

use std::sync::Arc;

use integration_tests::fault_sweep::{
    Strike, poll_calls, poll_survives_a_fault_at, writeback_calls, writeback_survives_a_fault_at,
};
use s1_shared::store::{EmbeddedTable, ItemTable, Source};

fn embedded() -> Arc<dyn ItemTable> {
    Arc::new(EmbeddedTable::in_memory().unwrap())
}

/// Every store call of a poll run of `source` fails in turn, both ways.
async fn poll_sweep(source: Source) {
    let calls = poll_calls(embedded(), source).await;
    eprintln!("a {source:?} poll run makes {calls} store calls");
    assert!(calls >= 10, "a multi-page run makes more than {calls} store calls");
    for n in 1..=calls + 1 {
        for strike in [Strike::Before, Strike::After] {
            poll_survives_a_fault_at(embedded(), source, n, strike).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_store_call_of_a_poll_run_can_fail() {
    poll_sweep(Source::Threats).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_store_call_of_a_unified_poll_run_can_fail() {
    poll_sweep(Source::Unified).await;
}

/// The writeback's calls, split in two halves so the two run side by side.
async fn writeback_sweep(half: usize) {
    let calls = writeback_calls(embedded()).await;
    eprintln!("the writeback scenario makes {calls} store calls");
    assert!(
        calls >= 10,
        "a writeback with retries makes more than {calls} store calls"
    );
    for n in (1..=calls + 1).filter(|n| n % 2 == half) {
        for strike in [Strike::Before, Strike::After] {
            writeback_survives_a_fault_at(embedded(), n, strike).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_store_call_of_a_writeback_can_fail_odd() {
    writeback_sweep(1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_store_call_of_a_writeback_can_fail_even() {
    writeback_sweep(0).await;
}
