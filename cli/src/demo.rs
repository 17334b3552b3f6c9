//! The demo: the product on one machine with no AWS and no S1 console. A simulated console, the
//! embedded store, a local signed-webhook receiver and a local stand-in for PagerDuty's Events
//! API stand in for S1, DynamoDB and the platforms.

use crate::demo_net::{local_hosts, post_signed, reqwest_client};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::TryStreamExt;
use s1_bridge_sim::{
    AgentChange, DEFAULT_TOKEN, FakePagerDuty, NewThreats, Sim, SimConfig, TokenSpec, WebhookReceiver,
};
use s1_shared::ApiToken;
use s1_shared::platform::Adapters;
use s1_shared::platform::{PlatformConfig, settings};
use s1_shared::s1::{ClientOptions, Consoles, S1Client};
use s1_shared::secrets::LocalTokenProvider;
use s1_shared::store::{EmbeddedTable, Store, TenantConfig, TokenSource};
use s1_shared::usecase::poll_threats::{PollDeps, PollReport, Selection, run};
use s1_shared::usecase::sync_assets::{AssetDeps, sync_all};
use s1_shared::usecase::token_expiry::{TokenDeps, check_all};
use s1_shared::usecase::writeback::WritebackDeps;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::progress::{Live, ProgressMode, poll_line};

/// Demo-only webhook secrets: they open nothing but the local receiver and writeback endpoint.
const DEMO_WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const DEMO_INBOUND_SECRET: &str = "whsec_ZGVtby1pbmJvdW5kLXNlY3JldC1mb3ItdGVzdHM=";
/// Demo-only PagerDuty integration key and webhook subscription secret (the local stand-in's).
const DEMO_PD_ROUTING_KEY: &str = "DEM0R0UT1NGKEY000000000000000001";
const DEMO_PD_WEBHOOK_SECRET: &str = "demo-pagerduty-subscription-secret";

#[derive(Args)]
pub struct DemoArgs {
    /// Threats in the simulated console.
    #[arg(long, default_value_t = 5_000)]
    threats: usize,
    /// Agents (endpoints) in the simulated console.
    #[arg(long, default_value_t = 500)]
    agents: usize,
    /// Days until the demo token expires.
    #[arg(long, default_value_t = 5)]
    token_days: i64,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Live counts on stderr during the first (backlog) poll.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    progress: ProgressMode,
    /// Keep the demo's state in this embedded store file (a new one), so commands such as
    /// `s1-bridge status --store embedded:<path>` can read its tenants afterwards; by default
    /// the state is held in memory and gone when the demo ends.
    #[arg(long, value_name = "PATH")]
    keep_store: Option<std::path::PathBuf>,
}

