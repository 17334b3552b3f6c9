//! The HaloPSA platform end to end, through real HTTP: the simulated S1 console, a fake Halo
//! that checks every request against Halo's own OpenAPI document, the poller, the webhook
//! endpoint, and the asset sync.

use std::sync::Arc;

use integration_tests::halo::{HOOK_HEADER, HOOK_SECRET, HaloHarness};
use integration_tests::writeback::s1_state;
use s1_bridge_sim::{FakeHalo, HaloConfig, HaloWebhookAuth, HaloWebhookPayload};
use s1_shared::store::{EmbeddedTable, ItemTable};
use serde_json::{Value, json};

fn embedded() -> Arc<dyn ItemTable> {
    Arc::new(EmbeddedTable::in_memory().unwrap())
}

#[path = "halo/tickets.rs"]
mod tickets;
use tickets::*;
#[path = "halo/assets.rs"]
mod assets;
use assets::*;
#[path = "halo/tenants.rs"]
mod tenants;
use tenants::*;

fn fast_halo() -> HaloConfig {
    HaloConfig {
        rate_limit: 100_000,
        ..HaloConfig::default()
    }
}

/// The severity the ticket's details show.
fn severity_of(ticket: &Value) -> String {
    let html = ticket["details_html"].as_str().unwrap_or_default();
    let after = html
        .split("<th align=\"left\">Severity</th><td>")
        .nth(1)
        .unwrap_or_default();
    after.split('<').next().unwrap_or_default().to_owned()
}

/// The S1 threats of the story a ticket is for.
async fn threats_of(h: &HaloHarness, ticket: &Value) -> Vec<String> {
    threats_of_tenant(h, "acme", ticket).await
}

/// The S1 threats of the story a ticket of `tenant` is for.
async fn threats_of_tenant(h: &HaloHarness, tenant: &str, ticket: &Value) -> Vec<String> {
    let key = ticket["third_party_id_string"].as_str().unwrap();
    let story_key = integration_tests::writeback::story_key(key);
    let story = h.h.store.get_story(tenant, &story_key).await.unwrap().unwrap().value;
    story.members.keys().map(ToString::to_string).collect()
}

async fn stories(h: &HaloHarness) -> usize {
    h.h.store
        .table()
        .query("TENANT#acme", "STORY#", None, 10_000)
        .await
        .unwrap()
        .items
        .len()
}

/// A ticket whose story has at least `n` threats.
async fn ticket_with(h: &HaloHarness, n: usize) -> (i64, Vec<String>) {
    for t in h.story_tickets() {
        let threats = threats_of(h, &t).await;
        if threats.len() >= n {
            return (t["id"].as_i64().unwrap(), threats);
        }
    }
    panic!("no story of {n} threats")
}

/// The agent, file hash and detection time of a threat, as S1 has them.
async fn agent_and_hash(h: &HaloHarness, threat: &str) -> (String, String, time::OffsetDateTime) {
    let t = h.h.sim.control().threat(threat).await.unwrap();
    (
        t["agentRealtimeInfo"]["agentUuid"].as_str().unwrap().to_owned(),
        t["threatInfo"]["sha1"].as_str().unwrap_or_default().to_owned(),
        s1_shared::s1::dto::parse_time(t["threatInfo"]["identifiedAt"].as_str().unwrap()).unwrap(),
    )
}

fn notes_with(h: &HaloHarness, ticket: i64, text: &str) -> Vec<Value> {
    h.halo
        .actions(ticket)
        .into_iter()
        .filter(|a| a["note"].as_str().unwrap_or_default().contains(text))
        .collect()
}

// ---- customers, sites and assets ---------------------------------------------------------------

async fn sync(h: &HaloHarness) -> s1_shared::usecase::sync_assets::AssetReport {
    h.sync_assets().await
}

/// Every S1 agent, decommissioned ones included.
async fn agents(h: &HaloHarness) -> Vec<s1_shared::s1::dto::Agent> {
    let client = integration_tests::client_for(
        &h.h.sim,
        s1_bridge_sim::DEFAULT_TOKEN,
        integration_tests::fast_retry_options(),
    );
    integration_tests::items(client.agents(&s1_shared::s1::AgentQuery {
        include_decommissioned: true,
        ..Default::default()
    }))
    .await
    .unwrap()
}

