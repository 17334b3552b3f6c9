//! The typed records the [`Store`](super::Store) reads and writes (the tenant's configuration is
//! in [`tenant`](super::tenant)), and the values its operations answer with.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::domain::MemberId;
use crate::platform::ThreatEvent;
use crate::s1::dto::{AnalystVerdict, IncidentStatus};

/// Polling watermark: the newest `updatedAt` handled and ids already handled at exactly that
/// instant (`updatedAt__gte` returns them again). The id list is a shortcut, capped in size by the
/// poller: an id at the watermark that is not listed is recognised through its story instead.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    #[serde(with = "time::serde::rfc3339::option")]
    pub watermark: Option<OffsetDateTime>,
    #[serde(default)]
    pub ids_at_watermark: Vec<String>,
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
    #[serde(default)]
    pub platform: Option<String>,
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

/// The updates a page is about to send, written before it sends them (a write-ahead record): if
/// the page is never committed (a kill, a failed commit), the next run marks each member
/// [`unsure`](MemberState::unsure) whose story still holds an older version, so the platform is
/// never left on a version the poller did not record. One per source and slot (two slots: at
/// most two pages are uncommitted at once); a record whose page's checkpoint the stored one has
/// passed is spent and ignored, so none is ever deleted.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InFlight {
    /// The newest stamp of the page, and the id of a candidate carrying it: the page is
    /// committed once the stored checkpoint covers that candidate.
    #[serde(with = "time::serde::rfc3339::option")]
    pub watermark: Option<OffsetDateTime>,
    pub last: String,
    /// Each update's story (item name), member and version.
    pub members: Vec<InFlightMember>,
}

/// One update of an [`InFlight`] page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InFlightMember {
    pub story: String,
    pub id: MemberId,
    #[serde(with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
}

impl InFlight {
    /// Whether `stored` (the source's checkpoint as stored) covers this page, so the page was
    /// committed and this record is spent. (A page's last id may not be listed at the watermark
    /// when the list is full: the record is then taken as not spent, which only costs a look at
    /// its stories, whose members hold the versions sent.)
    pub fn committed_by(&self, stored: Option<&Checkpoint>) -> bool {
        let Some(page) = self.watermark else { return true };
        match stored.and_then(|c| c.watermark) {
            Some(w) if w > page => true,
            Some(w) if w == page => stored.is_some_and(|c| c.ids_at_watermark.contains(&self.last)),
            _ => false,
        }
    }
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

/// Whether a story's platform alert is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoryStatus {
    Open,
    Closed,
}

/// A record with the version it was read at, for optimistic writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

/// What kind of synced object an [`AssetRecord`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetKind {
    Customer,
    Site,
    Asset,
}

impl AssetKind {
    /// The sort-key prefix of this kind's items.
    pub(super) fn prefix(self) -> &'static str {
        match self {
            AssetKind::Customer => "CUSTOMER#",
            AssetKind::Site => "SITE#",
            AssetKind::Asset => "ASSET#",
        }
    }
}

/// Snapshot of one synced account, site or agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetRecord {
    pub kind: AssetKind,
    /// Account id, site id or agent UUID.
    pub id: String,
    pub digest: String,
    #[serde(default)]
    pub platform_ref: Option<String>,
    pub active: bool,
}

/// Token-expiry state: what we alerted already.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TokenState {
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub alerted_thresholds: Vec<i64>,
    #[serde(default)]
    pub unauthorized_alerted: bool,
}

/// A change still to be written to S1, or (when `dead`) one that ran out of attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingWriteback {
    pub id: String,
    pub alert_key: String,
    pub change: super::PendingChange,
    pub attempts: u32,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub next_attempt_at: OffsetDateTime,
}

/// An event the platform refused for good (400, 409, 413, 422: about that event, not the
/// endpoint), kept per tenant under the refused threat's id so an operator can list it and have
/// it sent again (`s1-bridge dead-letters replay`). One per threat: a later refusal of the same
/// threat replaces it, a later successful publish of it retires it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishDeadLetter {
    /// The threat id (or `alert:<id>` for a STAR alert).
    pub id: MemberId,
    /// `threat.created` or `threat.updated`.
    pub kind: String,
    pub alert_key: String,
    /// The event's webhook id: a replay carries the same one.
    pub event_id: String,
    /// The threat's `updatedAt` the event was about.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
    /// The platform's answer.
    pub status: u16,
    pub error: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Times it was sent and refused.
    #[serde(default)]
    pub attempts: u32,
    /// An operator asked for it to be sent again: the next poll run does, once.
    #[serde(default)]
    pub replay_requested: bool,
    /// The event as it was refused, to be sent again as it was.
    pub event: ThreatEvent,
}

