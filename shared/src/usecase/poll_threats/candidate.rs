//! A threat, a STAR alert or a unified (UAM) alert, normalised into what the poller correlates
//! and publishes.

use time::OffsetDateTime;

use crate::domain::MemberState;
use crate::domain::{self, MemberId, Severity};
use crate::platform::ThreatView;
use crate::s1::AlertLink;
use crate::s1::dto::{AnalystVerdict, CloudAlert, IncidentStatus, Threat, UnifiedAlert};
use crate::tenant::TenantConfig;

/// One thing to publish, normalised from a threat or a STAR alert.
pub(super) struct Candidate {
    pub id: MemberId,
    /// Order and de-duplication stamp: a threat's or a unified alert's `updatedAt`, a STAR
    /// alert's `createdAt`.
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
            state: as_read(
                t.threat_info.updated_at,
                domain::content_digest(t),
                t.threat_info.incident_status,
                t.threat_info.analyst_verdict,
            ),
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
            state: as_read(a.alert_info.created_at, digest, view.status, view.verdict),
            severity: domain::severity_of_rule(a.rule_info.as_ref().and_then(|r| r.severity.as_deref())),
            view,
        })
    }

    /// A unified alert: an EDR alert that is also a threat is that threat's member (one member
    /// whichever source reads it first), keyed as the threats source keys it.
    /// `link` is the console's alert link shape, when learnt.
    pub fn from_unified(a: &UnifiedAlert, tenant: &TenantConfig, link: Option<&AlertLink>) -> Self {
        let id = domain::unified_member(a);
        let own = link.and_then(|l| l.of(&a.id));
        let view = ThreatView::from_unified(a, domain::unified_threat_id(a), &tenant.console_url, own);
        // What the platform shows, status and verdict excluded (compared on their own, to tell
        // our writeback's echo), marked as the unified listing's.
        let shown = ThreatView {
            status: None,
            verdict: None,
            verdict_detail: None,
            updated_at: None,
            ..view.clone()
        };
        let digest = format!(
            "{}{}",
            domain::UNIFIED_DIGEST,
            domain::short_digest(&serde_json::to_vec(&shown).unwrap_or_default())
        );
        Self {
            key: domain::unified_story_key(a, &id, tenant.grouping),
            id,
            stamp: a.updated_at,
            detected_at: a.detected_at.or(a.created_at),
            state: MemberState {
                verdict_detail: view.verdict_detail.clone(),
                ..as_read(a.updated_at, digest, view.status, view.verdict)
            },
            severity: domain::severity_of_rule(a.severity.as_deref()),
            view,
        }
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

/// A member's state as a listing reads it: nothing written by us, nothing refused, sure.
fn as_read(
    updated_at: Option<OffsetDateTime>,
    digest: String,
    status: Option<IncidentStatus>,
    verdict: Option<AnalystVerdict>,
) -> MemberState {
    MemberState {
        updated_at,
        digest,
        status,
        verdict,
        verdict_detail: None,
        written_status: None,
        written_verdict: None,
        publish_error: None,
        unsure: false,
    }
}
