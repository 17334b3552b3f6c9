//! The tenant's connector status, one item per tenant.

use super::{Store, decode, item};
use crate::store::{Cond, ConnectorStatus, StoreError, TokenState, keys};

impl Store {
    /// A tenant's connector status, `None` before its first run.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn get_status(&self, tenant: &str) -> Result<Option<ConnectorStatus>, StoreError> {
        self.get_record(&keys::tenant(tenant), keys::STATUS, "connector status")
            .await
    }

    /// A tenant's connector status and token state, in one request.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn get_status_and_token(
        &self,
        tenant: &str,
    ) -> Result<(Option<ConnectorStatus>, Option<TokenState>), StoreError> {
        let pk = keys::tenant(tenant);
        let items = self
            .table
            .batch_get(&[(pk.clone(), keys::STATUS.into()), (pk, keys::TOKEN.into())])
            .await?;
        let (mut status, mut token) = (None, None);
        for i in &items {
            match i.sk.as_str() {
                keys::STATUS => status = Some(decode(i, "connector status")?),
                keys::TOKEN => token = Some(decode(i, "token state")?),
                _ => {}
            }
        }
        Ok((status, token))
    }

    /// The connector status of each of `tenants` that has one (any number; batched).
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn statuses(&self, tenants: &[&str]) -> Result<Vec<(String, ConnectorStatus)>, StoreError> {
        let keys: Vec<(String, String)> = tenants
            .iter()
            .map(|t| (keys::tenant(t), keys::STATUS.to_owned()))
            .collect();
        let items = self.table.batch_get(&keys).await?;
        items
            .iter()
            .map(|i| {
                let tenant = i.pk.strip_prefix("TENANT#").unwrap_or(&i.pk).to_owned();
                Ok((tenant, decode(i, "connector status")?))
            })
            .collect()
    }

    /// Saves a tenant's connector status.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn put_status(&self, tenant: &str, s: &ConnectorStatus) -> Result<(), StoreError> {
        let i = item(keys::tenant(tenant), keys::STATUS.into(), s)?;
        self.table.put(&i, &Cond::Always).await.map(drop)
    }

    /// Forgets a tenant's run of failures, so the dispatcher sends it at its own interval at
    /// once rather than after its backoff: its configuration changed or `tenant test` passed,
    /// so the cause may be fixed. The state and cause stay until a run says otherwise. Whether
    /// there was a run of failures to forget.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn clear_failure_streak(&self, tenant: &str) -> Result<bool, StoreError> {
        match self.get_status(tenant).await? {
            Some(mut s) if s.failures_in_a_row > 0 => {
                s.failures_in_a_row = 0;
                self.put_status(tenant, &s).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// A tenant's dead letters of both directions, counted up to `cap` each.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn count_dead_letters(&self, tenant: &str, cap: usize) -> Result<u64, StoreError> {
        let pk = keys::tenant(tenant);
        let mut n = 0;
        for prefix in [keys::DEAD_PREFIX, keys::PUBLISH_DEAD_PREFIX] {
            n += self.table.query(&pk, prefix, None, cap).await?.items.len() as u64;
        }
        Ok(n)
    }
}
