//! The store's own records (assets, token state, publish dead letters, the outbound log) and the
//! values its operations answer with. The model it keeps (stories, checkpoints, pending
//! writebacks) is in [`domain`](crate::domain), the tenant's configuration in
//! [`tenant`](crate::tenant).

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::domain::{MemberId, PendingWriteback};
use crate::platform::ThreatEvent;

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
