//! A story and its members as the poller and the writeback keep them: what groups threats into
//! one platform alert, and what is known of each member threat.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{MemberId, PlatformKind};
use crate::s1::dto::{AnalystVerdict, IncidentStatus};

/// How threats become platform alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grouping {
    /// Threats on one endpoint with one file hash within 90 days share one alert.
    #[default]
    Story,
    /// One alert per threat.
    Threat,
}

/// A story: threats on one endpoint with one file hash (or one storyline) within 90 days of the
/// first detection, shown as one platform alert. One item holds the story and what we know of
/// each member threat, so a page of new threats costs one read and one write per story.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoryRecord {
    /// The grouping key (agent + hash). The item under `STORY#<key>` is the key's current story;
    /// earlier ones are archived under `STORY#<id>`.
    pub key: String,
    /// `<key>@<window start, unix seconds>`: unique per story, part of the platform alert key.
    pub id: String,
    /// First detection in the story; the 90-day window runs from here.
    #[serde(with = "time::serde::rfc3339")]
    pub window_start: OffsetDateTime,
    pub status: StoryStatus,
    /// The platform the story's alert is on (stored as its name, `pagerduty`), set with
    /// `platform_ref` when the platform first answers.
    #[serde(default)]
    pub platform: Option<PlatformKind>,
    #[serde(default)]
    pub platform_ref: Option<String>,
    /// Member threats by id.
    #[serde(default)]
    pub members: std::collections::BTreeMap<MemberId, MemberState>,
    /// Ids of earlier, archived stories of the same key.
    #[serde(default)]
    pub previous: Vec<String>,
}

/// What we know of one threat in a story: enough to tell new from changed from our own echo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberState {
    /// The `updatedAt` last processed; (id, updatedAt) seen again is a duplicate.
    #[serde(with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
    /// Digest of the fields the platform shows, status and verdict excluded.
    pub digest: String,
    /// Incident status and verdict last seen in S1.
    #[serde(default, with = "s1_word")]
    pub status: Option<IncidentStatus>,
    #[serde(default, with = "s1_word")]
    pub verdict: Option<AnalystVerdict>,
    /// A unified alert's own verdict when it says more than `verdict`
    /// (`TRUE_POSITIVE_PUA_ADWARE`), so a change between two positives is news. (Left out when
    /// absent: threats and STAR alerts, and members stored before it was kept.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict_detail: Option<String>,
    /// What we last wrote to S1 for this threat, to recognise our own echo. (Left out of the
    /// stored member when absent, so a large story stays small; older items spell out `null`.)
    #[serde(default, skip_serializing_if = "Option::is_none", with = "s1_word")]
    pub written_status: Option<IncidentStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "s1_word")]
    pub written_verdict: Option<AnalystVerdict>,
    /// Why the platform refused this version (a 4xx); not retried until the threat changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_error: Option<String>,
    /// A newer version of this member was sent and its outcome is unknown (the run was killed,
    /// or its commit failed, after the platform may have taken it): what the platform shows may
    /// not be this state, so any newer version is sent, even one that reads the same.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unsure: bool,
}

/// Whether a story's platform alert is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoryStatus {
    Open,
    Closed,
}

/// A member's S1 status or verdict as stored: the word S1 uses (`resolved`, `false_positive`;
/// `unknown` for one this version does not know), read back as the enum (an unknown word as its
/// `Unknown`).
mod s1_word {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, T: std::fmt::Display>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
        Option::<T>::deserialize(d)
    }
}
