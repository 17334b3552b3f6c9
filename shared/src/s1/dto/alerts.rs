//! Alerts: STAR / cloud-detection alerts (`GET /cloud-detection/alerts`) and unified alerts (UAM).

use serde::Deserialize;
use time::OffsetDateTime;

use super::lenient::{lenient_bool, lenient_string, lenient_time, null_as_empty};
use super::threats::{AnalystVerdict, IncidentStatus};

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
///
/// The enums (`status`, `analystVerdict`, `severity`...) stay strings: UAM's members differ
/// between consoles and releases, and the poller maps the ones it knows.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnifiedAlert {
    pub id: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub description: Option<String>,
    /// `LOW`, `MEDIUM`, `HIGH`, `CRITICAL`, `INFO`, `UNKNOWN`.
    #[serde(default, deserialize_with = "lenient_string")]
    pub severity: Option<String>,
    /// `NEW`, `IN_PROGRESS`, `RESOLVED`.
    #[serde(default, deserialize_with = "lenient_string")]
    pub status: Option<String>,
    /// `UNDEFINED`, `TRUE_POSITIVE_*`, `FALSE_POSITIVE_*`.
    #[serde(default, deserialize_with = "lenient_string")]
    pub analyst_verdict: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub classification: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub confidence_level: Option<String>,
    /// Mitigation result, e.g. `MITIGATED`, `UNMITIGATED`.
    #[serde(default, deserialize_with = "lenient_string")]
    pub result: Option<String>,
    /// `ENDPOINT`, `IDENTITY`, `EMAIL`, `NETWORK`.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub attack_surfaces: Vec<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub external_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub storyline_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub ticket_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub note_exists: Option<bool>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub detected_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<OffsetDateTime>,
    /// Last change in UAM; the unified source's checkpoint.
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub first_seen_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub last_seen_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub detection_source: Option<DetectionSource>,
    /// The detection rule (analytic) that raised it.
    #[serde(default)]
    pub analytics: Option<Analytics>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub assets: Vec<UnifiedAlertAsset>,
    /// Deprecated in UAM for `assets`, still served (and in recorded answers).
    #[serde(default)]
    pub asset: Option<UnifiedAlertAsset>,
    #[serde(default)]
    pub detection_time: Option<DetectionTime>,
    #[serde(default)]
    pub process: Option<UnifiedProcess>,
    #[serde(default)]
    pub real_time: Option<RealTime>,
    #[serde(default)]
    pub assignee: Option<Assignee>,
}

impl UnifiedAlert {
    /// The legacy threat this alert is the same detection as: an endpoint alert's `externalId`
    /// when it is a threat id (digits).
    pub fn threat_id(&self) -> Option<&str> {
        self.external_id
            .as_deref()
            .filter(|id| self.is_endpoint() && !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
    }

    /// The alert's main asset: the one marked primary, else the first, else the deprecated
    /// single `asset`.
    pub fn primary_asset(&self) -> Option<&UnifiedAlertAsset> {
        self.assets
            .iter()
            .find(|a| a.primary == Some(true))
            .or_else(|| self.assets.first())
            .or(self.asset.as_ref())
    }

    /// The detection product (`EDR`, `Identity`, `CWS`...), when UAM named one.
    pub fn product(&self) -> Option<&str> {
        self.detection_source.as_ref().and_then(|d| d.product.as_deref())
    }

    /// The hash to correlate on, as a threat's: SHA-1, else SHA-256; `None` when there is no
    /// real one (`N/A`, empty: fileless).
    pub fn file_hash(&self) -> Option<&str> {
        let file = self.process.as_ref()?.file.as_ref()?;
        fn real(h: &Option<String>) -> Option<&str> {
            h.as_deref().filter(|h| !h.is_empty() && *h != "N/A")
        }
        real(&file.sha1).or(real(&file.sha256))
    }

    /// Whether it is an endpoint detection: its attack surfaces name `ENDPOINT`, or its product
    /// is EDR. (An identity alert may well sit on an asset running an agent: not the test.)
    pub fn is_endpoint(&self) -> bool {
        self.attack_surfaces.iter().any(|s| s == "ENDPOINT")
            || self.product().is_some_and(|p| p.eq_ignore_ascii_case("EDR"))
    }
}

/// Where a unified alert was detected.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DetectionSource {
    /// e.g. `EDR`, `Identity`, `CWS` (a free string in UAM).
    #[serde(default, deserialize_with = "lenient_string")]
    pub product: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub vendor: Option<String>,
}

