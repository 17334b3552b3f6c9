//! The `generic` platform: signed JSON webhooks per Standard Webhooks 1.0, both ways
//! (docs/platforms.md §6.2): every threat, story and synced object out; status changes,
//! comments and response actions in.

mod inbound;
mod outbound;
mod signature;

use serde::{Deserialize, Serialize};

use crate::store::TokenSource;
use crate::usecase::sync_assets::AssetSettings;

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
    pub secret: TokenSource,
    /// The secrets the platform signs its webhooks to us with (any matches: rotation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbound_secrets: Vec<TokenSource>,
    /// A bearer token for senders that cannot sign: the explicitly weaker mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_bearer: Option<TokenSource>,
    /// How S1 agents become assets (field map, types, placement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assets: Option<Box<AssetSettings>>,
}

impl crate::platform::config::PlatformSettings for Settings {
    fn secrets(&self) -> Vec<(&'static str, &TokenSource)> {
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
}
