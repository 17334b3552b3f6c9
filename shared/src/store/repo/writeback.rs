//! Status changes on their way to S1: accepting a webhook's change, pending writebacks and
//! their claims, the alert's ordering lock, the end of an applied writeback, and dead letters.

use time::{Duration, OffsetDateTime};

use super::markers::marker;
use super::outbound::outbound_item;
use super::{Store, check_id, decode, item};
use crate::domain::{PendingWriteback, StoryRecord};
use crate::store::{
    Acceptance, AlertLock, AlertOrder, Claim, Cond, Finished, Item, OutboundRequest, PendingEntry, RecordPage,
    StoreError, keys, schema,
};

impl Store {
    /// Accepts a webhook's change durably and exactly once, in one atomic write: the replay
    /// markers (`markers`: the delivery's id, and for a comment its dedupe key, each with its
    /// lifetime; each only if not seen within it) and the pending change (only if new). Whether
    /// the change is older than the alert's applied one is the caller's check
    /// ([`Store::alert_order`]); it is checked again, under the alert's lock, when applied.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for an empty or over-long marker; backend errors.
    pub async fn accept_change(
        &self,
        tenant: &str,
        markers: &[(&str, Duration)],
        pending: &PendingWriteback,
        now: OffsetDateTime,
    ) -> Result<Acceptance, StoreError> {
        check_id("pending writeback", &pending.id)?;
        let mut batch = Vec::new();
        for (n, (id, ttl)) in markers.iter().enumerate() {
            batch.push(marker(tenant, id, *ttl, now)?);
            if n == 0 {
                batch.push((
                    item(keys::tenant(tenant), keys::pending(&pending.id), pending)?,
                    Cond::NotExists,
                ));
            }
        }
        let failed = self.table.put_all(&batch).await?;
        Ok(if failed.iter().any(|f| *f < 2) {
            Acceptance::Duplicate
        } else if failed.is_empty() {
            Acceptance::Accepted
        } else {
            Acceptance::DuplicateNote
        })
    }

