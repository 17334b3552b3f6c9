//! The registry: the one place that matches on a tenant's [`PlatformConfig`] to build its
//! adapters, reading their secrets.

use std::sync::Arc;

use async_trait::async_trait;

use super::generic::{GenericAuth, GenericInbound, GenericWebhook, WebhookSecret};
use super::halo::{
    Directory, HaloAuth, HaloClient, HaloInbound, HaloTickets, HaloWebhookAuth, InboundAuthSettings, ResolvedCache,
};
use super::pagerduty::{PagerDutyEvents, PagerDutyInbound};
use super::{InboundAdapter, Platform, PlatformConfig, PlatformError};
use crate::config::AllowedHosts;
use crate::secrets::TokenProvider;
use crate::store::{TenantConfig, TokenSource};

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
    http: reqwest::Client,
    secrets: Arc<dyn TokenProvider>,
    retry: crate::s1::RetryPolicy,
    allowed: AllowedHosts,
    /// Where a platform that maps S1 accounts and sites to records of its own (Halo) reads the
    /// mapping.
    directory: Option<Arc<dyn Directory>>,
    /// One Halo client per tenant and instance in this process: one token cache, one request
    /// budget, and the tenant's resolved settings, however many runs and webhooks use it.
    halo: std::sync::Mutex<std::collections::HashMap<String, HaloShared>>,
    /// Where the request budgets of platform instances (a Halo instance, a PagerDuty routing
    /// key) are shared with every other process.
    budgets: Option<crate::store::Store>,
}

/// What a process shares between a tenant's Halo adapters: its client (token, budget) and its
/// resolved settings.
type HaloShared = (Arc<HaloClient>, Arc<ResolvedCache>);

impl Adapters {
    /// Adapters sending with `http` (build it with [`crate::net::outbound_client`]), reading
    /// secrets through `secrets`, retrying per `retry`. Platform URLs are checked against the
    /// default allow-list until [`Adapters::with_allowed_hosts`] says otherwise.
    pub fn new(http: reqwest::Client, secrets: Arc<dyn TokenProvider>, retry: crate::s1::RetryPolicy) -> Self {
        Self {
            http,
            secrets,
            retry,
            allowed: AllowedHosts::default(),
            directory: None,
            halo: std::sync::Mutex::default(),
            budgets: None,
        }
    }

    /// Reads S1 -> platform mappings (Halo clients and sites) from `store`, and keeps each Halo
    /// instance's and PagerDuty routing key's request budget there, shared with every other
    /// process and tenant using it.
    #[must_use]
    pub fn with_store(mut self, store: crate::store::Store) -> Self {
        self.directory = Some(Arc::new(store.clone()));
        self.budgets = Some(store);
        self
    }

    /// Checks every platform URL against `allowed` (`S1_BRIDGE_ALLOWED_HOSTS`) when an adapter
    /// is built, at run time.
    #[must_use]
    pub fn with_allowed_hosts(mut self, allowed: AllowedHosts) -> Self {
        self.allowed = allowed;
        self
    }
}

impl Adapters {
    /// The tenant's Halo client and its kept settings, made once per process.
    async fn halo_client(&self, tenant: &TenantConfig, s: &super::halo::Settings) -> Result<HaloShared, PlatformError> {
        let key = format!(
            "{}\n{}\n{}\n{}",
            tenant.id,
            s.url,
            s.tenant.as_deref().unwrap_or_default(),
            s.token_url.as_deref().unwrap_or_default()
        );
        if let Some(c) = self.halo.lock().expect("not poisoned").get(&key) {
            return Ok(c.clone());
        }
        let client_id = self.secret(tenant, &s.client_id, "Halo client_id").await?;
        let client_secret = self.secret(tenant, &s.client_secret, "Halo client_secret").await?;
        let auth = HaloAuth {
            base_url: s.url.clone(),
            tenant: s.tenant.clone(),
            client_id: client_id.expose().to_owned().into(),
            client_secret: client_secret.expose().to_owned().into(),
            scope: s.scope.clone(),
            token_url: s.token_url.clone(),
        };
        let window = super::halo::client::HALO_LIMIT.1;
        let limit = (s.requests_per_5_minutes.get(), window);
        let client = HaloClient::new(self.http.clone(), auth, &self.allowed, limit, self.retry.clone())
            .map_err(for_tenant(tenant))?;
        let client = Arc::new(match &self.budgets {
            Some(store) => client.with_shared_budget(store.clone(), limit),
            None => client,
        });
        let made = (client, Arc::new(ResolvedCache::default()));
        self.halo.lock().expect("not poisoned").insert(key, made.clone());
        Ok(made)
    }

    async fn halo_tickets(
        &self,
        tenant: &TenantConfig,
        s: &super::halo::Settings,
    ) -> Result<HaloTickets, PlatformError> {
        let (client, resolved) = self.halo_client(tenant, s).await?;
        Ok(HaloTickets::new(client, s.clone(), tenant.id.clone(), self.directory.clone()).with_cache(resolved))
    }

