//! The `generic` platform: signed JSON webhooks per Standard Webhooks 1.0, both ways
//! (docs/platforms.md §6.2): every threat, story and synced object out; status changes,
//! comments and response actions in.

mod inbound;
mod outbound;
mod signature;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::asset_settings::AssetSettings;
use super::build::{BuildContext, ForTenant};
use super::{InboundAdapter, Platform, PlatformError};
use crate::domain::PlatformKind;
use crate::tenant::SecretRef;

pub use inbound::{GenericAuth, GenericInbound, parse_generic};
pub use outbound::GenericWebhook;
pub use signature::{
    MAX_SIGNATURE_HEADER, MAX_SIGNATURES, SignatureError, WebhookSecret, WebhookSecretError, sign, verify,
};

/// A tenant's generic-webhook settings: secret references, never values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Where events are POSTed (https; see the allowed hosts).
    pub url: String,
    /// The `whsec_` secret events are signed with.
    pub secret: SecretRef,
    /// The secrets the platform signs its webhooks to us with (any matches: rotation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbound_secrets: Vec<SecretRef>,
    /// A bearer token for senders that cannot sign: the explicitly weaker mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_bearer: Option<SecretRef>,
    /// How S1 agents become assets (field map, types, placement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assets: Option<Box<AssetSettings>>,
    /// Batched delivery: events go in `threat.batch` requests (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<Batch>,
}

/// Batched delivery of the generic platform: up to `max_events` events, and at most
/// `max_bytes` of body, per `threat.batch` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    #[serde(default = "Batch::default_events")]
    pub max_events: usize,
    #[serde(default = "Batch::default_bytes")]
    pub max_bytes: usize,
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            max_events: Self::default_events(),
            max_bytes: Self::default_bytes(),
        }
    }
}

impl Batch {
    /// The most events a batch may be set to carry.
    pub const MAX_EVENTS: usize = 1_000;
    /// The smallest and largest body a batch may be set to.
    pub const BYTES: std::ops::RangeInclusive<usize> = 64 * 1024..=16 * 1024 * 1024;

    fn default_events() -> usize {
        100
    }

    fn default_bytes() -> usize {
        1024 * 1024
    }

    /// What is wrong with these limits, if anything.
    pub fn problem(&self) -> Option<String> {
        if self.max_events == 0 || self.max_events > Self::MAX_EVENTS {
            return Some(format!("max_events must be between 1 and {}", Self::MAX_EVENTS));
        }
        if !Self::BYTES.contains(&self.max_bytes) {
            return Some(format!(
                "max_bytes must be between {} and {}",
                Self::BYTES.start(),
                Self::BYTES.end()
            ));
        }
        None
    }
}

#[async_trait]
impl crate::platform::settings_port::PlatformSettings for Settings {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Generic
    }

    fn secrets(&self) -> Vec<(&'static str, &SecretRef)> {
        std::iter::once(("secret", &self.secret))
            .chain(self.inbound_secrets.iter().map(|t| ("inbound_secrets", t)))
            .chain(self.inbound_bearer.iter().map(|t| ("inbound_bearer", t)))
            .collect()
    }

    fn urls(&self) -> Vec<(&'static str, &str)> {
        vec![("url", self.url.as_str())]
    }

    fn assets(&self) -> Option<AssetSettings> {
        self.assets.as_deref().cloned()
    }

    fn problem(&self) -> Option<(String, String)> {
        let message = self.batch.as_ref()?.problem()?;
        Some(("batch".into(), message))
    }

    async fn outbound(&self, tenant: ForTenant<'_>, ctx: &BuildContext) -> Result<Arc<dyn Platform>, PlatformError> {
        let raw = ctx.secret(tenant, &self.secret, "webhook secret").await?;
        let secret =
            WebhookSecret::parse(raw.expose()).map_err(|e| tenant.config_error(format_args!("webhook secret: {e}")))?;
        let webhook = GenericWebhook::new(ctx.http.clone(), &self.url, secret, ctx.retry.clone(), &ctx.allowed)
            .map_err(tenant.named())?
            .batching(self.batch);
        Ok(Arc::new(webhook))
    }

    async fn inbound(
        &self,
        tenant: ForTenant<'_>,
        ctx: &BuildContext,
    ) -> Result<Box<dyn InboundAdapter>, PlatformError> {
        let secrets = ctx
            .secrets_of(tenant, &self.inbound_secrets, "settings.inbound_secrets")
            .await?;
        if !secrets.is_empty() {
            let secrets = secrets
                .iter()
                .map(|s| WebhookSecret::parse(s.expose()))
                .collect::<Result<_, _>>()
                .map_err(|e| tenant.config_error(format_args!("settings.inbound_secrets: {e}")))?;
            return Ok(Box::new(GenericInbound {
                auth: GenericAuth::Signed(secrets),
            }));
        }
        match &self.inbound_bearer {
            Some(b) => Ok(Box::new(GenericInbound {
                auth: GenericAuth::Bearer(ctx.secret(tenant, b, "settings.inbound_bearer").await?),
            })),
            None => Err(tenant.config_error("no inbound_secrets or inbound_bearer configured")),
        }
    }
}
