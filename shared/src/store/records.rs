//! Typed records and the [`Store`] facade the use cases call.

use std::collections::HashMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::{Cond, Item, ItemTable, StoreError, keys, schema};

/// Where a tenant's S1 API token is read from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenSource {
    /// A Secrets Manager secret (name or ARN) whose value is the token, or JSON with `apiToken`.
    SecretsManager { secret_id: String },
    /// An environment variable (one-machine runner).
    Env { var: String },
    /// A file holding the token (one-machine runner).
    File { path: String },
}

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

/// One S1 console (or a scope of it) and where its threats go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantConfig {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub enabled: bool,
    pub console_url: String,
    pub token: TokenSource,
    #[serde(default)]
    pub account_ids: Vec<String>,
    #[serde(default)]
    pub site_ids: Vec<String>,
    pub platform: crate::platform::PlatformConfig,
    #[serde(default)]
    pub grouping: Grouping,
    #[serde(default)]
    pub poll_cloud_alerts: bool,
    /// Per-tenant overrides of the default mappings (docs/design.md, Mappings).
    #[serde(
        default,
        deserialize_with = "crate::mapping::MappingOverrides::deserialize_or_null",
        skip_serializing_if = "crate::mapping::MappingOverrides::is_empty"
    )]
    pub mapping_overrides: crate::mapping::MappingOverrides,
    /// Days before the token's expiry at which the platform is alerted, once each.
    #[serde(default = "default_alert_days")]
    pub token_alert_days: Vec<i64>,
}

fn default_alert_days() -> Vec<i64> {
    vec![30, 14, 7, 3, 1, 0]
}

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

/// What we know of one S1 threat (or STAR alert): enough to tell new from changed from our own
/// echo without asking the platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreatRecord {
    pub threat_id: String,
    /// The `updatedAt` last processed; (id, updatedAt) seen again is a duplicate.
    #[serde(with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
    /// Digest of the fields the platform shows, status and verdict excluded.
    pub digest: String,
    /// Incident status and verdict last seen in S1.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub verdict: Option<String>,
    /// The story (platform alert) the threat belongs to.
    #[serde(default)]
    pub story_key: Option<String>,
    /// The incident status and verdict we last wrote to S1, to recognise our own echo.
    #[serde(default)]
    pub written_status: Option<String>,
    #[serde(default)]
    pub written_verdict: Option<String>,
    #[serde(default)]
    pub platform_ref: Option<String>,
    /// Why the platform refused this version (a 4xx); it is not retried until the threat changes.
    #[serde(default)]
    pub publish_error: Option<String>,
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
    pub members: std::collections::BTreeMap<String, MemberState>,
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
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub verdict: Option<String>,
    /// What we last wrote to S1 for this threat, to recognise our own echo. (Left out of the
    /// stored member when absent, so a large story stays small; older items spell out `null`.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_verdict: Option<String>,
    /// Why the platform refused this version (a 4xx); not retried until the threat changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_error: Option<String>,
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
    fn prefix(self) -> &'static str {
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
    pub change: serde_json::Value,
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
    pub id: String,
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
    pub event: serde_json::Value,
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

fn epoch_ms(t: OffsetDateTime) -> i64 {
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

fn claim_of(i: &Item) -> Option<Claim> {
    Some(Claim {
        owner: i.owner.clone()?,
        until_ms: i.until?,
    })
}

/// A pending writeback as stored: the record, its version (every write bumps it, and every
/// write of the writeback is conditional on it) and the attempt that has claimed it, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEntry {
    pub value: PendingWriteback,
    pub version: u64,
    pub claim: Option<Claim>,
}

/// An alert's ordering state: the platform time (µs) of the newest status change applied to S1
/// (or being applied under the lock), and the pending writeback that applied it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertOrder {
    pub applied_micros: Option<i64>,
    pub applied_by: Option<String>,
}

impl AlertOrder {
    /// True when a change other than `id` made at or after `at_micros` holds the alert: a change
    /// made at `at_micros` would reach S1 out of order.
    pub fn supersedes(&self, at_micros: i64, id: &str) -> bool {
        match self.applied_micros {
            Some(a) if a > at_micros => true,
            Some(a) if a == at_micros => self.applied_by.as_deref() != Some(id),
            _ => false,
        }
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

/// What [`Store::finish_claimed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Written: the writeback is retired.
    Done,
    /// Another writer changed the story first: nothing was written; re-read it and try again.
    StoryChanged,
    /// The claim (or the alert lock) was lost to another attempt: nothing was written.
    LostClaim,
}

/// How long outbound-request records and webhook replay markers are kept.
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

/// Typed access to the state table. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    table: Arc<dyn ItemTable>,
    /// When set (see [`Store::fenced`]), checkpoint, story and asset writes go through only while
    /// this lease is still held.
    fence: Option<Arc<Lease>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

fn encode<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Invalid(format!("cannot encode record: {e}")))
}

fn decode<T: DeserializeOwned>(item: &Item, what: &'static str) -> Result<T, StoreError> {
    serde_json::from_str(&item.data).map_err(|e| StoreError::Corrupt {
        pk: item.pk.clone(),
        sk: item.sk.clone(),
        what,
        message: e.to_string(),
    })
}

fn item<T: Serialize>(pk: String, sk: String, v: &T) -> Result<Item, StoreError> {
    Ok(Item {
        pk,
        sk,
        data: encode(v)?,
        ..Item::default()
    })
}

/// Ids become key parts, so they must not carry the separator or be empty.
fn check_id(what: &str, id: &str) -> Result<(), StoreError> {
    if id.is_empty() || id.len() > 200 || id.contains('#') || id.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "{what} {id:?} is not a valid id (1-200 chars, no '#')"
        )));
    }
    Ok(())
}

impl Store {
    /// A store over any [`ItemTable`].
    pub fn new(table: Arc<dyn ItemTable>) -> Self {
        Self { table, fence: None }
    }

    /// The underlying table, for tests and tools.
    pub fn table(&self) -> &Arc<dyn ItemTable> {
        &self.table
    }

