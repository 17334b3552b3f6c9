//! A platform's request budget: a local token bucket that spaces one process's requests, and,
//! when the state table is at hand, a share of one budget per platform instance kept in the
//! table, so every process (concurrent Lambdas, several tenants on one Halo) together stays
//! under the instance's limit.
//!
//! The shared budget is cut into [`SLICES`] slices per window, each allowing
//! `limit * 9/10 / (SLICES + 1)` requests: any window-long span overlaps at most `SLICES + 1`
//! slices, so no span of the window's length holds more than 90% of the limit, whatever the
//! clocks of the processes. A process takes several requests of a slice per round trip (an
//! eighth of it, at most [`TAKE_AT_ONCE`]), so the table sees about one write per that many platform requests; what it
//! took and did not use lapses with the slice.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use governor::DefaultDirectRateLimiter;
use sha2::{Digest, Sha256};

use crate::store::Store;

/// Slices per budget window.
pub const SLICES: u32 = 10;
/// The most requests a process takes from a slice per round trip to the table; it takes an
/// eighth of the slice (at least one), so up to eight busy processes share a slice evenly.
pub const TAKE_AT_ONCE: u32 = 50;

/// A platform client's budget: local pacing, and a share of the instance's budget when shared.
pub struct Budget {
    local: DefaultDirectRateLimiter,
    shared: Option<SharedBudget>,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("shared", &self.shared.as_ref().map(|s| s.key.as_str()))
            .finish_non_exhaustive()
    }
}

impl Budget {
    /// This process's pacing only.
    pub fn local(local: DefaultDirectRateLimiter) -> Self {
        Self { local, shared: None }
    }

    /// From now on every request also takes its place in the instance's `shared` budget.
    pub fn share(&mut self, shared: SharedBudget) {
        self.shared = Some(shared);
    }

    /// Waits until a request may go.
    pub async fn until_ready(&self) {
        self.local.until_ready().await;
        if let Some(s) = &self.shared {
            s.acquire().await;
        }
    }
}

/// One platform instance's budget in the state table, shared by every process that names the
/// instance the same way.
pub struct SharedBudget {
    store: Store,
    /// A hash of what names the instance (never a secret in clear).
    key: String,
    slice: Duration,
    per_slice: u32,
    /// The slice this process took from, and how many of its requests are left here.
    held: tokio::sync::Mutex<(i64, u32)>,
}

impl SharedBudget {
    /// `limit` requests per `window` for the instance `identity` names (for example a Halo
    /// base URL and client id; hashed, so the key never shows them) of platform `kind`.
    pub fn new(store: Store, kind: &str, identity: &[&str], limit: u32, window: Duration) -> Self {
        let mut h = Sha256::new();
        h.update(kind.as_bytes());
        for part in identity {
            h.update([0]);
            h.update(part.as_bytes());
        }
        let key = format!("{kind}:{}", &hex::encode(h.finalize())[..32]);
        Self {
            store,
            key,
            slice: (window / SLICES).max(Duration::from_millis(10)),
            per_slice: (limit * 9 / 10 / (SLICES + 1)).max(1),
            held: tokio::sync::Mutex::new((-1, 0)),
        }
    }

    /// The table's key of this budget.
    pub fn key(&self) -> &str {
        &self.key
    }

    async fn acquire(&self) {
        let mut held = self.held.lock().await;
        loop {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            let slice_ms = self.slice.as_millis().max(1);
            let index = (now.as_millis() / slice_ms) as i64;
            if held.0 == index && held.1 > 0 {
                held.1 -= 1;
                return;
            }
            let keep = (self.slice * (SLICES + 2)).as_secs() as i64 + 60;
            let want = (self.per_slice / 8).clamp(1, TAKE_AT_ONCE);
            match self
                .store
                .take_budget(&self.key, index, self.per_slice, want, (now.as_secs() as i64, keep))
                .await
            {
                Ok(0) => {
                    // Spent: wait for the next slice.
                    let next = Duration::from_millis(((index + 1) as u128 * slice_ms) as u64);
                    tokio::time::sleep(next.saturating_sub(now)).await;
                }
                Ok(got) => {
                    *held = (index, got - 1);
                    return;
                }
                Err(e) => {
                    // The table is out of reach: the local pacing still holds this process to
                    // its own limit, and a platform 429 is honoured as always.
                    tracing::warn!(budget = %self.key, error = %e, "shared budget unreadable; pacing locally");
                    return;
                }
            }
        }
    }
}
