//! Rate budgets shared by every process: a counter per budget and time slice, taken from with a
//! conditional write, so concurrent consumers together stay under the limit.

use super::{Store, item};
use crate::net::budget::{BudgetCounters, CounterError};
use crate::store::{Cond, StoreError, keys};

/// Attempts at a slice's counter before giving up on it for now (another process took from it
/// meanwhile each time).
const ATTEMPTS: usize = 8;

impl Store {
    /// Takes up to `want` of the `limit` requests slice `index` of budget `key` allows: how many
    /// it got (0 when the slice is spent). The counter item expires `keep_secs` after `now_secs`,
    /// long after its slice ended. One read and one conditional write per call; callers take
    /// several at once so the cost per request stays low.
    ///
    /// # Errors
    /// Backend errors; the counter changed by other processes on every attempt
    /// ([`StoreError::Conflict`]).
    pub async fn take_budget(
        &self,
        key: &str,
        index: i64,
        limit: u32,
        want: u32,
        (now_secs, keep_secs): (i64, i64),
    ) -> Result<u32, StoreError> {
        let (pk, sk) = (keys::budget(key), keys::budget_slice(index));
        for _ in 0..ATTEMPTS {
            let current = self.table.get(&pk, &sk).await?;
            let (used, version) = current.as_ref().map_or((0, 0), |i| (i.order.unwrap_or(0), i.version));
            let left = i64::from(limit).saturating_sub(used).max(0);
            let got = left.min(i64::from(want));
            if got == 0 {
                return Ok(0);
            }
            let mut next = item(pk.clone(), sk.clone(), &serde_json::json!({ "used": used + got }))?;
            next.order = Some(used + got);
            next.version = version + 1;
            next.ttl = Some(now_secs + keep_secs);
            if self.table.put(&next, &Cond::Version(version)).await? {
                return Ok(got as u32);
            }
        }
        Err(StoreError::Conflict {
            op: "take_budget",
            what: format!("budget {key}'s slice {index} (taken from by other processes on every attempt)"),
        })
    }
}

/// The shared budgets' counters in the state table (`net::budget`, for the platforms and the S1
/// client, which know no store).
#[async_trait::async_trait]
impl BudgetCounters for Store {
    async fn take(
        &self,
        key: &str,
        index: i64,
        limit: u32,
        want: u32,
        now_keep: (i64, i64),
    ) -> Result<u32, CounterError> {
        Ok(self.take_budget(key, index, limit, want, now_keep).await?)
    }
}
