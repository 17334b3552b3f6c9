//! What the poller tells a platform about a threat: the event, the threat and story as every
//! adapter renders them, and the platform's receipt.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::{AlertKey, Severity};
use crate::s1::dto::{AnalystVerdict, IncidentStatus, Threat};

/// What happened in S1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A threat seen for the first time.
    #[serde(rename = "threat.created")]
    Created,
    /// A known threat changed in S1 (content, or a status changed in the console).
    #[serde(rename = "threat.updated")]
    Updated,
}

impl EventKind {
    /// The event type on the wire (`threat.created`, `threat.updated`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "threat.created",
            EventKind::Updated => "threat.updated",
        }
    }
}

/// An S1 account or site as the platform sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Scope {
    pub external_id: Option<String>,
    pub name: Option<String>,
}

/// The endpoint a threat is on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AssetView {
    pub external_id: Option<String>,
    pub hostname: Option<String>,
    pub os: Option<String>,
    pub ip: Vec<String>,
}

/// The file a threat is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FileView {
    pub path: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
}

/// A threat as every adapter renders it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ThreatView {
    pub threat_id: String,
    pub title: String,
    pub status: Option<IncidentStatus>,
    pub verdict: Option<AnalystVerdict>,
    pub confidence: Option<String>,
    pub classification: Option<String>,
    pub console_url: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub detected_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
    pub customer: Scope,
    pub site: Scope,
    pub asset: AssetView,
    pub file: FileView,
    /// The listing it was read from: `threats`, `star` or `unified` (left out of events
    /// recorded before there were sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The detection product: UAM's `detectionSource.product` (`EDR`, `Identity`, `CWS`...);
    /// `EDR` for a threat, `STAR` for a STAR alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// A unified alert's own verdict when it says more than `verdict` (UAM's
    /// `TRUE_POSITIVE_PUA_ADWARE` reads as `true_positive`): two positives of different kinds
    /// are different news to the SOC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict_detail: Option<String>,
}

impl ThreatView {
    /// Builds the view of an S1 threat; `console` is the console origin.
    pub fn from_threat(t: &Threat, console: &str) -> Self {
        let i = &t.threat_info;
        let rt = t.agent_realtime_info.as_ref();
        let det = t.agent_detection_info.as_ref();
        // The realtime info first, the detection-time copy when it lacks the field.
        let either = |r: Option<&Option<String>>, d: Option<&Option<String>>| {
            r.and_then(Option::as_ref).or(d.and_then(Option::as_ref)).cloned()
        };
        let host = rt.and_then(|r| r.agent_computer_name.clone());
        let title = format!(
            "{} on {}",
            i.threat_name.as_deref().unwrap_or("S1 threat"),
            host.as_deref().unwrap_or("an unknown endpoint")
        );
        Self {
            threat_id: t.id.clone(),
            title,
            status: i.incident_status,
            verdict: i.analyst_verdict,
            confidence: i.confidence_level.map(|c| c.as_str().to_owned()),
            classification: i.classification.clone(),
            console_url: format!("{}/incidents/threats/{}/overview", console.trim_end_matches('/'), t.id),
            detected_at: crate::domain::detected_at(t),
            updated_at: i.updated_at,
            customer: Scope {
                external_id: either(rt.map(|r| &r.account_id), det.map(|d| &d.account_id)),
                name: either(rt.map(|r| &r.account_name), det.map(|d| &d.account_name)),
            },
            site: Scope {
                external_id: either(rt.map(|r| &r.site_id), det.map(|d| &d.site_id)),
                name: either(rt.map(|r| &r.site_name), det.map(|d| &d.site_name)),
            },
            asset: AssetView {
                external_id: t.agent_uuid().map(str::to_owned),
                hostname: host,
                os: rt.and_then(|r| r.agent_os_name.as_ref().or(r.agent_os_type.as_ref()).cloned()),
                ip: det.and_then(|d| d.agent_ip_v4.clone()).into_iter().collect(),
            },
            file: FileView {
                path: i.file_path.clone().filter(|p| !p.is_empty()),
                sha1: i.sha1.clone().filter(|s| !s.is_empty()),
                sha256: i.sha256.clone().filter(|s| !s.is_empty()),
            },
            source: Some("threats".into()),
            product: Some("EDR".into()),
            verdict_detail: None,
        }
    }

