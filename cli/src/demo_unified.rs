//! The demo's unified-alerts step: a tenant reading the console's Unified Alert Management
//! listing (GraphQL) instead of the legacy threats, so its Identity, Cloud and email alerts
//! reach the platform too, and an EDR alert that is also a threat is that threat's one member.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use s1_bridge_sim::{Sim, WebhookReceiver};
use s1_shared::platform::PlatformConfig;
use s1_shared::store::{Source, Store};
use s1_shared::usecase::poll_threats::{PollDeps, Selection, run};
use serde_json::{Value, json};

use crate::progress::poll_line;

/// Step 9: the same console read through UAM by a tenant of its own, publishing to a second
/// local receiver: one event per alert, stories by endpoint (threats' twins with their threat)
/// or by asset and detection rule, each event naming its source and detection product.
pub(crate) async fn unified_step(
    say: &impl Fn(String),
    sim: &Sim,
    store: &Store,
    deps: &PollDeps,
    secret: &str,
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
    let again = run(&deps, &only, Instant::now() + Duration::from_secs(600)).await?;
    say(format!("   again: {}", poll_line(&again.tenants[0])));
    Ok(json!({
        "alerts": alerts.len(),
        "events": events.len(),
        "stories": stories.len(),
        "products": products,
        "published_again": again.tenants[0].published,
    }))
}