    async fn get_record<T: DeserializeOwned>(
        &self,
        pk: &str,
        sk: &str,
        what: &'static str,
    ) -> Result<Option<T>, StoreError> {
        match self.table.get(pk, sk).await? {
            Some(i) => decode(&i, what).map(Some),
            None => Ok(None),
        }
    }

    async fn query_records<T: DeserializeOwned>(
        &self,
        pk: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
        what: &'static str,
    ) -> Result<RecordPage<T>, StoreError> {
        let page = self.table.query(pk, prefix, cursor, limit).await?;
        let items = page.items.iter().map(|i| decode(i, what)).collect::<Result<_, _>>()?;
        Ok(RecordPage { items, next: page.next })
    }

    // ---- tenants ------------------------------------------------------------------------------

    /// Creates or replaces a tenant's configuration.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a bad tenant id; backend errors.
    pub async fn put_tenant(&self, t: &TenantConfig) -> Result<(), StoreError> {
        check_id("tenant", &t.id)?;
        let mut i = item(keys::tenant(&t.id), keys::CONFIG.into(), t)?;
        i.gsi1pk = Some(keys::TENANTS_INDEX.into());
        i.gsi1sk = Some(t.id.clone());
        self.table.put(&i, &Cond::Always).await.map(drop)
    }

    /// A tenant's configuration.
    ///
    /// # Errors
    /// Backend errors; [`StoreError::Corrupt`] if the stored config does not decode.
    pub async fn get_tenant(&self, id: &str) -> Result<Option<TenantConfig>, StoreError> {
        check_id("tenant", id)?;
        self.get_record(&keys::tenant(id), keys::CONFIG, "tenant config").await
    }

