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

pub async fn a_backlog_becomes_one_ticket_per_story(table: Arc<dyn ItemTable>) {
    let h = HaloHarness::start(60, table, fast_halo(), json!({})).await;
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.error.as_deref(), r.published, r.failed), (None, 60, 0), "{r:?}");
    assert!(
        h.refusals().is_empty(),
        "every request fits Halo's document: {:?}",
        h.refusals()
    );
    let tickets = h.story_tickets();
    assert_eq!(tickets.len(), stories(&h).await, "one ticket per story");
    let mut seen = std::collections::HashSet::new();
    for t in &tickets {
        assert!(
            seen.insert(t["third_party_id_string"].clone()),
            "one ticket per story key"
        );
        assert_eq!(t["tickettype_id"], 21, "{t}");
        assert_eq!((t["client_id"].as_i64(), t["site_id"].as_i64()), (Some(12), Some(34)));
        let want = match severity_of(t).as_str() {
            "critical" => 1,
            "high" => 2,
            "medium" => 3,
            "low" => 4,
            other => panic!("severity {other:?} in {t}"),
        };
        assert_eq!(t["priority_id"], want, "priority by severity name: {t}");
        assert!(t["details_html"].as_str().unwrap().contains("/incidents/threats/"));
        // Every threat after the first joined the story as an action of ours.
        let members = threats_of(&h, t).await.len();
        let id = t["id"].as_i64().unwrap();
        let joins = h
            .halo
            .actions(id)
            .iter()
            .filter(|a| a["note"].as_str().unwrap_or_default().contains("joined this story"))
            .count();
        assert_eq!(joins, members - 1, "ticket {id}");
    }
    // Nothing new: nothing sent, Halo not even asked.
    let before = h.halo.stats().api_requests;
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.published, 0, "{r:?}");
    assert_eq!(h.halo.stats().api_requests, before);
}

pub async fn a_ticket_closed_by_a_technician_resolves_every_threat_of_its_story(table: Arc<dyn ItemTable>) {
    let h = HaloHarness::start(60, table, fast_halo(), json!({})).await;
    h.poll().await;
    let (ticket, threats) = ticket_with(&h, 2).await;
    h.halo
        .close_ticket_as_technician(
            ticket,
            "Closed",
            "False Positive",
            "signed installer from IT",
            "Alex Technician",
        )
        .unwrap();
    assert_eq!(h.fire(ticket).await, 202);
    for id in &threats {
        let (status, verdict, notes) = s1_state(&h.h, id).await;
        assert_eq!(
            (status.as_str(), verdict.as_str()),
            ("resolved", "false_positive"),
            "{id}"
        );
        assert_eq!(
            notes
                .iter()
                .filter(|n| n.as_str() == "[halo] closed by Alex Technician: False Positive — signed installer from IT")
                .count(),
            1,
            "{notes:?}"
        );
    }
    // Fired again (Halo retries): nothing new.
    let writes = integration_tests::writeback::s1_writes(&h.h).await;
    assert!([200, 202].contains(&h.fire(ticket).await));
    assert_eq!(integration_tests::writeback::s1_writes(&h.h).await, writes);
    // Our own write to S1 comes back on the next poll: not sent to Halo.
    let actions = h.halo.actions(ticket).len();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.published, r.echoes as usize), (0, threats.len()), "{r:?}");
    assert_eq!(h.halo.actions(ticket).len(), actions);
    assert!(h.refusals().is_empty(), "{:?}", h.refusals());
}

pub async fn every_close_reason_row_sets_its_verdict(table: Arc<dyn ItemTable>) {
    let h = HaloHarness::start(120, table, fast_halo(), json!({})).await;
    h.poll().await;
    let rows = [
        ("True Positive", "true_positive"),
        ("Activity Blocked", "true_positive"),
        ("Attack Failed", "true_positive"),
        ("Incident", "true_positive"),
        ("False Positive", "false_positive"),
        ("Benign", "false_positive"),
        ("Testing", "false_positive"),
        ("Suppressed", "false_positive"),
        ("IT Misconfiguration", "suspicious"),
        ("Policy Violation", "suspicious"),
        ("PUP/PUA", "suspicious"),
        ("Other", "suspicious"),
        ("Resolved", "undefined"),
    ];
    let tickets = h.story_tickets();
    assert!(tickets.len() >= rows.len(), "{} stories", tickets.len());
    for ((outcome, verdict), t) in rows.iter().zip(&tickets) {
        let ticket = t["id"].as_i64().unwrap();
        let mut before = std::collections::HashMap::new();
        for id in threats_of(&h, t).await {
            before.insert(id.clone(), s1_state(&h.h, &id).await.1);
        }
        h.halo
            .close_ticket_as_technician(ticket, "Closed", outcome, "", "Alex Technician")
            .unwrap();
        assert_eq!(h.fire(ticket).await, 202, "{outcome}");
        for (id, was) in &before {
            // No verdict in the close reason: S1 keeps the one it has.
            let want = if *verdict == "undefined" { was.as_str() } else { verdict };
            let (status, v, _) = s1_state(&h.h, id).await;
            assert_eq!(
                (status.as_str(), v.as_str()),
                ("resolved", want),
                "{outcome}: threat {id}"
            );
        }
    }
}