    async fn secret(
        &self,
        tenant: &TenantConfig,
        source: &TokenSource,
        what: &str,
    ) -> Result<crate::ApiToken, PlatformError> {
        self.secrets
            .token(source)
            .await
            .map_err(|e| PlatformError::Config(format!("tenant {}: {what}: {e}", tenant.id)))
    }
}

/// Names the tenant in a configuration error.
fn for_tenant(tenant: &TenantConfig) -> impl Fn(PlatformError) -> PlatformError + '_ {
    move |e| match e {
        PlatformError::Config(m) => PlatformError::Config(format!("tenant {}: {m}", tenant.id)),
        other => other,
    }
}

#[async_trait]
impl PlatformResolver for Adapters {
    async fn resolve(&self, tenant: &TenantConfig) -> Result<Arc<dyn Platform>, PlatformError> {
        match &tenant.platform {
            PlatformConfig::Generic(s) => {
                let raw = self.secret(tenant, &s.secret, "webhook secret").await?;
                let secret = WebhookSecret::parse(raw.expose())
                    .map_err(|e| PlatformError::Config(format!("tenant {}: webhook secret: {e}", tenant.id)))?;
                let webhook = GenericWebhook::new(self.http.clone(), &s.url, secret, self.retry.clone(), &self.allowed)
                    .map_err(for_tenant(tenant))?
                    .batching(s.batch);
                Ok(Arc::new(webhook))
            }
            PlatformConfig::PagerDuty(s) => {
                let key = self.secret(tenant, &s.routing_key, "PagerDuty routing key").await?;
                let events = PagerDutyEvents::new(
                    self.http.clone(),
                    &s.events_url,
                    key.expose().to_owned().into(),
                    s.events_per_minute.get(),
                    self.retry.clone(),
                    &self.allowed,
                )
                .map_err(for_tenant(tenant))?;
                Ok(Arc::new(match &self.budgets {
                    Some(store) => events.with_shared_budget(store.clone()),
                    None => events,
                }))
            }
            PlatformConfig::Halo(s) => Ok(Arc::new(self.halo_tickets(tenant, s).await?)),
        }
    }

    async fn inbound(&self, tenant: &TenantConfig) -> Result<Box<dyn InboundAdapter>, PlatformError> {
        let mut secrets = Vec::new();
        for (name, source) in tenant.platform.secrets() {
            if name == "inbound_secrets" {
                secrets.push(self.secret(tenant, source, "settings.inbound_secrets").await?);
            }
        }
        match &tenant.platform {
            PlatformConfig::Generic(_) if !secrets.is_empty() => {
                let secrets = secrets
                    .iter()
                    .map(|s| WebhookSecret::parse(s.expose()))
                    .collect::<Result<_, _>>()
                    .map_err(|e| {
                        PlatformError::Config(format!("tenant {}: settings.inbound_secrets: {e}", tenant.id))
                    })?;
                Ok(Box::new(GenericInbound {
                    auth: GenericAuth::Signed(secrets),
                }))
            }
            PlatformConfig::Generic(s) => match &s.inbound_bearer {
                Some(b) => Ok(Box::new(GenericInbound {
                    auth: GenericAuth::Bearer(self.secret(tenant, b, "settings.inbound_bearer").await?),
                })),
                None => Err(PlatformError::Config(format!(
                    "tenant {}: no inbound_secrets or inbound_bearer configured",
                    tenant.id
                ))),
            },
            PlatformConfig::PagerDuty(_) if !secrets.is_empty() => Ok(Box::new(PagerDutyInbound { secrets })),
            PlatformConfig::PagerDuty(_) => Err(PlatformError::Config(format!(
                "tenant {}: no inbound_secrets configured",
                tenant.id
            ))),
            PlatformConfig::Halo(s) => {
                let auth = match &s.inbound {
                    Some(InboundAuthSettings::Basic { username, password }) => HaloWebhookAuth::Basic {
                        username: self.secret(tenant, username, "settings.inbound.basic.username").await?,
                        password: self.secret(tenant, password, "settings.inbound.basic.password").await?,
                    },
                    Some(InboundAuthSettings::Header { name, value }) => HaloWebhookAuth::Header {
                        name: name.to_ascii_lowercase(),
                        value: self.secret(tenant, value, "settings.inbound.header.value").await?,
                    },
                    None => {
                        return Err(PlatformError::Config(format!(
                            "tenant {}: no inbound authentication configured for Halo's webhook",
                            tenant.id
                        )));
                    }
                };
                Ok(Box::new(HaloInbound {
                    tickets: Arc::new(self.halo_tickets(tenant, s).await?),
                    auth,
                    console_url: tenant.console_url.clone(),
                }))
            }
        }
    }
}
