//! Webhook replay markers.

use time::{Duration, OffsetDateTime};

use super::{Store, item};
use crate::store::{Cond, StoreError, keys};

impl Store {
    /// Records a webhook event id; `Ok(true)` the first time it is seen within `ttl`, `Ok(false)`
    /// for a replay. Atomic: of concurrent deliveries of one event exactly one sees `true`.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn mark_event_seen(
        &self,
        event_id: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        if event_id.is_empty() || event_id.len() > 512 {
            return Err(StoreError::Invalid("webhook event id must be 1-512 characters".into()));
        }
        let mut i = item(
            keys::event(event_id),
            keys::EVENT_SK.into(),
            &serde_json::json!({ "seen_at": now.unix_timestamp() }),
        )?;
        i.ttl = Some((now + ttl).unix_timestamp());
        self.table.put(&i, &Cond::NotExists).await
    }
}
