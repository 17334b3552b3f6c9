//! The embedded backend: one redb database, file-backed or in memory, with the same item model,
//! conditions, index and TTL semantics as DynamoDB. Conditions are checked inside redb's single
//! write transaction, so they are atomic the way DynamoDB's are.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::repo::check_size;
use super::{Cond, Item, ItemPage, ItemTable, StoreError, cond_holds, now_secs};

/// `pk \0 sk` -> JSON-encoded [`Item`]. `\0` sorts before every other character, so a partition's
/// items are contiguous and in sort-key order.
const ITEMS: TableDefinition<&str, &[u8]> = TableDefinition::new("items");
/// `gsi1pk \0 gsi1sk \0 pk \0 sk` -> `pk \0 sk`.
const INDEX: TableDefinition<&str, &str> = TableDefinition::new("gsi1");

/// Page cache of a file-backed database.
const CACHE_BYTES: usize = 8 * 1024 * 1024;

/// The embedded (redb) implementation of [`ItemTable`].
#[derive(Clone)]
pub struct EmbeddedTable {
    db: Arc<Database>,
}

impl std::fmt::Debug for EmbeddedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmbeddedTable")
    }
}

fn err(op: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        op,
        code: "redb".into(),
        message: e.to_string(),
        retryable: false,
    }
}

fn key(pk: &str, sk: &str) -> String {
    format!("{pk}\0{sk}")
}

fn index_key(i: &Item) -> Option<String> {
    i.gsi1pk
        .as_ref()
        .map(|g| format!("{g}\0{}\0{}\0{}", i.gsi1sk.as_deref().unwrap_or(""), i.pk, i.sk))
}

/// First byte of a stored item in the framed encoding: the item's other fields as JSON, then its
/// `data` as it is. (The record JSON is not escaped into a JSON string, nor unescaped to check a
/// write's condition.) Items written before it are plain JSON and start with `{`.
const FRAMED: u8 = 1;

/// An item's fields but `data`, as the framed encoding stores them.
#[derive(serde::Serialize, serde::Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    pk: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    sk: std::borrow::Cow<'a, str>,
    ttl: Option<i64>,
    #[serde(borrow)]
    gsi1pk: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    gsi1sk: Option<std::borrow::Cow<'a, str>>,
    version: u64,
    #[serde(borrow)]
    owner: Option<std::borrow::Cow<'a, str>>,
    until: Option<i64>,
    order: Option<i64>,
}

fn encode(op: &'static str, i: &Item) -> Result<Vec<u8>, StoreError> {
    let head = serde_json::to_vec(&Head {
        pk: i.pk.as_str().into(),
        sk: i.sk.as_str().into(),
        ttl: i.ttl,
        gsi1pk: i.gsi1pk.as_deref().map(Into::into),
        gsi1sk: i.gsi1sk.as_deref().map(Into::into),
        version: i.version,
        owner: i.owner.as_deref().map(Into::into),
        until: i.until,
        order: i.order,
    })
    .map_err(|e| err(op, e))?;
    let len = u32::try_from(head.len()).map_err(|_| err(op, "item key fields over 4 GiB"))?;
    let mut out = Vec::with_capacity(5 + head.len() + i.data.len());
    out.push(FRAMED);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(i.data.as_bytes());
    Ok(out)
}

fn undecodable(op: &'static str, e: impl std::fmt::Display) -> StoreError {
    err(op, format!("undecodable stored item: {e}"))
}

/// Decodes a stored item; with `with_data` false, its `data` is left empty (enough to check a
/// condition and find its index entry).
fn decode_item(op: &'static str, bytes: &[u8], with_data: bool) -> Result<Item, StoreError> {
    if bytes.first() != Some(&FRAMED) {
        return serde_json::from_slice(bytes).map_err(|e| undecodable(op, e));
    }
    let len = bytes
        .get(1..5)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| undecodable(op, "truncated"))?;
    let head_bytes = bytes.get(5..5 + len).ok_or_else(|| undecodable(op, "truncated"))?;
    let head: Head<'_> = serde_json::from_slice(head_bytes).map_err(|e| undecodable(op, e))?;
    let data = if with_data {
        std::str::from_utf8(&bytes[5 + len..])
            .map_err(|e| undecodable(op, e))?
            .to_owned()
    } else {
        String::new()
    };
    Ok(Item {
        pk: head.pk.into_owned(),
        sk: head.sk.into_owned(),
        data,
        ttl: head.ttl,
        gsi1pk: head.gsi1pk.map(std::borrow::Cow::into_owned),
        gsi1sk: head.gsi1sk.map(std::borrow::Cow::into_owned),
        version: head.version,
        owner: head.owner.map(std::borrow::Cow::into_owned),
        until: head.until,
        order: head.order,
    })
}