/// One call made to S1, for the outbound request log. Never holds a token or secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboundRequest {
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub status: Option<u16>,
    /// Per-threat outcome summary, e.g. `updated=3 already_set=1`.
    #[serde(default)]
    pub result: Option<String>,
    pub latency_ms: u64,
    pub attempt: u32,
    #[serde(default)]
    pub error: Option<String>,
}

/// What became of a webhook's change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    /// Stored, to be applied.
    Accepted,
    /// The event id was seen before: a replay.
    Duplicate,
    /// The same note (alert, actor, text) was accepted within the dedupe window.
    DuplicateNote,
}

/// Who holds a pending writeback or an alert's ordering lock, and until when (epoch ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub owner: String,
    pub until_ms: i64,
}

/// `t` in epoch milliseconds, as lease and claim expiries are stored.
pub(super) fn epoch_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

impl Claim {
    /// `owner`'s claim from `now` for `ttl`.
    pub fn new(owner: impl Into<String>, ttl: Duration, now: OffsetDateTime) -> Self {
        Self {
            owner: owner.into(),
            until_ms: epoch_ms(now) + ttl.whole_milliseconds() as i64,
        }
    }

    /// True while someone other than `owner` holds it at `now`.
    pub fn blocks(&self, owner: &str, now: OffsetDateTime) -> bool {
        self.owner != owner && self.until_ms >= epoch_ms(now)
    }
}

/// A pending writeback as stored: the record, its version (every write bumps it, and every
/// write of the writeback is conditional on it) and the attempt that has claimed it, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEntry {
    pub value: PendingWriteback,
    pub version: u64,
    pub claim: Option<Claim>,
}

/// An alert's ordering state, per field the platform can change: the platform time (µs) of the
/// newest change that set the status in S1 (or is setting it, under the lock) and the pending
/// writeback that made it; the same for the verdict, which a status change or a comment may set.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertOrder {
    pub applied_micros: Option<i64>,
    pub applied_by: Option<String>,
    pub verdict_micros: Option<i64>,
    pub verdict_by: Option<String>,
}

impl AlertOrder {
    /// True when a change other than `id` made at or after `at_micros` holds the alert's status:
    /// a status change made at `at_micros` would reach S1 out of order.
    pub fn supersedes(&self, at_micros: i64, id: &str) -> bool {
        newer(self.applied_micros, self.applied_by.as_deref(), at_micros, id)
    }

    /// [`supersedes`](Self::supersedes) for the verdict: a verdict set at `at_micros` would
    /// overwrite a newer one.
    pub fn verdict_supersedes(&self, at_micros: i64, id: &str) -> bool {
        newer(self.verdict_micros, self.verdict_by.as_deref(), at_micros, id)
    }

    /// This order with change `id`, made at `at_micros`, holding the status (`status`) and the
    /// verdict (`verdict`) it sets; the fields it does not set keep their marks.
    #[must_use]
    pub fn marked(&self, at_micros: i64, id: &str, status: bool, verdict: bool) -> AlertOrder {
        let mut o = self.clone();
        if status {
            o.applied_micros = Some(at_micros);
            o.applied_by = Some(id.to_owned());
        }
        if verdict {
            o.verdict_micros = Some(at_micros);
            o.verdict_by = Some(id.to_owned());
        }
        o
    }
}

fn newer(mark: Option<i64>, by: Option<&str>, at_micros: i64, id: &str) -> bool {
    match mark {
        Some(a) if a > at_micros => true,
        Some(a) if a == at_micros => by != Some(id),
        _ => false,
    }
}

/// The lock on an alert's ordering item, held while one status change is applied to S1, so
/// changes of one alert reach S1 one at a time and in order.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertLock {
    pub alert_key: String,
    pub claim: Claim,
    pub version: u64,
    pub order: AlertOrder,
}

/// What [`Store::finish_claimed`](super::Store::finish_claimed) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Written: the writeback is retired.
    Done,
    /// Another writer changed the story first: nothing was written; re-read it and try again.
    StoryChanged,
    /// The claim (or the alert lock) was lost to another attempt: nothing was written.
    LostClaim,
}

/// How long outbound-request records are kept.
pub const OUTBOUND_RETENTION: Duration = Duration::days(30);

/// How long a run's lease on a tenant's job lasts unless renewed. A run renews it every third of
/// this while it is alive, so a killed run keeps the tenant for at most this long.
pub const LEASE_TTL: Duration = Duration::seconds(90);

/// A page of typed records.
#[derive(Debug, Clone)]
pub struct RecordPage<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// A lease one run holds on a tenant's job ([`Store::take_lease`](super::Store::take_lease)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub tenant: String,
    pub job: String,
    pub owner: String,
    /// The fencing token: unique per acquisition, stored with the lease and checked by every
    /// fenced write.
    pub generation: i64,
    pub ttl: Duration,
}
