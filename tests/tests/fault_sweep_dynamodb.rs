//! A sample of the fault sweep's points (`fault_sweep.rs`) on DynamoDB Local: every fourth store
//! call of the poll run (of threats, and of unified alerts) and every sixth of the writeback,
//! alternating where the fault strikes.

use integration_tests::dynamodb_table;
use integration_tests::fault_sweep::{
    Strike, poll_calls, poll_survives_a_fault_at, writeback_calls, writeback_survives_a_fault_at,
};
use s1_shared::store::Source;

fn strike(k: usize) -> Strike {
    if k % 2 == 0 { Strike::Before } else { Strike::After }
}

/// Every fourth store call of a poll run of `source`.
async fn poll_sample(source: Source) {
    let calls = poll_calls(dynamodb_table("sweep-poll").await, source).await;
    for (k, n) in (1..=calls).step_by(4).enumerate() {
        poll_survives_a_fault_at(dynamodb_table("sweep-poll").await, source, n, strike(k)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sample_of_poll_faults_on_dynamodb() {
    poll_sample(Source::Threats).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sample_of_unified_poll_faults_on_dynamodb() {
    poll_sample(Source::Unified).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sample_of_writeback_faults_on_dynamodb() {
    let calls = writeback_calls(dynamodb_table("sweep-wb").await).await;
    for (k, n) in (1..=calls).step_by(6).enumerate() {
        writeback_survives_a_fault_at(dynamodb_table("sweep-wb").await, n, strike(k)).await;
    }
}