fn decode(op: &'static str, bytes: &[u8]) -> Result<Item, StoreError> {
    decode_item(op, bytes, true)
}

impl EmbeddedTable {
    /// Opens (or creates) the database file at `path`.
    ///
    /// # Errors
    /// When the file cannot be created or is not a redb database.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        // A small page cache: redb's 1 GiB default lets memory grow with the size of the
        // database. 8 MiB holds a page's worth of story leaves: at 4 MiB a backlog spent a tenth
        // of its CPU re-reading and evicting them; at 16 MiB the poller's peak passed 60 MiB.
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path.as_ref())
            .map_err(|e| err("open", format!("{}: {e}", path.as_ref().display())))?;
        Self::init(db)
    }

    /// A fresh database held in memory (tests, the demo).
    ///
    /// # Errors
    /// Only if redb fails to initialise.
    pub fn in_memory() -> Result<Self, StoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| err("open", e))?;
        Self::init(db)
    }

    fn init(db: Database) -> Result<Self, StoreError> {
        let tx = db.begin_write().map_err(|e| err("open", e))?;
        tx.open_table(ITEMS).map_err(|e| err("open", e))?;
        tx.open_table(INDEX).map_err(|e| err("open", e))?;
        tx.commit().map_err(|e| err("open", e))?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Runs blocking redb work off the async runtime.
    async fn run<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| err(op, e))?
    }

    fn write_items(db: &Database, items: &[(Item, Cond)], delete: bool) -> Result<Vec<bool>, StoreError> {
        Self::write(db, items, delete, false)
    }

    /// Applies `items` in one transaction. Each item whose condition fails is skipped, or, with
    /// `all_or_nothing`, the whole transaction is abandoned when any fails.
    fn write(
        db: &Database,
        items: &[(Item, Cond)],
        delete: bool,
        all_or_nothing: bool,
    ) -> Result<Vec<bool>, StoreError> {
        let op = if delete { "delete" } else { "put" };
        let now = now_secs();
        let tx = db.begin_write().map_err(|e| err(op, e))?;
        let mut results = Vec::with_capacity(items.len());
        {
            let mut table = tx.open_table(ITEMS).map_err(|e| err(op, e))?;
            let mut index = tx.open_table(INDEX).map_err(|e| err(op, e))?;
            for (item, cond) in items {
                let k = key(&item.pk, &item.sk);
                let stored = match table.get(k.as_str()).map_err(|e| err(op, e))? {
                    Some(v) => Some(decode_item(op, v.value(), false)?),
                    None => None,
                };
                let live = stored.as_ref().filter(|s| !s.expired(now));
                if !cond_holds(cond, live) {
                    results.push(false);
                    continue;
                }
                if all_or_nothing && results.contains(&false) {
                    // Keep checking so every failed condition is reported; write nothing.
                    results.push(true);
                    continue;
                }
                // An item written already expired is gone for every reader: drop it now rather
                // than keep it until a sweep this backend does not have.
                let gone = delete || item.expired(now);
                let old_index = stored.as_ref().and_then(index_key);
                let new_index = if gone { None } else { index_key(item) };
                // A story rewritten under the same platform alert keeps its index entry as it is.
                if old_index != new_index {
                    if let Some(old) = &old_index {
                        index.remove(old.as_str()).map_err(|e| err(op, e))?;
                    }
                    if let Some(ik) = &new_index {
                        index.insert(ik.as_str(), k.as_str()).map_err(|e| err(op, e))?;
                    }
                }
                if gone {
                    table.remove(k.as_str()).map_err(|e| err(op, e))?;
                } else {
                    let bytes = encode(op, item)?;
                    table.insert(k.as_str(), bytes.as_slice()).map_err(|e| err(op, e))?;
                }
                results.push(true);
            }
        }
        if all_or_nothing && results.contains(&false) {
            tx.abort().map_err(|e| err(op, e))?;
        } else {
            tx.commit().map_err(|e| err(op, e))?;
        }
        Ok(results)
    }
}

