//! The model and its pure rules: stories and their members (`story.rs`), checkpoints
//! (`checkpoint.rs`), a platform's normalised change and the pending writeback that carries it
//! (`change.rs`, `writeback.rs`), the platform's identity (`platform_kind.rs`); how threats group
//! into stories, what counts as a change, how severe a threat is. Below the store, which keeps
//! these records, and below the platforms.

use serde::Serialize;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::s1::dto::{CloudAlert, ConfidenceLevel, Threat, UnifiedAlert};

pub mod change;
mod checkpoint;
pub mod correlate;
mod ids;
mod platform_kind;
mod story;
pub mod writeback;

pub use checkpoint::{Checkpoint, InFlight, InFlightMember};
pub use correlate::{Decision, correlate};
pub use ids::{AlertKey, MemberId, MemberKind, story_id, story_key_of};
pub use platform_kind::PlatformKind;
pub use story::{Grouping, MemberState, StoryRecord, StoryStatus};
pub use writeback::{PendingChange, PendingWriteback, WritebackStep};

/// Stable bucket of a tenant id among `count` (FNV-1a), the same in every process: the
/// dispatcher's per-tenant delay and backoff minute.
pub fn shard_of(tenant: &str, count: u32) -> u32 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in tenant.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % u64::from(count.max(1))) as u32
}

/// Threats with one key join one story within this long of its first detection.
pub const STORY_WINDOW: Duration = Duration::days(90);

/// A story item holds its members; once the next threat would take it past this many bytes, that
/// threat starts a new story (and alert), so the item stays well below DynamoDB's 400 KB limit
/// however many threats share an endpoint and a hash. Counted in bytes, not members: a member's
/// size depends on its id and what is recorded on it.
pub const STORY_MAX_BYTES: usize = 300 * 1024;

/// Room kept per member for what is recorded on it after it joined (the writeback's written
/// status and verdict), so a full story still fits when every member gets them.
pub const MEMBER_GROWTH_BYTES: usize = 96;

/// What a stored story costs against [`STORY_MAX_BYTES`]: its encoded size plus the growth room
/// of each member.
pub fn story_bytes(story: &crate::domain::StoryRecord) -> usize {
    serde_json::to_vec(story).map_or(usize::MAX / 2, |b| b.len()) + story.members.len() * MEMBER_GROWTH_BYTES
}

/// What one member adds to a story against [`STORY_MAX_BYTES`] (key, record and growth room).
pub fn member_bytes(id: &str, m: &crate::domain::MemberState) -> usize {
    // `"<id>":<record>,`
    id.len() + 4 + serde_json::to_vec(m).map_or(usize::MAX / 4, |b| b.len()) + MEMBER_GROWTH_BYTES
}

/// The grouping key of a threat: endpoint + file hash; for fileless threats (empty hash),
/// endpoint + storyline; without an endpoint, the threat alone.
pub fn story_key(t: &Threat, grouping: Grouping) -> String {
    safe_key(raw_story_key(t, grouping))
}

fn raw_story_key(t: &Threat, grouping: Grouping) -> String {
    if grouping == Grouping::Threat {
        return format!("threat:{}", t.id);
    }
    let storyline = t.threat_info.storyline.as_deref().filter(|s| !s.is_empty());
    match (t.agent_uuid(), t.file_hash(), storyline) {
        (Some(agent), Some(hash), _) => format!("{}:{}", agent.to_ascii_lowercase(), hash.to_ascii_lowercase()),
        (Some(agent), None, Some(sl)) => {
            format!("{}:storyline:{}", agent.to_ascii_lowercase(), sl.to_ascii_lowercase())
        }
        _ => format!("threat:{}", t.id),
    }
}

/// The grouping key of a STAR alert (`alert_id` is its id): endpoint + rule; without either (or
/// when grouping by threat), the alert alone (`alert:<id>`).
pub fn alert_story_key(a: &CloudAlert, alert_id: &str, grouping: Grouping) -> String {
    safe_key(raw_alert_story_key(a, alert_id, grouping))
}

fn raw_alert_story_key(a: &CloudAlert, alert_id: &str, grouping: Grouping) -> String {
    let agent = a
        .agent_detection_info
        .as_ref()
        .and_then(|d| d.uuid.clone())
        .filter(|u| !u.is_empty());
    let rule = a.rule_info.as_ref().and_then(|r| r.id.clone().or(r.name.clone()));
    match (grouping, agent, rule) {
        (Grouping::Story, Some(agent), Some(rule)) => format!(
            "{}:star:{}",
            agent.to_ascii_lowercase(),
            rule.to_ascii_lowercase().replace('#', "")
        ),
        // The alert's member id, as the key of its own story.
        _ => MemberId::star_alert(alert_id).into(),
    }
}