pub async fn a_technician_note_and_a_workflow_status_reach_s1(table: Arc<dyn ItemTable>) {
    let h = HaloHarness::start(40, table, fast_halo(), json!({})).await;
    h.poll().await;
    let (ticket, threats) = ticket_with(&h, 1).await;
    h.halo
        .add_technician_note(ticket, "isolating the host now", "Alex Technician")
        .unwrap();
    assert_eq!(h.fire(ticket).await, 202);
    // A workflow moves the ticket (no action); Halo's API says so, and S1 follows.
    h.halo.set_ticket_status(ticket, "In Progress").unwrap();
    assert_eq!(h.fire(ticket).await, 202);
    for id in &threats {
        let (status, _, notes) = s1_state(&h.h, id).await;
        assert_eq!(status, "in_progress", "{id}");
        assert!(
            notes
                .iter()
                .any(|n| n == "[halo] comment by Alex Technician — isolating the host now"),
            "{notes:?}"
        );
    }
}

pub async fn forged_and_unauthenticated_webhooks_change_nothing(table: Arc<dyn ItemTable>) {
    let h = HaloHarness::start(30, table, fast_halo(), json!({})).await;
    h.poll().await;
    let (ticket, threats) = ticket_with(&h, 1).await;
    let url = format!("{}/halo/acme", h.base);
    let writes = integration_tests::writeback::s1_writes(&h.h).await;
    let mut before = Vec::new();
    for id in &threats {
        before.push(s1_state(&h.h, id).await.0);
    }
    // No secret, a wrong one, the wrong scheme: one 401.
    for auth in [
        HaloWebhookAuth::None,
        HaloWebhookAuth::Header {
            name: HOOK_HEADER.into(),
            value: "guess".into(),
        },
        HaloWebhookAuth::Basic {
            username: "halo".into(),
            password: HOOK_SECRET.into(),
        },
    ] {
        let code = h
            .halo
            .fire_webhook(&url, ticket, HaloWebhookPayload::EventOnly, &auth)
            .await
            .unwrap();
        assert_eq!(code, 401, "{auth:?}");
    }
    // Authenticated, but the payload lies: it claims the ticket closed; Halo's API says it is
    // not, so nothing reaches S1.
    let mut forged = h.halo.webhook_payload(ticket, HaloWebhookPayload::FullObject).unwrap();
    forged["ticket"]["status_id"] = json!(9);
    forged["ticket"]["hasbeenclosed"] = json!(true);
    let auth = HaloWebhookAuth::Header {
        name: HOOK_HEADER.into(),
        value: HOOK_SECRET.into(),
    };
    assert_eq!(FakeHalo::post_webhook(&url, &forged, &auth).await.unwrap(), 200);
    // A ticket Halo does not have, and a body naming none.
    let ghost = json!({"object_id": 999_999, "event": "ticket status changed"});
    assert_eq!(FakeHalo::post_webhook(&url, &ghost, &auth).await.unwrap(), 200);
    assert_eq!(
        FakeHalo::post_webhook(&url, &json!({"event": "x"}), &auth)
            .await
            .unwrap(),
        200,
        "no ticket id: answered and logged, so Halo does not disable the webhook"
    );
    assert_eq!(integration_tests::writeback::s1_writes(&h.h).await, writes);
    for (id, was) in threats.iter().zip(&before) {
        assert_eq!(&s1_state(&h.h, id).await.0, was, "{id} as it was");
    }
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

pub async fn joins_console_changes_and_reopens_become_actions(table: Arc<dyn ItemTable>) {
    let h = HaloHarness::start(40, table, fast_halo(), json!({})).await;
    h.poll().await;
    // A story about a file (a fileless one is keyed by its storyline, which a new threat does
    // not share).
    let mut found = None;
    for t in h.story_tickets() {
        let threats = threats_of(&h, &t).await;
        let (agent, sha1, detected) = agent_and_hash(&h, &threats[0]).await;
        if !sha1.is_empty() {
            found = Some((t["id"].as_i64().unwrap(), agent, sha1, detected));
            break;
        }
    }
    let (ticket, agent, sha1, detected) = found.expect("a story about a file");
    // Detected within the story's 90 days, so it joins rather than starting a new story.
    let soon_after = Some(detected + time::Duration::minutes(1));
    // A new threat on the same endpoint and file joins the story: an action, no new ticket.
    let tickets = h.story_tickets().len();
    let joined =
        h.h.sim
            .control()
            .add_threats(&s1_bridge_sim::NewThreats {
                count: 1,
                agent_uuid: Some(agent.clone()),
                sha1: Some(sha1.clone()),
                detected_at: soon_after,
            })
            .await
            .unwrap();
    let before = notes_with(&h, ticket, "joined this story").len();
    h.poll().await;
    assert_eq!(h.story_tickets().len(), tickets);
    assert_eq!(notes_with(&h, ticket, "joined this story").len(), before + 1);
    // Changed in the S1 console: an action saying so.
    h.h.sim
        .control()
        .console_update(&joined[0], Some("in_progress"), None)
        .await
        .unwrap();
    h.poll().await;
    let changed = notes_with(&h, ticket, "changed in the SentinelOne console");
    assert_eq!(changed.len(), 1, "{:?}", h.halo.actions(ticket));
    assert!(changed[0]["note"].as_str().unwrap().contains("in_progress"));
    // Closed by a technician (S1 resolves), then a new threat on the same file: the story
    // reopens in S1, and the ticket with it.
    h.halo
        .close_ticket_as_technician(ticket, "Closed", "True Positive", "contained", "Alex Technician")
        .unwrap();
    assert_eq!(h.fire(ticket).await, 202);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.published, 0, "our own resolution is not sent back: {r:?}");
    h.h.sim
        .control()
        .add_threats(&s1_bridge_sim::NewThreats {
            count: 1,
            agent_uuid: Some(agent),
            sha1: Some(sha1),
            detected_at: soon_after,
        })
        .await
        .unwrap();
    h.poll().await;
    let t = h.halo.ticket(ticket).unwrap();
    assert_eq!(t["status_id"], 10, "Re-opened: {t}");
    let reopened = notes_with(&h, ticket, "reopened this story");
    assert_eq!(reopened.len(), 1);
    assert_eq!(reopened[0]["new_status"], 10);
    // The reopen is ours: the webhook it fires changes nothing in S1.
    let writes = integration_tests::writeback::s1_writes(&h.h).await;
    assert!([200, 202].contains(&h.fire(ticket).await));
    assert_eq!(integration_tests::writeback::s1_writes(&h.h).await, writes);
    assert!(h.refusals().is_empty(), "{:?}", h.refusals());
}

