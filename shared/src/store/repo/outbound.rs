//! The outbound request log.

use super::{Store, item};
use crate::store::{Cond, Item, OUTBOUND_RETENTION, OutboundRequest, RecordPage, StoreError, keys};

impl Store {
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

/// An outbound-request item: sorted by time in the tenant's partition, kept for
/// [`OUTBOUND_RETENTION`].
pub(super) fn outbound_item(tenant: &str, r: &OutboundRequest) -> Result<Item, StoreError> {
    let mut i = item(
        keys::tenant(tenant),
        keys::outbound(r.at.unix_timestamp_nanos() / 1000, &r.id),
        r,
    )?;
    i.ttl = Some((r.at + OUTBOUND_RETENTION).unix_timestamp());
    Ok(i)
}
