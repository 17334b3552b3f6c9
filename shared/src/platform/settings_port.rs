//! What every platform's settings tell, whatever the platform: the one trait the settings of each
//! platform (in its own folder) implement and the stored configuration (`config`) reads, kept
//! apart from both so neither imports the other back.

use crate::store::TokenSource;
use crate::usecase::sync_assets::AssetSettings;

/// What every platform's settings tell, whatever the platform.
pub trait PlatformSettings {
    /// Every secret the settings refer to, with the setting's name.
    fn secrets(&self) -> Vec<(&'static str, &TokenSource)>;
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
}
