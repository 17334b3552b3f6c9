use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::ApiToken;
use crate::net::budget::{BudgetCounters, SharedBudget, budget_key};

/// S1 rate-limit families: S1 limits per token and per path prefix, so one limiter per family
/// keeps a tenant's calls under every limit at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointFamily {
    /// `GET /threats` (10/s).
    ThreatsList,
    /// `/threats/...` actions and notes (100/s).
    ThreatActions,
    /// `/cloud-detection/alerts...` (not in S1's published table: held to the threats rate).
    CloudDetection,
    /// `/agents` (25/s).
    Agents,
    /// `/sites` and `/accounts` (100/s).
    SitesAccounts,
    /// `/users/...` (40/s).
    Users,
    /// `GET /user` (2/s).
    User,
    /// `/system/...` (1/s per IP per the spec).
    System,
    /// `POST /unifiedalerts/graphql` (UAM: about 25/s per token, held below it).
    UnifiedAlerts,
}

/// Requests per second allowed for each family. The defaults are S1's published limits, so the
/// client never provokes a 429 by itself.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    pub threats_list: u32,
    pub threat_actions: u32,
    pub cloud_detection: u32,
    pub agents: u32,
    pub sites_accounts: u32,
    pub users: u32,
    pub user: u32,
    pub system: u32,
    pub unified_alerts: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            threats_list: 10,
            threat_actions: 100,
            cloud_detection: 10,
            agents: 25,
            sites_accounts: 100,
            users: 40,
            user: 2,
            system: 1,
            // UAM's budget is reported, not published (about 25/s): keep a margin below it.
            unified_alerts: 20,
        }
    }
}

impl RateLimits {
    fn per_second(&self, family: EndpointFamily) -> u32 {
        match family {
            EndpointFamily::ThreatsList => self.threats_list,
            EndpointFamily::ThreatActions => self.threat_actions,
            EndpointFamily::CloudDetection => self.cloud_detection,
            EndpointFamily::Agents => self.agents,
            EndpointFamily::SitesAccounts => self.sites_accounts,
            EndpointFamily::Users => self.users,
            EndpointFamily::User => self.user,
            EndpointFamily::System => self.system,
            EndpointFamily::UnifiedAlerts => self.unified_alerts,
        }
    }
}

const FAMILIES: [EndpointFamily; 9] = [
    EndpointFamily::ThreatsList,
    EndpointFamily::ThreatActions,
    EndpointFamily::CloudDetection,
    EndpointFamily::Agents,
    EndpointFamily::SitesAccounts,
    EndpointFamily::Users,
    EndpointFamily::User,
    EndpointFamily::System,
    EndpointFamily::UnifiedAlerts,
];

/// Calls a family may make back to back. A writeback's status, verdict and note calls are one
/// family: letting them go at once keeps a webhook's answer from waiting on its own spacing.
fn burst(family: EndpointFamily) -> u32 {
    match family {
        EndpointFamily::ThreatActions => 4,
        _ => 1,
    }
}

/// One GCRA limiter per family, spaced evenly at the family's rate with at most [`burst`] calls
/// at once, so no one-second window ever holds more than the limit (a full burst followed by a
/// full second of refill would hold twice the limit, which is how a well-meaning client earns
/// 429s).
pub(crate) struct Limiters {
    limiters: Vec<(EndpointFamily, DefaultDirectRateLimiter)>,
}

impl Limiters {
    pub(crate) fn new(limits: &RateLimits) -> Self {
        let limiters = FAMILIES
            .iter()
            .map(|&f| {
                let limit = limits.per_second(f).max(1);
                let burst = burst(f).min(limit);
                // A burst of b then the steady rate r puts b - 1 + r calls in a second: lowering
                // the rate by the burst keeps every one-second window within the limit.
                let rate = NonZeroU32::new((limit - (burst - 1)).max(1)).expect("max(1) is non-zero");
                let burst = NonZeroU32::new(burst).expect("at least 1");
                (f, RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)))
            })
            .collect();
        Self { limiters }
    }

    pub(crate) async fn acquire(&self, family: EndpointFamily) {
        if let Some((_, l)) = self.limiters.iter().find(|(f, _)| *f == family) {
            l.until_ready().await;
        }
    }
}