    /// Every tenant, enabled or not, in id order.
    ///
    /// # Errors
    /// Backend errors; [`StoreError::Corrupt`] if a stored config does not decode.
    pub async fn list_tenants(&self) -> Result<Vec<TenantConfig>, StoreError> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .table
                .query_index(keys::TENANTS_INDEX, cursor.as_deref(), 100)
                .await?;
            for i in &page.items {
                out.push(decode(i, "tenant config")?);
            }
            match page.next {
                Some(n) => cursor = Some(n),
                None => return Ok(out),
            }
        }
    }

    // ---- checkpoints --------------------------------------------------------------------------

    /// The named checkpoint (`threats`, `alerts`) of a tenant.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn get_checkpoint(&self, tenant: &str, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        self.get_record(&keys::tenant(tenant), &keys::checkpoint(name), "checkpoint")
            .await
    }

    /// Saves a checkpoint. Callers save it last, after the platform accepted everything before it.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn put_checkpoint(&self, tenant: &str, name: &str, c: &Checkpoint) -> Result<(), StoreError> {
        let i = item(keys::tenant(tenant), keys::checkpoint(name), c)?;
        self.put_maybe_fenced(i).await
    }

    // ---- threats ------------------------------------------------------------------------------

    /// The stored records of these threats (batched reads), by threat id.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn get_threats(&self, tenant: &str, ids: &[String]) -> Result<HashMap<String, ThreatRecord>, StoreError> {
        let pk = keys::tenant(tenant);
        let keys: Vec<_> = ids.iter().map(|id| (pk.clone(), keys::threat(id))).collect();
        let items = self.table.batch_get(&keys).await?;
        items
            .iter()
            .map(|i| decode::<ThreatRecord>(i, "threat record").map(|r| (r.threat_id.clone(), r)))
            .collect()
    }

    /// Writes threat records (batched writes).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn put_threats(&self, tenant: &str, records: &[ThreatRecord]) -> Result<(), StoreError> {
        let pk = keys::tenant(tenant);
        let items = records
            .iter()
            .map(|r| {
                check_id("threat", &r.threat_id)?;
                item(pk.clone(), keys::threat(&r.threat_id), r)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.table.batch_put(&items).await
    }

    /// A page of a tenant's threat records, in id order.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn scan_threats(
        &self,
        tenant: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<RecordPage<ThreatRecord>, StoreError> {
        self.query_records(
            &keys::tenant(tenant),
            keys::THREAT_PREFIX,
            cursor,
            limit,
            "threat record",
        )
        .await
    }

    // ---- stories ------------------------------------------------------------------------------

    /// A story with its version: the current story of a key, or an archived one by id.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn get_story(&self, tenant: &str, key_or_id: &str) -> Result<Option<Versioned<StoryRecord>>, StoreError> {
        match self.table.get(&keys::tenant(tenant), &keys::story(key_or_id)).await? {
            Some(i) => Ok(Some(Versioned {
                value: decode(&i, "story")?,
                version: i.version,
            })),
            None => Ok(None),
        }
    }

    /// Several stories at once (batched reads), by key or id.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn get_stories(
        &self,
        tenant: &str,
        keys_or_ids: &[String],
    ) -> Result<HashMap<String, Versioned<StoryRecord>>, StoreError> {
        let pk = keys::tenant(tenant);
        let wanted: Vec<_> = keys_or_ids.iter().map(|k| (pk.clone(), keys::story(k))).collect();
        let items = self.table.batch_get(&wanted).await?;
        items
            .iter()
            .map(|i| {
                let name = i.sk.strip_prefix(keys::STORY_PREFIX).unwrap_or(&i.sk).to_owned();
                Ok((
                    name,
                    Versioned {
                        value: decode(i, "story")?,
                        version: i.version,
                    },
                ))
            })
            .collect()
    }

    fn story_item(&self, tenant: &str, name: &str, story: &StoryRecord, version: u64) -> Result<Item, StoreError> {
        check_id("story", &story.key)?;
        let mut i = item(keys::tenant(tenant), keys::story(name), story)?;
        i.version = version;
        if let (Some(platform), Some(reference)) = (&story.platform, &story.platform_ref) {
            i.gsi1pk = Some(keys::platform_alert(platform, reference));
            i.gsi1sk = Some(format!("{tenant}#{}", story.id));
        }
        Ok(i)
    }

    /// Writes a story as its key's current story if it is still at `expected_version` (0 for a
    /// new one). `Ok(false)` when another writer got there first: re-read and retry.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn put_story(
        &self,
        tenant: &str,
        story: &StoryRecord,
        expected_version: u64,
    ) -> Result<bool, StoreError> {
        let i = self.story_item(tenant, &story.key, story, expected_version + 1)?;
        self.table.put(&i, &Cond::Version(expected_version)).await
    }

    /// Writes many stories, each only if still at its expected version, in as few requests as
    /// the backend allows (transactions of up to 100). Each entry is (story, expected version,
    /// archived): a current story is stored under its key, an archived one under its id.
    /// Returns the indexes of stories that were not written because another writer changed
    /// them: re-read those and retry.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn put_stories(
        &self,
        tenant: &str,
        stories: &[(StoryRecord, u64, bool)],
    ) -> Result<Vec<usize>, StoreError> {
        let mut conflicts = Vec::new();
        let mut batch: Vec<(Item, Cond)> = Vec::new();
        let mut batch_index: Vec<usize> = Vec::new();
        // A fenced store spends one place (and a little room) of each transaction on the lease.
        let fenced = usize::from(self.fence.is_some());
        let mut bytes = fenced * 1024;
        for (n, (story, expected, archived)) in stories.iter().enumerate() {
            let name = if *archived { &story.id } else { &story.key };
            let i = self.story_item(tenant, name, story, expected + 1)?;
            let size = i.data.len() + 256;
            if batch.len() + fenced == schema::TRANSACT_MAX || bytes + size > schema::TRANSACT_MAX_BYTES {
                conflicts.extend(self.flush_stories(&mut batch, &mut batch_index).await?);
                bytes = fenced * 1024;
            }
            bytes += size;
            batch.push((i, Cond::Version(*expected)));
            batch_index.push(n);
        }
        conflicts.extend(self.flush_stories(&mut batch, &mut batch_index).await?);
        Ok(conflicts)
    }

    async fn flush_stories(
        &self,
        batch: &mut Vec<(Item, Cond)>,
        index: &mut Vec<usize>,
    ) -> Result<Vec<usize>, StoreError> {
        let mut work = std::mem::take(batch);
        let mut idx = std::mem::take(index);
        let mut conflicts = Vec::new();
        // A transaction with a failed condition writes nothing: drop the conflicting stories and
        // write the rest again.
        while !work.is_empty() {
            let failed = self.put_all_fenced(&work).await?;
            if failed.is_empty() {
                break;
            }
            conflicts.extend(failed.iter().map(|f| idx[*f]));
            let (kept, kept_idx): (Vec<_>, Vec<_>) = work
                .into_iter()
                .zip(idx)
                .enumerate()
                .filter(|(n, _)| !failed.contains(n))
                .map(|(_, pair)| pair)
                .unzip();
            work = kept;
            idx = kept_idx;
        }
        Ok(conflicts)
    }

    /// Stores a story that has been replaced as its key's current story under its own id, so its
    /// platform alert can still be resolved to its threats.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn archive_story(&self, tenant: &str, story: &StoryRecord) -> Result<(), StoreError> {
        let i = self.story_item(tenant, &story.id, story, 1)?;
        self.put_maybe_fenced(i).await
    }

    /// The story behind a platform alert, with its tenant.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn story_by_platform_ref(
        &self,
        platform: &str,
        reference: &str,
    ) -> Result<Option<(String, Versioned<StoryRecord>)>, StoreError> {
        let page = self
            .table
            .query_index(&keys::platform_alert(platform, reference), None, 1)
            .await?;
        let Some(i) = page.items.first() else { return Ok(None) };
        let tenant = i.pk.strip_prefix("TENANT#").unwrap_or(&i.pk).to_owned();
        Ok(Some((
            tenant,
            Versioned {
                value: decode(i, "story")?,
                version: i.version,
            },
        )))
    }

    // ---- assets -------------------------------------------------------------------------------

    /// Snapshots of synced objects of one kind, by id.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn get_assets(
        &self,
        tenant: &str,
        kind: AssetKind,
        ids: &[String],
    ) -> Result<HashMap<String, AssetRecord>, StoreError> {
        let pk = keys::tenant(tenant);
        let keys: Vec<_> = ids
            .iter()
            .map(|id| (pk.clone(), format!("{}{id}", kind.prefix())))
            .collect();
        let items = self.table.batch_get(&keys).await?;
        items
            .iter()
            .map(|i| decode::<AssetRecord>(i, "asset record").map(|r| (r.id.clone(), r)))
            .collect()
    }

    /// Writes snapshots (batched).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn put_assets(&self, tenant: &str, records: &[AssetRecord]) -> Result<(), StoreError> {
        let pk = keys::tenant(tenant);
        let items = records
            .iter()
            .map(|r| {
                check_id("asset", &r.id)?;
                item(pk.clone(), format!("{}{}", r.kind.prefix(), r.id), r)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.fence.is_none() {
            return self.table.batch_put(&items).await;
        }
        for chunk in items.chunks(schema::TRANSACT_MAX - 1) {
            let all: Vec<_> = chunk.iter().map(|i| (i.clone(), Cond::Always)).collect();
            self.put_all_fenced(&all).await?;
        }
        Ok(())
    }

    /// A page of snapshots of one kind, in id order.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn scan_assets(
        &self,
        tenant: &str,
        kind: AssetKind,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<RecordPage<AssetRecord>, StoreError> {
        self.query_records(&keys::tenant(tenant), kind.prefix(), cursor, limit, "asset record")
            .await
    }

    // ---- token state --------------------------------------------------------------------------

    /// What the token watch remembered for a tenant.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn get_token_state(&self, tenant: &str) -> Result<Option<TokenState>, StoreError> {
        self.get_record(&keys::tenant(tenant), keys::TOKEN, "token state").await
    }

    /// Saves the token watch's state.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn put_token_state(&self, tenant: &str, s: &TokenState) -> Result<(), StoreError> {
        let i = item(keys::tenant(tenant), keys::TOKEN.into(), s)?;
        self.table.put(&i, &Cond::Always).await.map(drop)
    }

    // ---- leases -------------------------------------------------------------------------------

    /// Takes the lease on `job` for `owner` for `ttl`, if it is free, expired or already ours.
    /// Exactly one of several concurrent callers gets it.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn acquire_lease(
        &self,
        tenant: &str,
        job: &str,
        owner: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        Ok(self.take_lease(tenant, job, owner, ttl, now).await?.is_some())
    }

    /// Extends a lease we still hold; `Ok(false)` if it expired and someone else may have it.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn renew_lease(
        &self,
        tenant: &str,
        job: &str,
        owner: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        let i = self.lease_item(tenant, job, owner, now_ms, ttl)?;
        self.table
            .put(
                &i,
                &Cond::LeaseHeld {
                    owner: owner.into(),
                    now_ms,
                },
            )
            .await
    }

    /// Gives a lease back; `Ok(false)` if it was not ours (any more).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn release_lease(
        &self,
        tenant: &str,
        job: &str,
        owner: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        self.table
            .delete(
                &keys::tenant(tenant),
                &keys::lease(job),
                &Cond::LeaseHeld {
                    owner: owner.into(),
                    now_ms,
                },
            )
            .await
    }

    fn lease_item(&self, tenant: &str, job: &str, owner: &str, now_ms: i64, ttl: Duration) -> Result<Item, StoreError> {
        let until = now_ms + ttl.whole_milliseconds() as i64;
        let mut i = item(
            keys::tenant(tenant),
            keys::lease(job),
            &serde_json::json!({ "owner": owner }),
        )?;
        i.owner = Some(owner.into());
        i.until = Some(until);
        // Let the table clean up leases long after they lapse.
        i.ttl = Some(until / 1000 + 86_400);
        Ok(i)
    }

    // ---- fenced leases (issue 12) ------------------------------------------------------------

    /// Takes the lease on `job` for `owner` for `ttl` if it is free, lapsed or already `owner`'s,
    /// under a new generation (the fencing token: a run that takes the lease after this one,
    /// even with the same owner id, makes this one's fenced writes fail). `Ok(None)` when another
    /// run holds it. Exactly one of several concurrent callers gets it.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn take_lease(
        &self,
        tenant: &str,
        job: &str,
        owner: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<Option<Lease>, StoreError> {
        let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        let lease = Lease {
            tenant: tenant.to_owned(),
            job: job.to_owned(),
            owner: owner.to_owned(),
            generation: next_generation(now_ms),
            ttl,
        };
        let i = self.held_lease_item(&lease, now)?;
        let free = Cond::LeaseFree {
            owner: owner.into(),
            now_ms,
        };
        Ok(self.table.put(&i, &free).await?.then_some(lease))
    }

    /// Extends `lease` by its time-to-live from `now`; `Ok(false)` when another run has taken it.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn renew(&self, lease: &Lease, now: OffsetDateTime) -> Result<bool, StoreError> {
        let (i, cond) = self.fence_item(lease, now)?;
        self.table.put(&i, &cond).await
    }

    /// Gives `lease` back; `Ok(false)` when another run has taken it meanwhile.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn give_back(&self, lease: &Lease) -> Result<bool, StoreError> {
        let cond = Cond::LeaseFenced {
            owner: lease.owner.clone(),
            generation: lease.generation,
        };
        self.table
            .delete(&keys::tenant(&lease.tenant), &keys::lease(&lease.job), &cond)
            .await
    }

    /// This store, with every checkpoint, story and asset write made only while `lease` is still
    /// held (each such write renews it, in the same transaction), so a run that lost its lease
    /// cannot overwrite what the run that took it wrote: the write fails with
    /// [`StoreError::LeaseLost`].
    pub fn fenced(&self, lease: Lease) -> Store {
        Store {
            table: self.table.clone(),
            fence: Some(Arc::new(lease)),
        }
    }

    /// Runs `work` while renewing `lease` every third of its time-to-live. Returns the work's
    /// output, or [`StoreError::LeaseLost`] as soon as a renewal finds another run holds the lease
    /// (the work is dropped where it stands, as a crash would leave it).
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`].
    pub async fn keep_alive<F: std::future::Future>(&self, lease: &Lease, work: F) -> Result<F::Output, StoreError> {
        let renewals = async {
            let period = (lease.ttl / 3_i32)
                .unsigned_abs()
                .max(std::time::Duration::from_secs(1));
            loop {
                tokio::time::sleep(period).await;
                match self.renew(lease, OffsetDateTime::now_utc()).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    // A store hiccup: the next tick tries again, and fenced writes stay safe.
                    Err(e) => {
                        tracing::warn!(tenant = %lease.tenant, job = %lease.job, error = %e, "could not renew the lease")
                    }
                }
            }
        };
        tokio::select! {
            out = work => Ok(out),
            () = renewals => Err(lease_lost(lease)),
        }
    }

    /// The lease item as `lease`'s holder writes it at `now` (valid for its time-to-live).
    fn held_lease_item(&self, lease: &Lease, now: OffsetDateTime) -> Result<Item, StoreError> {
        let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        let mut i = self.lease_item(&lease.tenant, &lease.job, &lease.owner, now_ms, lease.ttl)?;
        i.order = Some(lease.generation);
        Ok(i)
    }

    /// The write that renews `lease`, conditional on it still being ours.
    fn fence_item(&self, lease: &Lease, now: OffsetDateTime) -> Result<(Item, Cond), StoreError> {
        let cond = Cond::LeaseFenced {
            owner: lease.owner.clone(),
            generation: lease.generation,
        };
        Ok((self.held_lease_item(lease, now)?, cond))
    }

    /// Writes `items` in one transaction, preceded (when this store is fenced) by the lease's
    /// renewal: the indexes among `items` whose condition failed, or [`StoreError::LeaseLost`].
    async fn put_all_fenced(&self, items: &[(Item, Cond)]) -> Result<Vec<usize>, StoreError> {
        let Some(lease) = &self.fence else {
            return self.table.put_all(items).await;
        };
        let mut all = Vec::with_capacity(items.len() + 1);
        all.push(self.fence_item(lease, OffsetDateTime::now_utc())?);
        all.extend_from_slice(items);
        let failed = self.table.put_all(&all).await?;
        if failed.contains(&0) {
            return Err(lease_lost(lease));
        }
        Ok(failed.into_iter().map(|i| i - 1).collect())
    }

    /// An unconditional put, fenced when this store is.
    async fn put_maybe_fenced(&self, i: Item) -> Result<(), StoreError> {
        match self.fence {
            None => self.table.put(&i, &Cond::Always).await.map(drop),
            Some(_) => self.put_all_fenced(&[(i, Cond::Always)]).await.map(drop),
        }
    }

    // ---- webhook events ---------------------------------------------------------------------

    /// Records a webhook event id; `Ok(true)` the first time it is seen within `ttl`, `Ok(false)`
    /// for a replay. Atomic: of concurrent deliveries of one event exactly one sees `true`.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn mark_event_seen(
        &self,
        event_id: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        if event_id.is_empty() || event_id.len() > 512 {
            return Err(StoreError::Invalid("webhook event id must be 1-512 characters".into()));
        }
        let mut i = item(
            keys::event(event_id),
            keys::EVENT_SK.into(),
            &serde_json::json!({ "seen_at": now.unix_timestamp() }),
        )?;
        i.ttl = Some((now + ttl).unix_timestamp());
        self.table.put(&i, &Cond::NotExists).await
    }

    // ---- ordering of status changes -------------------------------------------------------------

    /// Records that a change made at `at_micros` was applied to `alert_key`, only if it is newer
    /// than the last one recorded. `Ok(false)`: a newer change was applied already (answer 409).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn record_applied_change(
        &self,
        tenant: &str,
        alert_key: &str,
        at_micros: i64,
    ) -> Result<bool, StoreError> {
        let mut i = item(
            keys::tenant(tenant),
            keys::order(alert_key),
            &serde_json::json!({ "at": at_micros }),
        )?;
        i.order = Some(at_micros);
        self.table.put(&i, &Cond::OrderBelow(at_micros)).await
    }

    // ---- platform aliases and accepting webhook changes ----------------------------------------

    /// Remembers that the platform's id `reference` (say a PagerDuty incident id) is the alert
    /// of story `story_name` (a story key, or an archived story's id).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn put_alias(
        &self,
        tenant: &str,
        platform: &str,
        reference: &str,
        story_name: &str,
    ) -> Result<(), StoreError> {
        let i = item(
            keys::tenant(tenant),
            keys::alias(platform, reference),
            &serde_json::json!({ "story": story_name }),
        )?;
        self.table.put(&i, &Cond::Always).await.map(drop)
    }

    /// The story name behind a platform id, if one was recorded.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn get_alias(&self, tenant: &str, platform: &str, reference: &str) -> Result<Option<String>, StoreError> {
        #[derive(Deserialize)]
        struct Alias {
            story: String,
        }
        let a: Option<Alias> = self
            .get_record(&keys::tenant(tenant), &keys::alias(platform, reference), "alias")
            .await?;
        Ok(a.map(|a| a.story))
    }

    /// Accepts a webhook's change durably and exactly once, in one atomic write: the replay
    /// markers (`markers`: the delivery's id, and for a comment its dedupe key, each with its
    /// lifetime; each only if not seen within it) and the pending change (only if new). Whether
    /// the change is older than the alert's applied one is the caller's check
    /// ([`Store::alert_order`]); it is checked again, under the alert's lock, when applied.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for an empty or over-long marker; backend errors.
    pub async fn accept_change(
        &self,
        tenant: &str,
        markers: &[(&str, Duration)],
        pending: &PendingWriteback,
        now: OffsetDateTime,
    ) -> Result<Acceptance, StoreError> {
        check_id("pending writeback", &pending.id)?;
        let mut batch = Vec::new();
        for (n, (id, ttl)) in markers.iter().enumerate() {
            if id.is_empty() || id.len() > 512 {
                return Err(StoreError::Invalid("webhook event id must be 1-512 characters".into()));
            }
            let mut marker = item(
                keys::event(&format!("{tenant}#{id}")),
                keys::EVENT_SK.into(),
                &serde_json::json!({ "seen_at": now.unix_timestamp() }),
            )?;
            // Expiry is judged by the real clock, whatever time the request is judged at.
            marker.ttl = Some((OffsetDateTime::now_utc().max(now) + *ttl).unix_timestamp());
            batch.push((marker, Cond::NotExists));
            if n == 0 {
                batch.push((
                    item(keys::tenant(tenant), keys::pending(&pending.id), pending)?,
                    Cond::NotExists,
                ));
            }
        }
        let failed = self.table.put_all(&batch).await?;
        Ok(if failed.iter().any(|f| *f < 2) {
            Acceptance::Duplicate
        } else if failed.is_empty() {
            Acceptance::Accepted
        } else {
            Acceptance::DuplicateNote
        })
    }

    /// One pending writeback.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn get_pending(&self, tenant: &str, id: &str) -> Result<Option<PendingWriteback>, StoreError> {
        self.get_record(&keys::tenant(tenant), &keys::pending(id), "pending writeback")
            .await
    }

    /// One pending writeback with its version and claim.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn get_pending_entry(&self, tenant: &str, id: &str) -> Result<Option<PendingEntry>, StoreError> {
        match self.table.get(&keys::tenant(tenant), &keys::pending(id)).await? {
            Some(i) => Ok(Some(PendingEntry {
                value: decode(&i, "pending writeback")?,
                version: i.version,
                claim: claim_of(&i),
            })),
            None => Ok(None),
        }
    }

    /// A page of a tenant's pending writebacks with their versions and claims.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn list_pending_entries(
        &self,
        tenant: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<RecordPage<PendingEntry>, StoreError> {
        let page = self
            .table
            .query(&keys::tenant(tenant), keys::PENDING_PREFIX, cursor, limit)
            .await?;
        let items = page
            .items
            .iter()
            .map(|i| {
                Ok(PendingEntry {
                    value: decode(i, "pending writeback")?,
                    version: i.version,
                    claim: claim_of(i),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(RecordPage { items, next: page.next })
    }

    fn pending_item(
        &self,
        tenant: &str,
        p: &PendingWriteback,
        version: u64,
        claim: Option<&Claim>,
    ) -> Result<Item, StoreError> {
        check_id("pending writeback", &p.id)?;
        let mut i = item(keys::tenant(tenant), keys::pending(&p.id), p)?;
        i.version = version;
        if let Some(c) = claim {
            i.owner = Some(c.owner.clone());
            i.until = Some(c.until_ms);
        }
        Ok(i)
    }

    /// Writes `p` over the entry read (or last written) at `version`, only if it is still live
    /// at that version: claims it (`claim`), records progress under the claim, or reschedules
    /// it (`claim` `None` releases it). `Ok(Some(new version))`; `Ok(None)` when another attempt
    /// changed or retired it first, and nothing was written.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn update_pending(
        &self,
        tenant: &str,
        p: &PendingWriteback,
        version: u64,
        claim: Option<&Claim>,
    ) -> Result<Option<u64>, StoreError> {
        let i = self.pending_item(tenant, p, version + 1, claim)?;
        Ok(self
            .table
            .put(&i, &Cond::LiveVersion(version))
            .await?
            .then_some(version + 1))
    }

    /// The pending item retired: written already expired (by the real clock), so every reader
    /// sees it gone and the backend removes it; only if still at `version`.
    fn retired_pending(&self, tenant: &str, p: &PendingWriteback, version: u64) -> Result<(Item, Cond), StoreError> {
        let mut i = self.pending_item(tenant, p, version + 1, None)?;
        i.ttl = Some(OffsetDateTime::now_utc().unix_timestamp() - 1);
        Ok((i, Cond::LiveVersion(version)))
    }

    /// Moves a pending writeback held at `version` to the dead letters in one transaction (the
    /// dead letter written, the pending item retired), only if it is still at `version`; with
    /// `lock`, the alert's ordering lock is released in the same transaction. `Ok(false)`:
    /// another attempt got there first, and nothing was written.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn retire_to_dead(
        &self,
        tenant: &str,
        p: &PendingWriteback,
        version: u64,
        lock: Option<&AlertLock>,
    ) -> Result<bool, StoreError> {
        let mut items = vec![
            self.retired_pending(tenant, p, version)?,
            (item(keys::tenant(tenant), keys::dead(&p.id), p)?, Cond::Always),
        ];
        if let Some(l) = lock {
            items.push(self.order_item(tenant, l, &l.order, None)?);
        }
        Ok(self.table.put_all(&items).await?.is_empty())
    }

    // ---- alert ordering locks ---------------------------------------------------------------------

    /// An alert's ordering state (nothing applied yet: the default).
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn alert_order(&self, tenant: &str, alert_key: &str) -> Result<AlertOrder, StoreError> {
        Ok(self
            .table
            .get(&keys::tenant(tenant), &keys::order(alert_key))
            .await?
            .map(|i| order_of(&i))
            .unwrap_or_default())
    }

    /// The ordering item written under `lock`, holding `order`, locked by `claim` (or unlocked).
    fn order_item(
        &self,
        tenant: &str,
        lock: &AlertLock,
        order: &AlertOrder,
        claim: Option<&Claim>,
    ) -> Result<(Item, Cond), StoreError> {
        let mut i = item(
            keys::tenant(tenant),
            keys::order(&lock.alert_key),
            &serde_json::json!({ "at": order.applied_micros, "by": order.applied_by }),
        )?;
        i.order = order.applied_micros;
        i.version = lock.version + 1;
        if let Some(c) = claim {
            i.owner = Some(c.owner.clone());
            i.until = Some(c.until_ms);
        }
        Ok((i, Cond::LiveVersion(lock.version)))
    }

    /// Takes an alert's ordering lock for `claim`, if it is free, lapsed or already ours.
    /// `Ok(None)`: another attempt holds it. Of concurrent callers at most one gets it.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn lock_alert(
        &self,
        tenant: &str,
        alert_key: &str,
        claim: &Claim,
        now: OffsetDateTime,
    ) -> Result<Option<AlertLock>, StoreError> {
        let current = self.table.get(&keys::tenant(tenant), &keys::order(alert_key)).await?;
        if current
            .as_ref()
            .and_then(claim_of)
            .is_some_and(|c| c.blocks(&claim.owner, now))
        {
            return Ok(None);
        }
        let order = current.as_ref().map(order_of).unwrap_or_default();
        let mut lock = AlertLock {
            alert_key: alert_key.to_owned(),
            claim: claim.clone(),
            version: current.as_ref().map_or(0, |i| i.version),
            order,
        };
        let (mut i, mut cond) = self.order_item(tenant, &lock, &lock.order, Some(claim))?;
        if current.is_none() {
            cond = Cond::NotExists;
            i.version = 1;
        }
        if !self.table.put(&i, &cond).await? {
            return Ok(None);
        }
        lock.version = i.version;
        Ok(Some(lock))
    }

    /// Under `lock`, marks the alert as holding the change `by` made at `at_micros` (before
    /// that change is sent to S1, so no older change can follow it even after a crash). The
    /// lock stays held. `Ok(false)`: the lock was lost; nothing was written.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn mark_alert(
        &self,
        tenant: &str,
        lock: &mut AlertLock,
        at_micros: i64,
        by: &str,
    ) -> Result<bool, StoreError> {
        let order = AlertOrder {
            applied_micros: Some(at_micros),
            applied_by: Some(by.to_owned()),
        };
        let (i, cond) = self.order_item(tenant, lock, &order, Some(&lock.claim))?;
        if !self.table.put(&i, &cond).await? {
            return Ok(false);
        }
        lock.version += 1;
        lock.order = order;
        Ok(true)
    }

    /// Releases an alert's ordering lock, keeping its mark. `Ok(false)`: it was not ours (any more).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn unlock_alert(&self, tenant: &str, lock: &AlertLock) -> Result<bool, StoreError> {
        let (i, cond) = self.order_item(tenant, lock, &lock.order, None)?;
        self.table.put(&i, &cond).await
    }

    /// Ends an applied (or superseded) writeback in one transaction: the story as the writeback
    /// left it (only if still at its expected version; `None` when there is nothing to record on
    /// it), the pending item retired (only if still at `pending_version`), the alert's ordering
    /// lock released (only if still ours), and the outbound-log records of the calls made.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn finish_claimed(
        &self,
        tenant: &str,
        story: Option<(&StoryRecord, u64, bool)>,
        pending: &PendingWriteback,
        pending_version: u64,
        lock: Option<&AlertLock>,
        outbound: &[OutboundRequest],
    ) -> Result<Finished, StoreError> {
        let mut items = vec![self.retired_pending(tenant, pending, pending_version)?];
        if let Some(l) = lock {
            items.push(self.order_item(tenant, l, &l.order, None)?);
        }
        let story_index = items.len();
        if let Some((s, expected, archived)) = story {
            let name = if archived { &s.id } else { &s.key };
            items.push((self.story_item(tenant, name, s, expected + 1)?, Cond::Version(expected)));
        }
        let log = outbound
            .iter()
            .map(|r| outbound_item(tenant, r))
            .collect::<Result<Vec<_>, _>>()?;
        if items.len() + log.len() <= schema::TRANSACT_MAX {
            items.extend(log.into_iter().map(|i| (i, Cond::Always)));
        } else {
            // A call retried many times: the log goes first on its own, the rest stays atomic.
            self.table.batch_put(&log).await?;
        }
        let failed = self.table.put_all(&items).await?;
        Ok(if failed.is_empty() {
            Finished::Done
        } else if failed.iter().any(|f| *f < story_index) {
            Finished::LostClaim
        } else {
            Finished::StoryChanged
        })
    }

    // ---- pending writebacks and dead letters --------------------------------------------------

    /// Stores (or replaces) a pending writeback, unconditionally: for operators and tests. The
    /// writeback's own writes are all conditional ([`Store::accept_change`],
    /// [`Store::update_pending`], [`Store::retire_to_dead`], [`Store::finish_claimed`]).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn put_pending(&self, tenant: &str, p: &PendingWriteback) -> Result<(), StoreError> {
        check_id("pending writeback", &p.id)?;
        let i = item(keys::tenant(tenant), keys::pending(&p.id), p)?;
        self.table.put(&i, &Cond::Always).await.map(drop)
    }

    /// A page of a tenant's pending writebacks.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn list_pending(
        &self,
        tenant: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<RecordPage<PendingWriteback>, StoreError> {
        self.query_records(
            &keys::tenant(tenant),
            keys::PENDING_PREFIX,
            cursor,
            limit,
            "pending writeback",
        )
        .await
    }

    /// Removes a pending writeback once applied.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn delete_pending(&self, tenant: &str, id: &str) -> Result<(), StoreError> {
        self.table
            .delete(&keys::tenant(tenant), &keys::pending(id), &Cond::Always)
            .await
            .map(drop)
    }

    /// Moves a writeback to the dead letters unconditionally (written first, then the pending
    /// copy removed, so a crash in between leaves it visible in both, never in neither): for
    /// operators and tests; attempts use [`Store::retire_to_dead`], conditional on their claim.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn move_to_dead(&self, tenant: &str, p: &PendingWriteback) -> Result<(), StoreError> {
        let i = item(keys::tenant(tenant), keys::dead(&p.id), p)?;
        self.table.put(&i, &Cond::Always).await?;
        self.delete_pending(tenant, &p.id).await
    }

    /// A page of a tenant's dead letters.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn list_dead(
        &self,
        tenant: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<RecordPage<PendingWriteback>, StoreError> {
        self.query_records(&keys::tenant(tenant), keys::DEAD_PREFIX, cursor, limit, "dead letter")
            .await
    }

    /// Puts a dead letter back in the pending queue for another round of attempts.
    ///
    /// # Errors
    /// Backend errors; [`StoreError::Invalid`] when there is no such dead letter.
    pub async fn replay_dead(
        &self,
        tenant: &str,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<PendingWriteback, StoreError> {
        let mut p: PendingWriteback = self
            .get_record(&keys::tenant(tenant), &keys::dead(id), "dead letter")
            .await?
            .ok_or_else(|| StoreError::Invalid(format!("tenant {tenant} has no dead letter {id}")))?;
        p.attempts = 0;
        p.next_attempt_at = now;
        check_id("pending writeback", &p.id)?;
        let mut gone = item(keys::tenant(tenant), keys::dead(id), &p)?;
        gone.ttl = Some(now.unix_timestamp() - 1);
        let failed = self
            .table
            .put_all(&[
                (item(keys::tenant(tenant), keys::pending(&p.id), &p)?, Cond::NotExists),
                (gone, Cond::Always),
            ])
            .await?;
        if !failed.is_empty() {
            return Err(StoreError::Invalid(format!(
                "tenant {tenant}'s writeback {id} is already pending; it was not queued twice"
            )));
        }
        Ok(p)
    }

    // ---- publish dead letters (issue 12) -------------------------------------------------------

    /// Stores publish dead letters (batched), each replacing any earlier one of its threat.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn put_publish_dead(&self, tenant: &str, letters: &[PublishDeadLetter]) -> Result<(), StoreError> {
        let pk = keys::tenant(tenant);
        let items = letters
            .iter()
            .map(|l| item(pk.clone(), keys::publish_dead(&l.id), l))
            .collect::<Result<Vec<_>, _>>()?;
        self.table.batch_put(&items).await
    }

    /// A page of a tenant's publish dead letters, in id order.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn list_publish_dead(
        &self,
        tenant: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<RecordPage<PublishDeadLetter>, StoreError> {
        self.query_records(
            &keys::tenant(tenant),
            keys::PUBLISH_DEAD_PREFIX,
            cursor,
            limit,
            "publish dead letter",
        )
        .await
    }

    /// One publish dead letter.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn get_publish_dead(&self, tenant: &str, id: &str) -> Result<Option<PublishDeadLetter>, StoreError> {
        self.get_record(&keys::tenant(tenant), &keys::publish_dead(id), "publish dead letter")
            .await
    }

    /// Asks for a publish dead letter to be sent again by the next poll run: the letter says so
    /// and a replay mark (which the poller lists, cheaply, every run) is written with it.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when there is no such dead letter; backend errors.
    pub async fn request_publish_replay(&self, tenant: &str, id: &str) -> Result<PublishDeadLetter, StoreError> {
        let mut l = self
            .get_publish_dead(tenant, id)
            .await?
            .ok_or_else(|| StoreError::Invalid(format!("tenant {tenant} has no publish dead letter {id}")))?;
        l.replay_requested = true;
        let pk = keys::tenant(tenant);
        let letter = item(pk.clone(), keys::publish_dead(id), &l)?;
        let mark = item(pk, keys::publish_replay(id), &serde_json::json!({ "id": id }))?;
        self.table
            .put_all(&[(letter, Cond::Always), (mark, Cond::Always)])
            .await?;
        Ok(l)
    }

    /// The publish dead letters an operator asked to send again (at most `limit`), in id order.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn publish_replays(&self, tenant: &str, limit: usize) -> Result<Vec<PublishDeadLetter>, StoreError> {
        let pk = keys::tenant(tenant);
        let marks = self.table.query(&pk, keys::PUBLISH_REPLAY_PREFIX, None, limit).await?;
        if marks.items.is_empty() {
            return Ok(Vec::new());
        }
        // A mark's key part is its letter's.
        let wanted: Vec<(String, String)> = marks
            .items
            .iter()
            .filter_map(|m| m.sk.strip_prefix(keys::PUBLISH_REPLAY_PREFIX))
            .map(|part| (pk.clone(), format!("{}{part}", keys::PUBLISH_DEAD_PREFIX)))
            .collect();
        let mut letters = self
            .table
            .batch_get(&wanted)
            .await?
            .iter()
            .map(|i| decode::<PublishDeadLetter>(i, "publish dead letter"))
            .collect::<Result<Vec<_>, _>>()?;
        letters.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(letters)
    }

    /// Records that a replayed dead letter was refused again: the letter with its new answer,
    /// its replay mark removed.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn refused_again(&self, tenant: &str, letter: &PublishDeadLetter) -> Result<(), StoreError> {
        self.put_publish_dead(tenant, std::slice::from_ref(letter)).await?;
        self.table
            .delete(&keys::tenant(tenant), &keys::publish_replay(&letter.id), &Cond::Always)
            .await
            .map(drop)
    }

    /// Removes publish dead letters (and any replay marks) whose event reached the platform
    /// after all.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn retire_publish_dead(&self, tenant: &str, ids: &[String]) -> Result<(), StoreError> {
        let pk = keys::tenant(tenant);
        for id in ids {
            self.table.delete(&pk, &keys::publish_replay(id), &Cond::Always).await?;
            self.table.delete(&pk, &keys::publish_dead(id), &Cond::Always).await?;
        }
        Ok(())
    }

    // ---- outbound request log ---------------------------------------------------------------

    /// Records one call to S1; kept for [`OUTBOUND_RETENTION`].
    ///
    /// # Errors
    /// Backend errors.
    pub async fn record_outbound(&self, tenant: &str, r: &OutboundRequest) -> Result<(), StoreError> {
        self.table
            .put(&outbound_item(tenant, r)?, &Cond::Always)
            .await
            .map(drop)
    }

    /// Records several calls at once (batched writes).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn record_outbound_many(&self, tenant: &str, records: &[OutboundRequest]) -> Result<(), StoreError> {
        let items = records
            .iter()
            .map(|r| outbound_item(tenant, r))
            .collect::<Result<Vec<_>, _>>()?;
        self.table.batch_put(&items).await
    }

    /// A page of a tenant's outbound requests, oldest first.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn list_outbound(
        &self,
        tenant: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<RecordPage<OutboundRequest>, StoreError> {
        self.query_records(
            &keys::tenant(tenant),
            keys::OUTBOUND_PREFIX,
            cursor,
            limit,
            "outbound request",
        )
        .await
    }
}

/// The ordering state an `ORDER#` item holds.
fn order_of(i: &Item) -> AlertOrder {
    let by = serde_json::from_str::<serde_json::Value>(&i.data)
        .ok()
        .and_then(|v| v.get("by").and_then(|b| b.as_str()).map(str::to_owned));
    AlertOrder {
        applied_micros: i.order,
        applied_by: by,
    }
}

