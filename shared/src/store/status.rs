//! A tenant's connector status: the one record that says whether its console is being served
//! (`s1-bridge status`, `tenant list`), written by its poll runs.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A token with fewer days left than this makes the tenant degraded.
pub const DEGRADED_TOKEN_DAYS: i64 = 7;

/// The degraded cause an expiring token gives (one clause of a status's cause).
pub fn token_cause(days: i64) -> String {
    format!("{TOKEN_CLAUSE}{days} days")
}

const TOKEN_CLAUSE: &str = "the S1 token expires in ";

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
            let days = (at - now).whole_days();
            self.token_days_left = Some(days);
            self.with_token_days(days, at - time::Duration::days(DEGRADED_TOKEN_DAYS), now);
        }
        self
    }

    /// The token's clause of the state brought up to `days` left: a token watch that ran after
    /// the last poll (or the days passing) may cross the degraded threshold, or a new token clear
    /// it, with no poll run writing the record in between. `crossed` is when the token came
    /// under the threshold. An `error` stays as it is (its cause is the run's).
    fn with_token_days(&mut self, days: i64, crossed: OffsetDateTime, now: OffsetDateTime) {
        if self.state == ConnectorState::Error {
            return;
        }
        let mut why: Vec<String> = self
            .cause
            .iter()
            .flat_map(|c| c.split("; "))
            .filter(|c| !c.starts_with(TOKEN_CLAUSE))
            .map(str::to_owned)
            .collect();
        if days < DEGRADED_TOKEN_DAYS {
            why.push(token_cause(days));
        }
        let state = if why.is_empty() {
            ConnectorState::Connected
        } else {
            ConnectorState::Degraded
        };
        if state != self.state {
            self.since = crossed.clamp(self.checked_at, now);
        }
        self.state = state;
        self.cause = (!why.is_empty()).then(|| why.join("; "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_790_000_000;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW + secs).unwrap()
    }

    fn written(state: ConnectorState, cause: Option<&str>) -> ConnectorStatus {
        ConnectorStatus {
            state,
            cause: cause.map(str::to_owned),
            since: at(-86_400),
            checked_at: at(-3_600),
            last_success: Some(at(-3_600)),
            lag_seconds: Some(0),
            token_days_left: Some(30),
            pending_writebacks: 0,
            dead_letters: 0,
            failures_in_a_row: 0,
            notified: None,
        }
    }

    const DAY: i64 = 86_400;

    #[test]
    fn a_token_the_watch_saw_expiring_since_the_last_poll_reads_degraded() {
        // Written connected an hour ago; the token watch has since seen 4 days left.
        let s = written(ConnectorState::Connected, None).as_of(None, Some(at(4 * DAY + 60)), at(0));
        assert_eq!((s.state, s.token_days_left), (ConnectorState::Degraded, Some(4)));
        assert_eq!(s.cause.as_deref(), Some("the S1 token expires in 4 days"));
        assert_eq!(
            s.since,
            at(-3_600),
            "it crossed 7 days long before the record was written"
        );
    }

    #[test]
    fn the_token_clause_follows_the_days_and_leaves_the_runs_causes_alone() {
        let s = written(
            ConnectorState::Degraded,
            Some("25 writebacks waiting for S1; the S1 token expires in 6 days"),
        )
        .as_of(None, Some(at(2 * DAY + 60)), at(0));
        assert_eq!(
            s.cause.as_deref(),
            Some("25 writebacks waiting for S1; the S1 token expires in 2 days")
        );
        // A new token: the run's own cause stays, the token's goes.
        let s = s.as_of(None, Some(at(90 * DAY)), at(0));
        assert_eq!(
            (s.state, s.cause.as_deref()),
            (ConnectorState::Degraded, Some("25 writebacks waiting for S1"))
        );
        // Degraded by the token alone, then rotated: connected.
        let s = written(ConnectorState::Degraded, Some("the S1 token expires in 3 days")).as_of(
            None,
            Some(at(90 * DAY)),
            at(0),
        );
        assert_eq!((s.state, s.cause), (ConnectorState::Connected, None));
        assert_eq!(s.since, at(0), "when it was seen rotated");
    }

    #[test]
    fn an_error_keeps_its_cause_whatever_the_token() {
        let s = written(ConnectorState::Error, Some("S1 answered 401")).as_of(None, Some(at(DAY)), at(0));
        assert_eq!(
            (s.state, s.cause.as_deref()),
            (ConnectorState::Error, Some("S1 answered 401"))
        );
        assert_eq!(s.token_days_left, Some(1));
    }
}
