//! A rate budget shared by every process: one counter per budget and time slice, kept where
//! every process sees it (the state table, behind the [`BudgetCounters`] port), so concurrent
//! consumers (Lambda instances, `serve`, the CLI, several tenants on one platform instance or
//! one S1 token) together stay under the limit. The platforms' request budgets
//! (`platform::budget`) and the S1 client's per-token budgets (`s1::consoles`) are built on it;
//! the composition root hands them the store.
//!
//! The budget is cut into [`SLICES`] slices per window, each allowing
//! `limit * 9/10 / (SLICES + 1)` requests: any window-long span overlaps at most `SLICES + 1`
//! slices, so no span of the window's length holds more than 90% of the limit, whatever the
//! clocks of the processes. A process takes several requests of a slice per round trip (an
//! eighth of it, at most [`TAKE_AT_ONCE`]), so the table sees about one write per that many
//! requests; what it took and did not use lapses with the slice.
//!
//! A caller may also send a request on its own allowance ([`SharedBudget::acquire_or_free`]),
//! without the table, unless this process saw the current slice spent: the S1 client lets each
//! call through the console port send its first request per rate family that way, so an idle
//! poll costs no table write. Those requests come on top of the 90%: the sum over a
//! window-long span stays under `0.9 x limit + allowance requests started in it`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// Slices per budget window.
pub const SLICES: u32 = 10;
/// The most requests a process takes from a slice per round trip to the table; it takes an
/// eighth of the slice (at least one), so up to eight busy processes share a slice evenly.
pub const TAKE_AT_ONCE: u32 = 50;

/// Why a budget's counter could not be read or written (the table's error, as text: this layer
/// knows no store).
pub type CounterError = Box<dyn std::error::Error + Send + Sync>;

/// Where shared budgets keep their counters: implemented by the store over the state table.
#[async_trait::async_trait]
pub trait BudgetCounters: Send + Sync {
    /// Takes up to `want` of the `limit` requests slice `index` of budget `key` allows: how many
    /// it got (0 when the slice is spent). The counter may be forgotten `keep_secs` after
    /// `now_secs`, long after its slice ended.
    ///
    /// # Errors
    /// The counter cannot be read or written.
    async fn take(
        &self,
        key: &str,
        index: i64,
        limit: u32,
        want: u32,
        now_keep: (i64, i64),
    ) -> Result<u32, CounterError>;
}

/// The key of the budget `identity` names for platform (or API) `kind`: `<kind>:<hash>`, a
/// SHA-256 of the parts, so the key never shows what names the instance (a token, a client id).
pub fn budget_key(kind: &str, identity: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    for part in identity {
        h.update([0]);
        h.update(part.as_bytes());
    }
    format!("{kind}:{}", &hex::encode(h.finalize())[..32])
}

/// What this process holds of its budget's current slice.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// The slice it took from, and how many of its requests are left here.
    slice: i64,
    left: u32,
    /// The last slice the table said was spent: no request goes on an allowance until it ends.
    spent: i64,
}

/// One budget in the table, shared by every process that names it the same way.
pub struct SharedBudget {
    counters: Arc<dyn BudgetCounters>,
    /// A hash of what names the instance (never a secret in clear).
    key: String,
    slice: Duration,
    per_slice: u32,
    held: tokio::sync::Mutex<Held>,
}

impl std::fmt::Debug for SharedBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBudget")
            .field("key", &self.key)
            .field("per_slice", &self.per_slice)
            .finish_non_exhaustive()
    }
}

impl SharedBudget {
    /// `limit` requests per `window` for the instance `identity` names (for example a Halo
    /// base URL and client id; hashed by [`budget_key`]) of platform `kind`.
    pub fn new(counters: Arc<dyn BudgetCounters>, kind: &str, identity: &[&str], limit: u32, window: Duration) -> Self {
        Self {
            counters,
            key: budget_key(kind, identity),
            slice: (window / SLICES).max(Duration::from_millis(10)),
            per_slice: (limit * 9 / 10 / (SLICES + 1)).max(1),
            held: tokio::sync::Mutex::new(Held {
                slice: -1,
                left: 0,
                spent: -1,
            }),
        }
    }

    /// The table's key of this budget.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Requests one slice allows, every process together.
    pub fn per_slice(&self) -> u32 {
        self.per_slice
    }

