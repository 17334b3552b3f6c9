//! A typed client for the simulator's control API (`/_sim/...`), used by tests and the demo.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::faults::FaultRule;
use crate::uam::{NewUnifiedAlerts, UamAction, UnifiedAlertChange};
use crate::world::{AgentChange, CursorEnd, NewThreats, TokenSpec};

/// One API request the simulator received.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RequestLogEntry {
    pub method: String,
    /// Path after `/web/api/v2.1`.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// The JSON body, for requests that had one.
    pub body: Option<Value>,
    /// Milliseconds since the simulator started.
    pub at_ms: u64,
}

/// Sizes and per-endpoint request counts.
#[derive(Debug, Clone, Deserialize)]
pub struct SimStats {
    pub accounts: usize,
    pub sites: usize,
    pub agents: usize,
    pub threats: usize,
    pub cloud_alerts: usize,
    #[serde(default)]
    pub unified_alerts: usize,
    /// Most UAM requests one token made within any one second.
    #[serde(default)]
    pub uam_peak_per_second: usize,
    /// UAM requests refused with 429 for going over the rate limit.
    #[serde(default)]
    pub uam_throttled: u64,
    /// `"GET /threats"` -> count.
    pub requests: std::collections::HashMap<String, u64>,
}

/// A control-API call failed.
#[derive(Debug, thiserror::Error)]
#[error("simulator control call {what} failed: {source}")]
pub struct ControlError {
    what: &'static str,
    #[source]
    source: reqwest::Error,
}

/// Client of a simulator's control API.
#[derive(Debug, Clone)]
pub struct SimControl {
    base: String,
    http: reqwest::Client,
}

