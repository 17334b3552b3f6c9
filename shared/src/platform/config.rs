//! A tenant's platform: which one, and its typed settings. Deserialising is the validation: a
//! tenant with an unknown platform, a missing or wrongly typed setting is refused when it is
//! added, naming what is wrong. The stored shape is `{"kind": "...", "settings": {...}}`.

use serde::{Deserialize, Serialize};

use super::asset_settings::AssetSettings;
pub use super::settings_port::PlatformSettings;
use super::{generic, halo, pagerduty};
pub use crate::domain::PlatformKind;
use crate::tenant::SecretRef;

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
        self.settings().kind()
    }

    /// The settings, for what every platform's settings answer and build: the one match on the
    /// platform outside its own folder.
    pub fn settings(&self) -> &dyn PlatformSettings {
        match self {
            PlatformConfig::Generic(s) => s,
            PlatformConfig::PagerDuty(s) => s,
            PlatformConfig::Halo(s) => s.as_ref(),
        }
    }

    /// Every secret the settings refer to, with the setting's name.
    pub fn secrets(&self) -> Vec<(&'static str, &SecretRef)> {
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
