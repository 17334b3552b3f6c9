//! What every platform's settings tell and build, whatever the platform: the one trait the
//! settings of each platform (in its own folder) implement and the stored configuration
//! (`config`) and the registry use, kept apart from both so neither imports the other back.

use std::sync::Arc;

use async_trait::async_trait;

use super::asset_settings::AssetSettings;
use super::build::{BuildContext, ForTenant};
use super::{InboundAdapter, Platform, PlatformError};
use crate::domain::PlatformKind;
use crate::tenant::SecretRef;

/// What every platform's settings tell, and the adapters they build: like a pipeline's sink
/// config that builds its sink and its health check, so nothing outside the platform's folder
/// matches on which platform it is.
#[async_trait]
pub trait PlatformSettings: Send + Sync {
    /// Which platform these settings are for.
    fn kind(&self) -> PlatformKind;
    /// Every secret the settings refer to, with the setting's name.
    fn secrets(&self) -> Vec<(&'static str, &SecretRef)>;
    /// Every URL the settings name, with the setting's name.
    fn urls(&self) -> Vec<(&'static str, &str)>;
    /// The asset sync's generic settings, for a platform that keeps assets.
    fn assets(&self) -> Option<AssetSettings> {
        None
    }
    /// The window of the platform's request budget, for a platform that has one (Halo: 300 s).
    /// An asset sync that stopped with more to do continues after it, when the platform has
    /// taken back the requests the stopped run spent.
    fn budget_window(&self) -> Option<std::time::Duration> {
        None
    }
    /// What is wrong with the settings that their types do not say, as the setting's path
    /// under `platform.settings` and the problem (checked when a tenant file is read).
    fn problem(&self) -> Option<(String, String)> {
        None
    }
    /// The outbound adapter, with its secrets read.
    ///
    /// # Errors
    /// [`PlatformError::Config`] naming the tenant and what is wrong with its settings.
    async fn outbound(&self, tenant: ForTenant<'_>, ctx: &BuildContext) -> Result<Arc<dyn Platform>, PlatformError>;
    /// The inbound adapter (the webhook's verification and parsing), with its secrets read.
    ///
    /// # Errors
    /// [`PlatformError::Config`] when no inbound secret is configured or one cannot be read.
    async fn inbound(
        &self,
        tenant: ForTenant<'_>,
        ctx: &BuildContext,
    ) -> Result<Box<dyn InboundAdapter>, PlatformError>;
}