    /// Builds the view of a unified (UAM) alert. `threat_id` is the legacy threat it is the
    /// same detection as (its `externalId`), when it is one: the view then names the threat, as
    /// the threats source would. `link` is the alert's own link in the console, when known.
    pub fn from_unified(
        a: &crate::s1::dto::UnifiedAlert,
        threat_id: Option<&str>,
        console: &str,
        link: Option<String>,
    ) -> Self {
        let asset = a.primary_asset();
        let at_detection = a.detection_time.as_ref();
        let scope_then = at_detection.and_then(|d| d.scope.as_ref());
        let scope_now = a.real_time.as_ref().and_then(|r| r.scope.as_ref());
        let id_name =
            |now: Option<&crate::s1::dto::IdName>, id_then: &Option<String>, name_then: &Option<String>| Scope {
                external_id: now.and_then(|s| s.id.clone()).or(id_then.clone()),
                name: now.and_then(|s| s.name.clone()).or(name_then.clone()),
            };
        let host = asset.and_then(|x| x.name.clone());
        let product = a.product().map(str::to_owned);
        let name = a.name.as_deref().unwrap_or("S1 alert");
        let on = host.as_deref().unwrap_or("an unknown asset");
        let title = match product.as_deref() {
            // An endpoint detection reads as a threat does.
            Some(p) if !p.eq_ignore_ascii_case("EDR") => format!("{p}: {name} on {on}"),
            _ => format!("{name} on {on}"),
        };
        let console = console.trim_end_matches('/');
        let file = a.process.as_ref().and_then(|p| p.file.as_ref());
        let real = |v: Option<&String>| v.filter(|s| !s.is_empty() && s.as_str() != "N/A").cloned();
        Self {
            threat_id: threat_id.unwrap_or(&a.id).to_owned(),
            title,
            status: a.status.as_deref().and_then(crate::s1::dto::uam_status),
            verdict: a.analyst_verdict.as_deref().map(crate::s1::dto::uam_verdict),
            confidence: a.confidence_level.as_ref().map(|c| c.to_ascii_lowercase()),
            classification: a.classification.clone(),
            console_url: unified_link(a, threat_id, console, link),
            detected_at: a.detected_at.or(a.created_at),
            updated_at: a.updated_at,
            customer: id_name(
                scope_now.and_then(|s| s.account.as_ref()),
                &scope_then.and_then(|s| s.account_id.clone()),
                &scope_then.and_then(|s| s.account_name.clone()),
            ),
            site: id_name(
                scope_now.and_then(|s| s.site.as_ref()),
                &scope_then.and_then(|s| s.site_id.clone()),
                &scope_then.and_then(|s| s.site_name.clone()),
            ),
            asset: AssetView {
                external_id: asset.and_then(|x| x.agent_uuid.clone().or(x.id.clone())),
                hostname: host,
                os: asset.and_then(|x| x.os_type.clone()).or(at_detection
                    .and_then(|d| d.asset.as_ref())
                    .and_then(|d| d.os_name.clone())),
                ip: at_detection
                    .and_then(|d| d.asset.as_ref())
                    .and_then(|d| d.ip_v4.clone())
                    .into_iter()
                    .collect(),
            },
            file: FileView {
                path: real(file.and_then(|f| f.path.as_ref())),
                sha1: real(file.and_then(|f| f.sha1.as_ref())),
                sha256: real(file.and_then(|f| f.sha256.as_ref())),
            },
            source: Some("unified".into()),
            product,
            verdict_detail: a
                .analyst_verdict
                .as_deref()
                .and_then(crate::s1::dto::uam_verdict_detail),
        }
    }
}