/// The Halo id our mapping table holds for an S1 object.
async fn mapped(h: &HaloHarness, kind: s1_shared::store::AssetKind, id: &str) -> Option<i64> {
    let found = h.h.store.get_assets("acme", kind, &[id.to_owned()]).await.unwrap();
    found.get(id)?.platform_ref.as_deref()?.parse().ok()
}

fn halo_asset(h: &HaloHarness, uuid: &str) -> Option<Value> {
    h.halo
        .assets()
        .into_iter()
        .find(|a| a["inventory_number"] == format!("S1:{uuid}"))
}

fn posts(h: &HaloHarness) -> usize {
    h.halo
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.starts_with("/api/"))
        .count()
}

fn halo_asset_count(h: &HaloHarness) -> usize {
    h.halo
        .assets()
        .iter()
        .filter(|a| a["inventory_number"].as_str().is_some_and(|n| n.starts_with("S1:")))
        .count()
}

/// The operator maps Customer A onto Halo's existing Contoso Ltd (12) and its HQ onto Contoso
/// HQ (34), as `s1-bridge halo map` does.
async fn map_customer_a_onto_contoso(h: &HaloHarness) {
    use s1_shared::store::{AssetKind, AssetRecord};
    let link = |kind, id: &str, to: &str| AssetRecord {
        kind,
        id: id.into(),
        digest: String::new(),
        platform_ref: Some(to.into()),
        active: true,
    };
    h.h.store
        .put_assets(
            "acme",
            &[
                link(AssetKind::Customer, "1100000000000000001", "12"),
                link(AssetKind::Site, "1200000000000000001", "34"),
            ],
        )
        .await
        .unwrap();
}

/// A computer's hostname and serial as Halo keeps them: `fields[]` items of its asset type.
fn identity(host: &str, serial: &str) -> Value {
    json!([{"name": "Hostname", "value": host}, {"name": "Serial Number", "value": serial}])
}

/// The value an asset keeps in its field `name` (a `fields[]` item).
fn field_value<'a>(asset: &'a Value, name: &str) -> Option<&'a str> {
    asset["fields"].as_array()?.iter().find(|f| f["name"] == name)?["value"].as_str()
}

/// Another customer of the MSP (Globex, a Halo client no S1 account maps to) has an asset with
/// the same hostname, serial and inventory number as one of our agents. Whatever the matching
/// rule, the sync leaves Globex's asset where and as it is and gives the agent its own.
async fn asset_matching_stays_within_mapped_clients(table: Arc<dyn ItemTable>, matching: &str) {
    use s1_bridge_sim::HaloEntity;
    use s1_shared::store::AssetKind;
    let h = HaloHarness::start(5, table, fast_halo(), json!({"assets": {"matching": matching}})).await;
    let all = agents(&h).await;
    let a = all
        .iter()
        .find(|a| a.is_decommissioned != Some(true) && a.serial_number.is_some())
        .unwrap();
    let (uuid, host) = (a.uuid.clone().unwrap(), a.computer_name.clone().unwrap());
    let serial = a.serial_number.clone().unwrap();
    let globex = h.halo.upsert(HaloEntity::Client, json!({"name": "Globex"})).unwrap()[0]["id"].clone();
    let site = h
        .halo
        .upsert(HaloEntity::Site, json!({"name": "Globex HQ", "client_id": globex}))
        .unwrap()[0]["id"]
        .clone();
    let theirs = json!({"assettype_id": 1, "client_id": globex, "site_id": site,
        "fields": identity(&host, &serial), "inventory_number": format!("S1:{uuid}")});
    let theirs_id = h.halo.upsert(HaloEntity::Asset, theirs).unwrap()[0]["id"]
        .as_i64()
        .unwrap();
    let r = sync(&h).await;
    assert_eq!((r.error.as_deref(), r.failed), (None, 0), "{matching}: {r:?}");
    let after = h.halo.record(HaloEntity::Asset, theirs_id).unwrap();
    assert_eq!(
        (
            &after["client_id"],
            &after["site_id"],
            &after["inactive"],
            &after["key_field"]
        ),
        (&globex, &site, &json!(false), &json!(host)),
        "{matching}: Globex's asset was taken over: {after}"
    );
    let ours = mapped(&h, AssetKind::Asset, &uuid)
        .await
        .expect("the agent has an asset");
    assert_ne!(ours, theirs_id, "{matching}");
    let client = mapped(&h, AssetKind::Customer, a.account_id.as_deref().unwrap()).await;
    assert_eq!(
        h.halo.record(HaloEntity::Asset, ours).unwrap()["client_id"].as_i64(),
        client,
        "{matching}"
    );
    assert!(h.refusals().is_empty(), "{matching}: {:?}", h.refusals());
    // Within the mapped client, an existing asset is still matched (adopted, not duplicated).
    let h = HaloHarness::start(5, embedded(), fast_halo(), json!({"assets": {"matching": matching}})).await;
    map_customer_a_onto_contoso(&h).await;
    let listed = agents(&h).await;
    let a = listed
        .iter()
        .find(|a| {
            a.is_decommissioned != Some(true)
                && a.serial_number.is_some()
                && a.site_id.as_deref() == Some("1200000000000000001")
        })
        .unwrap();
    let existing = json!({"assettype_id": 1, "client_id": 12, "site_id": 34,
        "fields": identity(a.computer_name.as_deref().unwrap(), a.serial_number.as_deref().unwrap()),
        "inventory_number": format!("S1:{}", a.uuid.as_deref().unwrap())});
    let existing = h.halo.upsert(HaloEntity::Asset, existing).unwrap()[0]["id"]
        .as_i64()
        .unwrap();
    sync(&h).await;
    assert_eq!(
        mapped(&h, AssetKind::Asset, a.uuid.as_deref().unwrap()).await,
        Some(existing),
        "{matching}: the customer's own asset is matched"
    );
}

