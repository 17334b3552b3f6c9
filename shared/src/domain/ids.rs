//! The identifiers the bridge makes up, each built in one place and read in one place: a story
//! member's id, a story's id and the platform alert key of a story.

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What a story member is, read from its [`MemberId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberKind<'a> {
    /// An S1 threat, by its id.
    Threat(&'a str),
    /// A STAR (custom rule) alert, by its alert id.
    StarAlert(&'a str),
    /// A Unified Alert Management alert that is not also a legacy threat (an EDR alert whose
    /// `externalId` is a threat id is that threat's member), by its UAM alert id.
    Unified(&'a str),
}

/// A story member's id: the S1 threat id, `alert:<alert id>` for a STAR alert, or
/// `uam:<alert id>` for a unified alert that is not a threat. The story
/// item's members, publish dead letters and the watermark list are keyed by it; stored as the
/// plain string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MemberId(String);

/// The prefix that marks a STAR alert's member id.
const STAR_ALERT: &str = "alert:";
/// The prefix that marks a unified (UAM) alert's member id.
const UNIFIED_ALERT: &str = "uam:";

impl MemberId {
    /// The member id of an S1 threat (S1's threat ids are numbers: never the alert prefix).
    pub fn threat(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The member id of a STAR alert.
    pub fn star_alert(alert_id: &str) -> Self {
        Self(format!("{STAR_ALERT}{alert_id}"))
    }

    /// The member id of a unified (UAM) alert that is not a legacy threat.
    pub fn unified(alert_id: &str) -> Self {
        Self(format!("{UNIFIED_ALERT}{alert_id}"))
    }

    /// What the member is, and its S1 id.
    pub fn kind(&self) -> MemberKind<'_> {
        if let Some(alert) = self.0.strip_prefix(STAR_ALERT) {
            MemberKind::StarAlert(alert)
        } else if let Some(alert) = self.0.strip_prefix(UNIFIED_ALERT) {
            MemberKind::Unified(alert)
        } else {
            MemberKind::Threat(&self.0)
        }
    }

    /// The S1 threat id, when the member is a threat.
    pub fn threat_id(&self) -> Option<&str> {
        match self.kind() {
            MemberKind::Threat(id) => Some(id),
            _ => None,
        }
    }

    /// The S1 alert id, when the member is a STAR alert.
    pub fn star_alert_id(&self) -> Option<&str> {
        match self.kind() {
            MemberKind::StarAlert(id) => Some(id),
            _ => None,
        }
    }

    /// The UAM alert id, when the member is a unified alert (not a threat).
    pub fn unified_alert_id(&self) -> Option<&str> {
        match self.kind() {
            MemberKind::Unified(id) => Some(id),
            _ => None,
        }
    }

    /// The id as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A member id as stored (or as an operator typed it): its kind is read by [`MemberId::kind`].
impl From<String> for MemberId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for MemberId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<MemberId> for String {
    fn from(id: MemberId) -> Self {
        id.0
    }
}

impl Borrow<str> for MemberId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for MemberId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for MemberId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for MemberId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl std::ops::Deref for MemberId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A story's id, `<grouping key>@<window start, unix seconds>`, with `.<n>` added when a full
/// story rolled over to one starting the same second (threats detected together), so each story
/// keeps an id (and so an item and an alert) of its own. `previous` are the key's earlier stories.
pub fn story_id(key: &str, window_start: OffsetDateTime, previous: &[String]) -> String {
    let id = format!("{key}@{}", window_start.unix_timestamp());
    if previous.contains(&id) {
        format!("{id}.{}", previous.len())
    } else {
        id
    }
}

/// The grouping key a story id ([`story_id`]) was made from.
pub fn story_key_of(story_id: &str) -> Option<&str> {
    story_id.rsplit_once('@').map(|(key, _)| key)
}

/// A story's platform alert key, `s1:<console host>:<story id>`: unique per console and story,
/// the same on every run. Platforms echo it back in their webhooks (the generic `alert_key`, a
/// PagerDuty `dedup_key`, a Halo ticket's third-party id), where [`AlertKey::story_id`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AlertKey(String);

impl AlertKey {
    /// The alert key of story `story_id` of the console at `console_url`.
    pub fn new(console_url: &str, story_id: &str) -> Self {
        Self::with_prefix(&Self::prefix(console_url), story_id)
    }

    /// The alert key of story `story_id` under a console's [`prefix`](AlertKey::prefix), for
    /// callers making many keys of one console (parsing its URL once).
    pub fn with_prefix(prefix: &str, story_id: &str) -> Self {
        Self(format!("{prefix}{story_id}"))
    }

    /// The story id an alert key names, when it is one of this console's keys (`None` for a key
    /// a platform made up, or another console's).
    pub fn story_id<'k>(key: &'k str, console_url: &str) -> Option<&'k str> {
        key.strip_prefix(&Self::prefix(console_url))
    }

    /// `s1:<host>:`, what every alert key of the console at `console_url` starts with (the
    /// whole URL stands in for a host it does not have).
    pub fn prefix(console_url: &str) -> String {
        let host = url::Url::parse(console_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| console_url.to_owned());
        format!("s1:{host}:")
    }

    /// The key as platforms see it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for AlertKey {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<AlertKey> for String {
    fn from(k: AlertKey) -> Self {
        k.0
    }
}

impl fmt::Display for AlertKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_say_what_they_are() {
        let threat = MemberId::threat("1500000000000000001");
        let alert = MemberId::star_alert("0195");
        assert_eq!(threat.kind(), MemberKind::Threat("1500000000000000001"));
        assert_eq!(alert.kind(), MemberKind::StarAlert("0195"));
        assert_eq!(alert.as_str(), "alert:0195");
        assert_eq!(
            (threat.threat_id(), threat.star_alert_id()),
            (Some("1500000000000000001"), None)
        );
        assert_eq!((alert.threat_id(), alert.star_alert_id()), (None, Some("0195")));
        let unified = MemberId::unified("019a-ident");
        assert_eq!(unified.as_str(), "uam:019a-ident");
        assert_eq!(unified.kind(), MemberKind::Unified("019a-ident"));
        assert_eq!(
            (unified.threat_id(), unified.star_alert_id(), unified.unified_alert_id()),
            (None, None, Some("019a-ident"))
        );
        assert_eq!(MemberId::from("alert:0195"), alert, "read back as stored");
        assert_eq!(serde_json::to_string(&alert).unwrap(), r#""alert:0195""#);
        assert_eq!(serde_json::from_str::<MemberId>(r#""alert:0195""#).unwrap(), alert);
        assert_eq!(format!("[{alert:<12}]"), "[alert:0195  ]", "padded in tables");
    }

    #[test]
    fn alert_keys_round_trip_per_console() {
        let console = "https://acme.sentinelone.net/";
        let key = AlertKey::new(console, "uuid1:abc@1767225600");
        assert_eq!(key.as_str(), "s1:acme.sentinelone.net:uuid1:abc@1767225600");
        assert_eq!(AlertKey::story_id(&key, console), Some("uuid1:abc@1767225600"));
        assert_eq!(AlertKey::story_id(&key, "https://other.sentinelone.net"), None);
        assert_eq!(AlertKey::story_id("Q2K3ZJ8RYX", console), None, "a platform's own key");
        assert_eq!(serde_json::to_string(&key).unwrap(), format!("{:?}", key.as_str()));
    }

    #[test]
    fn story_ids_are_unique_per_roll_and_name_their_key() {
        let t = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_767_225_600);
        let first = story_id("uuid1:storyline:s2", t, &[]);
        assert_eq!(first, "uuid1:storyline:s2@1767225600");
        let second = story_id("uuid1:storyline:s2", t, std::slice::from_ref(&first));
        assert_eq!(second, "uuid1:storyline:s2@1767225600.1");
        for id in [&first, &second] {
            assert_eq!(story_key_of(id), Some("uuid1:storyline:s2"));
        }
        assert_eq!(story_key_of("no-window"), None);
    }
}
