//! sync-assets: S1 accounts, sites and agents kept in step with the platform's customers, sites
//! and assets. Only what changed since the stored snapshot is pushed; agents decommissioned or
//! gone from S1 are deactivated (never deleted) and reactivated when they return.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::platform::{Notice, Platform, PlatformError, PlatformResolver, SyncChange, Synced};
use crate::s1::dto::{Account, Agent, Site};
use crate::s1::{AgentQuery, ConsoleError, Consoles, S1Client, S1Error, SiteQuery};
use crate::secrets::SecretError;
use crate::store::{AssetKind, AssetRecord, Store, StoreError, TenantConfig};
use crate::telemetry::{Metric, NAMESPACE, emf_line};

/// Name of the lease a sync holds per tenant.
pub const LEASE_JOB: &str = "assets";

/// What a sync needs. Built once per process.
#[derive(Clone)]
pub struct AssetDeps {
    pub store: Store,
    /// The tenants' S1 clients, called with their tokens.
    pub consoles: Consoles,
    pub platforms: Arc<dyn PlatformResolver>,
    pub owner: String,
    /// Running counts after each page of agents (the CLI's live display); `None` under Lambda.
    pub progress: Option<crate::usecase::Progress<AssetReport>>,
}

/// How the asset type is chosen (PSA seed: one type for all, from a field, or ordered rules).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum AssetType {
    Fixed { r#type: String },
    Field { field: String },
    Rules { rules: Vec<TypeRule>, default: String },
}

/// One ordered rule: the first whose field equals the value wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypeRule {
    pub field: String,
    pub equals: String,
    pub r#type: String,
}

/// Where an S1 account or site lands on the platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Placement {
    #[serde(default)]
    pub customer: Option<String>,
    #[serde(default)]
    pub site: Option<String>,
}

/// Per-tenant asset settings (`platform.settings.assets`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetSettings {
    /// S1 agent field -> platform field.
    #[serde(default = "default_fields")]
    pub field_map: HashMap<String, String>,
    #[serde(default = "default_type")]
    pub asset_type: AssetType,
    /// Never create assets; only update or deactivate the ones already known.
    #[serde(default)]
    pub no_create: bool,
    /// Keep an existing asset on its site even when S1 moved the agent.
    #[serde(default)]
    pub no_move: bool,
    /// S1 site id (or account id) -> platform customer/site.
    #[serde(default)]
    pub site_map: HashMap<String, Placement>,
    #[serde(default)]
    pub default_site: Option<Placement>,
}

