//! The platform port: where threats become alerts or tickets, and where the SOC's decisions
//! come back from. One folder per platform owns its typed settings (one variant of
//! [`PlatformConfig`]), which build its outbound adapter ([`Platform`]), its inbound adapter
//! ([`InboundAdapter`]) and say what is wrong with them ([`PlatformSettings`]); [`Adapters`] (the
//! registry) hands them the process's [`BuildContext`] and knows no platform. The port's own
//! types: the checks "Test configuration" reports (`check.rs`) and the asset sync's settings
//! (`asset_settings.rs`).
//!
//! A new platform is one new folder here, one variant in [`PlatformConfig`] and one in
//! [`PlatformKind`]; the compiler names every place still to handle (`config.rs`'s dispatch,
//! the kind's name).

mod asset_settings;
pub mod budget;
mod build;
pub mod check;
mod config;
mod event;
mod generic;
pub mod halo;
pub mod http;
pub mod inbound;
mod notice;
mod pagerduty;
mod registry;
mod settings_port;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use time::OffsetDateTime;

pub use asset_settings::{AssetSettings, AssetType, Placement, TypeRule, agent_fields};
pub use build::{BuildContext, ForTenant};
pub use config::{PlatformConfig, PlatformKind, PlatformSettings};
pub use event::{AssetView, EventKind, FileView, PublishReceipt, Scope, StoryView, ThreatEvent, ThreatView};
pub use generic::{
    Batch, GenericAuth, GenericInbound, GenericWebhook, SignatureError, WebhookSecret, WebhookSecretError,
    parse_generic, sign, verify,
};
pub use http::ITEM_REFUSALS;
pub use notice::{AssetFields, Notice, SyncChange, Synced};
pub use pagerduty::{
    DEFAULT_EVENTS_PER_MINUTE, DEFAULT_EVENTS_URL, PagerDutyEvents, PagerDutyInbound, parse_pagerduty, sign_pagerduty,
    verify_pagerduty,
};
pub use registry::{Adapters, PlatformResolver};

/// A platform's typed settings, by kind (each in its platform's folder).
pub mod settings {
    pub use super::generic::Settings as Generic;
    pub use super::pagerduty::Settings as PagerDuty;
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The platform refused this item (400, 409, 413, 422): retrying the same item will not help.
    #[error("the platform refused the event (HTTP {status}): {detail}")]
    Rejected { status: u16, detail: String },
    /// The platform refused us, whatever the event (401, 403: credentials; 404, 405, 410: the
    /// endpoint moved; any other 4xx but 408 and 429): it is unavailable for the tenant until
    /// its settings are fixed. Nothing is recorded against an event; the poller's checkpoint
    /// holds.
    #[error(
        "the platform refused our requests (HTTP {status}): {detail}; check the tenant's platform URL and credentials"
    )]
    Refused { status: u16, detail: String },
    /// The platform could not take it now (429, 5xx, network) through the retry budget.
    #[error("the platform is unavailable after {attempts} attempt{}: {detail}", if *.attempts == 1 { "" } else { "s" })]
    Unavailable { attempts: u32, detail: String },
    /// The tenant's platform settings are wrong.
    #[error("platform configuration: {0}")]
    Config(String),
}

impl PlatformError {
    /// An event not sent because an earlier one of its batch failed.
    pub fn not_sent() -> Self {
        PlatformError::Unavailable {
            attempts: 0,
            detail: "not sent: an earlier event of the batch failed".into(),
        }
    }

    /// Whether the error is about us or the platform rather than the one event
    /// ([`PlatformError::Rejected`]): the events after it are not sent.
    pub fn stops_sending(&self) -> bool {
        !matches!(self, PlatformError::Rejected { .. })
    }
}

/// Whether any answer so far [stops sending](PlatformError::stops_sending).
pub fn sending_stopped(answers: &[Result<PublishReceipt, PlatformError>]) -> bool {
    answers
        .iter()
        .any(|r| r.as_ref().is_err_and(PlatformError::stops_sending))
}

