//! A tenant's configuration: which S1 console (or scope of it) is polled, with which token, and
//! where its threats go.

use serde::{Deserialize, Serialize};

use super::SecretRef;
use crate::domain::Grouping;

/// One S1 console (or a scope of it) and where its threats go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantConfig {
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// Polled and synced; a tenant file that leaves it out means yes.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    pub console_url: String,
    pub token: SecretRef,
    #[serde(default)]
    pub account_ids: Vec<String>,
    #[serde(default)]
    pub site_ids: Vec<String>,
    /// The platform and its typed settings (secret references, never values).
    pub platform: crate::platform::PlatformConfig,
    #[serde(default)]
    pub grouping: Grouping,
    #[serde(default)]
    pub poll_cloud_alerts: bool,
    /// Per-tenant overrides of the default mappings (docs/design.md, Mappings).
    #[serde(
        default,
        deserialize_with = "crate::mapping::MappingOverrides::deserialize_or_null",
        skip_serializing_if = "crate::mapping::MappingOverrides::is_empty"
    )]
    pub mapping_overrides: crate::mapping::MappingOverrides,
    /// Days before the token's expiry at which the platform is alerted, once each.
    #[serde(default = "default_alert_days")]
    pub token_alert_days: Vec<i64>,
    /// Deliveries (events, or batches) the poller has in flight to the platform at once; a
    /// story's events still go one after another.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    /// Tell the platform when the connector status turns to `error` and when it recovers (one
    /// notice per change: `connector.error`, `connector.recovered`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub status_notices: bool,
}

/// [`TenantConfig::max_in_flight`] when the tenant does not say.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 16;

fn enabled_by_default() -> bool {
    true
}

fn default_max_in_flight() -> u32 {
    DEFAULT_MAX_IN_FLIGHT
}

fn default_alert_days() -> Vec<i64> {
    vec![30, 14, 7, 3, 1, 0]
}
