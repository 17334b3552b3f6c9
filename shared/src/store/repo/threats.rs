//! Per-threat records.

use std::collections::HashMap;

use super::{Store, check_id, decode, item};
use crate::store::{RecordPage, StoreError, ThreatRecord, keys};

impl Store {
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
}