/// The shortest window of a family's shared budget. S1 counts per second, but a one-second
/// window cut in ten would give most families under one request a slice; ten seconds keeps
/// every slice at a few requests while no span of ten seconds holds more than 90% of them.
const SHARED_WINDOW_SECS: u32 = 10;

/// The window of a family's shared budget at `per_second`: ten seconds, longer where a slice
/// would otherwise round to no request (`/system` at 1/s: 13 s, one request per 1.3 s slice).
fn shared_window(per_second: u32) -> u32 {
    // A slice holds `limit * 9/10 / 11` requests; at least one needs limit >= 110/9.
    SHARED_WINDOW_SECS.max((110u32).div_ceil(9 * per_second.max(1)))
}

/// One S1 token's budgets shared by every process (one per family, in the state table behind
/// the [`BudgetCounters`] port), keyed by a hash of the console's API root, the token and the
/// family: the token never reaches the table, a log or `Debug`. Requests here come on top of
/// the client's own pacing ([`Limiters`]).
///
/// Bound: over any span of a family's window (10 s, see [`shared_window`]) every process
/// together sends at most 90% of the family's limit from the table, plus one request per call
/// through the console port started in that span (its allowance: the first request of each
/// family goes without the table, so an idle poll costs no write), except while this process
/// knows the slice spent. At one poll a minute, that is one request per tenant on the token per
/// six windows: well within the 10% left.
pub(crate) struct SharedFamilies {
    budgets: Vec<(EndpointFamily, SharedBudget)>,
}

impl SharedFamilies {
    pub(crate) fn new(
        counters: &Arc<dyn BudgetCounters>,
        limits: &RateLimits,
        api_base: &str,
        token: &ApiToken,
    ) -> Self {
        let budgets = FAMILIES
            .iter()
            .map(|&f| {
                let per_second = limits.per_second(f).max(1);
                let window = shared_window(per_second);
                let name = format!("{f:?}");
                let budget = SharedBudget::new(
                    counters.clone(),
                    "s1",
                    &[api_base, token.expose(), &name],
                    per_second * window,
                    Duration::from_secs(u64::from(window)),
                );
                (f, budget)
            })
            .collect();
        Self { budgets }
    }

    /// The key that names this token's budgets in a process (a hash, as in the table).
    pub(crate) fn process_key(api_base: &str, token: &ApiToken) -> String {
        budget_key("s1", &[api_base, token.expose()])
    }

    /// Waits until a request of `family` may go; `free` when the caller may send it on its
    /// allowance (see the type's docs).
    pub(crate) async fn acquire(&self, family: EndpointFamily, free: bool) {
        if let Some((_, b)) = self.budgets.iter().find(|(f, _)| *f == family) {
            b.acquire_or_free(free).await;
        }
    }

    /// The table keys of this token's budgets (for tests: they show no token).
    pub(crate) fn keys(&self) -> Vec<String> {
        self.budgets.iter().map(|(_, b)| b.key().to_owned()).collect()
    }
}

/// The allowance of one call through the console port: the families that have sent their
/// first request (one bit each).
#[derive(Debug, Default)]
pub(crate) struct Allowance(AtomicU16);

impl Allowance {
    /// Whether this request of `family` is the call's first, taking the allowance.
    pub(crate) fn claim(&self, family: EndpointFamily) -> bool {
        let bit = 1u16 << FAMILIES.iter().position(|f| *f == family).unwrap_or(0);
        self.0.fetch_or(bit, Ordering::Relaxed) & bit == 0
    }
}
