//! Leases on a tenant's jobs, and the fencing of writes by a lease's generation.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use super::{Store, item};
use crate::store::types::epoch_ms;
use crate::store::{Cond, Item, Lease, StoreError, keys};

impl Store {
    /// Takes the lease on `job` for `owner` for `ttl` if it is free, lapsed or already `owner`'s,
    /// under a new generation (the fencing token: a run that takes the lease after this one,
    /// even with the same owner id, makes this one's fenced writes fail). `Ok(None)` when another
    /// run holds it. Exactly one of several concurrent callers gets it.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn take_lease(
        &self,
        tenant: &str,
        job: &str,
        owner: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<Option<Lease>, StoreError> {
        let now_ms = epoch_ms(now);
        let lease = Lease {
            tenant: tenant.to_owned(),
            job: job.to_owned(),
            owner: owner.to_owned(),
            generation: next_generation(now_ms),
            ttl,
        };
        let i = self.held_lease_item(&lease, now)?;
        let free = Cond::LeaseFree {
            owner: owner.into(),
            now_ms,
        };
        Ok(self.table.put(&i, &free).await?.then_some(lease))
    }

    /// Extends `lease` by its time-to-live from `now`; `Ok(false)` when another run has taken it.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn renew(&self, lease: &Lease, now: OffsetDateTime) -> Result<bool, StoreError> {
        let (i, cond) = self.fence_item(lease, now)?;
        self.table.put(&i, &cond).await
    }

    /// Gives `lease` back; `Ok(false)` when another run has taken it meanwhile.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn give_back(&self, lease: &Lease) -> Result<bool, StoreError> {
        let cond = Cond::LeaseFenced {
            owner: lease.owner.clone(),
            generation: lease.generation,
        };
        self.table
            .delete(&keys::tenant(&lease.tenant), &keys::lease(&lease.job), &cond)
            .await
    }

    /// Lets `lease` go at `now` without deleting it: the item stays (expired), so its generation
    /// still tells when the run started (`s1-bridge status` reads it). The same one write as a
    /// delete; `Ok(false)` when another run has taken it meanwhile.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn release(&self, lease: &Lease, now: OffsetDateTime) -> Result<bool, StoreError> {
        let (mut i, cond) = self.fence_item(lease, now)?;
        // Expired a millisecond ago: free for any run from now on.
        i.until = Some(epoch_ms(now) - 1);
        self.table.put(&i, &cond).await
    }

    /// This store, with every checkpoint, story and asset write made only while `lease` is still
    /// held (each such write renews it, in the same transaction), so a run that lost its lease
    /// cannot overwrite what the run that took it wrote: the write fails with
    /// [`StoreError::LeaseLost`].
    pub fn fenced(&self, lease: Lease) -> Store {
        Store {
            table: self.table.clone(),
            fence: Some(Arc::new(lease)),
            fenced_writes: Arc::default(),
        }
    }

    /// How many writes went through this fenced store (each renewed its lease): none for a run
    /// that found nothing to do, whose short lease can then simply lapse.
    pub fn fenced_writes(&self) -> u64 {
        self.fenced_writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `work` while renewing `lease` every third of its time-to-live. Returns the work's
    /// output, or [`StoreError::LeaseLost`] as soon as a renewal finds another run holds the lease
    /// (the work is dropped where it stands, as a crash would leave it).
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`].
    pub async fn keep_alive<F: std::future::Future>(&self, lease: &Lease, work: F) -> Result<F::Output, StoreError> {
        let renewals = async {
            let period = (lease.ttl / 3_i32)
                .unsigned_abs()
                .max(std::time::Duration::from_secs(1));
            loop {
                tokio::time::sleep(period).await;
                match self.renew(lease, OffsetDateTime::now_utc()).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    // A store hiccup: the next tick tries again, and fenced writes stay safe.
                    Err(e) => {
                        tracing::warn!(tenant = %lease.tenant, job = %lease.job, error = %e, "could not renew the lease")
                    }
                }
            }
        };
        tokio::select! {
            out = work => Ok(out),
            () = renewals => Err(lease_lost(lease)),
        }
    }

    /// The lease item as `lease`'s holder writes it at `now` (valid for its time-to-live).
    fn held_lease_item(&self, lease: &Lease, now: OffsetDateTime) -> Result<Item, StoreError> {
        let until = epoch_ms(now) + lease.ttl.whole_milliseconds() as i64;
        let mut i = item(
            keys::tenant(&lease.tenant),
            keys::lease(&lease.job),
            &serde_json::json!({ "owner": lease.owner }),
        )?;
        i.owner = Some(lease.owner.clone());
        i.until = Some(until);
        i.order = Some(lease.generation);
        // Let the table clean up leases long after they lapse.
        i.ttl = Some(until / 1000 + 86_400);
        Ok(i)
    }

    /// The write that renews `lease`, conditional on it still being ours.
    fn fence_item(&self, lease: &Lease, now: OffsetDateTime) -> Result<(Item, Cond), StoreError> {
        let cond = Cond::LeaseFenced {
            owner: lease.owner.clone(),
            generation: lease.generation,
        };
        Ok((self.held_lease_item(lease, now)?, cond))
    }

    /// Writes `items` in one transaction, preceded (when this store is fenced) by the lease's
    /// renewal: the indexes among `items` whose condition failed, or [`StoreError::LeaseLost`].
    pub(super) async fn put_all_fenced(&self, items: &[(Item, Cond)]) -> Result<Vec<usize>, StoreError> {
        let Some(lease) = &self.fence else {
            return self.table.put_all(items).await;
        };
        let mut all = Vec::with_capacity(items.len() + 1);
        all.push(self.fence_item(lease, OffsetDateTime::now_utc())?);
        all.extend_from_slice(items);
        self.fenced_writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let failed = self.table.put_all(&all).await?;
        if failed.contains(&0) {
            return Err(lease_lost(lease));
        }
        Ok(failed.into_iter().map(|i| i - 1).collect())
    }

    /// An unconditional put, fenced when this store is.
    pub(super) async fn put_maybe_fenced(&self, i: Item) -> Result<(), StoreError> {
        match self.fence {
            None => self.table.put(&i, &Cond::Always).await.map(drop),
            Some(_) => self.put_all_fenced(&[(i, Cond::Always)]).await.map(drop),
        }
    }
}

/// A generation no other acquisition (in this process or, by its clock, any other) has had.
fn next_generation(now_ms: i64) -> i64 {
    static COUNTER: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    now_ms * 1000 + COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1000
}

/// When the acquisition that got `generation` ([`next_generation`]) took its lease.
pub(super) fn generation_time(generation: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(generation / 1000) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn lease_lost(lease: &Lease) -> StoreError {
    StoreError::LeaseLost {
        tenant: lease.tenant.clone(),
        job: lease.job.clone(),
    }
}
