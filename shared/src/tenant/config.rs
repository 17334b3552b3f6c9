//! A tenant's configuration: which S1 console (or scope of it) is polled, with which token, and
//! where its threats go.

use serde::{Deserialize, Serialize};

use super::SecretRef;
use crate::domain::Grouping;

/// A listing a tenant's detections are read from, each from its own checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `GET /threats` (the default).
    Threats,
    /// STAR / cloud-detection alerts (`GET /cloud-detection/alerts`).
    Star,
    /// Unified Alert Management (the UAM GraphQL `alerts` listing): every detection source a
    /// console sees. An EDR alert that is also a threat is that threat's member, whichever
    /// source reads it first.
    Unified,
}

impl Source {
    /// The name of the source's checkpoint (`threats`, `alerts`, `unified`).
    pub const fn checkpoint(self) -> &'static str {
        match self {
            Source::Threats => "threats",
            // The name STAR alerts' checkpoint had before there were sources.
            Source::Star => "alerts",
            Source::Unified => "unified",
        }
    }

    /// The source as a tenant file names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Threats => "threats",
            Source::Star => "star",
            Source::Unified => "unified",
        }
    }
}

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
    /// The listings read ([`Source`]); `["threats"]` when the file does not say. Read through
    /// [`TenantConfig::reads`], which also honours `poll_cloud_alerts`.
    #[serde(default = "default_sources", skip_serializing_if = "is_default_sources")]
    pub sources: Vec<Source>,
    /// The setting `sources` replaced: `true` still means STAR alerts are read, as if `sources`
    /// named `star`.
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
    /// How often the dispatcher sends this tenant's runs (each job's default when left out).
    #[serde(default, skip_serializing_if = "Intervals::is_default")]
    pub intervals: Intervals,
}

/// A tenant's interval per job, in minutes; a job left out keeps its default (polls each
/// minute, the asset sync and the token watch daily). A tenant that keeps failing is sent less
/// often than this (the dispatcher's backoff), never more often.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Intervals {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assets_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_minutes: Option<u32>,
}

/// The longest interval a tenant may ask for: a week.
pub const MAX_INTERVAL_MINUTES: u32 = 7 * 24 * 60;

impl Intervals {
    /// Whether every job keeps its default.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Each setting with its name, for checking.
    pub fn named(&self) -> [(&'static str, Option<u32>); 3] {
        [
            ("poll_minutes", self.poll_minutes),
            ("assets_minutes", self.assets_minutes),
            ("tokens_minutes", self.tokens_minutes),
        ]
    }
}

/// [`TenantConfig::max_in_flight`] when the tenant does not say.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 16;

impl TenantConfig {
    /// Tenant `id` on `console_url` with its token at `token`, publishing to `platform`; every
    /// other setting as a tenant file that leaves it out gets it (the same defaults).
    pub fn new(
        id: impl Into<String>,
        console_url: impl Into<String>,
        token: SecretRef,
        platform: crate::platform::PlatformConfig,
    ) -> Self {
        Self {
            id: id.into(),
            name: String::default(),
            enabled: enabled_by_default(),
            console_url: console_url.into(),
            token,
            account_ids: Vec::default(),
            site_ids: Vec::default(),
            platform,
            grouping: Grouping::default(),
            sources: default_sources(),
            poll_cloud_alerts: bool::default(),
            mapping_overrides: crate::mapping::MappingOverrides::default(),
            token_alert_days: default_alert_days(),
            max_in_flight: default_max_in_flight(),
            status_notices: bool::default(),
            intervals: Intervals::default(),
        }
    }

    /// Whether the tenant reads `source` (`sources` names it; STAR alerts also when the older
    /// `poll_cloud_alerts` says so).
    pub fn reads(&self, source: Source) -> bool {
        self.sources.contains(&source) || (source == Source::Star && self.poll_cloud_alerts)
    }
}

fn default_sources() -> Vec<Source> {
    vec![Source::Threats]
}

fn is_default_sources(s: &[Source]) -> bool {
    s == [Source::Threats]
}

fn enabled_by_default() -> bool {
    true
}

fn default_max_in_flight() -> u32 {
    DEFAULT_MAX_IN_FLIGHT
}

fn default_alert_days() -> Vec<i64> {
    vec![30, 14, 7, 3, 1, 0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{PlatformConfig, settings};

    #[test]
    fn new_is_a_tenant_file_with_only_the_required_settings() {
        let token = SecretRef::Env {
            var: "S1_TOKEN_X".into(),
        };
        let platform = PlatformConfig::Generic(settings::Generic {
            url: "https://hooks.example/x".into(),
            secret: SecretRef::Env { var: "HOOK_X".into() },
            inbound_secrets: vec![],
            inbound_bearer: None,
            assets: None,
            batch: None,
        });
        let file = serde_json::json!({
            "id": "x",
            "console_url": "https://console.example",
            "token": token,
            "platform": platform,
        });
        let parsed: TenantConfig = serde_json::from_value(file).expect("a minimal tenant file parses");
        assert_eq!(
            TenantConfig::new("x", "https://console.example", token, platform),
            parsed
        );
    }
}