/// The legacy threat a unified alert is the same detection as: an endpoint alert's
/// `externalId`, when it is a threat id (S1's are numbers).
pub fn unified_threat_id(a: &UnifiedAlert) -> Option<&str> {
    a.threat_id()
}

/// The member a unified alert is: the threat it is the same detection as (one member whichever
/// source reads it first), else `uam:<alert id>`.
pub fn unified_member(a: &UnifiedAlert) -> MemberId {
    match unified_threat_id(a) {
        Some(t) => MemberId::threat(t),
        None => MemberId::unified(&a.id),
    }
}

/// The grouping key of a unified alert whose member id is `member` (docs/design.md, Stories):
/// an endpoint alert as a threat (agent UUID + file hash; storyline when fileless), so it
/// shares the threats' stories; any other (identity, cloud...) by its asset and detection rule
/// (`<asset>:uam:<rule>`); without them, or when grouping per threat, the member alone (as the
/// threats source keys that threat, for one that is a threat).
pub fn unified_story_key(a: &UnifiedAlert, member: &MemberId, grouping: Grouping) -> String {
    safe_key(raw_unified_story_key(a, member, grouping))
}

fn raw_unified_story_key(a: &UnifiedAlert, member: &MemberId, grouping: Grouping) -> String {
    let alone = || match member.kind() {
        crate::domain::MemberKind::Threat(t) => format!("threat:{t}"),
        _ => member.to_string(),
    };
    if grouping == Grouping::Threat {
        return alone();
    }
    let asset = a.primary_asset();
    fn nonempty(s: Option<&str>) -> Option<&str> {
        s.map(str::trim).filter(|s| !s.is_empty())
    }
    if a.is_endpoint() {
        let agent = nonempty(asset.and_then(|x| x.agent_uuid.as_deref()));
        let storyline = nonempty(a.storyline_id.as_deref());
        return match (agent, a.file_hash(), storyline) {
            (Some(agent), Some(hash), _) => format!("{}:{}", agent.to_ascii_lowercase(), hash.to_ascii_lowercase()),
            (Some(agent), None, Some(sl)) => {
                format!("{}:storyline:{}", agent.to_ascii_lowercase(), sl.to_ascii_lowercase())
            }
            _ => alone(),
        };
    }
    let asset = nonempty(asset.and_then(|x| x.id.as_deref().or(x.name.as_deref())));
    let analytics = a.analytics.as_ref();
    let rule = nonempty(analytics.and_then(|r| r.uid.as_deref()))
        .or(nonempty(analytics.and_then(|r| r.name.as_deref())))
        .or(nonempty(a.name.as_deref()));
    match (asset, rule) {
        (Some(asset), Some(rule)) => format!(
            "{}:uam:{}",
            asset.to_ascii_lowercase(),
            rule.to_ascii_lowercase().replace('#', "")
        ),
        _ => alone(),
    }
}

/// Marks the content digest of a member read from the unified listing: a threat and its UAM
/// alert show different fields, so digests of different listings are never compared
/// ([`correlate()`]).
pub const UNIFIED_DIGEST: &str = "uam-";

/// Whether `digest` was taken of a unified alert ([`UNIFIED_DIGEST`]).
pub fn is_unified_digest(digest: &str) -> bool {
    digest.starts_with(UNIFIED_DIGEST)
}

/// When the agent detected the threat (falls back to when the console created it).
pub fn detected_at(t: &Threat) -> Option<OffsetDateTime> {
    t.threat_info.identified_at.or(t.threat_info.created_at)
}

