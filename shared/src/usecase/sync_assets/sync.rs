//! One tenant's sync with its S1 client: customers and sites, then agents page by page, then
//! the agents gone from S1.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use super::push::{Pusher, Subject, scope_payload};
use super::{AssetDeps, AssetReport, AssetSettings, Stop, agent_fields};
use crate::platform::Platform;
use crate::s1::dto::{Account, Site};
use crate::s1::{AgentQuery, S1Client, S1Error, SiteQuery};
use crate::store::{AssetKind, AssetRecord, TenantConfig};

pub(super) async fn sync_with(
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
