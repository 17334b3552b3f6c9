//! Halo end to end: customers, sites and assets.

use super::*;

pub async fn customers_sites_and_assets_land_in_halo(table: Arc<dyn ItemTable>) {
    use s1_shared::store::AssetKind;
    let h = HaloHarness::start(10, table, fast_halo(), json!({})).await;
    let r = sync(&h).await;
    let agents = agents(&h).await;
    let active = agents.iter().filter(|a| a.is_decommissioned != Some(true)).count();
    assert_eq!((r.error.as_deref(), r.failed), (None, 0), "{r:?}");
    assert_eq!(r.created as usize, 3 + 6 + active, "{r:?}");
    // Accounts as clients, sites under their account's client.
    for name in ["Customer A", "Customer B", "Customer C"] {
        assert!(h.halo.clients().iter().any(|c| c["name"] == name), "{name}");
    }
    for a in &agents {
        let uuid = a.uuid.as_deref().unwrap();
        let Some(asset) = halo_asset(&h, uuid) else {
            assert_eq!(a.is_decommissioned, Some(true), "{uuid} has no asset");
            continue;
        };
        // Identity where Halo keeps it: the type's fields; key_field only shows the key field.
        let host = a.computer_name.as_deref();
        assert_eq!(field_value(&asset, "Hostname"), host, "{asset}");
        assert_eq!(
            field_value(&asset, "Serial Number"),
            a.serial_number.as_deref(),
            "{asset}"
        );
        assert_eq!(field_value(&asset, "Operating System"), a.os_name.as_deref(), "{asset}");
        assert_eq!(asset["key_field"].as_str(), host, "{asset}");
        let site = mapped(&h, AssetKind::Site, a.site_id.as_deref().unwrap())
            .await
            .unwrap();
        let client = mapped(&h, AssetKind::Customer, a.account_id.as_deref().unwrap())
            .await
            .unwrap();
        assert_eq!(
            (asset["site_id"].as_i64(), asset["client_id"].as_i64()),
            (Some(site), Some(client))
        );
        let halo_site = h.halo.record(s1_bridge_sim::HaloEntity::Site, site).unwrap();
        assert_eq!(halo_site["client_id"], client, "the site is under its account's client");
        let server = a.machine_type.as_deref() == Some("server");
        assert_eq!(asset["assettype_id"], if server { 2 } else { 1 }, "{asset}");
        assert_eq!(mapped(&h, AssetKind::Asset, uuid).await, asset["id"].as_i64());
    }
    assert!(h.refusals().is_empty(), "{:?}", h.refusals());
    // Nothing changed: nothing written.
    let before = posts(&h);
    let r = sync(&h).await;
    assert_eq!((r.created, r.updated), (0, 0), "{r:?}");
    assert_eq!(posts(&h), before);
    // Tickets now go under the threat's own client and site.
    h.poll().await;
    assert!(
        h.story_tickets().iter().all(|t| t["client_id"] != 12),
        "mapped, not the default client"
    );

    // Renamed, moved, decommissioned and back in S1.
    let a = agents.iter().find(|a| a.is_decommissioned != Some(true)).unwrap();
    let uuid = a.uuid.clone().unwrap();
    let other_site = agents
        .iter()
        .find_map(|b| b.site_id.clone().filter(|s| Some(s) != a.site_id.as_ref()))
        .unwrap();
    let change = |c: s1_bridge_sim::AgentChange| {
        let sim = h.h.sim.control();
        let uuid = uuid.clone();
        async move { sim.change_agent(&uuid, &c).await.unwrap() }
    };
    change(s1_bridge_sim::AgentChange {
        computer_name: Some("WS-RENAMED".into()),
        site_id: Some(other_site.clone()),
        ..Default::default()
    })
    .await;
    let r = sync(&h).await;
    assert_eq!(r.updated, 1, "{r:?}");
    let asset = halo_asset(&h, &uuid).unwrap();
    assert_eq!(field_value(&asset, "Hostname"), Some("WS-RENAMED"), "{asset}");
    assert_eq!(asset["key_field"], "WS-RENAMED");
    assert_eq!(
        asset["site_id"].as_i64(),
        mapped(&h, AssetKind::Site, &other_site).await
    );
    change(s1_bridge_sim::AgentChange {
        decommissioned: Some(true),
        ..Default::default()
    })
    .await;
    assert_eq!(sync(&h).await.deactivated, 1);
    assert_eq!(halo_asset(&h, &uuid).unwrap()["inactive"], true);
    change(s1_bridge_sim::AgentChange {
        decommissioned: Some(false),
        ..Default::default()
    })
    .await;
    assert_eq!(sync(&h).await.reactivated, 1);
    assert_eq!(halo_asset(&h, &uuid).unwrap()["inactive"], false);
    assert!(h.refusals().is_empty(), "{:?}", h.refusals());
}

