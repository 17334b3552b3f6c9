//! Tenant configurations: one item per tenant, listed through the index.

use super::{Store, check_id, decode, item};
use crate::store::{Cond, StoreError, TenantConfig, keys};

impl Store {
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

    /// The tenants the scheduled jobs run: the enabled ones, in id order.
    ///
    /// # Errors
    /// As [`list_tenants`](Self::list_tenants).
    pub async fn enabled_tenants(&self) -> Result<Vec<TenantConfig>, StoreError> {
        let mut all = self.list_tenants().await?;
        all.retain(|t| t.enabled);
        Ok(all)
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
}
