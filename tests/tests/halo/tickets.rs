//! Halo end to end: tickets from stories, closes, notes, forged webhooks, severities, 429s.

use super::*;

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

/// Halo makes a story's ticket but the answer is lost on the way back (a gateway's 504): the
/// create is not sent again blindly (repeating it made a second ticket); the ticket is found
/// by its marker and linked, in this run or the next: one ticket, told once.
pub async fn a_ticket_whose_answer_was_lost_is_made_once(table: Arc<dyn ItemTable>) {
    let h = HaloHarness::start(1, table, fast_halo(), json!({})).await;
    h.halo.lose_answers("/api/Tickets", 1, 504);
    let first = h.poll().await.tenants.remove(0);
    let posts: Vec<String> = h
        .halo
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| format!("{} {}", r.path, r.status))
        .collect();
    assert_eq!(h.story_tickets().len(), 1, "Halo made it once: {first:?} {posts:?}");
    let second = h.poll().await.tenants.remove(0);
    assert_eq!(second.error, None, "{second:?}");
    assert_eq!(first.published + second.published, 1, "{first:?} {second:?}");
    let tickets = h.story_tickets();
    assert_eq!(tickets.len(), 1, "found again, not made again: {tickets:#?}");
    let r = h.poll().await.tenants.remove(0);
    assert_eq!(r.published, 0, "{r:?}");
}
