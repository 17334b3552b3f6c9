//! Polling checkpoints, one item per tenant and name.

use super::{Store, item};
use crate::store::{Checkpoint, StoreError, keys};

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
}
