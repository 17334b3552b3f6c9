//! Webhook replay markers: one item per delivery id (or comment dedupe key) of a tenant, in its
//! own partition, written only if no live marker of it exists and gone once its lifetime ends.

use time::{Duration, OffsetDateTime};

use super::item;
use crate::store::{Cond, Item, StoreError, keys};

/// The write of `tenant`'s replay marker for `id` (a delivery's id, or a comment's dedupe key),
/// live for `ttl`: only if no live marker of `id` exists.
///
/// # Errors
/// [`StoreError::Invalid`] for an empty or over-long id.
pub(super) fn marker(tenant: &str, id: &str, ttl: Duration, now: OffsetDateTime) -> Result<(Item, Cond), StoreError> {
    if id.is_empty() || id.len() > 512 {
        return Err(StoreError::Invalid("webhook event id must be 1-512 characters".into()));
    }
    let mut marker = item(
        keys::event(tenant, id),
        keys::EVENT_SK.into(),
        &serde_json::json!({ "seen_at": now.unix_timestamp() }),
    )?;
    // Expiry is judged by the real clock, whatever time the request is judged at.
    marker.ttl = Some((OffsetDateTime::now_utc().max(now) + ttl).unix_timestamp());
    Ok((marker, Cond::NotExists))
}