pub async fn run_demo(args: DemoArgs) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let say = |s: String| {
        if !args.json {
            println!("{s}");
        }
    };
    let sim = Sim::start(SimConfig {
        // The backlog ends a minute ago, as if the bridge were being switched on now.
        start: OffsetDateTime::now_utc() - time::Duration::seconds(args.threats as i64 + 60),
        threats: args.threats,
        agents: args.agents,
        tokens: vec![TokenSpec::tenant(DEFAULT_TOKEN, args.token_days)],
        ..SimConfig::default()
    })
    .await?;
    let receiver = WebhookReceiver::start(DEMO_WEBHOOK_SECRET).await?;
    let table = match &args.keep_store {
        // The demo's steps count on an empty store (the first poll is the whole backlog).
        Some(path) if path.exists() => {
            return Err(format!(
                "--keep-store {}: the file exists; the demo starts from an empty store (remove it or name a new one)",
                path.display()
            )
            .into());
        }
        Some(path) => EmbeddedTable::open(path)?,
        None => EmbeddedTable::in_memory()?,
    };
    let store = Store::new(Arc::new(table));
    say(format!(
        "S1 console (simulated)  {}  {} threats, {} agents",
        sim.base_url(),
        args.threats,
        args.agents
    ));
    say(format!(
        "platform (local)        {}  verifies Standard Webhooks signatures",
        receiver.url()
    ));
    say("state                   embedded store (redb, in memory)".into());

    // The tenant: where its token comes from and where its alerts go.
    let secrets = HashMap::from([
        ("S1_TOKEN_DEMO".to_owned(), DEFAULT_TOKEN.to_owned()),
        ("WEBHOOK_SECRET_DEMO".to_owned(), DEMO_WEBHOOK_SECRET.to_owned()),
        ("INBOUND_SECRET_DEMO".to_owned(), DEMO_INBOUND_SECRET.to_owned()),
        ("PD_ROUTING_KEY_DEMO".to_owned(), DEMO_PD_ROUTING_KEY.to_owned()),
        ("PD_WEBHOOK_SECRET_DEMO".to_owned(), DEMO_PD_WEBHOOK_SECRET.to_owned()),
        (
            "HALO_CLIENT_ID_DEMO".to_owned(),
            crate::demo_halo::DEMO_HALO_CLIENT_ID.to_owned(),
        ),
        (
            "HALO_CLIENT_SECRET_DEMO".to_owned(),
            crate::demo_halo::DEMO_HALO_CLIENT_SECRET.to_owned(),
        ),
        (
            "HALO_HOOK_DEMO".to_owned(),
            crate::demo_halo::DEMO_HALO_HOOK_SECRET.to_owned(),
        ),
    ]);
    let tokens = Arc::new(LocalTokenProvider::with_lookup(move |k| secrets.get(k).cloned()));
    store
        .put_tenant(&TenantConfig {
            name: "Demo MSP".into(),
            ..TenantConfig::new(
                "demo",
                sim.base_url(),
                TokenSource::Env {
                    var: "S1_TOKEN_DEMO".into(),
                },
                PlatformConfig::Generic(settings::Generic {
                    url: receiver.url(),
                    secret: TokenSource::Env {
                        var: "WEBHOOK_SECRET_DEMO".into(),
                    },
                    inbound_secrets: vec![TokenSource::Env {
                        var: "INBOUND_SECRET_DEMO".into(),
                    }],
                    inbound_bearer: None,
                    assets: None,
                    batch: None,
                }),
            )
        })
        .await?;
    let http = reqwest_client()?;
    let options = ClientOptions::default().allowing(local_hosts());
    // One console port for the whole run: every job calls the console with one client.
    let consoles = Consoles::new(http.clone(), tokens.clone(), options.clone());
    let deps = PollDeps {
        progress: None,
        store: store.clone(),
        consoles: consoles.clone(),
        platforms: Arc::new(
            Adapters::new(http, tokens.clone(), options.retry.clone())
                .with_allowed_hosts(local_hosts())
                .with_store(store.clone()),
        ),
        owner: "demo".into(),
        concurrency: 4,
        writeback: None,
    };
    let poll = || async { run(&deps, &Selection::All, Instant::now() + Duration::from_secs(600)).await };

    say("\n1. First poll: the backlog".into());
    let live = Live::new("poll", args.progress, args.json);
    let backlog = PollDeps {
        progress: live.as_ref().map(Live::poll),
        ..deps.clone()
    };
    let first: PollReport = run(&backlog, &Selection::All, Instant::now() + Duration::from_secs(600)).await?;
    if let Some(live) = &live {
        live.finish();
    }
    let r1 = first.tenants[0].clone();
    say(format!("   {}", poll_line(&r1)));
    let events = receiver.events();
    let alerts: HashSet<&str> = events.iter().filter_map(|e| e["data"]["alert_key"].as_str()).collect();
    say(format!(
        "   platform received {} threat.created events, grouped into {} alerts (stories)",
        events.len(),
        alerts.len()
    ));

    say("\n2. Second poll: nothing changed".into());
    let second = poll().await?;
    say(format!("   {}", poll_line(&second.tenants[0])));

    say("\n3. In the console: an analyst resolves a threat; agents report 3 new threats (1 on a known file)".into());
    let known = events
        .iter()
        .find(|e| e["data"]["s1"]["status"] != "resolved")
        .or(events.first())
        .and_then(|e| e["data"]["s1"]["threat_id"].as_str())
        .unwrap_or_default()
        .to_owned();
    sim.control()
        .console_update(&known, Some("resolved"), Some("true_positive"))
        .await?;
    let first_event = events
        .iter()
        .find(|e| e["data"]["file"]["sha1"].is_string())
        .unwrap_or(&events[0]);
    let sibling = NewThreats {
        count: 1,
        agent_uuid: first_event["data"]["asset"]["external_id"].as_str().map(str::to_owned),
        sha1: first_event["data"]["file"]["sha1"].as_str().map(str::to_owned),
        detected_at: None,
    };
    sim.control().add_threats(&sibling).await?;
    sim.control()
        .add_threats(&NewThreats {
            count: 2,
            ..NewThreats::default()
        })
        .await?;
    let third = poll().await?;
    let r3 = third.tenants[0].clone();
    say(format!("   {}", poll_line(&r3)));
    let after = receiver.events();
    for e in &after[events.len()..] {
        say(format!(
            "   -> {} {} ({}){}",
            e["type"].as_str().unwrap_or_default(),
            e["data"]["s1"]["threat_id"].as_str().unwrap_or_default(),
            e["data"]["s1"]["status"].as_str().unwrap_or_default(),
            if e["data"]["story"]["new_alert"] == false && e["type"] == "threat.created" {
                ", joins an existing alert"
            } else {
                ""
            }
        ));
    }

    say(
        "\n4. On the platform: analysts close three alerts and pick up a fourth (signed webhooks to the writeback)"
            .into(),
    );
    let hook_base = serve_writeback(WritebackDeps {
        platforms: deps.platforms.clone(),
        store: store.clone(),
        tokens: tokens.clone(),
        consoles: consoles.clone(),
        inline_retry: WritebackDeps::inline_retry_policy(),
    })
    .await?;
    let mut by_alert: HashMap<String, Vec<String>> = HashMap::new();
    for e in receiver.events() {
        if let (Some(a), Some(t)) = (e["data"]["alert_key"].as_str(), e["data"]["s1"]["threat_id"].as_str()) {
            by_alert.entry(a.to_owned()).or_default().push(t.to_owned());
        }
    }
    let mut alerts: Vec<_> = by_alert.into_iter().collect();
    alerts.sort_by_key(|(k, v)| (std::cmp::Reverse(v.len()), k.clone()));
    let closes = [
        ("closed", Some("false_positive")),
        ("closed", Some("activity_blocked")),
        ("resolved", Some("PUP/PUA")),
        ("investigating", None),
    ];
    let client = S1Client::new(&sim.base_url(), &ApiToken::new(DEFAULT_TOKEN), options.clone())?;
    for (n, ((alert, threats), (state, reason))) in alerts.iter().zip(closes).enumerate() {
        let body = serde_json::to_vec(&json!({
            "type": "alert.status_changed",
            "timestamp": s1_shared::s1::dto::format_time(OffsetDateTime::now_utc()),
            "data": {"alert_key": alert, "status": state, "close_reason": reason,
                     "analysis": "reviewed in the demo", "actor": {"name": "Dana", "email": "dana@example.com"}}
        }))?;
        let id = format!("demo-close-{n}");
        let url = format!("{hook_base}/webhooks/generic/demo");
        let (code, answer) = post_signed(&url, DEMO_INBOUND_SECRET, &id, body).await?;
        say(format!(
            "   {state} {} -> HTTP {code} ({}), story of {} threat(s)",
            reason.unwrap_or(""),
            answer["writeback"].as_str().unwrap_or("?"),
            threats.len()
        ));
        let found = client
            .threats(&s1_shared::s1::ThreatQuery {
                ids: threats.clone(),
                ..Default::default()
            })
            .map_ok(|p| p.items)
            .try_concat()
            .await?;
        let shown = found.len().min(2);
        if found.len() > shown {
            say(format!(
                "      (showing {shown} of {} threats; every one was updated)",
                found.len()
            ));
        }
        for t in found.into_iter().take(shown) {
            let notes = client.threat_notes(&t.id).map_ok(|p| p.items).try_concat().await?;
            say(format!(
                "      S1 threat {}: {} / {}; note: {}",
                t.id,
                t.threat_info.incident_status.map_or("?", |s| s.as_str()),
                t.threat_info.analyst_verdict.map_or("?", |v| v.as_str()),
                notes.last().and_then(|n| n.text.as_deref()).unwrap_or("-")
            ));
        }
    }
    let fourth = poll().await?;
    say(format!(
        "   next poll: {} (our own writes are not sent back)",
        poll_line(&fourth.tenants[0])
    ));

    say("\n5. Asset sync: S1 accounts, sites and agents become customers, sites and assets".into());
    let assets = AssetDeps {
        progress: None,
        store: store.clone(),
        consoles: consoles.clone(),
        platforms: deps.platforms.clone(),
        owner: "demo".into(),
    };
    let a1 = sync_all(&assets, Instant::now() + Duration::from_secs(600))
        .await?
        .remove(0);
    say(format!(
        "   first sync: {} created (decommissioned agents are not created), {} refused",
        a1.created, a1.failed
    ));
    let sample: Vec<Value> = receiver
        .events()
        .into_iter()
        .filter(|e| e["type"] == "asset.upserted")
        .take(2)
        .collect();
    let uuid = |i: usize| {
        sample
            .get(i)
            .and_then(|e| e["data"]["external_id"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    sim.control()
        .change_agent(
            &uuid(0),
            &AgentChange {
                decommissioned: Some(true),
                ..AgentChange::default()
            },
        )
        .await?;
    sim.control()
        .change_agent(
            &uuid(1),
            &AgentChange {
                computer_name: Some("LAPTOP-RENAMED".into()),
                ..AgentChange::default()
            },
        )
        .await?;
    let a2 = sync_all(&assets, Instant::now() + Duration::from_secs(600))
        .await?
        .remove(0);
    say(format!(
        "   after one agent is decommissioned and one renamed in S1: {} updated, {} deactivated, {} unchanged",
        a2.updated, a2.deactivated, a2.unchanged
    ));

    say("\n6. Token watch".into());
    let watch = TokenDeps {
        store: store.clone(),
        consoles: consoles.clone(),
        platforms: deps.platforms.clone(),
    };
    let t1 = check_all(&watch, OffsetDateTime::now_utc()).await?.remove(0);
    let t2 = check_all(&watch, OffsetDateTime::now_utc()).await?.remove(0);
    let expiry = receiver.events().into_iter().find(|e| e["type"] == "token.expiring");
    say(format!(
        "   the API token expires {} ({} day(s) left): {}; checked again: {}",
        t1.expires_at.map(s1_shared::s1::dto::format_time).unwrap_or_default(),
        t1.days_left.unwrap_or_default(),
        expiry.map_or("no alert".to_owned(), |a| format!(
            "alert sent for the {}-day threshold",
            a["data"]["threshold_days"]
        )),
        if t2.alerted.is_none() {
            "not repeated"
        } else {
            "alerted again"
        }
    ));
    let pagerduty = pagerduty_step(&say, &sim, &store, &deps, &hook_base, args.progress, args.json).await?;
    let halo =
        crate::demo_halo::halo_step(&say, &sim, &store, &deps, &assets, &hook_base, args.progress, args.json).await?;
    let unified = crate::demo_unified::unified_step(
        &say,
        &sim,
        &store,
        &deps,
        DEMO_WEBHOOK_SECRET,
        &hook_base,
        DEMO_INBOUND_SECRET,
    )
    .await?;

    let after = receiver.events();
    say(format!(
        "\nDone in {:.1} s. The platforms hold every threat once; nothing was sent twice.",
        started.elapsed().as_secs_f64()
    ));
    if let Some(path) = &args.keep_store {
        say(format!(
            "The state is kept in {0}: s1-bridge status --store embedded:{0}",
            path.display()
        ));
    }

    if args.json {
        let summary = json!({
            "polls": [first.tenants[0], second.tenants[0], third.tenants[0], fourth.tenants[0]],
            "platform": {"events": after.len(), "alerts": alerts.len(), "deliveries": receiver.deliveries().len()},
            "assets": [a1, a2],
            "token": t1,
            "pagerduty": pagerduty,
            "halo": halo,
            "unified": unified,
            "elapsed_ms": started.elapsed().as_millis() as u64,
            "store": args.keep_store.as_ref().map(|p| p.display().to_string()),
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(())
}

/// Step 7: a second tenant on the same console whose SOC works in PagerDuty: one alert per
/// story with an open threat, an incident acknowledged in PagerDuty reaching S1, no echo back.
async fn pagerduty_step(
    say: &impl Fn(String),
    sim: &Sim,
    store: &Store,
    deps: &PollDeps,
    hook_base: &str,
    progress: ProgressMode,
    json_out: bool,
) -> Result<Value, Box<dyn std::error::Error>> {
    use s1_shared::platform::sign_pagerduty;
    say("\n7. PagerDuty: a second tenant sends the same console to a PagerDuty service (Events API v2, a local stand-in)".into());
    let pd = FakePagerDuty::start(DEMO_PD_ROUTING_KEY, usize::MAX).await?;
    let mut tenant = store.get_tenant("demo").await?.ok_or("the demo tenant is missing")?;
    tenant.id = "demo-pd".into();
    tenant.platform = PlatformConfig::PagerDuty(settings::PagerDuty {
        routing_key: TokenSource::Env {
            var: "PD_ROUTING_KEY_DEMO".into(),
        },
        events_url: pd.url(),
        // The stand-in has no per-key limit; PagerDuty's is 120 a minute.
        events_per_minute: std::num::NonZeroU32::new(1_000_000).expect("not zero"),
        inbound_secrets: vec![TokenSource::Env {
            var: "PD_WEBHOOK_SECRET_DEMO".into(),
        }],
    });
    store.put_tenant(&tenant).await?;
    let live = Live::new("poll", progress, json_out);
    let pd_deps = PollDeps {
        progress: live.as_ref().map(Live::poll),
        ..deps.clone()
    };
    let only = Selection::Tenant("demo-pd".into());
    let first = run(&pd_deps, &only, Instant::now() + Duration::from_secs(600)).await?;
    if let Some(live) = &live {
        live.finish();
    }
    let alerts = pd.alerts();
    let events = pd.events();
    let stories: HashSet<&str> = events.iter().filter_map(|e| e["dedup_key"].as_str()).collect();
    let acked = alerts.iter().filter(|a| a.status == "acknowledged").count();
    say(format!("   {}", poll_line(&first.tenants[0])));
    say(format!(
        "   PagerDuty: {} alerts opened ({} acknowledged: in progress in S1) for {} stories; the {} stories already resolved in S1 paged nobody",
        alerts.len(),
        acked,
        stories.len(),
        stories.len() - alerts.len()
    ));

    let Some(alert) = alerts.iter().find(|a| a.status == "triggered") else {
        return Ok(json!({"alerts": alerts.len(), "stories": stories.len()}));
    };
    let threats: Vec<String> = events
        .iter()
        .filter(|e| e["dedup_key"] == alert.dedup_key.as_str() && e["event_action"] == "trigger")
        .filter_map(|e| {
            e["payload"]["custom_details"]["s1"]["threat_id"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    let body = serde_json::to_vec(&json!({"event": {
        "id": "01DEMOPAGERDUTYEVENT0000001",
        "event_type": "incident.acknowledged",
        "resource_type": "incident",
        "occurred_at": s1_shared::s1::dto::format_time(OffsetDateTime::now_utc()),
        "agent": {"type": "user_reference", "summary": "Sam (on call)"},
        "data": {"id": "PDEMO01", "type": "incident", "status": "acknowledged",
                 "incident_key": alert.dedup_key, "title": alert.summary}
    }}))?;
    let resp = reqwest_client()?
        .post(format!("{hook_base}/webhooks/pagerduty/demo-pd"))
        .header("X-PagerDuty-Signature", sign_pagerduty(DEMO_PD_WEBHOOK_SECRET, &body))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let code = resp.status().as_u16();
    let answer: Value = resp.json().await.unwrap_or_default();
    let first_threat = threats.first().cloned().unwrap_or_default();
    let in_s1 = sim.control().threat(&first_threat).await?;
    say(format!(
        "   Sam acknowledges \"{}\" in PagerDuty -> HTTP {code} ({}); S1 threat {first_threat}: {} ({} threat(s) in the story)",
        alert.summary,
        answer["writeback"].as_str().unwrap_or("?"),
        in_s1["threatInfo"]["incidentStatus"].as_str().unwrap_or("?"),
        threats.len()
    ));
    let sent = pd.events().len();
    let again = run(deps, &only, Instant::now() + Duration::from_secs(600)).await?;
    say(format!(
        "   next poll: {}; PagerDuty got {} new events (our own write is not sent back)",
        poll_line(&again.tenants[0]),
        pd.events().len() - sent
    ));
    Ok(json!({
        "alerts": alerts.len(),
        "acknowledged": acked,
        "stories": stories.len(),
        "acknowledge_webhook": {"status": code, "writeback": answer["writeback"]},
        "s1_status_after": in_s1["threatInfo"]["incidentStatus"],
        "events_after_echo": pd.events().len() - sent,
    }))
}

/// The writeback's webhook endpoint on a loopback port, as the Function URL would serve it.
async fn serve_writeback(deps: WritebackDeps) -> std::io::Result<String> {
    let app = crate::serve::webhook_router(deps);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}