fn default_fields() -> HashMap<String, String> {
    [
        ("computerName", "hostname"),
        ("osName", "os"),
        ("lastIpToMgmt", "ip"),
        ("serialNumber", "serial_number"),
        ("modelName", "model"),
        ("domain", "domain"),
        ("lastActiveDate", "last_seen"),
        ("agentVersion", "agent_version"),
        ("lastLoggedInUserName", "last_user"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .collect()
}

fn default_type() -> AssetType {
    AssetType::Field {
        field: "machineType".into(),
    }
}

impl Default for AssetSettings {
    fn default() -> Self {
        Self {
            field_map: default_fields(),
            asset_type: default_type(),
            no_create: false,
            no_move: false,
            site_map: HashMap::new(),
            default_site: None,
        }
    }
}

impl AssetSettings {
    /// The tenant's settings, defaults where absent (they were checked when the tenant was read).
    pub fn for_tenant(t: &TenantConfig) -> Self {
        t.platform.assets().unwrap_or_default()
    }
}

/// The S1 fields of an agent that mappings and rules can name.
pub fn agent_fields(a: &Agent) -> Map<String, Value> {
    let t = |v: &Option<String>| v.clone().map(Value::String).unwrap_or(Value::Null);
    let time = |v: &Option<OffsetDateTime>| {
        v.map(|t| Value::String(crate::s1::dto::format_time(t)))
            .unwrap_or(Value::Null)
    };
    let mut m = Map::new();
    for (k, v) in [
        ("uuid", t(&a.uuid)),
        ("id", t(&a.id)),
        ("computerName", t(&a.computer_name)),
        ("osType", t(&a.os_type)),
        ("osName", t(&a.os_name)),
        ("osRevision", t(&a.os_revision)),
        ("machineType", t(&a.machine_type)),
        ("siteId", t(&a.site_id)),
        ("siteName", t(&a.site_name)),
        ("accountId", t(&a.account_id)),
        ("accountName", t(&a.account_name)),
        ("groupName", t(&a.group_name)),
        ("domain", t(&a.domain)),
        ("modelName", t(&a.model_name)),
        ("serialNumber", t(&a.serial_number)),
        ("agentVersion", t(&a.agent_version)),
        ("externalIp", t(&a.external_ip)),
        ("lastIpToMgmt", t(&a.last_ip_to_mgmt)),
        ("lastLoggedInUserName", t(&a.last_logged_in_user_name)),
        ("networkStatus", t(&a.network_status)),
        ("lastActiveDate", time(&a.last_active_date)),
    ] {
        m.insert(k.to_owned(), v);
    }
    m
}

impl AssetSettings {
    fn asset_type(&self, fields: &Map<String, Value>) -> String {
        let get = |f: &str| fields.get(f).and_then(Value::as_str).unwrap_or_default().to_owned();
        match &self.asset_type {
            AssetType::Fixed { r#type } => r#type.clone(),
            AssetType::Field { field } => {
                let v = get(field);
                if v.is_empty() { "unknown".into() } else { v }
            }
            AssetType::Rules { rules, default } => rules
                .iter()
                .find(|r| get(&r.field).eq_ignore_ascii_case(&r.equals))
                .map(|r| r.r#type.clone())
                .unwrap_or_else(|| default.clone()),
        }
    }

    fn placement(&self, site_id: Option<&str>, account_id: Option<&str>) -> Option<Placement> {
        site_id
            .and_then(|s| self.site_map.get(s))
            .or_else(|| account_id.and_then(|a| self.site_map.get(a)))
            .cloned()
            .or_else(|| self.default_site.clone())
    }

    /// The platform's view of an agent: mapped fields, type, customer/site.
    pub fn asset_payload(&self, a: &Agent) -> Value {
        let fields = agent_fields(a);
        let mut mapped = Map::new();
        let mut keys: Vec<_> = self.field_map.iter().collect();
        keys.sort();
        for (s1, platform) in keys {
            mapped.insert(platform.clone(), fields.get(s1).cloned().unwrap_or(Value::Null));
        }
        json!({
            "external_id": a.uuid,
            "asset_type": self.asset_type(&fields),
            "customer": {"external_id": a.account_id, "name": a.account_name},
            "site": {"external_id": a.site_id, "name": a.site_name},
            "placement": self.placement(a.site_id.as_deref(), a.account_id.as_deref()),
            "fields": mapped,
        })
    }
}

/// Counts of one tenant's sync.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AssetReport {
    pub tenant: String,
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

/// Syncs every enabled tenant, one at a time (daily job; S1 agent listing is the slow part).
///
/// # Errors
/// Only when the tenant list cannot be read.
pub async fn sync_all(deps: &AssetDeps) -> Result<Vec<AssetReport>, StoreError> {
    let tenants: Vec<TenantConfig> = deps
        .store
        .list_tenants()
        .await?
        .into_iter()
        .filter(|t| t.enabled)
        .collect();
    let mut out = Vec::new();
    for t in &tenants {
        out.push(sync_tenant(deps, t).await);
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
enum Stop {
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

/// Syncs one tenant under its lease.
pub async fn sync_tenant(deps: &AssetDeps, tenant: &TenantConfig) -> AssetReport {
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
            report.error = Some("another run holds this tenant's asset lease".into());
            return report;
        }
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    let fenced = AssetDeps {
        store: deps.store.fenced(lease.clone()),
        ..deps.clone()
    };
    let work = async {
        if let Err(e) = run(&fenced, tenant, &mut report).await {
            report.error = Some(e.to_string());
        }
    };
    if let Err(e) = deps.store.keep_alive(&lease, work).await {
        report.error = Some(e.to_string());
    }
    let _ = deps.store.give_back(&lease).await;
    tracing::info!(
        tenant = %report.tenant, created = report.created, updated = report.updated, unchanged = report.unchanged,
        deactivated = report.deactivated, reactivated = report.reactivated, failed = report.failed,
        error = report.error.as_deref(), "asset sync report"
    );
    report
}

struct Pusher<'a> {
    tenant: &'a str,
    platform: &'a dyn Platform,
}

/// What is being synced: the object's kind, S1 ids and S1 fields.
struct Subject<'a> {
    kind: AssetKind,
    id: &'a str,
    name: Option<&'a str>,
    account_id: Option<&'a str>,
    site_id: Option<&'a str>,
    s1: Map<String, Value>,
}

impl<'a> Subject<'a> {
    fn new(kind: AssetKind, id: &'a str) -> Self {
        Self {
            kind,
            id,
            name: None,
            account_id: None,
            site_id: None,
            s1: Map::new(),
        }
    }
}

impl Pusher<'_> {
    /// Pushes one object if its payload changed (or its active flag did), and returns the record
    /// to store, or `None` when nothing changed or the platform refused it.
    async fn push(
        &self,
        subject: Subject<'_>,
        payload: Value,
        active: bool,
        known: Option<&AssetRecord>,
        report: &mut AssetReport,
    ) -> Result<Option<AssetRecord>, Stop> {
        let (kind, id) = (subject.kind, subject.id);
        let digest = crate::domain::short_digest(&serde_json::to_vec(&payload).unwrap_or_default());
        if let Some(k) = known.filter(|k| k.digest.is_empty() && k.platform_ref.is_some()) {
            // Mapped by the operator onto an existing record: link it as it is.
            report.linked += 1;
            return Ok(Some(AssetRecord {
                digest,
                active,
                ..k.clone()
            }));
        }
        let change = match known {
            None if !active => return Ok(None), // decommissioned and never seen: nothing to say
            None => SyncChange::Created,
            Some(k) if k.active && !active => SyncChange::Deactivated,
            Some(k) if !k.active && active => SyncChange::Reactivated,
            Some(k) if k.digest != digest && active => SyncChange::Updated,
            Some(_) => {
                report.unchanged += 1;
                return Ok(None);
            }
        };
        let kind_name = match kind {
            AssetKind::Customer => "customer",
            AssetKind::Site => "site",
            AssetKind::Asset => "asset",
        };
        let verb = if change == SyncChange::Deactivated {
            "deactivated"
        } else {
            "upserted"
        };
        let event = format!("{kind_name}.{verb}");
        let fields = match payload {
            Value::Object(m) => m,
            other => Map::from_iter([("value".to_owned(), other)]),
        };
        let notice = Notice::for_synced(Synced {
            id: crate::domain::event_id(self.tenant, &event, id, None)
                .replace("msg_", &format!("msg_{}_", &digest[..8])),
            timestamp: OffsetDateTime::now_utc(),
            kind,
            external_id: id.to_owned(),
            active,
            change,
            name: subject.name.map(str::to_owned),
            account_id: subject.account_id.map(str::to_owned),
            site_id: subject.site_id.map(str::to_owned),
            platform_ref: known.and_then(|k| k.platform_ref.clone()),
            fields,
            s1: subject.s1,
        });
        match self.platform.notify(&notice).await {
            Ok(receipt) => {
                match change {
                    SyncChange::Created => report.created += 1,
                    SyncChange::Updated => report.updated += 1,
                    SyncChange::Reactivated => report.reactivated += 1,
                    SyncChange::Deactivated => report.deactivated += 1,
                }
                // A platform that keeps ids of its own (Halo) answers with the record's id: that
                // is the mapping from now on.
                Ok(Some(AssetRecord {
                    kind,
                    id: id.to_owned(),
                    digest,
                    platform_ref: receipt
                        .platform_ref
                        .or_else(|| known.and_then(|k| k.platform_ref.clone())),
                    active,
                }))
            }
            Err(PlatformError::Rejected { status, .. }) => {
                tracing::warn!(tenant = %self.tenant, id, status, "platform refused an asset event; retried next run");
                report.failed += 1;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn scope_payload(
    id: Option<&str>,
    name: Option<&str>,
    extra: Value,
    settings: &AssetSettings,
    site: Option<&str>,
    account: Option<&str>,
) -> Value {
    json!({ "external_id": id, "name": name, "s1": extra, "placement": settings.placement(site, account) })
}

async fn run(deps: &AssetDeps, tenant: &TenantConfig, report: &mut AssetReport) -> Result<(), Stop> {
    let settings = AssetSettings::for_tenant(tenant);
    let platform = deps.platforms.resolve(tenant).await?;
    if !platform.keeps_assets() {
        report.note = Some(format!(
            "{} keeps no customers, sites or assets: nothing to sync",
            platform.name()
        ));
        return Ok(());
    }
    // A 401 re-reads the token once and syncs again (see [`Consoles`]); what was pushed before
    // it is in the snapshot, so the second pass pushes only the rest.
    let (platform, settings) = (platform.as_ref(), &settings);
    deps.consoles
        .with_token_state(tenant, report, |client, report| async move {
            let result = sync_with(deps, tenant, &client, platform, settings, report).await;
            (report, result)
        })
        .await
}

async fn sync_with(
    deps: &AssetDeps,
    tenant: &TenantConfig,
    client: &S1Client,
    platform: &dyn Platform,
    settings: &AssetSettings,
    report: &mut AssetReport,
) -> Result<(), Stop> {
    let p = Pusher {
        tenant: &tenant.id,
        platform,
    };

    // Sites first: they also give the accounts when the token cannot list accounts.
    let site_query = SiteQuery {
        account_ids: tenant.account_ids.clone(),
        site_ids: tenant.site_ids.clone(),
        ..SiteQuery::default()
    };
    let sites: Vec<Site> = client.sites(&site_query).map_ok(|p| p.items).try_concat().await?;
    let accounts: Vec<(String, Option<String>, Value)> = match client.accounts().map_ok(|p| p.items).try_concat().await
    {
        Ok(list) => list
            .into_iter()
            .filter(|a: &Account| {
                tenant.account_ids.is_empty() || a.id.as_ref().is_some_and(|i| tenant.account_ids.contains(i))
            })
            .filter_map(|a| {
                a.id.clone().map(|id| {
                    (
                        id,
                        a.name.clone(),
                        json!({"state": a.state, "accountType": a.account_type}),
                    )
                })
            })
            .collect(),
        Err(S1Error::Forbidden { .. }) => {
            report.accounts_from_sites = true;
            let mut seen = HashSet::new();
            sites
                .iter()
                .filter_map(|s| s.account_id.clone().map(|id| (id, s.account_name.clone())))
                .filter(|(id, _)| seen.insert(id.clone()))
                .map(|(id, name)| (id, name, json!({})))
                .collect()
        }
        Err(e) => return Err(e.into()),
    };

    let ids: Vec<String> = accounts.iter().map(|a| a.0.clone()).collect();
    let known = deps.store.get_assets(&tenant.id, AssetKind::Customer, &ids).await?;
    let mut writes = Vec::new();
    for (id, name, extra) in &accounts {
        let payload = scope_payload(Some(id), name.as_deref(), extra.clone(), settings, None, Some(id));
        if let Some(r) = p
            .push(
                Subject {
                    name: name.as_deref(),
                    account_id: Some(id),
                    ..Subject::new(AssetKind::Customer, id)
                },
                payload,
                true,
                known.get(id),
                report,
            )
            .await?
        {
            writes.push(r);
        }
    }
    // Sites look their customer's platform record up: store the customers first.
    deps.store.put_assets(&tenant.id, &std::mem::take(&mut writes)).await?;
    let ids: Vec<String> = sites.iter().filter_map(|s| s.id.clone()).collect();
    let known = deps.store.get_assets(&tenant.id, AssetKind::Site, &ids).await?;
    for s in &sites {
        let Some(id) = &s.id else { continue };
        let extra = json!({"accountId": s.account_id, "accountName": s.account_name, "state": s.state});
        let payload = scope_payload(
            Some(id),
            s.name.as_deref(),
            extra,
            settings,
            Some(id),
            s.account_id.as_deref(),
        );
        if let Some(r) = p
            .push(
                Subject {
                    name: s.name.as_deref(),
                    account_id: s.account_id.as_deref(),
                    site_id: Some(id),
                    ..Subject::new(AssetKind::Site, id)
                },
                payload,
                true,
                known.get(id),
                report,
            )
            .await?
        {
            writes.push(r);
        }
    }
    deps.store.put_assets(&tenant.id, &writes).await?;

    // Agents, page by page; remember which were seen so the ones gone from S1 can be deactivated.
    let mut seen: HashSet<String> = HashSet::new();
    let query = AgentQuery {
        account_ids: tenant.account_ids.clone(),
        site_ids: tenant.site_ids.clone(),
        include_decommissioned: true,
        ..AgentQuery::default()
    };
    let mut pages = std::pin::pin!(client.agents(&query));
    let mut expected = None;
    let mut done = (accounts.len() + sites.len()) as u64;
    while let Some(page) = pages.next().await {
        let page = page?;
        // Customers and sites were handled above; the total is theirs plus S1's agent count.
        expected = expected.or(page.total_items.map(|t| t + done));
        done += page.items.len() as u64;
        let agents = page.items;
        let ids: Vec<String> = agents.iter().filter_map(|a| a.uuid.clone()).collect();
        let known = deps.store.get_assets(&tenant.id, AssetKind::Asset, &ids).await?;
        let mut writes = Vec::new();
        for a in &agents {
            let Some(uuid) = &a.uuid else { continue };
            seen.insert(uuid.clone());
            let active = a.is_decommissioned != Some(true);
            let prior = known.get(uuid);
            if prior.is_none() && settings.no_create {
                if active {
                    report.skipped += 1;
                }
                continue;
            }
            let mut payload = settings.asset_payload(a);
            if settings.no_move {
                if let Some(old_site) = prior.and_then(|k| k.platform_ref.clone()) {
                    // Keep the asset where the platform has it.
                    payload["site"] = json!({"external_id": old_site, "name": null});
                }
            }
            let subject = Subject {
                name: a.computer_name.as_deref(),
                account_id: a.account_id.as_deref(),
                site_id: a.site_id.as_deref(),
                s1: agent_fields(a),
                ..Subject::new(AssetKind::Asset, uuid)
            };
            match p.push(subject, payload, active, prior, report).await {
                Ok(Some(mut r)) if !platform.keeps_own_ids() => {
                    // Remember the site the platform holds the asset on (for "don't move").
                    r.platform_ref = prior
                        .and_then(|k| k.platform_ref.clone())
                        .filter(|_| settings.no_move)
                        .or(a.site_id.clone());
                    writes.push(r);
                }
                Ok(Some(r)) => writes.push(r),
                Ok(None) => {}
                Err(e) => {
                    deps.store.put_assets(&tenant.id, &writes).await?;
                    return Err(e);
                }
            }
        }
        deps.store.put_assets(&tenant.id, &writes).await?;
        if let Some(progress) = &deps.progress {
            progress(
                report,
                crate::usecase::Tick {
                    done,
                    expected: expected.map(|e| e.max(done)),
                },
            );
        }
    }

    // Gone from S1 (uninstalled, deleted): deactivate, never delete.
    let mut cursor = None;
    let started = Instant::now();
    loop {
        let page = deps
            .store
            .scan_assets(&tenant.id, AssetKind::Asset, cursor.as_deref(), 500)
            .await?;
        let mut writes = Vec::new();
        for r in page.items.iter().filter(|r| r.active && !seen.contains(&r.id)) {
            let payload = json!({"external_id": r.id, "reason": "no longer in S1"});
            let subject = Subject::new(AssetKind::Asset, &r.id);
            if let Some(new) = p.push(subject, payload, false, Some(r), report).await? {
                writes.push(AssetRecord {
                    digest: r.digest.clone(),
                    platform_ref: r.platform_ref.clone(),
                    ..new
                });
            }
        }
        deps.store.put_assets(&tenant.id, &writes).await?;
        match page.next {
            Some(n) if started.elapsed() < Duration::from_secs(600) => cursor = Some(n),
            _ => break,
        }
    }
    Ok(())
}
