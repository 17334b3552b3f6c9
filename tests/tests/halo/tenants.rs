//! Halo end to end: auth and batching, tenants sharing a Halo, webhook costs, agents and
//! end users, asset matching, custom payloads.

use super::*;

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
