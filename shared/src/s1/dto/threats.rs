//! Threats (`GET /threats`), their status enums, bulk-action results and notes.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::lenient::{lenient_bool, lenient_enum, lenient_string, lenient_time, null_as_empty};

lenient_enum!(
    /// A threat's incident status.
    IncidentStatus {
        Unresolved = "unresolved",
        InProgress = "in_progress",
        Resolved = "resolved",
    }
);

lenient_enum!(
    /// A threat's analyst verdict.
    AnalystVerdict {
        Undefined = "undefined",
        TruePositive = "true_positive",
        FalsePositive = "false_positive",
        Suspicious = "suspicious",
    }
);

lenient_enum!(
    /// The detection's confidence level.
    ConfidenceLevel {
        Malicious = "malicious",
        Suspicious = "suspicious",
        NotAvailable = "n/a",
    }
);

lenient_enum!(
    /// A threat's mitigation status (the string in `threatInfo`).
    MitigationStatus {
        NotMitigated = "not_mitigated",
        Mitigated = "mitigated",
        MarkedAsBenign = "marked_as_benign",
    }
);

lenient_enum!(
    /// Per-threat outcome of a bulk threat action (`details[].result`).
    ActionResult {
        Updated = "updated",
        NotChanged = "not_changed",
        AlreadySet = "already_set",
        ConditionsNotMet = "conditions_not_met",
        MissingPermissions = "missing_permissions",
    }
);

impl ActionResult {
    /// True when S1 holds the requested state afterwards (changed now or already so).
    pub fn is_applied(&self) -> bool {
        matches!(
            self,
            ActionResult::Updated | ActionResult::AlreadySet | ActionResult::NotChanged
        )
    }
}

/// One EDR threat (`GET /threats`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Threat {
    pub id: String,
    pub threat_info: ThreatInfo,
    #[serde(default)]
    pub agent_realtime_info: Option<AgentRealtimeInfo>,
    #[serde(default)]
    pub agent_detection_info: Option<AgentDetectionInfo>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub indicators: Vec<Indicator>,
}

impl Threat {
    /// The endpoint's stable id: real-time info first, then the snapshot taken at detection.
    pub fn agent_uuid(&self) -> Option<&str> {
        let rt = self.agent_realtime_info.as_ref().and_then(|a| a.agent_uuid.as_deref());
        let det = self.agent_detection_info.as_ref().and_then(|a| a.agent_uuid.as_deref());
        rt.filter(|s| !s.is_empty()).or(det.filter(|s| !s.is_empty()))
    }

    /// The file hash to correlate on: SHA1, else SHA256; `None` for fileless threats.
    pub fn file_hash(&self) -> Option<&str> {
        let i = &self.threat_info;
        i.sha1
            .as_deref()
            .filter(|s| !s.is_empty())
            .or(i.sha256.as_deref().filter(|s| !s.is_empty()))
    }
}

/// `threatInfo` of a threat.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreatInfo {
    #[serde(default, deserialize_with = "lenient_string")]
    pub threat_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub threat_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub classification: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub classification_source: Option<String>,
    #[serde(default)]
    pub confidence_level: Option<ConfidenceLevel>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub sha1: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub sha256: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub md5: Option<String>,
    #[serde(default)]
    pub incident_status: Option<IncidentStatus>,
    #[serde(default)]
    pub analyst_verdict: Option<AnalystVerdict>,
    #[serde(default)]
    pub mitigation_status: Option<MitigationStatus>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<OffsetDateTime>,
    /// Last change in S1; the polling checkpoint.
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub identified_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub file_path: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub storyline: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub collection_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub initiated_by: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_fileless: Option<bool>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub external_ticket_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub detection_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub process_user: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub originator_process: Option<String>,
}

/// `agentRealtimeInfo`: the endpoint as it is now.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRealtimeInfo {
    #[serde(default, deserialize_with = "lenient_string")]
    pub agent_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub agent_uuid: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub agent_computer_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub account_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub account_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub site_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub site_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub group_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub group_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub agent_os_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub agent_os_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub agent_machine_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub agent_is_active: Option<bool>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub agent_is_decommissioned: Option<bool>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub agent_network_status: Option<String>,
}

/// `agentDetectionInfo`: the endpoint as it was at detection (often all null on old threats).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentDetectionInfo {
    #[serde(default, deserialize_with = "lenient_string")]
    pub agent_uuid: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub account_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub account_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub site_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub site_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub agent_ip_v4: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub external_ip: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub agent_last_logged_in_user_name: Option<String>,
}

/// A behavioural indicator with its MITRE tactics.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Indicator {
    #[serde(default, deserialize_with = "lenient_string")]
    pub category: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub tactics: Vec<Tactic>,
}

/// A MITRE ATT&CK tactic of an indicator.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tactic {
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub techniques: Vec<Technique>,
}

/// A MITRE ATT&CK technique.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Technique {
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub link: Option<String>,
}

/// Result of `POST /threats/incident` and `POST /threats/analyst-verdict`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreatActionResult {
    #[serde(default)]
    pub affected: u64,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub details: Vec<ThreatActionDetail>,
}

/// Per-threat outcome of a bulk threat action. HTTP 200 alone proves nothing: check these.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreatActionDetail {
    #[serde(deserialize_with = "lenient_string")]
    pub threat_id: Option<String>,
    #[serde(default)]
    pub result: Option<ActionResult>,
    /// Outcome of the verdict part of an incident update.
    #[serde(default)]
    pub analyst_verdict: Option<ActionResult>,
}

/// `{"affected": N}` results (notes, external ticket ids, alert updates).
#[derive(Debug, Clone, Deserialize)]
pub struct Affected {
    #[serde(default)]
    pub affected: u64,
}

/// A note on a threat.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Note {
    #[serde(deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub creator: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub creator_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub edited: Option<bool>,
}
