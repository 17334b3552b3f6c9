//! One tenant's sync with its S1 client: customers and sites, then agents page by page, then
//! the agents gone from S1, each pass stopping once the run's time is spent.

use std::collections::HashSet;

use futures_util::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use super::push::{Pusher, Subject, scope_payload};
use super::{AssetDeps, AssetReport, AssetSettings, Budget, Outcome, Stop, agent_fields};
use crate::platform::Platform;
use crate::s1::dto::{Account, Site};
use crate::s1::{AgentQuery, S1Client, S1Error, SiteQuery};
use crate::store::{AssetKind, AssetRecord};
use crate::tenant::TenantConfig;

/// How a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Through everything it had.
    Done,
    /// Stopped for the deadline; what it pushed is stored.
    OutOfTime,
}

/// An S1 account (a customer) or site, as the sync pushes it.
struct Scope {
    id: String,
    name: Option<String>,
    account_id: Option<String>,
    site_id: Option<String>,
    /// S1 fields the platform also gets.
    extra: Value,
}

/// What one tenant's sync works with.
struct Run<'a> {
    deps: &'a AssetDeps,
    tenant: &'a TenantConfig,
    settings: &'a AssetSettings,
    platform: &'a dyn Platform,
    pusher: Pusher<'a>,
    budget: Budget,
}

pub(super) async fn sync_with(
    deps: &AssetDeps,
    tenant: &TenantConfig,
    client: &S1Client,
    platform: &dyn Platform,
    settings: &AssetSettings,
    budget: Budget,
    report: &mut AssetReport,
) -> Result<(), Stop> {
    let run = Run {
        deps,
        tenant,
        settings,
        platform,
        pusher: Pusher {
            tenant: &tenant.id,
            platform,
        },
        budget,
    };
    let (customers, sites) = scopes(client, tenant, report).await?;
    let mut pass = run.push_scopes(AssetKind::Customer, &customers, report).await?;
    // Sites look their customer's platform record up: the customers are stored by now.
    if pass == Pass::Done {
        pass = run.push_scopes(AssetKind::Site, &sites, report).await?;
    }
    if pass == Pass::Done {
        let listed = (customers.len() + sites.len()) as u64;
        let seen = run.push_agents(client, listed, report).await?;
        pass = match seen {
            // Only a run that listed every agent knows which are gone.
            Some(seen) => run.deactivate_gone(&seen, report).await?,
            None => Pass::OutOfTime,
        };
    }
    if pass == Pass::OutOfTime {
        report.outcome = Outcome::Partial;
    }
    Ok(())
}

/// The tenant's customers (S1 accounts) and sites. Sites are read first: they also give the
/// accounts when the token cannot list accounts (site scope).
async fn scopes(
    client: &S1Client,
    tenant: &TenantConfig,
    report: &mut AssetReport,
) -> Result<(Vec<Scope>, Vec<Scope>), Stop> {
    let site_query = SiteQuery {
        account_ids: tenant.account_ids.clone(),
        site_ids: tenant.site_ids.clone(),
        ..SiteQuery::default()
    };
    let sites: Vec<Site> = client.sites(&site_query).map_ok(|p| p.items).try_concat().await?;
    let customer = |id: String, name: Option<String>, extra: Value| Scope {
        account_id: Some(id.clone()),
        id,
        name,
        site_id: None,
        extra,
    };
    let customers: Vec<Scope> = match client.accounts().map_ok(|p| p.items).try_concat().await {
        Ok(list) => list
            .into_iter()
            .filter(|a: &Account| {
                tenant.account_ids.is_empty() || a.id.as_ref().is_some_and(|i| tenant.account_ids.contains(i))
            })
            .filter_map(|a| {
                let extra = json!({"state": a.state, "accountType": a.account_type});
                a.id.map(|id| customer(id, a.name, extra))
            })
            .collect(),
        Err(S1Error::Forbidden { .. }) => {
            report.accounts_from_sites = true;
            let mut seen = HashSet::new();
            sites
                .iter()
                .filter_map(|s| s.account_id.clone().map(|id| (id, s.account_name.clone())))
                .filter(|(id, _)| seen.insert(id.clone()))
                .map(|(id, name)| customer(id, name, json!({})))
                .collect()
        }
        Err(e) => return Err(e.into()),
    };
    let sites = sites
        .into_iter()
        .filter_map(|s| {
            let id = s.id?;
            Some(Scope {
                extra: json!({"accountId": s.account_id, "accountName": s.account_name, "state": s.state}),
                site_id: Some(id.clone()),
                id,
                name: s.name,
                account_id: s.account_id,
            })
        })
        .collect();
    Ok((customers, sites))
}

