//! Polling checkpoints, one item per tenant and name.

use super::{Store, decode, item};
use crate::domain::{Checkpoint, InFlight};
use crate::store::{StoreError, keys};

impl Store {
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

    /// The named checkpoint with the write-ahead records of its source's pages that it has not
    /// passed ([`InFlight::committed_by`]): pages a run sent and never committed. One read.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn get_checkpoint_and_in_flight(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<(Option<Checkpoint>, Vec<InFlight>), StoreError> {
        let pk = keys::tenant(tenant);
        let wanted = [
            (pk.clone(), keys::checkpoint(name)),
            (pk.clone(), keys::in_flight(name, 0)),
            (pk, keys::in_flight(name, 1)),
        ];
        let items = self.table.batch_get(&wanted).await?;
        let mut checkpoint = None;
        let mut pages = Vec::new();
        for i in &items {
            if i.sk == wanted[0].1 {
                checkpoint = Some(decode::<Checkpoint>(i, "checkpoint")?);
            } else {
                pages.push(decode::<InFlight>(i, "in-flight page")?);
            }
        }
        pages.retain(|p| !p.committed_by(checkpoint.as_ref()));
        Ok((checkpoint, pages))
    }

    /// Writes a page's write-ahead record in `slot` (0 or 1) of source `name`, before the page
    /// sends its updates; fenced by the run's lease.
    ///
    /// # Errors
    /// Backend errors; the lease lost.
    pub async fn put_in_flight(&self, tenant: &str, name: &str, slot: u8, page: &InFlight) -> Result<(), StoreError> {
        let i = item(keys::tenant(tenant), keys::in_flight(name, slot % 2), page)?;
        self.put_maybe_fenced(i).await
    }
}
