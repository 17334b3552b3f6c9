//! What a poll run reports: counts per tenant, their sums, and CloudWatch EMF lines.

use crate::usecase::status::RunFacts;
use serde::Serialize;
use time::OffsetDateTime;

use crate::telemetry::{Metric, NAMESPACE, emf_line};

/// How a tenant's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    #[default]
    Completed,
    /// Stopped before the deadline with more to do; the next run continues.
    Partial,
    Failed,
    /// Another run holds the tenant's lease.
    Skipped,
}

/// Counts of one tenant's run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TenantReport {
    pub tenant: String,
    pub outcome: Outcome,
    pub fetched: u64,
    pub new: u64,
    pub changed: u64,
    pub unchanged: u64,
    /// Changes that were only our own writeback coming back: not sent to the platform.
    pub echoes: u64,
    pub published: u64,
    /// Events the platform refused (4xx): recorded, not retried until the threat changes.
    pub failed: u64,
    pub pages: u64,
    /// Seconds between now and the newest change handled.
    pub lag_seconds: Option<i64>,
    /// Events the platform refused for good in this run, kept as publish dead letters.
    pub publish_dead_letters: u64,
    /// Publish dead letters sent again (an operator asked to replay them).
    pub replayed: u64,
    /// Pending writebacks retried after the poll.
    pub writebacks_applied: u64,
    pub writebacks_dead: u64,
    /// Writebacks still waiting for S1 after the run (`None`: the run did not look at them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writebacks_pending: Option<u64>,
    pub error: Option<String>,
}

/// The report of a run, over every tenant it touched.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PollReport {
    pub tenants: Vec<TenantReport>,
}

impl TenantReport {
    /// Adds `other`'s counts to these (the lag is the larger of the two).
    pub fn add(&mut self, other: &TenantReport) {
        self.fetched += other.fetched;
        self.new += other.new;
        self.changed += other.changed;
        self.unchanged += other.unchanged;
        self.echoes += other.echoes;
        self.published += other.published;
        self.failed += other.failed;
        self.publish_dead_letters += other.publish_dead_letters;
        self.replayed += other.replayed;
        self.writebacks_applied += other.writebacks_applied;
        self.writebacks_dead += other.writebacks_dead;
        self.pages += other.pages;
        self.lag_seconds = self.lag_seconds.max(other.lag_seconds);
    }
}

impl PollReport {
    /// Sums over tenants.
    pub fn totals(&self) -> TenantReport {
        let mut t = TenantReport {
            tenant: "*".into(),
            ..TenantReport::default()
        };
        for r in &self.tenants {
            t.add(r);
        }
        if self.tenants.iter().any(|r| r.outcome == Outcome::Failed) {
            t.outcome = Outcome::Failed;
        }
        t
    }

    /// One CloudWatch EMF line per tenant.
    pub fn emf_lines(&self, function: &str, now: OffsetDateTime) -> Vec<String> {
        let ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        self.tenants
            .iter()
            .map(|r| {
                let count = Metric::count;
                let mut metrics = vec![
                    count("Fetched", r.fetched),
                    count("New", r.new),
                    count("Changed", r.changed),
                    count("Unchanged", r.unchanged),
                    count("Echoes", r.echoes),
                    count("Published", r.published),
                    count("Failed", r.failed),
                    count("Pages", r.pages),
                    count("RunFailed", u64::from(r.outcome == Outcome::Failed)),
                    count("WritebacksApplied", r.writebacks_applied),
                    count("PublishDeadLetters", r.publish_dead_letters),
                    // New dead letters of either direction: the alarm watches this one.
                    count("DeadLetters", r.writebacks_dead + r.publish_dead_letters),
                ];
                if let Some(lag) = r.lag_seconds {
                    metrics.push(Metric {
                        name: "LagSeconds",
                        value: lag as f64,
                        unit: "Seconds",
                    });
                }
                emf_line(
                    NAMESPACE,
                    &[("Function", function), ("Tenant", &r.tenant)],
                    &metrics,
                    ms,
                )
            })
            .collect()
    }
}

impl TenantReport {
    /// The facts of a poll run's report (`None` for a run that did not happen: another run
    /// held the lease).
    pub fn status_facts(&self) -> Option<RunFacts> {
        let failed = match self.outcome {
            Outcome::Skipped => return None,
            Outcome::Failed => true,
            Outcome::Completed | Outcome::Partial => false,
        };
        Some(RunFacts {
            failed,
            cause: self.error.clone().filter(|_| failed),
            lag_seconds: match self.outcome {
                Outcome::Completed => Some(0),
                Outcome::Partial => self.lag_seconds.or(Some(0)),
                _ => None,
            },
            pending: self.writebacks_pending,
            dead_letters: None,
            token_days_left: None,
        })
    }
}