/// Cursor of a prefix scan: the last key returned.
fn range_page(
    db: &Database,
    op: &'static str,
    start: String,
    prefix: String,
    limit: usize,
    index: bool,
) -> Result<ItemPage, StoreError> {
    let now = now_secs();
    let tx = db.begin_read().map_err(|e| err(op, e))?;
    let items_table = tx.open_table(ITEMS).map_err(|e| err(op, e))?;
    let mut items = Vec::new();
    let mut last = None;
    let mut more = false;
    let limit = limit.max(1);
    if index {
        let idx = tx.open_table(INDEX).map_err(|e| err(op, e))?;
        for entry in idx.range(start.as_str()..).map_err(|e| err(op, e))? {
            let (k, v) = entry.map_err(|e| err(op, e))?;
            if !k.value().starts_with(prefix.as_str()) {
                break;
            }
            if items.len() == limit {
                more = true;
                break;
            }
            last = Some(k.value().to_owned());
            if let Some(bytes) = items_table.get(v.value()).map_err(|e| err(op, e))? {
                let item = decode(op, bytes.value())?;
                if !item.expired(now) {
                    items.push(item);
                }
            }
        }
    } else {
        for entry in items_table.range(start.as_str()..).map_err(|e| err(op, e))? {
            let (k, v) = entry.map_err(|e| err(op, e))?;
            if !k.value().starts_with(prefix.as_str()) {
                break;
            }
            if items.len() == limit {
                more = true;
                break;
            }
            last = Some(k.value().to_owned());
            let item = decode(op, v.value())?;
            if !item.expired(now) {
                items.push(item);
            }
        }
    }
    Ok(ItemPage {
        items,
        next: if more { last } else { None },
    })
}

/// The key just after `k` in byte order, to resume a scan after it.
fn after(k: &str) -> String {
    format!("{k}\0")
}