pub async fn a_fixed_type_and_dont_move(table: Arc<dyn ItemTable>) {
    let h = HaloHarness::start(
        5,
        table,
        fast_halo(),
        json!({"assets": {"dont_move": true, "asset_type": {"mode": "fixed", "asset_type": "Server"}}}),
    )
    .await;
    sync(&h).await;
    assert!(halo_asset_count(&h) > 0);
    assert!(
        h.halo
            .assets()
            .iter()
            .filter(|a| a["inventory_number"].as_str().is_some_and(|n| n.starts_with("S1:")))
            .all(|a| a["assettype_id"] == 2)
    );
    let agents = agents(&h).await;
    let a = agents.iter().find(|a| a.is_decommissioned != Some(true)).unwrap();
    let uuid = a.uuid.clone().unwrap();
    let site_before = halo_asset(&h, &uuid).unwrap()["site_id"].clone();
    let other_site = agents
        .iter()
        .find_map(|b| b.site_id.clone().filter(|s| Some(s) != a.site_id.as_ref()))
        .unwrap();
    h.h.sim
        .control()
        .change_agent(
            &uuid,
            &s1_bridge_sim::AgentChange {
                site_id: Some(other_site),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    sync(&h).await;
    assert_eq!(halo_asset(&h, &uuid).unwrap()["site_id"], site_before, "don't move");
    assert!(h.refusals().is_empty(), "{:?}", h.refusals());
}

pub async fn a_type_named_by_an_s1_field_is_created_when_missing(table: Arc<dyn ItemTable>) {
    let h = HaloHarness::start(
        5,
        table,
        fast_halo(),
        json!({"assets": {"asset_type": {"mode": "field", "field": "machineType"}}}),
    )
    .await;
    sync(&h).await;
    let types = h.halo.records(s1_bridge_sim::HaloEntity::AssetType);
    for a in agents(&h).await.iter().filter(|a| a.is_decommissioned != Some(true)) {
        let want = a.machine_type.clone().unwrap();
        let asset = halo_asset(&h, a.uuid.as_deref().unwrap()).unwrap();
        let t = types.iter().find(|t| t["id"] == asset["assettype_id"]).unwrap();
        assert!(
            t["name"].as_str().unwrap().eq_ignore_ascii_case(&want),
            "{t} for {want}"
        );
        assert_eq!(t["assetgroup_id"], 1, "under the default group");
        // Laid out like the group's computers, so the agent's identity has somewhere to go.
        assert_eq!(t["keyfield_id"], 1, "{t}");
        assert_eq!(field_value(&asset, "Hostname"), a.computer_name.as_deref(), "{asset}");
    }
    assert!(h.refusals().is_empty(), "{:?}", h.refusals());
}

pub async fn dont_create_creates_no_asset(table: Arc<dyn ItemTable>) {
    let h = HaloHarness::start(5, table, fast_halo(), json!({"assets": {"dont_create": true}})).await;
    let r = sync(&h).await;
    assert!(halo_asset_count(&h) == 0 && r.skipped > 0, "{r:?}");
    assert!(h.refusals().is_empty(), "{:?}", h.refusals());
}

pub async fn mapped_clients_and_sites_are_linked_not_renamed(table: Arc<dyn ItemTable>) {
    let h = HaloHarness::start(5, table, fast_halo(), json!({})).await;
    map_customer_a_onto_contoso(&h).await;
    let r = sync(&h).await;
    assert_eq!((r.error.as_deref(), r.linked), (None, 2), "{r:?}");
    let clients = h.halo.clients();
    assert!(
        !clients.iter().any(|c| c["name"] == "Customer A"),
        "no second client for Customer A"
    );
    assert_eq!(
        h.halo.record(s1_bridge_sim::HaloEntity::Client, 12).unwrap()["name"],
        "Contoso Ltd"
    );
    assert_eq!(
        h.halo.record(s1_bridge_sim::HaloEntity::Site, 34).unwrap()["name"],
        "Contoso HQ"
    );
    let branch = h
        .halo
        .sites()
        .into_iter()
        .find(|s| s["name"] == "Customer A Branch 1")
        .unwrap();
    assert_eq!(branch["client_id"], 12, "created under the mapped client");
    for a in agents(&h)
        .await
        .iter()
        .filter(|a| a.site_id.as_deref() == Some("1200000000000000001") && a.is_decommissioned != Some(true))
    {
        assert_eq!(halo_asset(&h, a.uuid.as_deref().unwrap()).unwrap()["site_id"], 34);
    }
}

/// The `GET /Asset` list reads a sync made: `(exact lookups, scope listings)`, told apart by
/// whether the query names a value (`inventory_number` or `search`).
fn asset_reads(h: &HaloHarness) -> (usize, usize) {
    let reads: Vec<_> = h
        .halo
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == "/api/Asset")
        .collect();
    let exact = reads
        .iter()
        .filter(|r| r.query.iter().any(|(k, _)| k == "inventory_number" || k == "search"))
        .count();
    (exact, reads.len() - exact)
}

fn halo_with_agents(agents: usize) -> s1_bridge_sim::SimConfig {
    s1_bridge_sim::SimConfig {
        threats: 0,
        agents,
        cloud_alerts: 0,
        ..s1_bridge_sim::SimConfig::default()
    }
}

/// A first sync of `count` agents (settings `extra`): it creates every client, site and active
/// agent's asset; the harness and the number of active agents.
async fn first_sync(count: usize, table: Arc<dyn ItemTable>, extra: Value) -> (HaloHarness, usize) {
    let h = HaloHarness::start_with(halo_with_agents(count), table, fast_halo(), extra).await;
    let r = sync(&h).await;
    let active = agents(&h)
        .await
        .iter()
        .filter(|a| a.is_decommissioned != Some(true))
        .count();
    assert_eq!(
        (r.error.as_deref(), r.failed, r.created as usize),
        (None, 0, 3 + 6 + active),
        "{r:?}"
    );
    (h, active)
}

/// A daily sync that meets a few new agents looks each one up exactly (one request each, no
/// listing of the client's assets); a first import of many lists each scope once after the
/// run's first 20 lookups and matches the rest in memory: fewer reads than agents.
pub async fn a_few_new_agents_are_looked_up_exactly_and_an_import_lists_each_scope_once(table: Arc<dyn ItemTable>) {
    let (h, active) = first_sync(6, embedded(), json!({})).await;
    assert_eq!(
        asset_reads(&h),
        (active, 0),
        "one exact lookup per new agent, no listing"
    );

    let (h, active) = first_sync(120, table, json!({})).await;
    let (exact, listings) = asset_reads(&h);
    // 20 exact lookups, then one page per scope (3 clients' 6 sites, under 100 assets each).
    assert_eq!((exact, listings), (20, 6), "{active} agents");
    assert_eq!(halo_asset_count(&h), active, "each asset created once");
    assert!(h.refusals().is_empty(), "{:?}", h.refusals());
}

/// Matching by hostname, two agents of one site share a hostname, both met after the sync has
/// listed the site's assets: the second finds the asset the run created for the first (as a
/// lookup in Halo would), so Halo has one asset for the name, not two.
pub async fn an_asset_created_earlier_in_the_run_is_matched_by_hostname(table: Arc<dyn ItemTable>) {
    use s1_shared::store::AssetKind;
    let h = HaloHarness::start_with(
        halo_with_agents(80),
        table,
        fast_halo(),
        json!({"assets": {"matching": "hostname"}}),
    )
    .await;
    let active: Vec<_> = agents(&h)
        .await
        .into_iter()
        .filter(|a| a.is_decommissioned != Some(true))
        .collect();
    // The sync meets agents in S1's order: the last agent, and the one before it on its site,
    // both well past the 20 exact lookups.
    let last = active.last().unwrap();
    let first = active[30..active.len() - 1]
        .iter()
        .rev()
        .find(|a| a.site_id == last.site_id)
        .expect("two late agents on one site");
    let host = first.computer_name.clone().unwrap();
    h.h.sim
        .control()
        .change_agent(
            last.uuid.as_deref().unwrap(),
            &s1_bridge_sim::AgentChange {
                computer_name: Some(host.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let r = sync(&h).await;
    assert_eq!((r.error.as_deref(), r.failed), (None, 0), "{r:?}");
    assert!(asset_reads(&h).1 > 0, "the run listed the site's assets");
    let ids = (
        mapped(&h, AssetKind::Asset, first.uuid.as_deref().unwrap()).await,
        mapped(&h, AssetKind::Asset, last.uuid.as_deref().unwrap()).await,
    );
    assert!(ids.0.is_some(), "{ids:?}");
    assert_eq!(ids.0, ids.1, "the second agent matched the first one's asset");
    let named = h
        .halo
        .assets()
        .iter()
        .filter(|a| field_value(a, "Hostname") == Some(host.as_str()))
        .count();
    assert_eq!(named, 1, "one asset named {host}");
    assert_eq!(halo_asset_count(&h), active.len() - 1);
}

/// Halo makes an asset but the answer is lost on the way back (a gateway's 504): the create is
/// not sent again in the same call, and the next sync finds the asset by its match rule
/// instead of making it again: one asset per agent.
pub async fn an_asset_whose_answer_was_lost_is_made_once(table: Arc<dyn ItemTable>) {
    let h = HaloHarness::start(10, table, fast_halo(), json!({})).await;
    let agents = agents(&h).await;
    let active = agents.iter().filter(|a| a.is_decommissioned != Some(true)).count();
    // The first asset write's answer is lost (clients and sites are written before assets).
    h.halo.lose_answers("/api/Asset", 1, 504);
    let first = sync(&h).await;
    let second = sync(&h).await;
    assert_eq!(
        (second.error.as_deref(), second.failed),
        (None, 0),
        "{first:?} {second:?}"
    );
    for a in agents.iter().filter(|a| a.is_decommissioned != Some(true)) {
        let uuid = a.uuid.as_deref().unwrap();
        let copies = h
            .halo
            .assets()
            .iter()
            .filter(|x| x["inventory_number"] == format!("S1:{uuid}"))
            .count();
        assert_eq!(copies, 1, "agent {uuid}: {first:?} {second:?}");
    }
    assert_eq!(halo_asset_count(&h), active);
}
