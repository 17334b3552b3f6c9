//! Wire types of the S1 API, named as S1 names them (camelCase on the wire).
//!
//! They are deliberately lenient, because real consoles are: unknown fields are ignored, every
//! optional field accepts `null`, booleans may arrive as strings (`"True"`), enum values S1 adds
//! later decode as `Unknown` instead of failing a whole page, and ids stay strings (they exceed
//! 2^53).

use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;

use crate::ApiToken;

/// S1's response envelope for list endpoints.
#[derive(Debug, Clone, Deserialize)]
pub struct ListEnvelope<T> {
    pub data: T,
    #[serde(default)]
    pub pagination: Option<Pagination>,
}

/// S1's response envelope for single-object endpoints.
#[derive(Debug, Clone, Deserialize)]
pub struct DataEnvelope<T> {
    pub data: T,
}

/// Paging information of a list response.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    /// The cursor of the next page; `null`, `"null"` and `""` all mean "last page".
    #[serde(default)]
    pub next_cursor: Option<String>,
    #[serde(default)]
    pub total_items: Option<u64>,
}

impl Pagination {
    /// The next cursor, or `None` on the last page whichever way S1 spelled it.
    pub fn next(&self) -> Option<&str> {
        match self.next_cursor.as_deref() {
            None | Some("") | Some("null") => None,
            Some(c) => Some(c),
        }
    }
}

macro_rules! lenient_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $wire)] $variant,)+
            /// A value this version does not know; kept so one odd record never fails a page.
            #[serde(other)]
            Unknown,
        }

        impl $name {
            /// The value as S1 spells it on the wire.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)+
                    $name::Unknown => "unknown",
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

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

/// Accepts `true`, `"True"`, `"true"`, `"1"`, `null` and friends.
pub fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Str(String),
        Num(i64),
    }
    Ok(match Option::<B>::deserialize(d)? {
        None => None,
        Some(B::Bool(b)) => Some(b),
        Some(B::Num(n)) => Some(n != 0),
        Some(B::Str(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Some(true),
            "false" | "no" | "0" => Some(false),
            "" => None,
            other => {
                return Err(serde::de::Error::custom(format!(
                    "expected a boolean or a boolean string, got {other:?}"
                )));
            }
        },
    })
}

/// Accepts an RFC 3339 timestamp (with or without fraction), `null` or `""`.
pub fn lenient_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => crate::s1::dto::parse_time(&s)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("invalid timestamp {s:?}: {e}"))),
    }
}

/// Parses S1's timestamps: RFC 3339 with optional microseconds and `Z`.
pub fn parse_time(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
}

/// Formats a timestamp the way S1 writes them: UTC, microseconds, `Z`.
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Accepts a string, a number (some consoles send numeric ids) or `null`; an empty (or blank)
/// string is `None`, as S1 means it.
pub fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum S {
        Str(String),
        Int(i64),
        UInt(u64),
        Float(f64),
        Bool(bool),
    }
    Ok(Option::<S>::deserialize(d)?.and_then(|s| match s {
        // A console sends "" for a field it has no value for: that is no value.
        S::Str(s) if s.trim().is_empty() => None,
        S::Str(s) => Some(s),
        S::Int(n) => Some(n.to_string()),
        S::UInt(n) => Some(n.to_string()),
        S::Float(n) => Some(n.to_string()),
        S::Bool(b) => Some(b.to_string()),
    }))
}

/// `null` as an empty list.
pub fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
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

/// A STAR / cloud-detection alert (`GET /cloud-detection/alerts`). Its id is `alertInfo.alertId`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudAlert {
    pub alert_info: AlertInfo,
    #[serde(default)]
    pub rule_info: Option<RuleInfo>,
    #[serde(default)]
    pub agent_detection_info: Option<AlertAgentInfo>,
    #[serde(default)]
    pub source_process_info: Option<AlertProcessInfo>,
}

/// `alertInfo` of a cloud-detection alert. Statuses come in display casing ("In progress").
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertInfo {
    #[serde(deserialize_with = "lenient_string")]
    pub alert_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub reported_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub incident_status: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub analyst_verdict: Option<String>,
}

/// The STAR rule that raised an alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleInfo {
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub severity: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub description: Option<String>,
}

/// The endpoint of a cloud-detection alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertAgentInfo {
    #[serde(default, deserialize_with = "lenient_string")]
    pub uuid: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub site_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub account_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub os_family: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub machine_type: Option<String>,
}

/// The process that triggered a cloud-detection alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertProcessInfo {
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub commandline: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub file_path: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub file_hash_sha1: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub file_hash_sha256: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub storyline: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub user: Option<String>,
}