pub async fn a_severity_table_and_closing_when_s1_resolves(table: Arc<dyn ItemTable>) {
    let table_settings = json!({
        "priorities": {"critical": "Low", "high": "Low", "medium": 4, "low": "Low", "info": "Low"},
        "close_when_resolved": true,
    });
    let h = HaloHarness::start(40, table, fast_halo(), table_settings).await;
    h.poll().await;
    let tickets = h.story_tickets();
    assert!(
        tickets.iter().all(|t| t["priority_id"] == 4),
        "every severity maps to Low"
    );
    // Every threat of a story resolved in the S1 console: the ticket closes.
    let open = tickets.iter().find(|t| t["status_id"] != 9).expect("an open ticket");
    let id = open["id"].as_i64().unwrap();
    for threat in threats_of(&h, open).await {
        h.h.sim
            .control()
            .console_update(&threat, Some("resolved"), Some("false_positive"))
            .await
            .unwrap();
    }
    h.poll().await;
    assert_eq!(h.halo.ticket(id).unwrap()["status_id"], 9);
    // Closing is ours: nothing comes back to S1.
    let writes = integration_tests::writeback::s1_writes(&h.h).await;
    assert!([200, 202].contains(&h.fire(id).await));
    assert_eq!(integration_tests::writeback::s1_writes(&h.h).await, writes);
}

pub async fn a_429_from_halo_is_waited_out(table: Arc<dyn ItemTable>) {
    let h = HaloHarness::start(30, table, fast_halo(), json!({})).await;
    h.halo.fail_next(3, 429);
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.error.as_deref(), r.published, r.failed), (None, 30, 0), "{r:?}");
    assert_eq!(h.halo.stats().rate_limited + h.halo.stats().faults, 3);
    assert_eq!(h.story_tickets().len(), stories(&h).await);
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