/// Publishes `events` one at a time, in order, answering for each; after an error that
/// [stops sending](PlatformError::stops_sending), the rest are answered
/// [`PlatformError::not_sent`] without an attempt.
pub async fn publish_in_turn<P: Platform + ?Sized, E: std::borrow::Borrow<ThreatEvent> + Sync>(
    platform: &P,
    events: &[E],
) -> Vec<Result<PublishReceipt, PlatformError>> {
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        let answer = if sending_stopped(&out) {
            Err(PlatformError::not_sent())
        } else {
            platform.publish(event.borrow()).await
        };
        out.push(answer);
    }
    out
}

/// The port every platform adapter implements.
#[async_trait]
pub trait Platform: Send + Sync {
    /// Which platform this is: what a story records as its platform, and names in messages.
    fn kind(&self) -> PlatformKind;
    /// Delivers one event; retried inside the adapter for what is safe to retry.
    async fn publish(&self, event: &ThreatEvent) -> Result<PublishReceipt, PlatformError>;
    /// The most events [`publish_batch`](Platform::publish_batch) takes in one call; `None`
    /// (the default) when the platform takes events one at a time.
    fn batch_limit(&self) -> Option<usize> {
        None
    }
    /// Delivers several events, in order, answering for each. A platform that batches sends
    /// them in as few requests as it can; the default sends them one at a time and, after an
    /// error that is not about the event itself, sends no more (they are answered
    /// [`PlatformError::Unavailable`] with no attempt).
    async fn publish_batch(&self, events: &[ThreatEvent]) -> Vec<Result<PublishReceipt, PlatformError>> {
        publish_in_turn(self, events).await
    }
    /// Delivers a notice the same way.
    async fn notify(&self, notice: &Notice) -> Result<PublishReceipt, PlatformError>;
    /// Whether the platform keeps customers, sites and assets (PagerDuty does not, so the asset
    /// sync has nothing to do for it).
    fn keeps_assets(&self) -> bool {
        true
    }
    /// Whether the platform answers synced customers, sites and assets with ids of its own
    /// (Halo's record ids), which the asset snapshot then keeps as the mapping.
    fn keeps_own_ids(&self) -> bool {
        false
    }
    /// The most events a second the adapter sends (it paces itself under the platform's limit);
    /// `None` when it is not paced. The poller sizes its pages by it.
    fn max_events_per_second(&self) -> Option<f64> {
        None
    }
    /// "Test configuration" checks of the adapter's own settings against the platform, run once
    /// it is reachable (Halo: its token, and that every configured name exists). None by default.
    async fn check_settings(&self) -> Vec<check::Check> {
        Vec::new()
    }
}

/// A platform's inbound side for one tenant: proves who sent a webhook and reads the change in
/// it. Built by [`PlatformResolver::inbound`] with the tenant's secrets read.
#[async_trait]
pub trait InboundAdapter: Send + Sync + std::fmt::Debug {
    /// The platform this adapter reads.
    fn kind(&self) -> PlatformKind;
    /// Checks that the platform sent the request (signature, token), before anything is read.
    ///
    /// # Errors
    /// [`inbound::InboundError::Unauthorized`] naming what failed, never a secret.
    fn verify(&self, headers: &HeaderMap, body: &[u8], now: OffsetDateTime) -> Result<(), inbound::InboundError>;
    /// The change the webhook carries, or why there is nothing to do.
    ///
    /// # Errors
    /// [`inbound::InboundError::Malformed`] naming the field.
    async fn parse(&self, headers: &HeaderMap, body: &[u8]) -> Result<inbound::Inbound, inbound::InboundError>;
    /// The field that dates a change, named in errors (`timestamp`, `event.occurred_at`).
    fn time_field(&self) -> &'static str;
    /// Whether the signature covers a fresh timestamp (Standard Webhooks, checked within
    /// 300 s); deliveries of other platforms older than the replay window are refused instead.
    fn signs_fresh_timestamp(&self) -> bool;
}