    /// Waits until a request may go: this process holds some of the current slice, takes more
    /// from the table, or waits for the next slice when it is spent. An unreachable table lets
    /// the request go (logged): the caller's own pacing still holds.
    pub async fn acquire(&self) {
        self.acquire_or_free(false).await;
    }

    /// As [`SharedBudget::acquire`]; when `free`, the request goes at once on the caller's
    /// allowance, without the table, unless this process holds some of the slice (used first)
    /// or saw the current slice spent. Whether it went on the allowance.
    pub async fn acquire_or_free(&self, free: bool) -> bool {
        let mut held = self.held.lock().await;
        loop {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            let slice_ms = self.slice.as_millis().max(1);
            let index = (now.as_millis() / slice_ms) as i64;
            if held.slice == index && held.left > 0 {
                held.left -= 1;
                return false;
            }
            if free && held.spent != index {
                return true;
            }
            let keep = (self.slice * (SLICES + 2)).as_secs() as i64 + 60;
            let want = (self.per_slice / 8).clamp(1, TAKE_AT_ONCE);
            match self
                .counters
                .take(&self.key, index, self.per_slice, want, (now.as_secs() as i64, keep))
                .await
            {
                Ok(0) => {
                    held.spent = index;
                    // Spent: wait for the next slice.
                    let next = Duration::from_millis(((index + 1) as u128 * slice_ms) as u64);
                    tokio::time::sleep(next.saturating_sub(now)).await;
                }
                Ok(got) => {
                    held.slice = index;
                    held.left = got - 1;
                    return false;
                }
                Err(e) => {
                    // The table is out of reach: the local pacing still holds this process to
                    // its own limit, and a 429 is honoured as always.
                    tracing::warn!(budget = %self.key, error = %e, "shared budget unreadable; pacing locally");
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Counters with `left` requests in every slice, counting the round trips.
    struct Counting {
        left: u32,
        trips: AtomicU32,
    }

    #[async_trait::async_trait]
    impl BudgetCounters for Counting {
        async fn take(&self, _: &str, _: i64, _: u32, want: u32, _: (i64, i64)) -> Result<u32, CounterError> {
            self.trips.fetch_add(1, Ordering::SeqCst);
            Ok(want.min(self.left))
        }
    }

    fn budget(left: u32, limit: u32) -> (SharedBudget, Arc<Counting>) {
        let counters = Arc::new(Counting {
            left,
            trips: AtomicU32::new(0),
        });
        // Slices of 100 ms: a spent slice is waited out quickly.
        let b = SharedBudget::new(counters.clone(), "test", &["x"], limit, Duration::from_secs(1));
        (b, counters)
    }

    #[tokio::test]
    async fn an_allowance_request_costs_no_round_trip_and_a_taken_chunk_serves_several() {
        // 880 a window: 72 a slice, taken 9 at a time.
        let (b, counters) = budget(u32::MAX, 880);
        assert!(b.acquire_or_free(true).await, "the allowance goes without the table");
        assert_eq!(counters.trips.load(Ordering::SeqCst), 0);
        for _ in 0..9 {
            b.acquire().await;
        }
        assert!(
            counters.trips.load(Ordering::SeqCst) <= 2,
            "one take serves nine requests"
        );
        assert!(!b.key().contains('x') && b.key().starts_with("test:"), "{}", b.key());
    }

    #[tokio::test]
    async fn no_allowance_once_the_slice_is_seen_spent() {
        let (b, counters) = budget(0, 880);
        let started = std::time::Instant::now();
        // Spent: this waits for the next slice (the fake says every slice is spent, so it
        // would wait for ever): give it one slice and a half.
        let waited = tokio::time::timeout(Duration::from_millis(150), b.acquire()).await;
        assert!(waited.is_err(), "a spent budget holds the request");
        assert!(started.elapsed() >= Duration::from_millis(150));
        // The slice is known spent: a request on its allowance goes to the table too.
        let trips = counters.trips.load(Ordering::SeqCst);
        let free = tokio::time::timeout(Duration::from_millis(5), b.acquire_or_free(true)).await;
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
        if now_ms % 100 > 10 {
            // (Unless a new slice began meanwhile, when the allowance applies again.)
            assert!(
                free.is_err(),
                "the allowance waits like the rest while the slice is spent"
            );
            assert!(counters.trips.load(Ordering::SeqCst) > trips);
        }
    }
}