impl SimControl {
    /// For the simulator at `base_url` (its origin).
    pub fn new(base_url: &str) -> Self {
        Self {
            base: base_url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn send(&self, what: &'static str, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ControlError> {
        req.send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|source| ControlError { what, source })
    }

    /// Installs a fault rule.
    ///
    /// # Errors
    /// When the simulator cannot be reached or refuses the rule.
    pub async fn add_fault(&self, rule: &FaultRule) -> Result<(), ControlError> {
        self.send(
            "add_fault",
            self.http.post(format!("{}/_sim/faults", self.base)).json(rule),
        )
        .await
        .map(drop)
    }

    /// Removes every fault rule.
    ///
    /// # Errors
    /// When the simulator cannot be reached.
    pub async fn clear_faults(&self) -> Result<(), ControlError> {
        self.send("clear_faults", self.http.delete(format!("{}/_sim/faults", self.base)))
            .await
            .map(drop)
    }

    /// Adds (or replaces) an accepted token.
    ///
    /// # Errors
    /// When the simulator cannot be reached.
    pub async fn add_token(&self, spec: &TokenSpec) -> Result<(), ControlError> {
        self.send(
            "add_token",
            self.http.post(format!("{}/_sim/tokens", self.base)).json(spec),
        )
        .await
        .map(drop)
    }

    /// Chooses how last pages spell "no next cursor".
    ///
    /// # Errors
    /// When the simulator cannot be reached.
    pub async fn set_cursor_end(&self, end: CursorEnd) -> Result<(), ControlError> {
        let body = json!({ "cursor_end": end });
        self.send(
            "set_cursor_end",
            self.http.post(format!("{}/_sim/settings", self.base)).json(&body),
        )
        .await
        .map(drop)
    }

    /// Every API request received so far (capped at the newest 100,000).
    ///
    /// # Errors
    /// When the simulator cannot be reached.
    pub async fn requests(&self) -> Result<Vec<RequestLogEntry>, ControlError> {
        let r = self
            .send("requests", self.http.get(format!("{}/_sim/requests", self.base)))
            .await?;
        r.json().await.map_err(|source| ControlError {
            what: "requests",
            source,
        })
    }

    /// Forgets the request log and counters.
    ///
    /// # Errors
    /// When the simulator cannot be reached.
    pub async fn clear_requests(&self) -> Result<(), ControlError> {
        self.send(
            "clear_requests",
            self.http.delete(format!("{}/_sim/requests", self.base)),
        )
        .await
        .map(drop)
    }

    /// Sizes and request counts.
    ///
    /// # Errors
    /// When the simulator cannot be reached.
    pub async fn stats(&self) -> Result<SimStats, ControlError> {
        let r = self
            .send("stats", self.http.get(format!("{}/_sim/stats", self.base)))
            .await?;
        r.json().await.map_err(|source| ControlError { what: "stats", source })
    }

    /// A threat as S1 would render it, plus its `notes`.
    ///
    /// # Errors
    /// When the simulator cannot be reached or has no such threat.
    pub async fn threat(&self, id: &str) -> Result<Value, ControlError> {
        let r = self
            .send("threat", self.http.get(format!("{}/_sim/threats/{id}", self.base)))
            .await?;
        r.json().await.map_err(|source| ControlError { what: "threat", source })
    }

    /// Changes a threat as a person in the S1 console would (bumps `updatedAt`).
    ///
    /// # Errors
    /// When the simulator cannot be reached or has no such threat.
    pub async fn console_update(
        &self,
        id: &str,
        incident_status: Option<&str>,
        analyst_verdict: Option<&str>,
    ) -> Result<(), ControlError> {
        let body = json!({ "incidentStatus": incident_status, "analystVerdict": analyst_verdict });
        self.send(
            "console_update",
            self.http
                .post(format!("{}/_sim/threats/{id}/console", self.base))
                .json(&body),
        )
        .await
        .map(drop)
    }

    /// Adds threats as if agents just detected them; returns their ids.
    ///
    /// # Errors
    /// When the simulator cannot be reached or refuses the spec (unknown agent).
    pub async fn add_threats(&self, spec: &NewThreats) -> Result<Vec<String>, ControlError> {
        let r = self
            .send(
                "add_threats",
                self.http.post(format!("{}/_sim/threats", self.base)).json(spec),
            )
            .await?;
        r.json().await.map_err(|source| ControlError {
            what: "add_threats",
            source,
        })
    }

    /// Changes an agent (rename, move, decommission, delete) as the console would.
    ///
    /// # Errors
    /// When the simulator cannot be reached or has no such agent or site.
    pub async fn change_agent(&self, uuid: &str, change: &AgentChange) -> Result<(), ControlError> {
        self.send(
            "change_agent",
            self.http.post(format!("{}/_sim/agents/{uuid}", self.base)).json(change),
        )
        .await
        .map(drop)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        path: &str,
    ) -> Result<T, ControlError> {
        let r = self.send(what, self.http.get(format!("{}{path}", self.base))).await?;
        r.json().await.map_err(|source| ControlError { what, source })
    }

    /// Adds unified (UAM) alerts as if detection sources just raised them; returns their ids.
    ///
    /// # Errors
    /// When the simulator cannot be reached or refuses the spec (unknown threat, agent or site).
    pub async fn add_unified_alerts(&self, spec: &NewUnifiedAlerts) -> Result<Vec<String>, ControlError> {
        let r = self
            .send(
                "add_unified_alerts",
                self.http.post(format!("{}/_sim/uam/alerts", self.base)).json(spec),
            )
            .await?;
        r.json().await.map_err(|source| ControlError {
            what: "add_unified_alerts",
            source,
        })
    }

    /// Every unified alert as `{id, externalId, source}`, in the order they were made.
    ///
    /// # Errors
    /// When the simulator cannot be reached.
    pub async fn unified_alert_ids(&self) -> Result<Vec<Value>, ControlError> {
        self.get_json("unified_alert_ids", "/_sim/uam/alerts").await
    }

    /// A unified alert as UAM serves it (every field), plus its `notes`.
    ///
    /// # Errors
    /// When the simulator cannot be reached or has no such alert.
    pub async fn unified_alert(&self, id: &str) -> Result<Value, ControlError> {
        self.get_json("unified_alert", &format!("/_sim/uam/alerts/{id}")).await
    }

    /// Changes a unified alert as a person in the console would (bumps `updatedAt`), or sets what
    /// later actions on it answer.
    ///
    /// # Errors
    /// When the simulator cannot be reached, has no such alert or refuses a value.
    pub async fn change_unified_alert(&self, id: &str, change: &UnifiedAlertChange) -> Result<(), ControlError> {
        self.send(
            "change_unified_alert",
            self.http
                .post(format!("{}/_sim/uam/alerts/{id}", self.base))
                .json(change),
        )
        .await
        .map(drop)
    }

    /// Every action `alertTriggerActions` ran, in order, with per-alert results.
    ///
    /// # Errors
    /// When the simulator cannot be reached.
    pub async fn uam_actions(&self) -> Result<Vec<UamAction>, ControlError> {
        self.get_json("uam_actions", "/_sim/uam/actions").await
    }

    /// Gives every UAM action a new id; the old ids are refused from now on.
    ///
    /// # Errors
    /// When the simulator cannot be reached.
    pub async fn rotate_uam_action_ids(&self) -> Result<(), ControlError> {
        self.send(
            "rotate_uam_action_ids",
            self.http.post(format!("{}/_sim/uam/actions/rotate", self.base)),
        )
        .await
        .map(drop)
    }

    /// Whether UAM refuses tenant-scope (global) tokens with HTTP 403.
    ///
    /// # Errors
    /// When the simulator cannot be reached.
    pub async fn set_uam_needs_scoped_token(&self, on: bool) -> Result<(), ControlError> {
        self.uam_settings(json!({ "needs_scoped_token": on })).await
    }

    /// The most alerts one `alertTriggerActions` may act on (1000 by default).
    ///
    /// # Errors
    /// When the simulator cannot be reached.
    pub async fn set_uam_trigger_limit(&self, limit: usize) -> Result<(), ControlError> {
        self.uam_settings(json!({ "trigger_limit": limit })).await
    }

    /// UAM requests one token may make per second before HTTP 429 (`Retry-After: 1`); `None`
    /// (the default) lifts the limit. [`SimStats::uam_peak_per_second`] is counted either way.
    ///
    /// # Errors
    /// When the simulator cannot be reached.
    pub async fn set_uam_rate_limit(&self, per_second: Option<u32>) -> Result<(), ControlError> {
        self.uam_settings(json!({ "rate_limit": per_second.unwrap_or(0) }))
            .await
    }

    async fn uam_settings(&self, body: Value) -> Result<(), ControlError> {
        self.send(
            "uam_settings",
            self.http.post(format!("{}/_sim/uam/settings", self.base)).json(&body),
        )
        .await
        .map(drop)
    }
}
