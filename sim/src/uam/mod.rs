//! Unified Alert Management (UAM): `POST /web/api/v2.1/unifiedalerts/graphql`.
//!
//! The simulator answers the GraphQL documents a UAM client sends, on the same port and with the
//! same tokens as the REST endpoints (`Authorization: ApiToken <t>` or `Bearer <t>`).
//!
//! **Every request is checked as a console checks it**: the document is parsed and validated
//! against the vendored schema (`tests/fixtures/s1-uam/schema_subset.graphql`) and its variables
//! are coerced to the operation's declared types, with `apollo-compiler`. A refusal is HTTP 200
//! with `{"errors": [{message, locations, extensions: {code: "GRAPHQL_VALIDATION_FAILED"}}]}` and
//! no `data`; the message names the problem (unknown field, wrong variable type, missing
//! required variable).
//!
//! Served fields:
//! - `alerts(filters | orFilter, sorts | sort, first, after, scope, viewType)`: filters on
//!   `updatedAt`, `createdAt`, `detectedAt` (`dateTimeRange`/`longRange`, epoch **milliseconds**),
//!   and on `id`, `externalId`, `status`, `analystVerdict`, `severity`, `storylineId`, `ticketId`,
//!   `assetAgentUuid`, `detectionProduct` (`stringIn`/`stringEqual`, `isNegated`); sorts by
//!   `updatedAt`, `createdAt`, `detectedAt`, `id`, `name` ASC/DESC, ties broken by `id`; Relay
//!   forward paging (`first` up to 1000, `after` an `endCursor` or edge `cursor`). Cursors are
//!   keyset positions, so alerts changed or added while a walk runs are neither skipped nor
//!   repeated by the walk itself, and a run of alerts sharing one `updatedAt` split by a page
//!   boundary is returned whole across the two pages. A cursor used with other filters, sorts,
//!   scope or view is refused. `before`/`last` are refused (not simulated).
//! - `alert(id)`, `alertNotes(alertId)`, `addAlertNote(alertId, text, type)` (answers every note
//!   of the alert), `alertAvailableActions(filter, actionTypes)` and
//!   `alertTriggerActions(filter, actions)`: `STATUS_UPDATE`, `ANALYST_VERDICT_UPDATE`,
//!   `SET_TICKET_ID`, `ADD_NOTE` (`note` or `formattedNote`), `ASSIGN_USER`. Action ids are
//!   opaque and per console ([`SimControl::rotate_uam_action_ids`](crate::SimControl) changes
//!   them, after which the old ones are refused with `TriggerActionsError`). Per alert the answer
//!   is `success`, `skip` (`NO_CHANGE` when the value is already set) or `failure`
//!   (`ALERT_NOT_FOUND` for an id the filter names that the token cannot see,
//!   `MISSING_PERMISSION` for a read-only token, or what a test set with
//!   [`ActionOutcome`]). A null or empty filter acts on **every alert in scope**, as the schema
//!   says; more alerts than the trigger limit (1000) is a `TriggerActionsError` with
//!   `ActionsErrorLimitPayload`.
//! - Every write (a change of status, verdict, ticket id, or a note) bumps the alert's
//!   `updatedAt` (strictly increasing, millisecond precision).
//!
//! Scope: `scope: {scopeType: ACCOUNT|SITE|GROUP, scopeIds}` narrows to those alerts; naming a
//! scope the token cannot see is a GraphQL error. Without `scope` the token's whole visibility is
//! used. With [`SimControl::set_uam_needs_scoped_token`](crate::SimControl) a tenant-scope
//! token is refused with HTTP 403 (S1's REST error envelope, code 4030010).
//!
//! Rate: every token's requests are counted per one-second window
//! ([`SimStats::uam_peak_per_second`](crate::SimStats)); with
//! [`SimControl::set_uam_rate_limit`](crate::SimControl) (UAM's budget is about 25 per second per
//! token) a request over it is HTTP 429 with `Retry-After: 1`, counted in `uam_throttled`.
//!
//! The world ([`SimConfig::unified_alerts`](crate::SimConfig), default 40) holds alerts from
//! several detection sources ([`DetectionSource`]): every
//! [`SimConfig::unified_threat_every`](crate::SimConfig)-th one (default 3, so a third) is an EDR
//! alert that is the same detection as a threat (`externalId` = the threat id, same agent, SHA-1
//! and storyline); the others rotate through Identity, Cloud and third-party (email) alerts. The
//! first alert is always such an EDR twin and the second an Identity alert. A threat and its twin
//! are one detection: a status or verdict change through either API (or the console) shows on the
//! other and bumps its `updatedAt` (`resolved` <-> `RESOLVED`; a threat verdict maps to its UAM
//! family, `false_positive` -> `FALSE_POSITIVE_UNDEFINED`, keeping a finer UAM verdict of the same
//! family), so a write through one API comes back as a change on the other.
//!
//! Faults, installed like the REST ones with [`FaultRule`](crate::FaultRule) on the path
//! `/unifiedalerts/graphql`: any [`FaultKind`](crate::FaultKind) (`Status` 429 with
//! `Retry-After`, `Slow`, `Truncate`, `Reset`), plus [`FaultKind::GraphqlError`](crate::FaultKind)
//! (HTTP 200, `errors` with `extensions.code`, e.g. `SURFACE_TOO_MANY_REQUESTS`, and `data: null`)
//! and [`FaultKind::PartialData`](crate::FaultKind) (HTTP 200, the first alert node of the page, or
//! the mutation's result, is `null` and `errors` says why: partial data).
//!
//! The Rust API for tests, on [`SimControl`](crate::SimControl): `add_unified_alerts`
//! ([`NewUnifiedAlerts`]), `unified_alert` (the node as served, plus `notes`),
//! `change_unified_alert` ([`UnifiedAlertChange`]: a person's change in the console, or the
//! [`ActionOutcome`] later actions get), `unified_alert_ids`, `uam_actions` (every
//! [`UamAction`] applied, in order), `rotate_uam_action_ids`, `set_uam_needs_scoped_token`, `set_uam_trigger_limit` and
//! `set_uam_rate_limit`;
//! [`Sim::unified_alert_count`](crate::Sim) counts them. The request log records each GraphQL
//! request's body (`query`, `variables`).