/// A lease one run holds on a tenant's job ([`Store::take_lease`]).
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

/// A generation no other acquisition (in this process or, by its clock, any other) has had.
fn next_generation(now_ms: i64) -> i64 {
    static COUNTER: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    now_ms * 1000 + COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1000
}

fn lease_lost(lease: &Lease) -> StoreError {
    StoreError::LeaseLost {
        tenant: lease.tenant.clone(),
        job: lease.job.clone(),
    }
}

/// An outbound-request item: sorted by time in the tenant's partition, kept for
/// [`OUTBOUND_RETENTION`].
fn outbound_item(tenant: &str, r: &OutboundRequest) -> Result<Item, StoreError> {
    let mut i = item(
        keys::tenant(tenant),
        keys::outbound(r.at.unix_timestamp_nanos() / 1000, &r.id),
        r,
    )?;
    i.ttl = Some((r.at + OUTBOUND_RETENTION).unix_timestamp());
    Ok(i)
}

/// The largest record we accept: DynamoDB's item limit is 400 KB including attribute names.
pub(crate) const MAX_ITEM_BYTES: usize = 380 * 1024;

pub(crate) fn check_size(i: &Item) -> Result<(), StoreError> {
    let size = i.data.len() + i.pk.len() + i.sk.len() + 128;
    if size > MAX_ITEM_BYTES {
        return Err(StoreError::Invalid(format!(
            "item {} / {} is {size} bytes, over the {MAX_ITEM_BYTES}-byte limit",
            i.pk, i.sk
        )));
    }
    Ok(())
}
