//! A tenant's platform: which one, and its typed settings. Deserialising is the validation: a
//! tenant with an unknown platform, a missing or wrongly typed setting is refused when it is
//! added, naming what is wrong. The stored shape is `{"kind": "...", "settings": {...}}`.

use serde::{Deserialize, Serialize};

pub use super::settings_port::PlatformSettings;
use super::{generic, halo, pagerduty};
use crate::store::TokenSource;
use crate::usecase::sync_assets::AssetSettings;

/// The platforms this build can deliver to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PlatformKind {
    #[serde(rename = "generic")]
    Generic,
    #[serde(rename = "pagerduty")]
    PagerDuty,
    #[serde(rename = "halo")]
    Halo,
}

impl PlatformKind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [PlatformKind; 3] = [PlatformKind::Generic, PlatformKind::PagerDuty, PlatformKind::Halo];

    /// The kind's name: in tenant files, webhook paths and notes.
    pub fn as_str(self) -> &'static str {
        match self {
            PlatformKind::Generic => "generic",
            PlatformKind::PagerDuty => "pagerduty",
            PlatformKind::Halo => "halo",
        }
    }

    /// The kind named `name`, if this build has it.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for PlatformKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tenant's platform and its settings (secret references, never values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "settings")]
pub enum PlatformConfig {
    #[serde(rename = "generic")]
    Generic(generic::Settings),
    #[serde(rename = "pagerduty")]
    PagerDuty(pagerduty::Settings),
    #[serde(rename = "halo")]
    Halo(Box<halo::Settings>),
}

impl PlatformConfig {
    /// Which platform this is.
    pub fn kind(&self) -> PlatformKind {
        match self {
            PlatformConfig::Generic(_) => PlatformKind::Generic,
            PlatformConfig::PagerDuty(_) => PlatformKind::PagerDuty,
            PlatformConfig::Halo(_) => PlatformKind::Halo,
        }
    }

    /// The settings, for what every platform's settings answer.
    pub fn settings(&self) -> &dyn PlatformSettings {
        match self {
            PlatformConfig::Generic(s) => s,
            PlatformConfig::PagerDuty(s) => s,
            PlatformConfig::Halo(s) => s.as_ref(),
        }
    }

    /// Every secret the settings refer to, with the setting's name.
    pub fn secrets(&self) -> Vec<(&'static str, &TokenSource)> {
        self.settings().secrets()
    }

    /// Every URL the settings name, with the setting's name.
    pub fn urls(&self) -> Vec<(&'static str, &str)> {
        self.settings().urls()
    }

    /// The asset-sync settings of a platform that keeps assets, when the tenant gives them.
    pub fn assets(&self) -> Option<AssetSettings> {
        self.settings().assets()
    }
}
