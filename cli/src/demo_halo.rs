//! Demo step 8: a third tenant on the same console whose MSP runs its service desk in HaloPSA
//! (a local stand-in that checks every request against Halo's own API document): customers,
//! sites and assets imported, the backlog as tickets grouped by story, a technician closing one
//! ticket as a false positive, and S1 following, with nothing echoed back.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use s1_bridge_sim::{FakeHalo, HaloConfig, HaloEntity, HaloWebhookAuth, HaloWebhookPayload, Sim};
use s1_shared::platform::PlatformConfig;
use s1_shared::store::{AssetKind, Store};
use s1_shared::usecase::poll_threats::{PollDeps, Selection, run};
use s1_shared::usecase::sync_assets::{AssetDeps, sync_tenant};
use serde_json::{Value, json};

use crate::progress::{Live, ProgressMode};

/// The stand-in's API application (test-only credentials).
pub const DEMO_HALO_CLIENT_ID: &str = "halo-test-client-id";
pub const DEMO_HALO_CLIENT_SECRET: &str = "halo-test-client-secret";
/// The secret Halo's webhook carries in its `X-S1-Bridge-Secret` header (demo-only).
pub const DEMO_HALO_HOOK_SECRET: &str = "demo-halo-webhook-secret";

/// Runs step 8; answers its part of the JSON summary.
#[allow(clippy::too_many_arguments)]
pub async fn halo_step(
    say: &impl Fn(String),
    sim: &Sim,
    store: &Store,
    deps: &PollDeps,
    assets: &AssetDeps,
    hook_base: &str,
    progress: ProgressMode,
    json_out: bool,
) -> Result<Value, Box<dyn std::error::Error>> {
    say("\n8. HaloPSA: a third tenant sends the same console to an MSP's Halo (a local stand-in checking every request against Halo's API document)".into());
    let halo = FakeHalo::start(HaloConfig {
        // The stand-in keeps no limit here; Halo's own is 500 requests in 300 s.
        rate_limit: usize::MAX,
        ..HaloConfig::default()
    })
    .await?;
    let mut tenant = store.get_tenant("demo").await?.ok_or("the demo tenant is missing")?;
    tenant.id = "demo-halo".into();
    tenant.platform = serde_json::from_value(json!({"kind": "halo", "settings": {
        "url": halo.base_url(),
        "client_id": {"kind": "env", "var": "HALO_CLIENT_ID_DEMO"},
        "client_secret": {"kind": "env", "var": "HALO_CLIENT_SECRET_DEMO"},
        "ticket_type": "Security Incident",
        "client": "Contoso Ltd",
        "inbound": {"header": {"name": "X-S1-Bridge-Secret", "value": {"kind": "env", "var": "HALO_HOOK_DEMO"}}},
        "requests_per_5_minutes": 1_000_000,
    }}))?;
    debug_assert!(matches!(tenant.platform, PlatformConfig::Halo(_)));
    store.put_tenant(&tenant).await?;

    // Customers, sites and assets first, so tickets land under the right client and site.
    let sync = sync_tenant(assets, &tenant, Instant::now() + Duration::from_secs(600)).await;
    if let Some(e) = &sync.error {
        return Err(format!("the Halo asset sync failed: {e}").into());
    }
    let bridge_assets: Vec<Value> = halo
        .assets()
        .into_iter()
        .filter(|a| a["inventory_number"].as_str().is_some_and(|n| n.starts_with("S1:")))
        .collect();
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    for a in &bridge_assets {
        *by_type
            .entry(a["assettype_name"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    let types: Vec<String> = by_type.iter().map(|(t, n)| format!("{n} {t}")).collect();
    say(format!(
        "   asset sync: {} clients, {} sites and {} assets ({}) created in Halo; decommissioned agents are not",
        halo.clients().len() - 1,
        halo.sites().len() - 1,
        bridge_assets.len(),
        types.join(", ")
    ));

    let live = Live::new("poll", progress, json_out);
    let halo_deps = PollDeps {
        progress: live.as_ref().map(Live::poll),
        ..deps.clone()
    };
    let only = Selection::Tenant("demo-halo".into());
    let first = run(&halo_deps, &only, Instant::now() + Duration::from_secs(600)).await?;
    if let Some(live) = &live {
        live.finish();
    }
    let tickets: Vec<Value> = halo
        .tickets()
        .into_iter()
        .filter(|t| {
            t["third_party_id_string"]
                .as_str()
                .is_some_and(|k| k.starts_with("s1:"))
        })
        .collect();
    let clients: HashSet<i64> = tickets.iter().filter_map(|t| t["client_id"].as_i64()).collect();
    let sites: HashSet<i64> = tickets.iter().filter_map(|t| t["site_id"].as_i64()).collect();
    say(format!("   {}", crate::progress::poll_line(&first.tenants[0])));
    say(format!(
        "   Halo: {} tickets, one per story, under {} clients and {} sites (the threats' own); joins were added as notes",
        tickets.len(),
        clients.len(),
        sites.len()
    ));

    // A technician closes a ticket of a story with several threats still open in S1.
    let mut chosen = None;
    for t in &tickets {
        let key = t["third_party_id_string"].as_str().unwrap_or_default();
        let Some(story) = story_of(store, &tenant.console_url, key).await? else {
            continue;
        };
        if story.len() < 2 {
            continue;
        }
        let s1 = sim.control().threat(&story[0]).await?;
        if s1["threatInfo"]["incidentStatus"] == "unresolved" {
            chosen = Some((t.clone(), story));
            break;
        }
    }
    let Some((ticket, threats)) = chosen else {
        return Ok(json!({"tickets": tickets.len(), "assets": bridge_assets.len()}));
    };
    let id = ticket["id"].as_i64().unwrap_or_default();
    halo.close_ticket_as_technician(
        id,
        "Closed",
        "False Positive",
        "Known IT tool; benign",
        "Alex Technician",
    )?;
    let code = halo
        .fire_webhook(
            &format!("{hook_base}/webhooks/halo/demo-halo"),
            id,
            HaloWebhookPayload::EventOnly,
            &HaloWebhookAuth::Header {
                name: "X-S1-Bridge-Secret".into(),
                value: DEMO_HALO_HOOK_SECRET.into(),
            },
        )
        .await?;
    let in_s1 = sim.control().threat(&threats[0]).await?;
    let note = in_s1["notes"]
        .as_array()
        .and_then(|n| n.last())
        .and_then(|n| n["text"].as_str())
        .unwrap_or_default()
        .to_owned();
    say(format!(
        "   Alex closes ticket #{id} \"{}\" as False Positive -> Halo's webhook (event only) -> HTTP {code}; the bridge reads the ticket back from Halo's API",
        ticket["summary"].as_str().unwrap_or_default()
    ));
    say(format!(
        "   S1 threat {}: {} / {} ({} threat(s) in the story); note: {note}",
        threats[0],
        in_s1["threatInfo"]["incidentStatus"].as_str().unwrap_or("?"),
        in_s1["threatInfo"]["analystVerdict"].as_str().unwrap_or("?"),
        threats.len()
    ));
    let actions = halo.records(HaloEntity::Action).len();
    let again = run(deps, &only, Instant::now() + Duration::from_secs(600)).await?;
    let new_actions = halo.records(HaloEntity::Action).len() - actions;
    say(format!(
        "   next poll: {}; Halo got {new_actions} new actions (our own write is not sent back)",
        crate::progress::poll_line(&again.tenants[0])
    ));
    let mapped = store
        .get_assets("demo-halo", AssetKind::Customer, &[String::from("1100000000000000001")])
        .await?;
    Ok(json!({
        "clients": halo.clients().len() - 1,
        "sites": halo.sites().len() - 1,
        "assets": bridge_assets.len(),
        "tickets": tickets.len(),
        "close_webhook": code,
        "s1_after": {"status": in_s1["threatInfo"]["incidentStatus"], "verdict": in_s1["threatInfo"]["analystVerdict"], "note": note},
        "actions_after_echo": new_actions,
        "customer_a_mapped_to": mapped.values().next().and_then(|r| r.platform_ref.clone()),
        "refused_requests": halo.refused().len(),
    }))
}

/// The S1 threats of the story behind an alert key.
async fn story_of(
    store: &Store,
    console_url: &str,
    alert_key: &str,
) -> Result<Option<Vec<String>>, Box<dyn std::error::Error>> {
    let Some(id) = s1_shared::domain::AlertKey::story_id(alert_key, console_url) else {
        return Ok(None);
    };
    let Some(key) = s1_shared::domain::story_key_of(id) else {
        return Ok(None);
    };
    Ok(store
        .get_story("demo-halo", key)
        .await?
        .filter(|s| s.value.id == id)
        .map(|s| {
            s.value
                .members
                .keys()
                .filter_map(|m| m.threat_id().map(str::to_owned))
                .collect()
        }))
}
