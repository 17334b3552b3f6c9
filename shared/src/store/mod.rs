//! The state store: one single-table item model (docs/design.md, The state table) behind the [`ItemTable`] port,
//! with two implementations that pass one contract suite — [`DynamoTable`] (production) and
//! [`EmbeddedTable`] (redb, for the one-machine runner and the demo) — and the typed [`Store`]
//! facade the use cases call.
//!
//! Every condition two writers could race on (leases, first-seen webhook events, ordering of
//! status changes, story versions) is evaluated by the backend atomically with the write.
//!
//! Layout: the port is here; `types.rs` holds the store's own records (the model it keeps is in
//! `crate::domain`, the tenant's configuration in `crate::tenant`); `repo/` the [`Store`]
//! (its helpers in `repo/mod.rs`, then one module per item family: tenants, checkpoints,
//! stories, assets, token state, leases, replay markers, writeback, publish dead letters,
//! outbound log); `keys.rs` every key format; `dynamo/` and `embedded.rs` the backends.

mod dynamo;
mod embedded;
mod error;
pub mod keys;
mod repo;
mod status;
mod types;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use dynamo::{DynamoTable, create_table};
pub use embedded::EmbeddedTable;
pub use error::StoreError;
pub use repo::Store;
pub use status::{ConnectorState, ConnectorStatus, DEGRADED_TOKEN_DAYS, token_cause};
pub use types::*;

// Transitional (issue 24): the records moved below the store; these keep the old paths working
// for branches written against them. New code imports from `crate::domain` and `crate::tenant`.
pub use crate::domain::{
    Checkpoint, Grouping, InFlight, InFlightMember, MemberState, PendingChange, PendingWriteback, StoryRecord,
    StoryStatus, WritebackStep,
};
pub use crate::tenant::{
    DEFAULT_MAX_IN_FLIGHT, Intervals, MAX_INTERVAL_MINUTES, SecretRef as TokenSource, Source, TenantConfig,
};

/// Attribute and index names of the table. The SAM template and the tests use these too.
pub mod schema {
    /// Partition key attribute.
    pub const PK: &str = "pk";
    /// Sort key attribute.
    pub const SK: &str = "sk";
    /// The one global secondary index (platform alert -> story; the tenant list).
    pub const GSI1: &str = "gsi1";
    /// Partition key of [`GSI1`].
    pub const GSI1_PK: &str = "gsi1pk";
    /// Sort key of [`GSI1`].
    pub const GSI1_SK: &str = "gsi1sk";
    /// The table's TTL attribute (epoch seconds).
    pub const TTL: &str = "ttl";
    /// The JSON-encoded record.
    pub const DATA: &str = "data";
    /// Optimistic-concurrency version.
    pub const VERSION: &str = "ver";
    /// Lease holder.
    pub const OWNER: &str = "owner";
    /// Lease expiry, epoch milliseconds.
    pub const UNTIL: &str = "until";
    /// Ordering value for "only if newer" writes; a lease's generation (its fencing token).
    pub const ORDER: &str = "ord";
    /// DynamoDB's limits on batch calls.
    pub const BATCH_GET_MAX: usize = 100;
    /// Items per `BatchWriteItem`.
    pub const BATCH_WRITE_MAX: usize = 25;
    /// DynamoDB's limits on one `TransactWriteItems` call.
    pub const TRANSACT_MAX: usize = 100;
    /// Bytes per `TransactWriteItems` call.
    pub const TRANSACT_MAX_BYTES: usize = 4 * 1024 * 1024;
}

/// One stored item: keys, the JSON record, and the few attributes conditions look at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Item {
    pub pk: String,
    pub sk: String,
    /// The typed record, JSON-encoded.
    pub data: String,
    /// Expiry in epoch seconds. An expired item reads as absent in both backends, whether or not
    /// the backend has deleted it yet (DynamoDB may take days).
    pub ttl: Option<i64>,
    pub gsi1pk: Option<String>,
    pub gsi1sk: Option<String>,
    pub version: u64,
    pub owner: Option<String>,
    /// Lease expiry, epoch milliseconds.
    pub until: Option<i64>,
    pub order: Option<i64>,
}

impl Item {
    /// True when the item's TTL has passed at `now_secs`.
    pub fn expired(&self, now_secs: i64) -> bool {
        self.ttl.is_some_and(|t| t <= now_secs)
    }
}

