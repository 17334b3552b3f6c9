//! A platform's request budget: a local token bucket that spaces one process's requests, and,
//! when the state table is at hand, a share of one budget per platform instance kept in the
//! table ([`SharedBudget`], in `net::budget`: how it is sliced and what it bounds), so every
//! process (concurrent Lambdas, several tenants on one Halo) together stays under the
//! instance's limit.

use governor::DefaultDirectRateLimiter;

pub use crate::net::budget::{SLICES, SharedBudget, TAKE_AT_ONCE};

/// A platform client's budget: local pacing, and a share of the instance's budget when shared.
pub struct Budget {
    local: DefaultDirectRateLimiter,
    shared: Option<SharedBudget>,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("shared", &self.shared.as_ref().map(SharedBudget::key))
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