/// Digest of what the platform shows of a threat, status and verdict excluded (those are
/// compared separately, to tell our own writeback's echo from a console-side change).
pub fn content_digest(t: &Threat) -> String {
    #[derive(Serialize)]
    struct Shown<'a> {
        name: Option<&'a str>,
        classification: Option<&'a str>,
        confidence: Option<&'a str>,
        mitigation: Option<&'a str>,
        path: Option<&'a str>,
        sha1: Option<&'a str>,
        sha256: Option<&'a str>,
        computer: Option<&'a str>,
        site: Option<&'a str>,
        account: Option<&'a str>,
        ticket: Option<&'a str>,
    }
    let i = &t.threat_info;
    let rt = t.agent_realtime_info.as_ref();
    let shown = Shown {
        name: i.threat_name.as_deref(),
        classification: i.classification.as_deref(),
        confidence: i.confidence_level.map(|c| c.as_str()),
        mitigation: i.mitigation_status.map(|m| m.as_str()),
        path: i.file_path.as_deref(),
        sha1: i.sha1.as_deref(),
        sha256: i.sha256.as_deref(),
        computer: rt.and_then(|a| a.agent_computer_name.as_deref()),
        site: rt.and_then(|a| a.site_id.as_deref()),
        account: rt.and_then(|a| a.account_id.as_deref()),
        ticket: i.external_ticket_id.as_deref(),
    };
    short_digest(&serde_json::to_vec(&shown).unwrap_or_default())
}

/// 128-bit hex digest of some bytes.
pub fn short_digest(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..16])
}

/// Severity of a STAR rule (`Low/Medium/High/Critical`, newer consoles also `Info`).
pub fn severity_of_rule(s: Option<&str>) -> Severity {
    match s.unwrap_or_default().to_ascii_lowercase().as_str() {
        "critical" => Severity::Critical,
        "high" => Severity::High,
        "medium" => Severity::Medium,
        "low" => Severity::Low,
        _ => Severity::Info,
    }
}

/// Platform severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

impl Severity {
    /// The lowercase name platforms see (`critical`, `high`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }
}

/// Default severity from S1's confidence level and classification: ransomware and credential
/// theft at malicious confidence are critical, other malicious detections high, suspicious ones
/// medium; potentially unwanted programs are low whatever the confidence.
pub fn severity(confidence: Option<ConfidenceLevel>, classification: Option<&str>) -> Severity {
    let class = classification.unwrap_or_default().to_ascii_lowercase();
    if class.contains("pua") || class.contains("pup") || class.contains("adware") {
        return Severity::Low;
    }
    match confidence {
        Some(ConfidenceLevel::Malicious) if class.contains("ransom") || class.contains("infostealer") => {
            Severity::Critical
        }
        Some(ConfidenceLevel::Malicious) => Severity::High,
        Some(ConfidenceLevel::Suspicious) => Severity::Medium,
        Some(ConfidenceLevel::NotAvailable) => Severity::Low,
        _ => Severity::Info,
    }
}

/// A deterministic event id: the same change of the same thing always gets the same id, so a
/// redelivery after a crash is recognised by the receiver as the same message. `kind` names what
/// the id is of (a notice's type, say); threat events use [`threat_event_id`].
pub fn event_id(tenant: &str, kind: &str, threat_id: &str, updated_at: Option<OffsetDateTime>) -> String {
    let stamp = updated_at.map(|t| t.unix_timestamp_nanos()).unwrap_or_default();
    let digest = Sha256::digest(format!("{tenant}\n{kind}\n{threat_id}\n{stamp}").as_bytes());
    format!("msg_{}", &hex::encode(digest)[..32])
}

/// The id of the event that tells one version (`updated_at`) of one threat or STAR alert: the
/// same whatever the event is (`threat.created` or `threat.updated`, joining or opening a story)
/// and whichever path sends it, so a version sent once as an update on a page planned against an
/// uncommitted page, and again as new after a crash, reaches a receiver that de-duplicates on
/// `webhook-id` once.
pub fn threat_event_id(tenant: &str, member: &str, updated_at: Option<OffsetDateTime>) -> String {
    event_id(tenant, "threat", member, updated_at)
}

/// Longest grouping key kept as it reads. A key is made of console text (agent ids, hashes,
/// storylines, STAR rule names); longer ones, or ones holding a character a store key cannot
/// (a control character, `#`), become a digest, so no console content can stop a checkpoint.
pub const MAX_READABLE_KEY: usize = 160;

