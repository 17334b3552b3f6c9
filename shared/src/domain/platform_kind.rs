//! Which platform: the identity of a platform everywhere (tenant files, webhook paths, stored
//! stories and aliases), kept below the platforms so the model can name it.

use serde::{Deserialize, Serialize};

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
    /// Every kind, in the order the docs list them (webhook paths are offered from it). A new
    /// kind is listed here too: `as_str` below is where the compiler sends its author.
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
        // `pad`, not `write_str`: the CLI's tables give it a column width.
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::PlatformKind;

    #[test]
    fn a_kind_fills_its_column() {
        assert_eq!(format!("{:<10}|", PlatformKind::Generic), "generic   |");
    }
}
