//! The demo's unified-alerts step: a tenant reading the console's Unified Alert Management
//! listing (GraphQL) instead of the legacy threats, so its Identity, Cloud and email alerts
//! reach the platform too, and an EDR alert that is also a threat is that threat's one member.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use s1_bridge_sim::{Sim, WebhookReceiver};
use s1_shared::domain::MemberId;
use s1_shared::platform::PlatformConfig;
use s1_shared::store::{Source, Store};
use s1_shared::usecase::poll_threats::{PollDeps, Selection, run};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::progress::poll_line;

/// Step 9: the same console read through UAM by a tenant of its own, publishing to a second
/// local receiver: one event per alert, stories by endpoint (threats' twins with their threat)
/// or by asset and detection rule, each event naming its source and detection product. The
/// platform then closes an Identity alert's story through the signed webhook (`inbound_secret`,
/// the writeback at `hook_base`): the close reaches UAM, and the next poll does not echo it.
pub(crate) async fn unified_step(
    say: &impl Fn(String),
    sim: &Sim,
    store: &Store,
    deps: &PollDeps,
    secret: &str,
    hook_base: &str,
    inbound_secret: &str,
) -> Result<Value, Box<dyn std::error::Error>> {
    say("\n9. Unified alerts: a tenant reads the console's UAM listing (GraphQL), every detection source".into());
    let receiver = WebhookReceiver::start(secret).await?;
    let mut tenant = store.get_tenant("demo").await?.ok_or("the demo tenant is missing")?;
    tenant.id = "demo-uam".into();
    tenant.sources = vec![Source::Unified];
    if let PlatformConfig::Generic(g) = &mut tenant.platform {
        g.url = receiver.url();
    }
    store.put_tenant(&tenant).await?;
    let only = Selection::Tenant("demo-uam".into());
    let deps = PollDeps {
        progress: None,
        ..deps.clone()
    };
    let first = run(&deps, &only, Instant::now() + Duration::from_secs(600)).await?;
    let events = receiver.events();
    let mut products: HashMap<String, usize> = HashMap::new();
    for e in &events {
        let product = e["data"]["s1"]["product"].as_str().unwrap_or("unknown");
        *products.entry(product.to_owned()).or_insert(0) += 1;
    }
    let stories: HashSet<&str> = events.iter().filter_map(|e| e["data"]["alert_key"].as_str()).collect();
    let alerts = sim.control().unified_alert_ids().await?;
    let twins = alerts.iter().filter(|a| a["source"] == "edr").count();
    let mut by_product: Vec<String> = products.iter().map(|(p, n)| format!("{n} {p}")).collect();
    by_product.sort();
    say(format!("   {}", poll_line(&first.tenants[0])));
    say(format!(
        "   {} alerts read, {} events ({}) in {} stories; {} EDR alerts are threats' twins, each told as its threat",
        alerts.len(),
        events.len(),
        by_product.join(", "),
        stories.len(),
        twins
    ));
    let twin = edr_twin(store, &events, &alerts).await?;
    if let Some((id, threat, _)) = &twin {
        say(format!(
            "   EDR alert {id} is threat {threat}: its story holds one member for both (the threat)"
        ));
    }
    let close = close_identity_story(sim, &events, &alerts, hook_base, inbound_secret).await?;
    say(format!(
        "   platform closes Identity alert {}'s story -> HTTP {} ({}); UAM now: {} / {} (written back through UAM alertTriggerActions); {}",
        close["alert"].as_str().unwrap_or("?"),
        close["status_code"],
        close["writeback"].as_str().unwrap_or("?"),
        close["uam_status"].as_str().unwrap_or("?"),
        close["uam_verdict"].as_str().unwrap_or("?"),
        if close["notes"].as_u64().unwrap_or(0) > 0 {
            "note added"
        } else {
            "no note"
        }
    ));
    let again = run(&deps, &only, Instant::now() + Duration::from_secs(600)).await?;
    say(format!(
        "   again: {} (our own close is not sent back)",
        poll_line(&again.tenants[0])
    ));
    Ok(json!({
        "alerts": alerts.len(),
        "events": events.len(),
        "stories": stories.len(),
        "products": products,
        "twin": twin.map(|(id, threat, story)| json!({"alert": id, "threat": threat, "story": story})),
        "close": close,
        "published_again": again.tenants[0].published,
        "echoes_again": again.tenants[0].echoes,
    }))
}

/// An EDR alert that is also a threat, with the story that tells it: `(alert, threat, story)`
/// when that story holds the threat as a member and not the alert as a second one.
async fn edr_twin(
    store: &Store,
    events: &[Value],
    alerts: &[Value],
) -> Result<Option<(String, String, String)>, Box<dyn std::error::Error>> {
    for a in alerts.iter().filter(|a| a["source"] == "edr") {
        let (Some(id), Some(threat)) = (a["id"].as_str(), a["externalId"].as_str()) else {
            continue;
        };
        let Some(key) = events
            .iter()
            .find(|e| e["data"]["s1"]["threat_id"].as_str() == Some(threat))
            .and_then(|e| e["data"]["alert_key"].as_str())
        else {
            continue;
        };
        let story_key = story_key(key);
        let Some(story) = store.get_story("demo-uam", &story_key).await? else {
            continue;
        };
        let members = &story.value.members;
        if members.contains_key(&MemberId::threat(threat.to_owned())) && !members.contains_key(&MemberId::unified(id)) {
            return Ok(Some((id.to_owned(), threat.to_owned(), story_key)));
        }
    }
    Ok(None)
}

/// The platform closes (benign) the story of the first Identity alert through the signed generic
/// webhook; the alert as UAM holds it afterwards.
async fn close_identity_story(
    sim: &Sim,
    events: &[Value],
    alerts: &[Value],
    hook_base: &str,
    inbound_secret: &str,
) -> Result<Value, Box<dyn std::error::Error>> {
    let (id, alert_key) = alerts
        .iter()
        .filter(|a| a["source"] == "identity")
        .filter_map(|a| a["id"].as_str())
        .find_map(|id| {
            events
                .iter()
                .find(|e| e.to_string().contains(id))
                .and_then(|e| e["data"]["alert_key"].as_str())
                .map(|k| (id.to_owned(), k.to_owned()))
        })
        .ok_or("no event tells an Identity alert")?;
    let body = serde_json::to_vec(&json!({
        "type": "alert.status_changed",
        "timestamp": s1_shared::s1::dto::format_time(OffsetDateTime::now_utc()),
        "data": {"alert_key": alert_key, "status": "closed", "close_reason": "benign",
                 "analysis": "reviewed in the demo", "actor": {"name": "Dana", "email": "dana@example.com"}}
    }))?;
    let url = format!("{hook_base}/webhooks/generic/demo-uam");
    let (code, answer) = crate::demo_net::post_signed(&url, inbound_secret, "demo-uam-close", body).await?;
    let after = sim.control().unified_alert(&id).await?;
    Ok(json!({
        "alert": id,
        "status_code": code,
        "writeback": answer["writeback"],
        "uam_status": after["status"],
        "uam_verdict": after["analystVerdict"],
        "notes": after["notes"].as_array().map_or(0, Vec::len),
    }))
}

/// The story key inside an event's `alert_key` (`<prefix>:<tenant>:<story>@<console>`).
fn story_key(alert_key: &str) -> String {
    let id = alert_key.splitn(3, ':').nth(2).unwrap_or(alert_key);
    id.rsplit_once('@').map_or(id, |(k, _)| k).to_owned()
}