/// A token alert for a tenant's S1 token.
fn token_notice(threshold: i64) -> s1_shared::platform::Notice {
    let now = time::OffsetDateTime::now_utc();
    s1_shared::platform::Notice::TokenExpiring {
        id: format!("token-{threshold}"),
        timestamp: now,
        tenant: "acme".into(),
        console: "https://acme.sentinelone.net".into(),
        expires_at: now + time::Duration::days(threshold),
        days_left: threshold,
        threshold_days: threshold,
        message: format!("the S1 API token expires in {threshold} days"),
    }
}

macro_rules! on_both_stores {
    ($($name:ident),+ $(,)?) => {
        mod embedded_store {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name(super::embedded()).await;
                }
            )+
        }
        mod dynamodb_local {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name(integration_tests::dynamodb_table("halo").await).await;
                }
            )+
        }
    };
}

on_both_stores!(
    a_backlog_becomes_one_ticket_per_story,
    a_ticket_closed_by_a_technician_resolves_every_threat_of_its_story,
    every_close_reason_row_sets_its_verdict,
    a_technician_note_and_a_workflow_status_reach_s1,
    forged_and_unauthenticated_webhooks_change_nothing,
    joins_console_changes_and_reopens_become_actions,
    a_severity_table_and_closing_when_s1_resolves,
    a_429_from_halo_is_waited_out,
    a_ticket_whose_answer_was_lost_is_made_once,
    customers_sites_and_assets_land_in_halo,
    an_asset_whose_answer_was_lost_is_made_once,
    a_fixed_type_and_dont_move,
    a_type_named_by_an_s1_field_is_created_when_missing,
    dont_create_creates_no_asset,
    mapped_clients_and_sites_are_linked_not_renamed,
    basic_auth_and_a_batched_delivery_of_two_tickets,
    ticket_numbers_are_scoped_to_their_tenant_and_instance,
    an_unknown_own_agent_fails_the_delivery_instead_of_echoing_our_notes,
    end_user_replies_are_skipped_and_only_agents_decide,
    asset_matching_by_hostname_stays_within_mapped_clients,
    asset_matching_by_serial_stays_within_mapped_clients,
    asset_matching_by_inventory_number_stays_within_mapped_clients,
    a_few_new_agents_are_looked_up_exactly_and_an_import_lists_each_scope_once,
    an_asset_created_earlier_in_the_run_is_matched_by_hostname,
    custom_webhook_payloads_name_the_ticket_anywhere_halo_puts_it,
    a_tickets_user_belongs_to_its_client_and_site,
    our_tickets_are_found_again_by_what_halo_searches,
    a_webhook_for_a_known_ticket_costs_at_most_two_halo_requests,
    a_status_newer_than_the_kept_settings_has_them_read_again,
    a_halo_shared_by_two_tenants_keeps_each_tenants_tickets_webhooks_and_mappings,
);