pub async fn basic_auth_and_a_batched_delivery_of_two_tickets(table: Arc<dyn ItemTable>) {
    let h = HaloHarness::start(
        40,
        table,
        fast_halo(),
        json!({"inbound": {"basic": {"username": {"kind": "env", "var": "HALO_USER"}, "password": {"kind": "env", "var": "HALO_HOOK"}}}}),
    )
    .await;
    h.h.env.lock().unwrap().insert("HALO_USER".into(), "halo".into());
    h.poll().await;
    let tickets: Vec<Value> = h.story_tickets().into_iter().take(2).collect();
    let mut threats = Vec::new();
    for t in &tickets {
        let id = t["id"].as_i64().unwrap();
        h.halo
            .close_ticket_as_technician(id, "Closed", "Benign", "", "Alex Technician")
            .unwrap();
        threats.extend(threats_of(&h, t).await);
    }
    // Halo batches two occurrences into one delivery: an array.
    let batch = json!([
        h.halo
            .webhook_payload(tickets[0]["id"].as_i64().unwrap(), HaloWebhookPayload::EventOnly)
            .unwrap(),
        h.halo
            .webhook_payload(tickets[1]["id"].as_i64().unwrap(), HaloWebhookPayload::EventOnly)
            .unwrap(),
    ]);
    let url = format!("{}/halo/acme", h.base);
    let basic = HaloWebhookAuth::Basic {
        username: "halo".into(),
        password: HOOK_SECRET.into(),
    };
    let header = HaloWebhookAuth::Header {
        name: HOOK_HEADER.into(),
        value: HOOK_SECRET.into(),
    };
    assert_eq!(
        FakeHalo::post_webhook(&url, &batch, &header).await.unwrap(),
        401,
        "this tenant takes Basic"
    );
    assert_eq!(FakeHalo::post_webhook(&url, &batch, &basic).await.unwrap(), 202);
    for id in &threats {
        assert_eq!(s1_state(&h.h, id).await.1, "false_positive", "{id}");
    }
}

/// Two tenants on two Halo instances (one MSP, two Halos) both have ticket #1001; each
/// technician's close reaches S1 through its own tenant, and a ticket that is not one of the
/// tenant's stories is answered 200 (so Halo does not retry it), not 404.
pub async fn ticket_numbers_are_scoped_to_their_tenant_and_instance(table: Arc<dyn ItemTable>) {
    let h = HaloHarness::start(20, table, fast_halo(), json!({})).await;
    let other = FakeHalo::start(fast_halo()).await.unwrap();
    h.add_tenant("zeta", &h.h.sim.base_url(), &other, json!({})).await;
    let r = h.poll().await;
    assert!(r.tenants.iter().all(|t| t.error.is_none() && t.published > 0), "{r:?}");
    let ours = h.halo.ticket(1001).expect("acme's ticket #1001");
    let theirs = other.ticket(1001).expect("zeta's ticket #1001");
    assert!(ours["third_party_id_string"].is_string() && theirs["third_party_id_string"].is_string());
    // Zeta's technician closes zeta's #1001: zeta's story's threats are resolved in S1.
    other
        .close_ticket_as_technician(1001, "Closed", "False Positive", "zeta's call", "Alex Technician")
        .unwrap();
    assert_eq!(h.fire_at(&other, "zeta", 1001).await, 202, "zeta's own ticket");
    for id in threats_of_tenant(&h, "zeta", &theirs).await {
        let (status, verdict, notes) = s1_state(&h.h, &id).await;
        assert_eq!(
            (status.as_str(), verdict.as_str()),
            ("resolved", "false_positive"),
            "{id}"
        );
        assert!(notes.iter().any(|n| n.contains("zeta's call")), "{notes:?}");
    }
    // Acme's #1001 was not touched by it: acme's endpoint reads acme's Halo, nothing new there.
    assert_eq!(h.fire(1001).await, 200);
    // Tickets that are not the tenant's stories: one made by hand, one of another console's
    // bridge, and the tenant's own token alert. Answered 200, nothing written to S1.
    let writes = integration_tests::writeback::s1_writes(&h.h).await;
    let by_hand = h
        .halo
        .upsert(
            s1_bridge_sim::HaloEntity::Ticket,
            json!({"summary": "printer on fire", "client_id": 12, "site_id": 34}),
        )
        .unwrap()[0]["id"]
        .as_i64()
        .unwrap();
    let foreign = h
        .halo
        .upsert(
            s1_bridge_sim::HaloEntity::Ticket,
            json!({"summary": "[S1] elsewhere", "client_id": 12, "site_id": 34,
                   "third_party_id_string": "s1:other-console.example:story@1"}),
        )
        .unwrap()[0]["id"]
        .as_i64()
        .unwrap();
    for ticket in [by_hand, foreign] {
        h.halo
            .close_ticket_as_technician(ticket, "Closed", "Resolved", "done", "Alex Technician")
            .unwrap();
        assert_eq!(h.fire(ticket).await, 200, "ticket {ticket} is not acme's");
    }
    assert_eq!(integration_tests::writeback::s1_writes(&h.h).await, writes);
    assert!(h.refusals().is_empty(), "{:?}", h.refusals());
    assert!(other.refused().is_empty(), "{:?}", other.refused());
}

