//! `s1-bridge-sim`: a SentinelOne Management API v2.1 simulator.
#![recursion_limit = "256"]
//!
//! It serves the endpoints s1-bridge uses with S1's paths, parameters, envelopes, paging and
//! error bodies; it is stateful (writes change later reads and bump `updatedAt`), seeded and
//! deterministic, and injects faults on demand through a small control API under `/_sim/`.
//! Unified Alert Management's GraphQL endpoint is served too, each document validated against the
//! vendored schema: see [`uam`].
//!
//! ```no_run
//! # async fn demo() {
//! let sim = s1_bridge_sim::Sim::start(s1_bridge_sim::SimConfig::default()).await.unwrap();
//! println!("console at {}, token {}", sim.base_url(), s1_bridge_sim::DEFAULT_TOKEN);
//! # }
//! ```

mod console;
mod control;
mod faults;
mod halo;
mod pagerduty;
mod receiver;
mod render;
mod server;
pub mod uam;
mod world;

pub use control::{ControlError, RequestLogEntry, SimControl, SimStats};
pub use faults::{FaultKind, FaultRule};
pub use halo::{
    FakeHalo, HALO_API_AGENT_ID, HALO_CLOSED_STATUS_ID, HALO_TECHNICIAN_ID, HaloAuthInfo, HaloConfig, HaloControlError,
    HaloEntity, HaloRefusal, HaloRequest, HaloStats, HaloStatusRef, HaloWebhookAuth, HaloWebhookPayload,
};
pub use pagerduty::{FakePagerDuty, PdAlert};
pub use receiver::{Delivery, WebhookReceiver};
pub use server::Sim;
pub use uam::{ActionOutcome, DetectionSource, NewUnifiedAlerts, UamAction, UnifiedAlertChange};
pub use world::{AgentChange, CursorEnd, DEFAULT_TOKEN, NewThreats, SimConfig, TokenScope, TokenSpec};
