//! The `pagerduty` platform: PagerDuty Events API v2 out (docs/platforms.md §2.1), Webhooks v3 in.
//!
//! One PagerDuty alert per story: the story's `alert_key` is the `dedup_key`, so every threat of
//! a story lands on the same alert, and the inbound webhook's `incident_key` finds the story
//! again. Threats still open in S1 `trigger` (a repeat trigger adds to the open alert's log; after
//! a resolve it opens a new alert, which is how a story reopens); a threat set in progress in the
//! console `acknowledge`s; when every threat of the story is resolved in S1 the alert `resolve`s,
//! so a backlog of already-resolved threats never pages anyone. PagerDuty keeps no customers or
//! assets, so the asset sync skips it.
mod inbound;
mod outbound;

use std::num::NonZeroU32;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::build::{BuildContext, ForTenant};
use super::{InboundAdapter, Platform, PlatformError};
use crate::domain::PlatformKind;
use crate::tenant::SecretRef;

pub use inbound::{PagerDutyInbound, parse_pagerduty, sign_pagerduty, verify_pagerduty};
pub use outbound::{DEFAULT_EVENTS_PER_MINUTE, DEFAULT_EVENTS_URL, PagerDutyEvents};

/// A tenant's PagerDuty settings: secret references, never values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The Events API v2 integration key of the service (32 characters), as a secret reference.
    pub routing_key: SecretRef,
    /// The webhook subscription's signing secrets (any matches, so they can rotate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbound_secrets: Vec<SecretRef>,
    /// PagerDuty's Events API endpoint: the US region by default, or the EU one.
    #[serde(default = "default_events_url")]
    pub events_url: String,
    /// Events a minute the adapter keeps under (PagerDuty's limit per integration key).
    #[serde(default = "default_events_per_minute")]
    pub events_per_minute: NonZeroU32,
}

fn default_events_url() -> String {
    DEFAULT_EVENTS_URL.to_owned()
}

fn default_events_per_minute() -> NonZeroU32 {
    NonZeroU32::new(DEFAULT_EVENTS_PER_MINUTE).expect("the default is not zero")
}

#[async_trait]
impl crate::platform::settings_port::PlatformSettings for Settings {
    fn kind(&self) -> PlatformKind {
        PlatformKind::PagerDuty
    }

    fn secrets(&self) -> Vec<(&'static str, &SecretRef)> {
        std::iter::once(("routing_key", &self.routing_key))
            .chain(self.inbound_secrets.iter().map(|t| ("inbound_secrets", t)))
            .collect()
    }

    fn urls(&self) -> Vec<(&'static str, &str)> {
        vec![("events_url", self.events_url.as_str())]
    }

    async fn outbound(&self, tenant: ForTenant<'_>, ctx: &BuildContext) -> Result<Arc<dyn Platform>, PlatformError> {
        let key = ctx.secret(tenant, &self.routing_key, "PagerDuty routing key").await?;
        let events = PagerDutyEvents::new(
            ctx.http.clone(),
            &self.events_url,
            key.expose().to_owned().into(),
            self.events_per_minute.get(),
            ctx.retry.clone(),
            &ctx.allowed,
        )
        .map_err(tenant.named())?;
        // The routing key's budget is kept in the store, shared with every process using it.
        Ok(Arc::new(match &ctx.store {
            Some(store) => events.with_shared_budget(store.clone()),
            None => events,
        }))
    }

    async fn inbound(
        &self,
        tenant: ForTenant<'_>,
        ctx: &BuildContext,
    ) -> Result<Box<dyn InboundAdapter>, PlatformError> {
        let secrets = ctx
            .secrets_of(tenant, &self.inbound_secrets, "settings.inbound_secrets")
            .await?;
        if secrets.is_empty() {
            return Err(tenant.config_error("no inbound_secrets configured"));
        }
        Ok(Box::new(PagerDutyInbound { secrets }))
    }
}