    /// Whether `tenant`'s replay marker for `id` (a delivery's id) is live: the delivery was
    /// accepted within the marker's lifetime.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn delivery_seen(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .table
            .get(&keys::event(tenant, id), keys::EVENT_SK)
            .await?
            .is_some())
    }

    /// One pending writeback with its version and claim.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn get_pending_entry(&self, tenant: &str, id: &str) -> Result<Option<PendingEntry>, StoreError> {
        match self.table.get(&keys::tenant(tenant), &keys::pending(id)).await? {
            Some(i) => Ok(Some(PendingEntry {
                value: decode(&i, "pending writeback")?,
                version: i.version,
                claim: claim_of(&i),
            })),
            None => Ok(None),
        }
    }

    /// A page of a tenant's pending writebacks with their versions and claims. An item that
    /// does not read as a pending writeback is listed as its [`StoreError::Corrupt`] (naming its
    /// key), so the others are still listed.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn list_pending_entries(
        &self,
        tenant: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<RecordPage<Result<PendingEntry, StoreError>>, StoreError> {
        let page = self
            .table
            .query(&keys::tenant(tenant), keys::PENDING_PREFIX, cursor, limit)
            .await?;
        let items = page
            .items
            .iter()
            .map(|i| {
                Ok(PendingEntry {
                    value: decode(i, "pending writeback")?,
                    version: i.version,
                    claim: claim_of(i),
                })
            })
            .collect();
        Ok(RecordPage { items, next: page.next })
    }

    fn pending_item(
        &self,
        tenant: &str,
        p: &PendingWriteback,
        version: u64,
        claim: Option<&Claim>,
    ) -> Result<Item, StoreError> {
        check_id("pending writeback", &p.id)?;
        let mut i = item(keys::tenant(tenant), keys::pending(&p.id), p)?;
        i.version = version;
        if let Some(c) = claim {
            i.owner = Some(c.owner.clone());
            i.until = Some(c.until_ms);
        }
        Ok(i)
    }

    /// Writes `p` over the entry read (or last written) at `version`, only if it is still live
    /// at that version: claims it (`claim`), records progress under the claim, or reschedules
    /// it (`claim` `None` releases it). `Ok(Some(new version))`; `Ok(None)` when another attempt
    /// changed or retired it first, and nothing was written.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn update_pending(
        &self,
        tenant: &str,
        p: &PendingWriteback,
        version: u64,
        claim: Option<&Claim>,
    ) -> Result<Option<u64>, StoreError> {
        let i = self.pending_item(tenant, p, version + 1, claim)?;
        Ok(self
            .table
            .put(&i, &Cond::LiveVersion(version))
            .await?
            .then_some(version + 1))
    }

    /// The pending item retired: written already expired (by the real clock), so every reader
    /// sees it gone and the backend removes it; only if still at `version`.
    fn retired_pending(&self, tenant: &str, p: &PendingWriteback, version: u64) -> Result<(Item, Cond), StoreError> {
        let mut i = self.pending_item(tenant, p, version + 1, None)?;
        i.ttl = Some(OffsetDateTime::now_utc().unix_timestamp() - 1);
        Ok((i, Cond::LiveVersion(version)))
    }

    /// Moves a pending writeback held at `version` to the dead letters in one transaction (the
    /// dead letter written, the pending item retired), only if it is still at `version`; with
    /// `lock`, the alert's ordering lock is released in the same transaction. `Ok(false)`:
    /// another attempt got there first, and nothing was written.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn retire_to_dead(
        &self,
        tenant: &str,
        p: &PendingWriteback,
        version: u64,
        lock: Option<&AlertLock>,
    ) -> Result<bool, StoreError> {
        let mut items = vec![
            self.retired_pending(tenant, p, version)?,
            (item(keys::tenant(tenant), keys::dead(&p.id), p)?, Cond::Always),
        ];
        if let Some(l) = lock {
            items.push(self.order_item(tenant, l, &l.order, None)?);
        }
        Ok(self.table.put_all(&items).await?.is_empty())
    }

    // ---- alert ordering locks ---------------------------------------------------------------------

    /// An alert's ordering state (nothing applied yet: the default).
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn alert_order(&self, tenant: &str, alert_key: &str) -> Result<AlertOrder, StoreError> {
        Ok(self
            .table
            .get(&keys::tenant(tenant), &keys::order(alert_key))
            .await?
            .map(|i| order_of(&i))
            .unwrap_or_default())
    }

    /// The ordering item written under `lock`, holding `order`, locked by `claim` (or unlocked).
    fn order_item(
        &self,
        tenant: &str,
        lock: &AlertLock,
        order: &AlertOrder,
        claim: Option<&Claim>,
    ) -> Result<(Item, Cond), StoreError> {
        let mut i = item(
            keys::tenant(tenant),
            keys::order(&lock.alert_key),
            &serde_json::json!({
                "at": order.applied_micros,
                "by": order.applied_by,
                "verdict_at": order.verdict_micros,
                "verdict_by": order.verdict_by,
            }),
        )?;
        i.order = order.applied_micros;
        i.version = lock.version + 1;
        if let Some(c) = claim {
            i.owner = Some(c.owner.clone());
            i.until = Some(c.until_ms);
        }
        Ok((i, Cond::LiveVersion(lock.version)))
    }

    /// Takes an alert's ordering lock for `claim`, if it is free, lapsed or already ours.
    /// `Ok(None)`: another attempt holds it. Of concurrent callers at most one gets it.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn lock_alert(
        &self,
        tenant: &str,
        alert_key: &str,
        claim: &Claim,
        now: OffsetDateTime,
    ) -> Result<Option<AlertLock>, StoreError> {
        let current = self.table.get(&keys::tenant(tenant), &keys::order(alert_key)).await?;
        if current
            .as_ref()
            .and_then(claim_of)
            .is_some_and(|c| c.blocks(&claim.owner, now))
        {
            return Ok(None);
        }
        let order = current.as_ref().map(order_of).unwrap_or_default();
        let mut lock = AlertLock {
            alert_key: alert_key.to_owned(),
            claim: claim.clone(),
            version: current.as_ref().map_or(0, |i| i.version),
            order,
        };
        let (mut i, mut cond) = self.order_item(tenant, &lock, &lock.order, Some(claim))?;
        if current.is_none() {
            cond = Cond::NotExists;
            i.version = 1;
        }
        if !self.table.put(&i, &cond).await? {
            return Ok(None);
        }
        lock.version = i.version;
        Ok(Some(lock))
    }

    /// Under `lock`, marks the alert's status as held by the change `by` made at `at_micros`
    /// (before that change is sent to S1, so no older change can follow it even after a crash).
    /// The lock stays held. `Ok(false)`: the lock was lost; nothing was written.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn mark_alert(
        &self,
        tenant: &str,
        lock: &mut AlertLock,
        at_micros: i64,
        by: &str,
    ) -> Result<bool, StoreError> {
        let order = lock.order.marked(at_micros, by, true, false);
        self.mark_alert_fields(tenant, lock, order).await
    }

    /// Under `lock`, writes `order` (the lock's order with a change's marks, from
    /// [`AlertOrder::marked`]): before the change's status or verdict is sent to S1. The lock
    /// stays held. `Ok(false)`: the lock was lost; nothing was written.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn mark_alert_fields(
        &self,
        tenant: &str,
        lock: &mut AlertLock,
        order: AlertOrder,
    ) -> Result<bool, StoreError> {
        let (i, cond) = self.order_item(tenant, lock, &order, Some(&lock.claim))?;
        if !self.table.put(&i, &cond).await? {
            return Ok(false);
        }
        lock.version += 1;
        lock.order = order;
        Ok(true)
    }

    /// Releases an alert's ordering lock, keeping its mark. `Ok(false)`: it was not ours (any more).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn unlock_alert(&self, tenant: &str, lock: &AlertLock) -> Result<bool, StoreError> {
        let (i, cond) = self.order_item(tenant, lock, &lock.order, None)?;
        self.table.put(&i, &cond).await
    }

    /// Ends an applied (or superseded) writeback in one transaction: the story as the writeback
    /// left it (only if still at its expected version; `None` when there is nothing to record on
    /// it), the pending item retired (only if still at `pending_version`), the alert's ordering
    /// lock released (only if still ours), and the outbound-log records of the calls made.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn finish_claimed(
        &self,
        tenant: &str,
        story: Option<(&StoryRecord, u64, bool)>,
        pending: &PendingWriteback,
        pending_version: u64,
        lock: Option<&AlertLock>,
        outbound: &[OutboundRequest],
    ) -> Result<Finished, StoreError> {
        let mut items = vec![self.retired_pending(tenant, pending, pending_version)?];
        if let Some(l) = lock {
            items.push(self.order_item(tenant, l, &l.order, None)?);
        }
        let story_index = items.len();
        if let Some((s, expected, archived)) = story {
            let name = if archived { &s.id } else { &s.key };
            items.push((self.story_item(tenant, name, s, expected + 1)?, Cond::Version(expected)));
        }
        let log = outbound
            .iter()
            .map(|r| outbound_item(tenant, r))
            .collect::<Result<Vec<_>, _>>()?;
        if items.len() + log.len() <= schema::TRANSACT_MAX {
            items.extend(log.into_iter().map(|i| (i, Cond::Always)));
        } else {
            // A call retried many times: the log goes first on its own, the rest stays atomic.
            self.table.batch_put(&log).await?;
        }
        let failed = self.table.put_all(&items).await?;
        Ok(if failed.is_empty() {
            Finished::Done
        } else if failed.iter().any(|f| *f < story_index) {
            Finished::LostClaim
        } else {
            Finished::StoryChanged
        })
    }

    // ---- pending writebacks and dead letters --------------------------------------------------

    /// Stores (or replaces) a pending writeback, unconditionally: for operators and tests. The
    /// writeback's own writes are all conditional ([`Store::accept_change`],
    /// [`Store::update_pending`], [`Store::retire_to_dead`], [`Store::finish_claimed`]).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn put_pending(&self, tenant: &str, p: &PendingWriteback) -> Result<(), StoreError> {
        check_id("pending writeback", &p.id)?;
        let i = item(keys::tenant(tenant), keys::pending(&p.id), p)?;
        self.table.put(&i, &Cond::Always).await.map(drop)
    }

    /// A page of a tenant's pending writebacks.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn list_pending(
        &self,
        tenant: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<RecordPage<PendingWriteback>, StoreError> {
        self.query_records(
            &keys::tenant(tenant),
            keys::PENDING_PREFIX,
            cursor,
            limit,
            "pending writeback",
        )
        .await
    }

    /// Moves a writeback to the dead letters unconditionally (written first, then the pending
    /// copy removed, so a crash in between leaves it visible in both, never in neither): for
    /// operators and tests; attempts use [`Store::retire_to_dead`], conditional on their claim.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn move_to_dead(&self, tenant: &str, p: &PendingWriteback) -> Result<(), StoreError> {
        let i = item(keys::tenant(tenant), keys::dead(&p.id), p)?;
        self.table.put(&i, &Cond::Always).await?;
        self.table
            .delete(&keys::tenant(tenant), &keys::pending(&p.id), &Cond::Always)
            .await
            .map(drop)
    }

    /// A page of a tenant's dead letters.
    ///
    /// # Errors
    /// Backend errors; corrupt record.
    pub async fn list_dead(
        &self,
        tenant: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<RecordPage<PendingWriteback>, StoreError> {
        self.query_records(&keys::tenant(tenant), keys::DEAD_PREFIX, cursor, limit, "dead letter")
            .await
    }

    /// Puts a dead letter back in the pending queue for another round of attempts.
    ///
    /// # Errors
    /// Backend errors; [`StoreError::Invalid`] when there is no such dead letter.
    pub async fn replay_dead(
        &self,
        tenant: &str,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<PendingWriteback, StoreError> {
        let mut p: PendingWriteback = self
            .get_record(&keys::tenant(tenant), &keys::dead(id), "dead letter")
            .await?
            .ok_or_else(|| StoreError::Invalid(format!("tenant {tenant} has no dead letter {id}")))?;
        p.attempts = 0;
        p.next_attempt_at = now;
        check_id("pending writeback", &p.id)?;
        let mut gone = item(keys::tenant(tenant), keys::dead(id), &p)?;
        gone.ttl = Some(now.unix_timestamp() - 1);
        let failed = self
            .table
            .put_all(&[
                (item(keys::tenant(tenant), keys::pending(&p.id), &p)?, Cond::NotExists),
                (gone, Cond::Always),
            ])
            .await?;
        if !failed.is_empty() {
            return Err(StoreError::Invalid(format!(
                "tenant {tenant}'s writeback {id} is already pending; it was not queued twice"
            )));
        }
        Ok(p)
    }
}

/// The ordering state an `ORDER#` item holds. An item written before the verdict had a mark of
/// its own holds the status mark only; a status change then carried the verdict too, so the
/// status mark stands for the verdict's (no older verdict gets past it).
fn order_of(i: &Item) -> AlertOrder {
    let v = serde_json::from_str::<serde_json::Value>(&i.data).unwrap_or_default();
    let text = |k: &str| v.get(k).and_then(|b| b.as_str()).map(str::to_owned);
    let by = text("by");
    let (verdict_micros, verdict_by) = match v.get("verdict_at") {
        Some(at) => (at.as_i64(), text("verdict_by")),
        None => (i.order, by.clone()),
    };
    AlertOrder {
        applied_micros: i.order,
        applied_by: by,
        verdict_micros,
        verdict_by,
    }
}

fn claim_of(i: &Item) -> Option<Claim> {
    Some(Claim {
        owner: i.owner.clone()?,
        until_ms: i.until?,
    })
}