mod actions;
pub(crate) mod ctx;
pub(crate) mod exec;
pub(crate) mod filter;
pub(crate) mod render;
pub(crate) mod schema;
pub(crate) mod store;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// Where a unified alert was detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectionSource {
    /// Endpoint (product `EDR`, attack surface `ENDPOINT`): has an agent, a file and a storyline.
    Edr,
    /// Singularity Identity (product `Identity`, attack surface `IDENTITY`): a user account.
    Identity,
    /// Cloud workload / posture (product `CNS`, attack surface `NETWORK`): a cloud resource.
    Cloud,
    /// A third-party feed (product `Email Security`, vendor `Mimecast`, attack surface `EMAIL`).
    ThirdParty,
}

impl DetectionSource {
    pub(crate) fn product(self) -> (&'static str, &'static str) {
        match self {
            Self::Edr => ("EDR", "SentinelOne"),
            Self::Identity => ("Identity", "SentinelOne"),
            Self::Cloud => ("CNS", "SentinelOne"),
            Self::ThirdParty => ("Email Security", "Mimecast"),
        }
    }
    pub(crate) fn surface(self) -> &'static str {
        match self {
            Self::Edr => "ENDPOINT",
            Self::Identity => "IDENTITY",
            Self::Cloud => "NETWORK",
            Self::ThirdParty => "EMAIL",
        }
    }
    pub(crate) fn view(self) -> &'static str {
        match self {
            Self::Edr => "ENDPOINT",
            Self::Identity => "IDENTITY",
            Self::Cloud => "CLOUD",
            Self::ThirdParty => "THIRD_PARTY",
        }
    }
}

/// Unified alerts to add to a running simulator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewUnifiedAlerts {
    /// How many (at least one).
    #[serde(default = "one")]
    pub count: usize,
    pub source: DetectionSource,
    /// The same detection as this threat (EDR only): `externalId` is the threat id and the agent,
    /// SHA-1 and storyline are the threat's.
    #[serde(default)]
    pub threat_id: Option<String>,
    /// EDR without a threat: on this agent (by UUID); a seeded random agent otherwise.
    #[serde(default)]
    pub agent_uuid: Option<String>,
    /// EDR without a threat: this file SHA-1 (empty: fileless); a random one otherwise.
    #[serde(default)]
    pub sha1: Option<String>,
    /// Non-endpoint: the asset (user principal, cloud resource, mailbox); a generated one otherwise.
    #[serde(default)]
    pub asset_name: Option<String>,
    /// The detection rule, which is also the alert's `name`; one of the source's rules otherwise.
    #[serde(default)]
    pub rule: Option<String>,
    /// In this site (by id); the agent's site for EDR, a random one otherwise.
    #[serde(default)]
    pub site_id: Option<String>,
    /// `detectedAt`/`createdAt`; now otherwise. `updatedAt` is always now.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub detected_at: Option<OffsetDateTime>,
}

fn one() -> usize {
    1
}

impl NewUnifiedAlerts {
    /// One alert from `source` with everything else generated.
    pub fn one(source: DetectionSource) -> Self {
        Self {
            count: 1,
            source,
            threat_id: None,
            agent_uuid: None,
            sha1: None,
            asset_name: None,
            rule: None,
            site_id: None,
            detected_at: None,
        }
    }
}

/// What actions on an alert answer, per alert, until changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ActionOutcome {
    /// Applied (or `NO_CHANGE` skip when the value is already set).
    #[default]
    Apply,
    /// `failure` with this `ErrorType` (e.g. `SURFACE_TOO_MANY_REQUESTS`); nothing changes.
    Fail { error_type: String },
    /// `skip` with this `SkipReasonType` (e.g. `SYNC_ISSUE`); nothing changes.
    Skip { skip_type: String },
}

/// A change to a unified alert made by a person in the console, or by a test.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UnifiedAlertChange {
    /// `NEW`, `IN_PROGRESS` or `RESOLVED`.
    #[serde(default)]
    pub status: Option<String>,
    /// An `AnalystVerdict` value, e.g. `FALSE_POSITIVE_BENIGN`.
    #[serde(default)]
    pub analyst_verdict: Option<String>,
    #[serde(default)]
    pub ticket_id: Option<String>,
    /// A note added by a console user.
    #[serde(default)]
    pub note: Option<String>,
    /// What later actions on this alert answer.
    #[serde(default)]
    pub outcome: Option<ActionOutcome>,
    /// Bump `updatedAt` even without another change.
    #[serde(default)]
    pub touch: bool,
}

/// One action an `alertTriggerActions` request ran, with its per-alert results.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UamAction {
    pub action_id: String,
    /// `STATUS_UPDATE`, `ANALYST_VERDICT_UPDATE`, `SET_TICKET_ID`, `ADD_NOTE` or `ASSIGN_USER`.
    pub action_type: String,
    /// The payload as sent (`{"status": {"value": "RESOLVED"}}`, ...).
    pub payload: Value,
    /// Every alert the request's filter selected.
    pub alert_ids: Vec<String>,
    pub success: Vec<String>,
    pub skip: Vec<String>,
    pub failure: Vec<String>,
    /// Whether the request's filter was null or empty (acts on every alert in scope).
    pub unfiltered: bool,
}