/// The analytic (detection rule) that raised a unified alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Analytics {
    #[serde(default, deserialize_with = "lenient_string")]
    pub uid: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub category: Option<String>,
}

/// The asset of a unified alert (an endpoint, a user, a cloud resource).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnifiedAlertAsset {
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub primary: Option<bool>,
    /// The agent's UUID, for an endpoint.
    #[serde(default, deserialize_with = "lenient_string")]
    pub agent_uuid: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub agent_version: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub os_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub os_version: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub last_logged_in_user: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub category: Option<String>,
}

/// What UAM recorded at detection time.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DetectionTime {
    #[serde(default)]
    pub asset: Option<DetectionAsset>,
    #[serde(default)]
    pub scope: Option<DetectionScope>,
}

/// The asset as it was at detection time (the only place with its IP addresses).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DetectionAsset {
    #[serde(default, deserialize_with = "lenient_string")]
    pub ip_v4: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub domain: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub os_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub os_type: Option<String>,
}

/// The account, site and group at detection time.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DetectionScope {
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
}

/// The process of an endpoint alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnifiedProcess {
    #[serde(default, deserialize_with = "lenient_string")]
    pub cmd_line: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub parent_name: Option<String>,
    #[serde(default)]
    pub file: Option<UnifiedFile>,
}

/// The file of an endpoint alert's process.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnifiedFile {
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub path: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub sha1: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub sha256: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub md5: Option<String>,
}

/// The alert's scope now.
#[derive(Debug, Clone, Deserialize)]
pub struct RealTime {
    #[serde(default)]
    pub scope: Option<RealTimeScope>,
}

/// Account, site and group, each with id and name.
#[derive(Debug, Clone, Deserialize)]
pub struct RealTimeScope {
    #[serde(default)]
    pub account: Option<IdName>,
    #[serde(default)]
    pub site: Option<IdName>,
    #[serde(default)]
    pub group: Option<IdName>,
}

/// An id with its name.
#[derive(Debug, Clone, Deserialize)]
pub struct IdName {
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: Option<String>,
}

/// Who a unified alert is assigned to.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignee {
    #[serde(default, deserialize_with = "lenient_string")]
    pub user_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub full_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub email: Option<String>,
}

/// A UAM alert status as the threat status it stands for (`NEW` is unresolved); `None` for a
/// status this version does not know.
pub fn uam_status(status: &str) -> Option<IncidentStatus> {
    match status {
        "NEW" => Some(IncidentStatus::Unresolved),
        "IN_PROGRESS" => Some(IncidentStatus::InProgress),
        "RESOLVED" => Some(IncidentStatus::Resolved),
        _ => None,
    }
}

/// A unified verdict's own word when the legacy verdict [`uam_verdict`] reads it as says less:
/// every `TRUE_POSITIVE_*` and `FALSE_POSITIVE_*` (`UNDEFINED` and the unknown say nothing more).
pub fn uam_verdict_detail(verdict: &str) -> Option<String> {
    matches!(
        uam_verdict(verdict),
        AnalystVerdict::TruePositive | AnalystVerdict::FalsePositive
    )
    .then(|| verdict.to_owned())
}

/// A UAM verdict as the threat verdict it refines: every `TRUE_POSITIVE_*` a true positive,
/// every `FALSE_POSITIVE_*` a false positive (so the writeback's own verdict, written with a
/// sub-reason, reads back as what it wrote).
pub fn uam_verdict(verdict: &str) -> AnalystVerdict {
    match verdict {
        "UNDEFINED" => AnalystVerdict::Undefined,
        "SUSPICIOUS" => AnalystVerdict::Suspicious,
        v if v.starts_with("TRUE_POSITIVE") => AnalystVerdict::TruePositive,
        v if v.starts_with("FALSE_POSITIVE") => AnalystVerdict::FalsePositive,
        _ => AnalystVerdict::Unknown,
    }
}
