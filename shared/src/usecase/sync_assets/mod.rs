//! sync-assets: S1 accounts, sites and agents kept in step with the platform's customers, sites
//! and assets. Only what changed since the stored snapshot is pushed; agents decommissioned or
//! gone from S1 are deactivated (never deleted) and reactivated when they return.
//!
//! A run honours its deadline (the Lambda's): once less than [`DEADLINE_MARGIN`] is left (a
//! quarter of its time, if less), it stops after the push in hand, keeps what it pushed in the
//! snapshot and reports [`Outcome::Partial`]; the next run pushes only the rest. A run that did
//! not list every agent deactivates none. Every run pushes at least one change, so a platform
//! slower than one invocation still gets everything over successive runs.

mod push;
mod sync;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;

use crate::platform::{PlatformError, PlatformResolver};
use crate::s1::{ConsoleError, Consoles, S1Error};
use crate::secrets::SecretError;
use crate::store::{Store, StoreError};
use crate::telemetry::{Metric, NAMESPACE, emf_line};
use crate::tenant::TenantConfig;

pub use crate::usecase::poll_threats::Outcome;
// The asset settings are the platform port's (each platform's settings give them); named here
// too, as the sync's input.
pub use crate::platform::{AssetSettings, AssetType, Placement, TypeRule, agent_fields};

/// Name of the lease a sync holds per tenant.
pub const LEASE_JOB: &str = "assets";
/// A run stops when less than this (or a quarter of the run's time, if smaller) is left before
/// its deadline.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(20);

/// What a sync needs. Built once per process.
#[derive(Clone)]
pub struct AssetDeps {
    pub store: Store,
    /// The tenants' S1 clients, called with their tokens.
    pub consoles: Consoles,
    pub platforms: Arc<dyn PlatformResolver>,
    /// Lease holder id: the invocation's request id (the queue consumer adds each message's
    /// own key).
    pub owner: String,
    /// Running counts after each page of agents (the CLI's live display); `None` under Lambda.
    pub progress: Option<crate::usecase::Progress<AssetReport>>,
}

/// Counts of one tenant's sync.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AssetReport {
    pub tenant: String,
    /// `partial`: stopped before the deadline with more to do; the next run continues.
    pub outcome: Outcome,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub deactivated: u64,
    pub reactivated: u64,
    /// New agents not created because the tenant says "don't create new assets".
    pub skipped: u64,
    /// Accounts and sites the operator mapped onto existing platform records: recorded at their
    /// first sync, not written (a later S1 rename is).
    pub linked: u64,
    pub failed: u64,
    /// The token could not list accounts (site scope): accounts were derived from sites.
    pub accounts_from_sites: bool,
    /// Why nothing was synced although nothing failed (a platform that keeps no assets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub error: Option<String>,
}

impl AssetReport {
    /// Calls made to the platform (accepted or refused).
    fn pushes(&self) -> u64 {
        self.created + self.updated + self.deactivated + self.reactivated + self.failed
    }

    /// The CloudWatch EMF line of this report.
    pub fn emf(&self, now: OffsetDateTime) -> String {
        let m = Metric::count;
        let metrics = [
            m("Created", self.created),
            m("Updated", self.updated),
            m("Unchanged", self.unchanged),
            m("Deactivated", self.deactivated),
            m("Reactivated", self.reactivated),
            m("Failed", self.failed),
            m("RunFailed", u64::from(self.error.is_some())),
        ];
        emf_line(
            NAMESPACE,
            &[("Function", "sync-assets"), ("Tenant", &self.tenant)],
            &metrics,
            (now.unix_timestamp_nanos() / 1_000_000) as i64,
        )
    }
}

/// When a run stops: [`DEADLINE_MARGIN`] before its deadline, or a quarter of the time it had
/// when that is less.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    deadline: Instant,
    margin: Duration,
}

impl Budget {
    fn new(deadline: Instant) -> Self {
        Self {
            deadline,
            margin: DEADLINE_MARGIN.min(deadline.saturating_duration_since(Instant::now()) / 4),
        }
    }

    /// Whether the time is spent.
    fn over(&self) -> bool {
        self.deadline.saturating_duration_since(Instant::now()) <= self.margin
    }