/// `raw` as a grouping key: itself when short and plain, else `digest:<hex>` of it.
fn safe_key(raw: String) -> String {
    let plain =
        !raw.is_empty() && raw.len() <= MAX_READABLE_KEY && !raw.contains('#') && !raw.chars().any(char::is_control);
    if plain {
        raw
    } else {
        format!("digest:{}", short_digest(raw.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threat(json: serde_json::Value) -> Threat {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn story_keys() {
        let file = threat(
            serde_json::json!({"id": "1", "threatInfo": {"sha1": "ABC", "storyline": "S1"}, "agentRealtimeInfo": {"agentUuid": "UUID1"}}),
        );
        let fileless = threat(
            serde_json::json!({"id": "2", "threatInfo": {"sha1": "", "storyline": "S2"}, "agentDetectionInfo": {"agentUuid": "uuid1"}}),
        );
        let sha256 = threat(
            serde_json::json!({"id": "3", "threatInfo": {"sha1": "", "sha256": "F00"}, "agentRealtimeInfo": {"agentUuid": "uuid1"}}),
        );
        let orphan = threat(serde_json::json!({"id": "4", "threatInfo": {"sha1": ""}}));
        for (t, want) in [
            (&file, "uuid1:abc"),
            (&fileless, "uuid1:storyline:s2"),
            (&sha256, "uuid1:f00"),
            (&orphan, "threat:4"),
        ] {
            assert_eq!(story_key(t, Grouping::Story), want, "threat {}", t.id);
        }
        assert_eq!(story_key(&file, Grouping::Threat), "threat:1");
    }

    #[test]
    fn star_alert_keys() {
        let alert = |json: serde_json::Value| -> CloudAlert { serde_json::from_value(json).unwrap() };
        let ruled = alert(
            serde_json::json!({"alertInfo": {"alertId": "7"}, "ruleInfo": {"id": "R#1", "name": "Mimikatz"}, "agentDetectionInfo": {"uuid": "UUID1"}}),
        );
        let named = alert(
            serde_json::json!({"alertInfo": {"alertId": "8"}, "ruleInfo": {"name": "Mimikatz"}, "agentDetectionInfo": {"uuid": "uuid1"}}),
        );
        let agentless = alert(serde_json::json!({"alertInfo": {"alertId": "9"}, "ruleInfo": {"id": "R1"}}));
        assert_eq!(alert_story_key(&ruled, "7", Grouping::Story), "uuid1:star:r1");
        assert_eq!(alert_story_key(&named, "8", Grouping::Story), "uuid1:star:mimikatz");
        assert_eq!(alert_story_key(&agentless, "9", Grouping::Story), "alert:9");
        assert_eq!(alert_story_key(&ruled, "7", Grouping::Threat), "alert:7");
    }

    #[test]
    fn digest_ignores_status_and_verdict_but_not_content() {
        let base = serde_json::json!({"id": "1", "threatInfo": {"sha1": "a", "threatName": "x.exe", "incidentStatus": "unresolved", "analystVerdict": "undefined", "updatedAt": "2026-01-01T00:00:00Z"}});
        let mut status = base.clone();
        status["threatInfo"]["incidentStatus"] = "resolved".into();
        status["threatInfo"]["updatedAt"] = "2026-02-01T00:00:00Z".into();
        let mut renamed = base.clone();
        renamed["threatInfo"]["threatName"] = "y.exe".into();
        let d = content_digest(&threat(base));
        assert_eq!(d, content_digest(&threat(status)));
        assert_ne!(d, content_digest(&threat(renamed)));
    }

    #[test]
    fn severity_table() {
        use ConfidenceLevel::*;
        for (conf, class, want) in [
            (Some(Malicious), Some("Ransomware"), Severity::Critical),
            (Some(Malicious), Some("Infostealer"), Severity::Critical),
            (Some(Malicious), Some("Trojan"), Severity::High),
            (Some(Suspicious), Some("Trojan"), Severity::Medium),
            (Some(Malicious), Some("PUA"), Severity::Low),
            (Some(NotAvailable), None, Severity::Low),
            (None, None, Severity::Info),
        ] {
            assert_eq!(severity(conf, class), want, "{conf:?} {class:?}");
        }
    }

    #[test]
    fn event_ids_are_stable_per_change() {
        let t = OffsetDateTime::UNIX_EPOCH + Duration::seconds(5);
        assert_eq!(
            event_id("a", "threat.created", "1", Some(t)),
            event_id("a", "threat.created", "1", Some(t))
        );
        assert_ne!(
            event_id("a", "token.expiring", "1", Some(t)),
            event_id("a", "token.unauthorized", "1", Some(t))
        );
        assert_eq!(threat_event_id("a", "1", Some(t)), threat_event_id("a", "1", Some(t)));
        assert_ne!(threat_event_id("a", "1", Some(t)), threat_event_id("b", "1", Some(t)));
        assert_ne!(
            threat_event_id("a", "1", Some(t)),
            threat_event_id("a", "1", Some(t + Duration::seconds(1)))
        );
        assert_ne!(
            event_id("a", "threat.updated", "1", Some(t)),
            event_id("a", "threat.updated", "1", Some(t + Duration::seconds(1)))
        );
    }
}
