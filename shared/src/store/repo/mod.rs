//! The [`Store`] facade the use cases call: typed access to the state table, one module per item
//! family, over the shared helpers here.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Item, ItemTable, Lease, RecordPage, StoreError};

mod assets;
mod budget;
mod checkpoints;
mod leases;
mod markers;
mod outbound;
mod publish_dead;
mod status;
mod stories;
mod tenants;
mod token;
mod writeback;

/// Typed access to the state table. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    table: Arc<dyn ItemTable>,
    /// When set (see [`Store::fenced`]), checkpoint, story and asset writes go through only while
    /// this lease is still held.
    fence: Option<Arc<Lease>>,
    /// Writes made through this fenced store (and its clones), each of which renewed the lease.
    fenced_writes: Arc<std::sync::atomic::AtomicU64>,
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
        Self {
            table,
            fence: None,
            fenced_writes: Arc::default(),
        }
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
