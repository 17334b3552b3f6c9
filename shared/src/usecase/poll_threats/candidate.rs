//! A threat or a STAR alert, normalised into what the poller correlates and publishes.

use time::OffsetDateTime;

use crate::domain::MemberState;
use crate::domain::{self, MemberId, Severity};
use crate::platform::ThreatView;
use crate::s1::dto::{CloudAlert, Threat};
use crate::tenant::TenantConfig;

/// One thing to publish, normalised from a threat or a STAR alert.
pub(super) struct Candidate {
    pub id: MemberId,
    /// Order and de-duplication stamp: a threat's `updatedAt`, an alert's `createdAt`.
    pub stamp: Option<OffsetDateTime>,
    /// The grouping key of its story.
    pub key: String,
    pub detected_at: Option<OffsetDateTime>,
    /// What S1 says of it now.
    pub state: MemberState,
    pub view: ThreatView,
    pub severity: Severity,
}

impl Candidate {
    pub fn from_threat(t: &Threat, tenant: &TenantConfig) -> Self {
        Self {
            id: MemberId::threat(t.id.clone()),
            stamp: t.threat_info.updated_at,
            key: domain::story_key(t, tenant.grouping),
            detected_at: domain::detected_at(t),
            state: MemberState {
                updated_at: t.threat_info.updated_at,
                digest: domain::content_digest(t),
                status: t.threat_info.incident_status,
                verdict: t.threat_info.analyst_verdict,
                written_status: None,
                written_verdict: None,
                publish_error: None,
                unsure: false,
            },
            view: ThreatView::from_threat(t, &tenant.console_url),
            severity: domain::severity(t.threat_info.confidence_level, t.threat_info.classification.as_deref()),
        }
    }

    pub fn from_alert(a: &CloudAlert, tenant: &TenantConfig) -> Option<Self> {
        let alert_id = a.alert_info.alert_id.clone()?;
        let view = ThreatView::from_cloud_alert(a, &tenant.console_url);
        let key = domain::alert_story_key(a, &alert_id, tenant.grouping);
        let digest = domain::short_digest(&serde_json::to_vec(&view).unwrap_or_default());
        Some(Self {
            id: MemberId::star_alert(&alert_id),
            stamp: a.alert_info.created_at,
            key,
            detected_at: a.alert_info.created_at,
            state: MemberState {
                updated_at: a.alert_info.created_at,
                digest,
                status: view.status,
                verdict: view.verdict,
                written_status: None,
                written_verdict: None,
                publish_error: None,
                unsure: false,
            },
            severity: domain::severity_of_rule(a.rule_info.as_ref().and_then(|r| r.severity.as_deref())),
            view,
        })
    }

    /// The correlation's view of it.
    pub fn sighting(&self) -> domain::correlate::Sighting<'_> {
        domain::correlate::Sighting {
            id: &self.id,
            key: &self.key,
            state: &self.state,
            detected_at: self.detected_at.or(self.stamp),
        }
    }
}