impl ThreatView {
    /// Builds the view of a STAR / cloud-detection alert. Its statuses come in display casing
    /// ("In progress") and are normalised to the threat spelling (`in_progress`).
    pub fn from_cloud_alert(a: &crate::s1::dto::CloudAlert, console: &str) -> Self {
        fn norm<T: serde::de::DeserializeOwned>(s: &Option<String>) -> Option<T> {
            let v = s.as_ref()?.trim().to_ascii_lowercase().replace(' ', "_");
            serde_json::from_value(serde_json::Value::String(v)).ok()
        }
        let det = a.agent_detection_info.clone();
        let rule = a.rule_info.clone();
        let process = a.source_process_info.clone();
        let id = a.alert_info.alert_id.clone().unwrap_or_default();
        let host = det.as_ref().and_then(|d| d.name.clone());
        Self {
            threat_id: id.clone(),
            title: format!(
                "STAR: {} on {}",
                rule.as_ref().and_then(|r| r.name.as_deref()).unwrap_or("custom rule"),
                host.as_deref().unwrap_or("an unknown endpoint")
            ),
            status: norm(&a.alert_info.incident_status),
            verdict: norm(&a.alert_info.analyst_verdict),
            confidence: None,
            classification: Some("STAR rule".into()),
            console_url: format!("{}/incidents/alerts/{id}", console.trim_end_matches('/')),
            detected_at: a.alert_info.created_at,
            updated_at: a.alert_info.updated_at.or(a.alert_info.created_at),
            customer: Scope {
                external_id: det.as_ref().and_then(|d| d.account_id.clone()),
                name: None,
            },
            site: Scope {
                external_id: det.as_ref().and_then(|d| d.site_id.clone()),
                name: None,
            },
            asset: AssetView {
                external_id: det.as_ref().and_then(|d| d.uuid.clone()),
                hostname: host,
                os: det.as_ref().and_then(|d| d.os_family.clone()),
                ip: vec![],
            },
            file: FileView {
                path: process.as_ref().and_then(|p| p.file_path.clone()),
                sha1: process.as_ref().and_then(|p| p.file_hash_sha1.clone()),
                sha256: process.as_ref().and_then(|p| p.file_hash_sha256.clone()),
            },
            source: Some("star".into()),
            product: Some("STAR".into()),
            verdict_detail: None,
        }
    }
}

/// Where the SOC opens a unified alert: the threat page for an alert that is a threat (a page
/// every console has, and the one the threats source links), else the alert's own link (learnt
/// from UAM's `selfLink`), else the unified alerts page as we guess it (UAM's listing carries
/// no link).
fn unified_link(
    a: &crate::s1::dto::UnifiedAlert,
    threat_id: Option<&str>,
    console: &str,
    link: Option<String>,
) -> String {
    let console = console.trim_end_matches('/');
    match (threat_id, link) {
        (Some(t), _) => format!("{console}/incidents/threats/{t}/overview"),
        (None, Some(own)) => own,
        (None, None) => format!("{console}/incidents/unified-alerts/{}", a.id),
    }
}

/// The story (platform alert) an event belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoryView {
    pub id: String,
    /// The alert's stable key; the platform echoes it back in webhooks.
    pub alert_key: AlertKey,
    pub threat_count: usize,
    /// This event opens a new alert (else it updates the story's existing one).
    pub new_alert: bool,
    /// This event reopens the story's closed alert.
    pub reopened: bool,
    /// Every threat of the story is resolved in S1, counting this event's.
    pub all_resolved: bool,
    /// The platform's own id for the story's alert or ticket, once it has one (a Halo ticket
    /// id). Not part of the generic event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_ref: Option<String>,
}

/// One thing to tell the platform. (Serialisable so a refused one can be kept as a publish dead
/// letter and sent again as it was.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreatEvent {
    pub kind: EventKind,
    /// Stable per (threat, change): the receiver's idempotency key.
    pub id: String,
    pub tenant: String,
    pub severity: Severity,
    pub threat: ThreatView,
    pub story: StoryView,
}

/// What the platform answered.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PublishReceipt {
    /// The platform's own id for the alert, when it has one.
    pub platform_ref: Option<String>,
}
