//! A tenant's connector status: the one record that says whether its console is being served
//! (`s1-bridge status`, `tenant list`), written by its poll runs.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Whether a tenant's connector works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorState {
    /// The last run succeeded and nothing is piling up.
    Connected,
    /// Runs succeed, but the tenant is behind, writebacks or dead letters are piling up, or the
    /// token expires within a week.
    Degraded,
    /// The last run failed; `cause` says why, as the run report named it.
    Error,
}

impl ConnectorState {
    /// The name shown to operators (`connected`, `degraded`, `error`).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorState::Connected => "connected",
            ConnectorState::Degraded => "degraded",
            ConnectorState::Error => "error",
        }
    }
}

/// A tenant's connector status as its last poll run saw it (`TENANT#t` / `STATUS`).
///
/// A run that changes nothing an operator would act on rewrites it at most every
/// [`STATUS_HEARTBEAT`](crate::usecase::status::STATUS_HEARTBEAT), so an idle tenant's runs
/// rarely write it: `checked_at` says when it was last written, and `last_success` is at most
/// that much older than the truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorStatus {
    pub state: ConnectorState,
    /// Why it is degraded or in error (`None` when connected). Never holds a secret: it is the
    /// run report's error text, which names endpoints and status codes only.
    #[serde(default)]
    pub cause: Option<String>,
    /// Since when `state` (and `cause`) hold.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// When this record was last written.
    #[serde(with = "time::serde::rfc3339")]
    pub checked_at: OffsetDateTime,
    /// When a run last succeeded (completed, or stopped at its deadline with progress made).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_success: Option<OffsetDateTime>,
    /// How far behind S1 the tenant is, in seconds: 0 when the last run reached the newest
    /// change, the age of the newest change handled when it stopped at its deadline with more
    /// to do; `None` when no run has succeeded.
    #[serde(default)]
    pub lag_seconds: Option<i64>,
    /// Days until the S1 token expires, as the token watch last saw it.
    #[serde(default)]
    pub token_days_left: Option<i64>,
    /// Writebacks accepted from the platform and not yet applied to S1.
    #[serde(default)]
    pub pending_writebacks: u64,
    /// Dead letters of either direction (writebacks S1 refused, events the platform refused),
    /// counted up to 100.
    #[serde(default)]
    pub dead_letters: u64,
    /// Failed runs in a row.
    #[serde(default)]
    pub failures_in_a_row: u32,
    /// The state the platform was last told of (tenants with `status_notices`): `Error` after
    /// an error notice, `Connected` after a recovery notice.
    #[serde(default)]
    pub notified: Option<ConnectorState>,
}