/// One MSP, two S1 consoles, one Halo: tenants acme and zeta share the Halo instance. Each
/// tenant's tickets carry its own console's story keys, each keeps its own mapping table (its
/// accounts become clients of its own), and a technician's close reaches the console of the
/// ticket's tenant only: the other tenant's endpoint answers the same ticket 200 "not ours" and
/// writes nothing.
pub async fn a_halo_shared_by_two_tenants_keeps_each_tenants_tickets_webhooks_and_mappings(table: Arc<dyn ItemTable>) {
    use s1_shared::store::AssetKind;
    let h = HaloHarness::start(20, table, fast_halo(), json!({})).await;
    let other = s1_bridge_sim::Sim::start(s1_bridge_sim::SimConfig {
        seed: 4242,
        threats: 20,
        agents: 30,
        cloud_alerts: 0,
        ..s1_bridge_sim::SimConfig::default()
    })
    .await
    .unwrap();
    h.add_tenant("zeta", &other.base_url(), &h.halo, json!({})).await;
    let r = h.poll().await;
    assert!(r.tenants.iter().all(|t| t.error.is_none() && t.published > 0), "{r:?}");
    for t in h.sync_assets_all().await {
        assert_eq!((t.error.as_deref(), t.failed), (None, 0), "{t:?}");
    }
    // Tickets: each is one tenant's story, by its own console's key, never both tenants'.
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for t in h.story_tickets() {
        let key = integration_tests::writeback::story_key(t["third_party_id_string"].as_str().unwrap());
        let acme = h.h.store.get_story("acme", &key).await.unwrap().is_some();
        let zeta = h.h.store.get_story("zeta", &key).await.unwrap().is_some();
        assert!(acme != zeta, "ticket {} is one tenant's: {t}", t["id"]);
        if acme { ours.push(t) } else { theirs.push(t) }
    }
    assert!(!ours.is_empty() && !theirs.is_empty());
    // Mappings: the same S1 account names, each tenant's own Halo clients.
    let clients = |tenant: &'static str| {
        let store = h.h.store.clone();
        async move {
            let page = store
                .scan_assets(tenant, AssetKind::Customer, None, 1000)
                .await
                .unwrap();
            page.items
                .into_iter()
                .filter_map(|a| a.platform_ref)
                .collect::<Vec<_>>()
        }
    };
    let (acme_clients, zeta_clients) = (clients("acme").await, clients("zeta").await);
    assert!(!acme_clients.is_empty() && !zeta_clients.is_empty());
    for c in &acme_clients {
        assert!(!zeta_clients.contains(c), "Halo client {c} mapped by both tenants");
    }
    // Webhooks: zeta's technician closes zeta's ticket; only zeta's console hears of it.
    let ticket = &theirs[0];
    let id = ticket["id"].as_i64().unwrap();
    h.halo
        .close_ticket_as_technician(id, "Closed", "False Positive", "zeta's call", "Alex Technician")
        .unwrap();
    let writes = integration_tests::writeback::s1_writes(&h.h).await;
    assert_eq!(h.fire(id).await, 200, "acme: not ours");
    assert_eq!(
        integration_tests::writeback::s1_writes(&h.h).await,
        writes,
        "nothing to acme's console"
    );
    assert_eq!(h.fire_at(&h.halo, "zeta", id).await, 202, "zeta's own");
    for threat in threats_of_tenant(&h, "zeta", ticket).await {
        let t = other.control().threat(&threat).await.unwrap();
        assert_eq!(t["threatInfo"]["incidentStatus"], "resolved", "{threat}");
    }
    // And acme's ticket at zeta's endpoint: not zeta's.
    let acme_ticket = ours[0]["id"].as_i64().unwrap();
    assert_eq!(h.fire_at(&h.halo, "zeta", acme_ticket).await, 200, "zeta: not ours");
    assert!(h.refusals().is_empty(), "{:?}", h.refusals());
}

