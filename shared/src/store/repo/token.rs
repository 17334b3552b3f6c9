//! The token watch's state, one item per tenant.

use super::{Store, item};
use crate::store::{StoreError, TokenState, keys};

impl Store {
    /// What the token watch remembered for a tenant.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn get_token_state(&self, tenant: &str) -> Result<Option<TokenState>, StoreError> {
        self.get_record(&keys::tenant(tenant), keys::TOKEN, "token state").await
    }

    /// Saves the token watch's state (only while the lease holds, when this store is fenced).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn put_token_state(&self, tenant: &str, s: &TokenState) -> Result<(), StoreError> {
        let i = item(keys::tenant(tenant), keys::TOKEN.into(), s)?;
        self.put_maybe_fenced(i).await
    }
}
