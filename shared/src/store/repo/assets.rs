//! Snapshots of synced accounts, sites and agents.

use std::collections::HashMap;

use super::{Store, check_id, decode, item};
use crate::store::{AssetKind, AssetRecord, Cond, RecordPage, StoreError, keys, schema};

impl Store {
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
}