/// Halo cannot say who our own agent is (Agent/me fails past every retry): the delivery fails
/// so Halo retries it, instead of every action of ours (the join notes) reading as a
/// technician's and reaching S1. Once Agent/me answers, the retried delivery changes nothing.
pub async fn an_unknown_own_agent_fails_the_delivery_instead_of_echoing_our_notes(table: Arc<dyn ItemTable>) {
    let h = HaloHarness::start(40, table, fast_halo(), json!({})).await;
    h.poll().await;
    let (ticket, _) = ticket_with(&h, 2).await;
    assert!(!notes_with(&h, ticket, "joined this story").is_empty());
    let writes = integration_tests::writeback::s1_writes(&h.h).await;
    // A process that has not read the tenant's Halo settings yet (the poller's has).
    let cold = h.serve_cold().await;
    h.halo.fail_path("/api/Agent/me", 20, 503);
    assert_eq!(
        h.fire_at_base(&cold, "acme", ticket).await,
        503,
        "not knowing our agent is an error Halo retries"
    );
    assert_eq!(integration_tests::writeback::s1_writes(&h.h).await, writes, "no echo");
    // Halo retries once Agent/me answers again: still nothing of ours reaches S1.
    h.halo.clear_faults();
    assert_eq!(h.fire_at_base(&cold, "acme", ticket).await, 200);
    assert_eq!(integration_tests::writeback::s1_writes(&h.h).await, writes, "no echo");
}

/// A webhook for a ticket we know costs at most two Halo requests (the ticket and its actions)
/// once the process has read the tenant's Halo settings, whoever wrote the action: our own
/// join notes ("Action added" fires for them too) change nothing, a technician's note and close
/// reach S1. The settings are read by a process's first delivery, not by every one.
pub async fn a_webhook_for_a_known_ticket_costs_at_most_two_halo_requests(table: Arc<dyn ItemTable>) {
    let h = HaloHarness::start(40, table, fast_halo(), json!({})).await;
    h.poll().await;
    let (ticket, threats) = ticket_with(&h, 2).await;
    assert!(!notes_with(&h, ticket, "joined this story").is_empty());
    let writes = integration_tests::writeback::s1_writes(&h.h).await;
    let cold = h.serve_cold().await;
    assert_eq!(h.fire_at_base(&cold, "acme", ticket).await, 200, "our own notes");
    // Steady state: each delivery below is measured on its own.
    let measured = |what: &str| {
        let sent = h.api_requests();
        assert!(sent.len() <= 2, "{what}: {} Halo requests: {sent:?}", sent.len());
        h.halo.clear_requests();
    };
    h.halo.clear_requests();
    assert_eq!(h.fire_at_base(&cold, "acme", ticket).await, 200, "our own notes again");
    measured("our own note");
    assert_eq!(integration_tests::writeback::s1_writes(&h.h).await, writes, "no echo");
    h.halo
        .add_technician_note(ticket, "pulling the process tree", "Alex Technician")
        .unwrap();
    h.halo.clear_requests();
    assert_eq!(h.fire_at_base(&cold, "acme", ticket).await, 202);
    measured("a technician's note");
    h.halo
        .close_ticket_as_technician(ticket, "Closed", "False Positive", "", "Alex Technician")
        .unwrap();
    h.halo.clear_requests();
    assert_eq!(h.fire_at_base(&cold, "acme", ticket).await, 202);
    measured("a technician's close");
    for id in &threats {
        let (status, verdict, notes) = s1_state(&h.h, id).await;
        assert_eq!(
            (status.as_str(), verdict.as_str()),
            ("resolved", "false_positive"),
            "{id}"
        );
        assert!(
            notes.iter().any(|n| n.contains("pulling the process tree")),
            "{notes:?}"
        );
    }
    assert!(h.refusals().is_empty(), "{:?}", h.refusals());
}

/// The settings a process keeps are read again when a delivery shows a status Halo did not have
/// when they were read: the admin replaced "In Progress" (the old status renamed, a new one of
/// that name), and the technician's move to the new one reaches S1 as in progress.
pub async fn a_status_newer_than_the_kept_settings_has_them_read_again(table: Arc<dyn ItemTable>) {
    use s1_bridge_sim::HaloEntity;
    let h = HaloHarness::start(30, table, fast_halo(), json!({})).await;
    h.poll().await;
    let (ticket, threats) = ticket_with(&h, 1).await;
    let cold = h.serve_cold().await;
    assert_eq!(h.fire_at_base(&cold, "acme", ticket).await, 200, "settings read");
    h.halo
        .upsert(HaloEntity::Status, json!({"id": 2, "name": "In Progress (retired)"}))
        .unwrap();
    let new = h
        .halo
        .upsert(HaloEntity::Status, json!({"name": "In Progress"}))
        .unwrap()[0]["id"]
        .as_i64()
        .unwrap();
    h.halo
        .close_ticket_as_technician(ticket, new, "Note", "on it", "Alex Technician")
        .unwrap();
    assert_eq!(h.fire_at_base(&cold, "acme", ticket).await, 202);
    for id in &threats {
        assert_eq!(s1_state(&h.h, id).await.0, "in_progress", "{id}");
    }
    // Read once for it: the next delivery knows the status.
    h.halo.clear_requests();
    assert_eq!(h.fire_at_base(&cold, "acme", ticket).await, 200);
    assert!(h.api_requests().len() <= 2, "{:?}", h.api_requests());
    assert!(h.refusals().is_empty(), "{:?}", h.refusals());
}

