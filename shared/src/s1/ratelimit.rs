use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;

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