#[async_trait]
impl ItemTable for EmbeddedTable {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let k = key(pk, sk);
        self.run("get", move |db| {
            let tx = db.begin_read().map_err(|e| err("get", e))?;
            let table = tx.open_table(ITEMS).map_err(|e| err("get", e))?;
            match table.get(k.as_str()).map_err(|e| err("get", e))? {
                Some(v) => Ok(Some(decode("get", v.value())?).filter(|i| !i.expired(now_secs()))),
                None => Ok(None),
            }
        })
        .await
    }

    async fn batch_get(&self, keys: &[(String, String)]) -> Result<Vec<Item>, StoreError> {
        let keys: Vec<String> = keys.iter().map(|(p, s)| key(p, s)).collect();
        self.run("batch_get", move |db| {
            let now = now_secs();
            let tx = db.begin_read().map_err(|e| err("batch_get", e))?;
            let table = tx.open_table(ITEMS).map_err(|e| err("batch_get", e))?;
            let mut out = Vec::new();
            for k in keys {
                if let Some(v) = table.get(k.as_str()).map_err(|e| err("batch_get", e))? {
                    let item = decode("batch_get", v.value())?;
                    if !item.expired(now) {
                        out.push(item);
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn put(&self, item: &Item, cond: &Cond) -> Result<bool, StoreError> {
        check_size(item)?;
        let work = vec![(item.clone(), cond.clone())];
        let r = self.run("put", move |db| Self::write_items(db, &work, false)).await?;
        Ok(r[0])
    }

    async fn batch_put(&self, items: &[Item]) -> Result<(), StoreError> {
        for i in items {
            check_size(i)?;
        }
        // One transaction per 25 items, like DynamoDB's batches, so a huge batch never holds the
        // write lock for long.
        for chunk in items.chunks(super::schema::BATCH_WRITE_MAX) {
            let work: Vec<_> = chunk.iter().map(|i| (i.clone(), Cond::Always)).collect();
            self.run("batch_put", move |db| Self::write_items(db, &work, false))
                .await?;
        }
        Ok(())
    }

    fn transaction_limits(&self) -> (usize, usize) {
        (10_000, 8 * 1024 * 1024)
    }

    async fn put_all(&self, items: &[(Item, Cond)]) -> Result<Vec<usize>, StoreError> {
        for (i, _) in items {
            check_size(i)?;
        }
        let work = items.to_vec();
        let results = self
            .run("put_all", move |db| Self::write(db, &work, false, true))
            .await?;
        Ok(results
            .iter()
            .enumerate()
            .filter(|(_, ok)| !**ok)
            .map(|(i, _)| i)
            .collect())
    }

    async fn delete(&self, pk: &str, sk: &str, cond: &Cond) -> Result<bool, StoreError> {
        let probe = Item {
            pk: pk.into(),
            sk: sk.into(),
            ..Item::default()
        };
        let work = vec![(probe, cond.clone())];
        let r = self.run("delete", move |db| Self::write_items(db, &work, true)).await?;
        Ok(r[0])
    }

    async fn query(
        &self,
        pk: &str,
        sk_prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ItemPage, StoreError> {
        let prefix = key(pk, sk_prefix);
        let start = match cursor {
            Some(c) if c.starts_with(&prefix) => after(c),
            Some(_) => return Err(StoreError::Invalid("query cursor does not belong to this query".into())),
            None => prefix.clone(),
        };
        self.run("query", move |db| range_page(db, "query", start, prefix, limit, false))
            .await
    }

    async fn query_index(&self, key_value: &str, cursor: Option<&str>, limit: usize) -> Result<ItemPage, StoreError> {
        let prefix = format!("{key_value}\0");
        let start = match cursor {
            Some(c) if c.starts_with(&prefix) => after(c),
            Some(_) => return Err(StoreError::Invalid("index cursor does not belong to this query".into())),
            None => prefix.clone(),
        };
        self.run("query_index", move |db| {
            range_page(db, "query_index", start, prefix, limit, true)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(version: u64) -> Item {
        Item {
            pk: "T#acme".into(),
            sk: "STORY#k".into(),
            data: r#"{"members":{"t1":{"status":"resolved"}},"note":"quote \" and \\ and é"}"#.into(),
            ttl: None,
            gsi1pk: Some("REF#x".into()),
            gsi1sk: Some("1".into()),
            version,
            owner: Some("run".into()),
            until: Some(5),
            order: Some(-3),
        }
    }

    #[tokio::test]
    async fn items_written_as_plain_json_still_read_and_take_conditional_writes() {
        let t = EmbeddedTable::in_memory().unwrap();
        let old = item(3);
        {
            // As versions before the framed encoding stored it.
            let tx = t.db.begin_write().unwrap();
            {
                let mut table = tx.open_table(ITEMS).unwrap();
                let bytes = serde_json::to_vec(&old).unwrap();
                table.insert(key(&old.pk, &old.sk).as_str(), bytes.as_slice()).unwrap();
                let mut index = tx.open_table(INDEX).unwrap();
                index
                    .insert(index_key(&old).unwrap().as_str(), key(&old.pk, &old.sk).as_str())
                    .unwrap();
            }
            tx.commit().unwrap();
        }
        assert_eq!(t.get(&old.pk, &old.sk).await.unwrap(), Some(old.clone()));
        assert!(
            !t.put(&item(4), &Cond::Version(2)).await.unwrap(),
            "the stored version is 3"
        );
        assert!(t.put(&item(4), &Cond::Version(3)).await.unwrap());
        assert_eq!(t.get(&old.pk, &old.sk).await.unwrap(), Some(item(4)));
        let by_index = t.query_index("REF#x", None, 10).await.unwrap();
        assert_eq!(by_index.items, vec![item(4)], "one index entry, the new one");
    }

    #[test]
    fn a_damaged_framed_item_is_an_error_naming_it() {
        let mut bytes = encode("put", &item(1)).unwrap();
        assert_eq!(decode("get", &bytes).unwrap(), item(1));
        bytes.truncate(8);
        let e = decode("get", &bytes).unwrap_err().to_string();
        assert!(e.contains("undecodable stored item"), "{e}");
    }
}