/// A customer replies to the ticket by e-mail, and a Halo rule moves the ticket on that reply:
/// neither is a technician's decision, so nothing reaches S1 (the delivery is answered 200 and
/// says how many end-user actions it skipped). A technician's note afterwards still does.
pub async fn end_user_replies_are_skipped_and_only_agents_decide(table: Arc<dyn ItemTable>) {
    let h = HaloHarness::start(30, table, fast_halo(), json!({})).await;
    h.poll().await;
    let (ticket, threats) = ticket_with(&h, 1).await;
    let writes = integration_tests::writeback::s1_writes(&h.h).await;
    let mut before = Vec::new();
    for id in &threats {
        before.push(s1_state(&h.h, id).await);
    }
    let reply = h
        .halo
        .add_end_user_reply(
            ticket,
            "is my laptop safe to use?",
            Some("SentinelOne"),
            Some("In Progress".into()),
        )
        .unwrap();
    assert_eq!(
        (reply["who_agentid"].as_i64(), reply["actionby_user_id"].as_i64()),
        (Some(0), Some(1))
    );
    assert_eq!(h.fire(ticket).await, 200, "nothing for S1");
    assert_eq!(integration_tests::writeback::s1_writes(&h.h).await, writes);
    for (id, was) in threats.iter().zip(&before) {
        assert_eq!(&s1_state(&h.h, id).await, was, "{id} as it was");
    }
    // The technician answers: that is a decision.
    h.halo
        .add_technician_note(ticket, "confirmed benign, user informed", "Alex Technician")
        .unwrap();
    assert_eq!(h.fire(ticket).await, 202);
    for id in &threats {
        let notes = s1_state(&h.h, id).await.2;
        assert!(notes.iter().any(|n| n.contains("confirmed benign")), "{notes:?}");
        assert!(!notes.iter().any(|n| n.contains("laptop safe")), "{notes:?}");
    }
    assert!(h.refusals().is_empty(), "{:?}", h.refusals());
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

pub async fn asset_matching_by_hostname_stays_within_mapped_clients(table: Arc<dyn ItemTable>) {
    asset_matching_stays_within_mapped_clients(table, "hostname").await;
}

pub async fn asset_matching_by_serial_stays_within_mapped_clients(table: Arc<dyn ItemTable>) {
    asset_matching_stays_within_mapped_clients(table, "serial").await;
}

pub async fn asset_matching_by_inventory_number_stays_within_mapped_clients(table: Arc<dyn ItemTable>) {
    asset_matching_stays_within_mapped_clients(table, "inventory_number").await;
}

/// docs/configuration.md says any payload works: a custom payload names the ticket under one of Halo's
/// spellings, at the top level or nested; each is read. An authenticated body naming no
/// ticket is answered 200 (logged), since Halo disables a webhook that keeps failing.
pub async fn custom_webhook_payloads_name_the_ticket_anywhere_halo_puts_it(table: Arc<dyn ItemTable>) {
    let h = HaloHarness::start(30, table, fast_halo(), json!({})).await;
    h.poll().await;
    let tickets: Vec<Value> = h.story_tickets().into_iter().take(6).collect();
    let url = format!("{}/halo/acme", h.base);
    let auth = HaloWebhookAuth::Header {
        name: HOOK_HEADER.into(),
        value: HOOK_SECRET.into(),
    };
    let shapes = |id: i64| {
        [
            json!({"ticket_id": id}),
            json!({"TicketID": id.to_string()}),
            json!({"objectid": id}),
            json!({"object": {"object_id": id}}),
            json!({"data": {"ticketid": id.to_string()}, "event": "custom"}),
            json!({"ticket": {"ticket_id": id}}),
        ]
    };
    for (n, t) in tickets.iter().enumerate() {
        let id = t["id"].as_i64().unwrap();
        let body = shapes(id)[n].clone();
        h.halo
            .close_ticket_as_technician(id, "Closed", "Benign", "custom payload", "Alex Technician")
            .unwrap();
        assert_eq!(FakeHalo::post_webhook(&url, &body, &auth).await.unwrap(), 202, "{body}");
        for threat in threats_of(&h, t).await {
            assert_eq!(s1_state(&h.h, &threat).await.0, "resolved", "{body}");
        }
    }
    let writes = integration_tests::writeback::s1_writes(&h.h).await;
    for body in [
        json!({"event": "custom", "data": {"client": 12}}),
        json!([]),
        json!("text"),
    ] {
        assert_eq!(FakeHalo::post_webhook(&url, &body, &auth).await.unwrap(), 200, "{body}");
    }
    assert_eq!(integration_tests::writeback::s1_writes(&h.h).await, writes);
}

/// docs/configuration.md's set-up: S1 accounts mapped to their own Halo clients, and one configured user
/// (SentinelOne, of the MSP's own client Contoso and its site). A ticket's user comes from the
/// ticket's site in Halo, so tickets of mapped customers carry no user of Contoso's (Halo picks
/// the site's default), and tickets under Contoso still carry the configured one. The fake
/// refuses a ticket whose user is of another client or site.
pub async fn a_tickets_user_belongs_to_its_client_and_site(table: Arc<dyn ItemTable>) {
    let h = HaloHarness::start(30, table, fast_halo(), json!({"user": "SentinelOne"})).await;
    // Without the mapping, every ticket goes under Contoso: its user is the configured one.
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.error.as_deref(), r.failed), (None, 0), "{r:?}");
    assert!(
        h.story_tickets()
            .iter()
            .all(|t| t["user_id"] == 1 && t["client_id"] == 12)
    );
    // Customers synced (mapped), then new threats: their tickets go under their own clients.
    let r = sync(&h).await;
    assert_eq!(r.error.as_deref(), None, "{r:?}");
    let before = h.story_tickets().len();
    h.h.sim
        .control()
        .add_threats(&s1_bridge_sim::NewThreats {
            count: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let r = h.poll().await.tenants.remove(0);
    assert_eq!((r.error.as_deref(), r.failed), (None, 0), "{r:?}: {:?}", h.refusals());
    let new: Vec<Value> = h.story_tickets().into_iter().skip(before).collect();
    assert!(!new.is_empty());
    for t in &new {
        assert_ne!(t["client_id"], 12, "{t}");
        assert!(
            t["user_id"].is_null() || t["user_id"] == 0,
            "a Contoso user on another client's ticket: {t}"
        );
    }
    assert!(h.refusals().is_empty(), "{:?}", h.refusals());
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

/// Halo's list search looks in summaries (`search`), details only with `search_details`, and
/// its rows are partial. A story published again after a crash (its ticket id never saved)
/// finds the ticket it already has, and each token alert adds to the tenant's open token
/// ticket instead of opening one per threshold.
pub async fn our_tickets_are_found_again_by_what_halo_searches(table: Arc<dyn ItemTable>) {
    let h = HaloHarness::start(1, table, fast_halo(), json!({})).await;
    let tenant = h.h.store.get_tenant("acme").await.unwrap().unwrap();
    let platform = h.h.deps.platforms.resolve(&tenant).await.unwrap();
    let event = s1_shared::platform::ThreatEvent::for_test("acme", "1500000000000000001");
    let first = platform.publish(&event).await.unwrap().platform_ref;
    let again = platform.publish(&event).await.unwrap().platform_ref;
    assert_eq!(first, again, "the crashed run's ticket is found, not created twice");
    let ours = |key: &str| {
        h.halo
            .tickets()
            .into_iter()
            .filter(|t| t["third_party_id_string"] == key)
            .collect::<Vec<_>>()
    };
    assert_eq!(ours(event.story.alert_key.as_str()).len(), 1);
    for threshold in [30, 14, 7] {
        platform.notify(&token_notice(threshold)).await.unwrap();
    }
    let token = ours("s1-bridge:acme:token");
    assert_eq!(token.len(), 1, "one token ticket: {token:?}");
    let id = token[0]["id"].as_i64().unwrap();
    assert_eq!(h.halo.actions(id).len(), 2, "the later alerts are notes on it");
    // Closed, the next alert opens a new one.
    h.halo
        .close_ticket_as_technician(id, "Closed", "Resolved", "rotated", "Alex Technician")
        .unwrap();
    platform.notify(&token_notice(3)).await.unwrap();
    assert_eq!(ours("s1-bridge:acme:token").len(), 2);
    assert!(h.refusals().is_empty(), "{:?}", h.refusals());
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
    customers_sites_and_assets_land_in_halo,
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
    custom_webhook_payloads_name_the_ticket_anywhere_halo_puts_it,
    a_tickets_user_belongs_to_its_client_and_site,
    our_tickets_are_found_again_by_what_halo_searches,
    a_webhook_for_a_known_ticket_costs_at_most_two_halo_requests,
    a_status_newer_than_the_kept_settings_has_them_read_again,
    a_halo_shared_by_two_tenants_keeps_each_tenants_tickets_webhooks_and_mappings,
);
