//! Alerts: STAR / cloud-detection alerts (`GET /cloud-detection/alerts`) and unified alerts (UAM).

use serde::Deserialize;
use time::OffsetDateTime;

use super::lenient::{lenient_bool, lenient_string, lenient_time, null_as_empty};

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
