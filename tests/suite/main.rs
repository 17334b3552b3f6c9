//! Most integration tests link into this one binary: one link instead of one per file (measured:
//! about half the CPU to build them from clean, a fifth to relink after a change to the test
//! library). A file that must be alone in its process (a global allocator, environment
//! variables, a timing assertion that other tests' load could break: `poll_threats` holds
//! commits and races pages against them, and lost that race once in the suite) is its own `[[test]]` in
//! `tests/Cargo.toml`; `suite_complete` fails on a file in `tests/tests/` that is in neither.

#[path = "../tests/fault_sweep.rs"]
mod fault_sweep;
#[path = "../tests/fault_sweep_dynamodb.rs"]
mod fault_sweep_dynamodb;
#[path = "../tests/halo.rs"]
mod halo;
#[path = "../tests/halo_budget.rs"]
mod halo_budget;
#[path = "../tests/halo_client.rs"]
mod halo_client;
#[path = "../tests/idle_cost.rs"]
mod idle_cost;
#[path = "../tests/layers.rs"]
mod layers;
#[path = "../tests/outbound_dynamodb.rs"]
mod outbound_dynamodb;
#[path = "../tests/outbound_safety.rs"]
mod outbound_safety;
#[path = "../tests/pagerduty.rs"]
mod pagerduty;
#[path = "../tests/poll_chaos.rs"]
mod poll_chaos;
#[path = "../tests/poll_dynamodb.rs"]
mod poll_dynamodb;
#[path = "../tests/poll_guarantees.rs"]
mod poll_guarantees;
#[path = "../tests/poll_unified.rs"]
mod poll_unified;
#[path = "../tests/s1_budget.rs"]
mod s1_budget;
#[path = "../tests/s1_client.rs"]
mod s1_client;
#[path = "../tests/secrets_moto.rs"]
mod secrets_moto;
#[path = "../tests/store_dynamodb.rs"]
mod store_dynamodb;
#[path = "../tests/store_embedded.rs"]
mod store_embedded;
#[path = "../tests/suite_complete.rs"]
mod suite_complete;
#[path = "../tests/swagger_conformance.rs"]
mod swagger_conformance;
#[path = "../tests/sync_assets.rs"]
mod sync_assets;
#[path = "../tests/template.rs"]
mod template;
#[path = "../tests/tenant_check.rs"]
mod tenant_check;
#[path = "../tests/token_expiry.rs"]
mod token_expiry;
#[path = "../tests/token_rotation.rs"]
mod token_rotation;
#[path = "../tests/unified_view.rs"]
mod unified_view;
#[path = "../tests/writeback.rs"]
mod writeback;
#[path = "../tests/writeback_chaos.rs"]
mod writeback_chaos;
#[path = "../tests/writeback_dynamodb.rs"]
mod writeback_dynamodb;