/// An endpoint (`GET /agents`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    #[serde(deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub computer_name: Option<String>,
    #[serde(default)]
    pub os_type: Option<String>,
    #[serde(default)]
    pub os_name: Option<String>,
    #[serde(default)]
    pub os_revision: Option<String>,
    #[serde(default)]
    pub machine_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub site_id: Option<String>,
    #[serde(default)]
    pub site_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub account_id: Option<String>,
    #[serde(default)]
    pub account_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub group_id: Option<String>,
    #[serde(default)]
    pub group_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_active: Option<bool>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_decommissioned: Option<bool>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_uninstalled: Option<bool>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_up_to_date: Option<bool>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub infected: Option<bool>,
    #[serde(default)]
    pub network_status: Option<String>,
    #[serde(default)]
    pub agent_version: Option<String>,
    #[serde(default)]
    pub external_ip: Option<String>,
    #[serde(default)]
    pub last_ip_to_mgmt: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub model_name: Option<String>,
    #[serde(default)]
    pub serial_number: Option<String>,
    #[serde(default)]
    pub last_logged_in_user_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub last_active_date: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub registered_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub network_interfaces: Vec<NetworkInterface>,
}

/// A network interface of an agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterface {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub inet: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub inet6: Vec<String>,
    #[serde(default)]
    pub physical: Option<String>,
}

/// A customer account (`GET /accounts`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    #[serde(deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub account_type: Option<String>,
    #[serde(default)]
    pub usage_type: Option<String>,
    #[serde(default)]
    pub active_agents: Option<u64>,
    #[serde(default)]
    pub number_of_sites: Option<u64>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub expiration: Option<OffsetDateTime>,
}

/// A site (`GET /sites`, inside the object-shaped `data.sites`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Site {
    #[serde(deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub account_id: Option<String>,
    #[serde(default)]
    pub account_name: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub site_type: Option<String>,
    #[serde(default)]
    pub active_licenses: Option<u64>,
    #[serde(default)]
    pub total_licenses: Option<u64>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_default: Option<bool>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub expiration: Option<OffsetDateTime>,
}

/// The object-shaped `data` of `GET /sites`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SitesData {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub sites: Vec<Site>,
}

/// `{createdAt, expiresAt}` of an API token.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenDetails {
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub expires_at: Option<OffsetDateTime>,
}

/// A freshly generated API token (`POST /users/generate-api-token`).
#[derive(Clone, Deserialize)]
pub struct GeneratedToken {
    pub token: ApiToken,
}

impl std::fmt::Debug for GeneratedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedToken").field("token", &self.token).finish()
    }
}

/// The caller (`GET /user`): scope, roles and own token dates.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub full_name: Option<String>,
    /// `tenant`, `account` or `site`.
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub can_generate_api_token: Option<bool>,
    #[serde(default)]
    pub api_token: Option<TokenDetails>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub scope_roles: Vec<ScopeRole>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub site_roles: Vec<ScopeRole>,
}

/// A role the caller holds on an account or site.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeRole {
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub role_name: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub roles: Vec<String>,
}

/// A service user (`GET /service-users`) with its token dates.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceUser {
    #[serde(deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub api_token: Option<TokenDetails>,
}

/// `GET /system/status`.
#[derive(Debug, Clone, Deserialize)]
pub struct SystemStatus {
    #[serde(default)]
    pub health: Option<String>,
}

/// `GET /system/info`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemInfo {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub build: Option<String>,
    #[serde(default)]
    pub release: Option<String>,
    #[serde(default)]
    pub patch: Option<String>,
    #[serde(default)]
    pub latest_agent_version: Option<String>,
}

/// `data` of a Unified Alert Management GraphQL `alerts` query.
#[derive(Debug, Clone, Deserialize)]
pub struct UnifiedAlertsData {
    pub alerts: UnifiedAlertConnection,
}

/// A page of unified alerts, Relay-style.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnifiedAlertConnection {
    #[serde(default)]
    pub total_count: Option<u64>,
    #[serde(default)]
    pub page_info: Option<GraphPageInfo>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub edges: Vec<UnifiedAlertEdge>,
}

/// Relay page info.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphPageInfo {
    #[serde(default, deserialize_with = "lenient_bool")]
    pub has_next_page: Option<bool>,
    #[serde(default)]
    pub end_cursor: Option<String>,
}

/// One edge of a unified-alert page.
#[derive(Debug, Clone, Deserialize)]
pub struct UnifiedAlertEdge {
    #[serde(default)]
    pub cursor: Option<String>,
    pub node: UnifiedAlert,
}

/// A unified alert (UAM). For EDR alerts `externalId` is the legacy threat id.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnifiedAlert {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub analyst_verdict: Option<String>,
    #[serde(default)]
    pub classification: Option<String>,
    #[serde(default)]
    pub confidence_level: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub external_id: Option<String>,
    #[serde(default)]
    pub storyline_id: Option<String>,
    #[serde(default)]
    pub ticket_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub detected_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub asset: Option<UnifiedAlertAsset>,
}

/// The asset of a unified alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnifiedAlertAsset {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub agent_uuid: Option<String>,
}