impl Run<'_> {
    /// Stores `writes` (what was pushed), then passes `result` on.
    async fn keep<T>(&self, writes: &[AssetRecord], result: Result<T, Stop>) -> Result<T, Stop> {
        self.deps.store.put_assets(&self.tenant.id, writes).await?;
        result
    }

    /// Customers or sites.
    async fn push_scopes(&self, kind: AssetKind, scopes: &[Scope], report: &mut AssetReport) -> Result<Pass, Stop> {
        let ids: Vec<String> = scopes.iter().map(|s| s.id.clone()).collect();
        let known = self.deps.store.get_assets(&self.tenant.id, kind, &ids).await?;
        let mut writes = Vec::new();
        for s in scopes {
            let payload = scope_payload(
                Some(&s.id),
                s.name.as_deref(),
                s.extra.clone(),
                self.settings,
                s.site_id.as_deref(),
                s.account_id.as_deref(),
            );
            let subject = Subject {
                name: s.name.as_deref(),
                account_id: s.account_id.as_deref(),
                site_id: s.site_id.as_deref(),
                ..Subject::new(kind, &s.id)
            };
            match self.pusher.push(subject, payload, true, known.get(&s.id), report).await {
                Ok(r) => writes.extend(r),
                Err(e) => return self.keep(&writes, Err(e)).await,
            }
            if self.budget.spent(report) {
                return self.keep(&writes, Ok(Pass::OutOfTime)).await;
            }
        }
        self.keep(&writes, Ok(Pass::Done)).await
    }

    /// Agents, page by page. The agents S1 listed (to find the ones gone), or `None` when the
    /// run's time ran out first.
    async fn push_agents(
        &self,
        client: &S1Client,
        listed: u64,
        report: &mut AssetReport,
    ) -> Result<Option<HashSet<String>>, Stop> {
        let (tenant, settings) = (self.tenant, self.settings);
        let mut seen: HashSet<String> = HashSet::new();
        let query = AgentQuery {
            account_ids: tenant.account_ids.clone(),
            site_ids: tenant.site_ids.clone(),
            include_decommissioned: true,
            ..AgentQuery::default()
        };
        let mut pages = std::pin::pin!(client.agents(&query));
        let mut expected = None;
        let mut done = listed;
        loop {
            if self.budget.spent(report) {
                return Ok(None);
            }
            let Some(page) = pages.next().await else { break };
            let page = page?;
            // Customers and sites were handled above; the total is theirs plus S1's agent count.
            expected = expected.or(page.total_items.map(|t| t + done));
            done += page.items.len() as u64;
            let agents = page.items;
            let ids: Vec<String> = agents.iter().filter_map(|a| a.uuid.clone()).collect();
            let known = self.deps.store.get_assets(&tenant.id, AssetKind::Asset, &ids).await?;
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
                match self.pusher.push(subject, payload, active, prior, report).await {
                    Ok(Some(mut r)) if !self.platform.keeps_own_ids() => {
                        // Remember the site the platform holds the asset on (for "don't move").
                        r.platform_ref = prior
                            .and_then(|k| k.platform_ref.clone())
                            .filter(|_| settings.no_move)
                            .or(a.site_id.clone());
                        writes.push(r);
                    }
                    Ok(r) => writes.extend(r),
                    Err(e) => return self.keep(&writes, Err(e)).await,
                }
                if self.budget.spent(report) {
                    return self.keep(&writes, Ok(None)).await;
                }
            }
            self.keep(&writes, Ok(())).await?;
            if let Some(progress) = &self.deps.progress {
                progress(
                    report,
                    crate::usecase::Tick {
                        done,
                        expected: expected.map(|e| e.max(done)),
                    },
                );
            }
        }
        Ok(Some(seen))
    }

    /// Agents gone from S1 (uninstalled, deleted): deactivated, never deleted.
    async fn deactivate_gone(&self, seen: &HashSet<String>, report: &mut AssetReport) -> Result<Pass, Stop> {
        let tenant = &self.tenant.id;
        let mut cursor = None;
        loop {
            let page = self
                .deps
                .store
                .scan_assets(tenant, AssetKind::Asset, cursor.as_deref(), 500)
                .await?;
            let mut writes = Vec::new();
            for r in page.items.iter().filter(|r| r.active && !seen.contains(&r.id)) {
                let payload = json!({"external_id": r.id, "reason": "no longer in S1"});
                let subject = Subject::new(AssetKind::Asset, &r.id);
                match self.pusher.push(subject, payload, false, Some(r), report).await {
                    Ok(new) => writes.extend(new.map(|new| AssetRecord {
                        digest: r.digest.clone(),
                        platform_ref: r.platform_ref.clone(),
                        ..new
                    })),
                    Err(e) => return self.keep(&writes, Err(e)).await,
                }
                if self.budget.spent(report) {
                    return self.keep(&writes, Ok(Pass::OutOfTime)).await;
                }
            }
            self.keep(&writes, Ok(())).await?;
            match page.next {
                Some(n) if !self.budget.spent(report) => cursor = Some(n),
                Some(_) => return Ok(Pass::OutOfTime),
                None => return Ok(Pass::Done),
            }
        }
    }
}
