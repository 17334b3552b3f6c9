//! The demo: a simulated S1 console in-process, read through the real client over HTTP.

use std::time::Instant;

use clap::Args;
use futures_util::TryStreamExt;
use s1_bridge_sim::{DEFAULT_TOKEN, Sim, SimConfig, TokenSpec};
use s1_shared::ApiToken;
use s1_shared::s1::dto::IncidentStatus;
use s1_shared::s1::{AgentQuery, ClientOptions, CloudAlertQuery, S1Client, S1Error, SiteQuery, ThreatQuery};
use serde_json::json;
use time::OffsetDateTime;

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
}

pub async fn run(args: DemoArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = SimConfig {
        threats: args.threats,
        agents: args.agents,
        tokens: vec![TokenSpec::tenant(DEFAULT_TOKEN, args.token_days)],
        ..SimConfig::default()
    };
    let sim = Sim::start(config).await?;
    if !args.json {
        println!(
            "S1 simulator started at {} (seeded, {} threats, {} agents)",
            sim.base_url(),
            args.threats,
            args.agents
        );
    }
    let token = ApiToken::new(DEFAULT_TOKEN);
    let client = S1Client::new(&sim.base_url(), &token, ClientOptions::default())?;
    let started = Instant::now();

    let status = client.system_status().await?;
    let info = client.system_info().await?;
    let user = client.user().await?;

    let mut threats = 0usize;
    let mut pages = 0usize;
    let mut unresolved = 0usize;
    let mut fileless = 0usize;
    let mut newest = None;
    let mut stream = std::pin::pin!(client.threats(&ThreatQuery::default()));
    while let Some(page) = stream.try_next().await? {
        pages += 1;
        threats += page.items.len();
        for t in &page.items {
            unresolved += usize::from(t.threat_info.incident_status == Some(IncidentStatus::Unresolved));
            fileless += usize::from(t.file_hash().is_none());
            newest = newest.max(t.threat_info.updated_at);
        }
    }
    let agents: Vec<_> = client
        .agents(&AgentQuery::default())
        .map_ok(|p| p.items)
        .try_concat()
        .await?;
    let decommissioned = agents.iter().filter(|a| a.is_decommissioned == Some(true)).count();
    let accounts: usize = client
        .accounts()
        .map_ok(|p| p.items.len())
        .try_fold(0, |a, n| async move { Ok::<_, S1Error>(a + n) })
        .await?;
    let sites: usize = client
        .sites(&SiteQuery::default())
        .map_ok(|p| p.items.len())
        .try_fold(0, |a, n| async move { Ok::<_, S1Error>(a + n) })
        .await?;
    let alerts: usize = client
        .cloud_alerts(&CloudAlertQuery::default())
        .map_ok(|p| p.items.len())
        .try_fold(0, |a, n| async move { Ok::<_, S1Error>(a + n) })
        .await?;
    let details = client.api_token_details(&token).await?;
    let expires = details.expires_at.ok_or("S1 sent no expiresAt for the token")?;
    let left = expires - OffsetDateTime::now_utc();
    let days_left = left.whole_days();
    let elapsed = started.elapsed();

    if args.json {
        let summary = json!({
            "console": {"health": status.health, "version": info.version, "token_scope": user.scope},
            "threats": {"total": threats, "pages": pages, "unresolved": unresolved, "fileless": fileless},
            "agents": {"total": agents.len(), "decommissioned": decommissioned},
            "accounts": accounts,
            "sites": sites,
            "cloud_alerts": alerts,
            "token": {"expires_at": s1_shared::s1::dto::format_time(expires), "days_left": days_left},
            "elapsed_ms": elapsed.as_millis() as u64,
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    println!();
    println!("What the S1 client read from the console:");
    println!(
        "  console      health {}, version {}, token scope {}",
        status.health.as_deref().unwrap_or("?"),
        info.version.as_deref().unwrap_or("?"),
        user.scope.as_deref().unwrap_or("?")
    );
    println!("  threats      {threats} in {pages} pages ({unresolved} unresolved, {fileless} fileless)");
    if let Some(n) = newest {
        println!("               newest change {}", s1_shared::s1::dto::format_time(n));
    }
    println!("  agents       {} ({decommissioned} decommissioned)", agents.len());
    println!("  accounts     {accounts}");
    println!("  sites        {sites}");
    println!("  STAR alerts  {alerts}");
    println!(
        "  API token    expires {} (in {days_left} d {} h){}",
        s1_shared::s1::dto::format_time(expires),
        left.whole_hours() % 24,
        if days_left < 7 {
            "  <- inside the 7-day alert threshold"
        } else {
            ""
        }
    );
    println!();
    println!(
        "Read in {:.1} s, paced by the client at S1's own rate limits.",
        elapsed.as_secs_f64()
    );
    Ok(())
}