    /// Whether the run should stop here: its time is spent and it has pushed something (so
    /// every run makes progress).
    pub(super) fn spent(&self, report: &AssetReport) -> bool {
        report.pushes() > 0 && self.over()
    }
}

/// Syncs every enabled tenant, one at a time (daily job; S1 agent listing is the slow part),
/// until `deadline`: a tenant whose turn comes after it is left for the next run (`partial`).
///
/// # Errors
/// Only when the tenant list cannot be read.
pub async fn sync_all(deps: &AssetDeps, deadline: Instant) -> Result<Vec<AssetReport>, StoreError> {
    let tenants: Vec<TenantConfig> = deps.store.enabled_tenants().await?;
    let budget = Budget::new(deadline);
    let mut out = Vec::new();
    for t in &tenants {
        out.push(if out.is_empty() || !budget.over() {
            sync_within(deps, t, budget).await
        } else {
            AssetReport {
                tenant: t.id.clone(),
                outcome: Outcome::Partial,
                note: Some("not started: the run's time went to the tenants before it; the next run syncs it".into()),
                ..AssetReport::default()
            }
        });
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub(super) enum Stop {
    #[error(transparent)]
    S1(#[from] S1Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error(transparent)]
    Secret(#[from] SecretError),
}

impl ConsoleError for Stop {
    fn is_unauthorized(&self) -> bool {
        matches!(self, Stop::S1(e) if e.is_unauthorized())
    }
}

/// Syncs one tenant under its lease, until `deadline`.
pub async fn sync_tenant(deps: &AssetDeps, tenant: &TenantConfig, deadline: Instant) -> AssetReport {
    sync_within(deps, tenant, Budget::new(deadline)).await
}

async fn sync_within(deps: &AssetDeps, tenant: &TenantConfig, budget: Budget) -> AssetReport {
    let mut report = AssetReport {
        tenant: tenant.id.clone(),
        ..AssetReport::default()
    };
    let now = OffsetDateTime::now_utc();
    // A short lease, renewed while the sync is alive; snapshot writes are fenced by it.
    let lease = match deps
        .store
        .take_lease(&tenant.id, LEASE_JOB, &deps.owner, crate::store::LEASE_TTL, now)
        .await
    {
        Ok(Some(lease)) => lease,
        Ok(None) => {
            report.outcome = Outcome::Skipped;
            report.error = Some("another run holds this tenant's asset lease".into());
            return report;
        }
        Err(e) => {
            report.outcome = Outcome::Failed;
            report.error = Some(e.to_string());
            return report;
        }
    };
    let fenced = AssetDeps {
        store: deps.store.fenced(lease.clone()),
        ..deps.clone()
    };
    let work = async {
        if let Err(e) = run(&fenced, tenant, budget, &mut report).await {
            report.outcome = Outcome::Failed;
            report.error = Some(e.to_string());
        }
    };
    if let Err(e) = deps.store.keep_alive(&lease, work).await {
        report.outcome = Outcome::Failed;
        report.error = Some(e.to_string());
    }
    let _ = deps.store.give_back(&lease).await;
    tracing::info!(
        tenant = %report.tenant, outcome = ?report.outcome, created = report.created, updated = report.updated, unchanged = report.unchanged,
        deactivated = report.deactivated, reactivated = report.reactivated, failed = report.failed,
        error = report.error.as_deref(), "asset sync report"
    );
    report
}

async fn run(deps: &AssetDeps, tenant: &TenantConfig, budget: Budget, report: &mut AssetReport) -> Result<(), Stop> {
    // Defaults where absent (the settings were checked when the tenant was read).
    let settings = tenant.platform.assets().unwrap_or_default();
    let platform = deps.platforms.resolve(tenant).await?;
    if !platform.keeps_assets() {
        report.note = Some(format!(
            "{} keeps no customers, sites or assets: nothing to sync",
            platform.kind()
        ));
        return Ok(());
    }
    // A 401 re-reads the token once and syncs again (see [`Consoles`]); what was pushed before
    // it is in the snapshot, so the second pass pushes only the rest.
    let (platform, settings) = (platform.as_ref(), &settings);
    deps.consoles
        .with_token_state(tenant, report, |client, report| async move {
            let result = sync::sync_with(deps, tenant, &client, platform, settings, budget, report).await;
            (report, result)
        })
        .await
}
