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
/// A run writes it only when something an operator would act on changed (the state, the cause,
/// the counts, a failure), never as a mere heartbeat: at fleet size every write is billed, and
/// an idle run's one write is its lease. As stored, `checked_at` says when it was last written;
/// read through [`Store::statuses_as_of`](crate::store::Store::statuses_as_of) (what
/// `s1-bridge status` shows), `last_success` is brought up to the start of the last finished run
/// that did not write it (a failed run always writes it) and `token_days_left` is counted from
/// the token state now.
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

impl ConnectorStatus {
    /// This status as of `now`, given the start of the tenant's last poll run (from its lease:
    /// `running` while that run still holds it) and the token's expiry. A finished run that did
    /// not write the status changed nothing an operator would act on, and a failed run always
    /// writes it (its failure count changes): so unless the status is `error`, a run that
    /// started after it was written and has finished succeeded (or was killed before recording
    /// anything, which its next run writes).
    pub fn as_of(
        mut self,
        last_run: Option<(OffsetDateTime, bool)>,
        token_expires: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Self {
        let finished = last_run.and_then(|(started, running)| (!running).then_some(started));
        if let Some(started) = finished.filter(|s| *s > self.checked_at && self.state != ConnectorState::Error) {
            self.last_success = Some(self.last_success.map_or(started, |s| s.max(started)));
        }
        if let Some(at) = token_expires {
            self.token_days_left = Some((at - now).whole_days());
        }
        self
    }
}