/// A condition on the item currently stored under the written key, checked atomically with the
/// write. An expired item counts as absent.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// Write unconditionally.
    Always,
    /// Only if no live item exists.
    NotExists,
    /// Only if the stored version equals this (0: no live item).
    Version(u64),
    /// Only if the lease is free: absent, expired (`until` before `now_ms`), or already ours.
    LeaseFree { owner: String, now_ms: i64 },
    /// Only if a live item exists and its version equals this (unlike [`Cond::Version`], 0 means
    /// a live item at version 0, never an absent one): no write brings back an item another
    /// writer retired.
    LiveVersion(u64),
    /// Only if the lease is still the one `owner` took as `generation` (stored in `order`): no
    /// other run has taken it since, even if it lapsed. The fencing token of [`Lease`].
    LeaseFenced { owner: String, generation: i64 },
}

/// A page of a query, with the cursor of the next one.
#[derive(Debug, Clone, Default)]
pub struct ItemPage {
    pub items: Vec<Item>,
    /// Opaque; pass back to continue. `None` when the query is exhausted.
    pub next: Option<String>,
}

/// The storage port: a single table of [`Item`]s keyed by (pk, sk), with one secondary index.
#[async_trait]
pub trait ItemTable: Send + Sync {
    /// The live item at (pk, sk).
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError>;
    /// The live items among `keys` (any number; batched internally), in no particular order.
    async fn batch_get(&self, keys: &[(String, String)]) -> Result<Vec<Item>, StoreError>;
    /// Writes `item` if `cond` holds; `Ok(false)` when it did not (nothing written).
    async fn put(&self, item: &Item, cond: &Cond) -> Result<bool, StoreError>;
    /// Writes any number of items unconditionally (batched internally, unprocessed items retried).
    async fn batch_put(&self, items: &[Item]) -> Result<(), StoreError>;
    /// Writes all of `items` if every condition holds, else none: `Ok(vec![])` when written,
    /// `Ok(indexes)` naming the items whose condition failed. At most
    /// [`transaction_limits`](ItemTable::transaction_limits) items, with distinct keys.
    async fn put_all(&self, items: &[(Item, Cond)]) -> Result<Vec<usize>, StoreError>;
    /// The most items, and bytes, one [`put_all`](ItemTable::put_all) takes: DynamoDB's
    /// transaction limits by default. A backend without them (the embedded store) takes a
    /// whole page's stories in one commit.
    fn transaction_limits(&self) -> (usize, usize) {
        (schema::TRANSACT_MAX, schema::TRANSACT_MAX_BYTES)
    }
    /// Deletes (pk, sk) if `cond` holds; `Ok(false)` when it did not.
    async fn delete(&self, pk: &str, sk: &str, cond: &Cond) -> Result<bool, StoreError>;
    /// Live items of partition `pk` whose sort key starts with `sk_prefix`, in sort-key order.
    async fn query(
        &self,
        pk: &str,
        sk_prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ItemPage, StoreError>;
    /// Live items whose `gsi1pk` equals `key`, in `gsi1sk` order.
    async fn query_index(&self, key: &str, cursor: Option<&str>, limit: usize) -> Result<ItemPage, StoreError>;
}

pub(crate) fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Whether `cond` holds given the live item currently stored (`None` when absent or expired).
/// The embedded backend evaluates conditions with this; DynamoDB evaluates the equivalent
/// expressions server-side.
pub(crate) fn cond_holds(cond: &Cond, current: Option<&Item>) -> bool {
    match (cond, current) {
        (Cond::Always, _) => true,
        (Cond::NotExists, cur) => cur.is_none(),
        (Cond::Version(v), cur) => cur.map_or(0, |c| c.version) == *v,
        (Cond::LeaseFree { .. }, None) => true,
        (Cond::LeaseFree { owner, now_ms }, Some(c)) => {
            c.until.is_none_or(|u| u < *now_ms) || c.owner.as_deref() == Some(owner.as_str())
        }
        (Cond::LiveVersion(_), None) => false,
        (Cond::LiveVersion(v), Some(c)) => c.version == *v,
        (Cond::LeaseFenced { .. }, None) => false,
        (Cond::LeaseFenced { owner, generation }, Some(c)) => {
            c.owner.as_deref() == Some(owner.as_str()) && c.order == Some(*generation)
        }
    }
}
