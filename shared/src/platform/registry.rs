//! The registry: builds a tenant's adapters by asking its platform's settings to build them
//! ([`PlatformSettings::outbound`](super::PlatformSettings::outbound) and `inbound`), with the
//! process's [`BuildContext`]. It knows no platform: a new one needs nothing here.

use std::sync::Arc;

use async_trait::async_trait;

use super::build::{BuildContext, ForTenant};
use super::{InboundAdapter, Platform, PlatformError};
use crate::config::AllowedHosts;
use crate::secrets::TokenProvider;
use crate::tenant::TenantConfig;

/// Builds the platform adapters of a tenant.
#[async_trait]
pub trait PlatformResolver: Send + Sync {
    /// The outbound adapter for `tenant`'s platform, with its secrets read.
    ///
    /// # Errors
    /// [`PlatformError::Config`] naming the tenant and what is wrong with its settings.
    async fn resolve(&self, tenant: &TenantConfig) -> Result<Arc<dyn Platform>, PlatformError>;

    /// The inbound adapter for `tenant`'s platform, with its secrets read.
    ///
    /// # Errors
    /// [`PlatformError::Config`] when the tenant has no inbound secret configured or one cannot
    /// be read.
    async fn inbound(&self, tenant: &TenantConfig) -> Result<Box<dyn InboundAdapter>, PlatformError> {
        let _ = tenant;
        Err(PlatformError::Config("this resolver builds no inbound adapters".into()))
    }
}

/// Builds adapters from tenant settings, reading their secrets through a [`TokenProvider`].
pub struct Adapters {
    ctx: BuildContext,
}

impl Adapters {
    /// Adapters sending with `http` (build it with [`crate::net::outbound_client`]), reading
    /// secrets through `secrets`, retrying per `retry`. Platform URLs are checked against the
    /// default allow-list until [`Adapters::with_allowed_hosts`] says otherwise.
    pub fn new(http: reqwest::Client, secrets: Arc<dyn TokenProvider>, retry: crate::s1::RetryPolicy) -> Self {
        Self {
            ctx: BuildContext::new(http, secrets, retry),
        }
    }

    /// Reads S1 -> platform mappings (Halo clients and sites) from `store`, and keeps each Halo
    /// instance's and PagerDuty routing key's request budget there, shared with every other
    /// process and tenant using it.
    #[must_use]
    pub fn with_store(mut self, store: crate::store::Store) -> Self {
        self.ctx.store = Some(store);
        self
    }

    /// Checks every platform URL against `allowed` (`S1_BRIDGE_ALLOWED_HOSTS`) when an adapter
    /// is built, at run time.
    #[must_use]
    pub fn with_allowed_hosts(mut self, allowed: AllowedHosts) -> Self {
        self.ctx.allowed = allowed;
        self
    }
}

fn for_tenant(tenant: &TenantConfig) -> ForTenant<'_> {
    ForTenant {
        id: &tenant.id,
        console_url: &tenant.console_url,
    }
}

#[async_trait]
impl PlatformResolver for Adapters {
    async fn resolve(&self, tenant: &TenantConfig) -> Result<Arc<dyn Platform>, PlatformError> {
        tenant.platform.settings().outbound(for_tenant(tenant), &self.ctx).await
    }

    async fn inbound(&self, tenant: &TenantConfig) -> Result<Box<dyn InboundAdapter>, PlatformError> {
        tenant.platform.settings().inbound(for_tenant(tenant), &self.ctx).await
    }
}
