//! `bench-halo-import`: the first Halo import of a large console, measured (issue 25's target
//! "5,000 agents in the time Halo's budget allows, through continuations"; scripts/
//! bench-halo-import.sh runs it; not a test).
//!
//! One tenant on the simulator (`--agents` agents in the accounts and sites the simulator makes)
//! sending to the Halo stand-in, its asset sync run by the real consumer
//! (`usecase::fanout::consume_assets`, what `sync-assets` runs) one message at a time from the
//! in-process queue of the fleet benchmark (delays honoured): the first message, then each
//! continuation a `partial` run sends itself, until a run completes.
//!
//! Time is scaled: Halo's budget window (300 s) is `--window-s` through the tenant's
//! `budget_window_seconds`, so the client's pacing, the shared budget and the continuation delay
//! shrink by `300 / window-s`, and so does the invocation's time limit (the Lambda's 900 s). What
//! does not scale: S1 listing, the store and our own CPU, which a real run spends at full length
//! (the projection multiplies them too, so it overstates them: they are reported apart).
//! The stand-in refuses nothing (its limit is lifted) but counts the most API requests it
//! answered in any rolling window, which must stay within the budget.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use s1_bridge_sim::{FakeHalo, HaloConfig, Sim, SimConfig};
use s1_shared::platform::Adapters;
use s1_shared::queue::{SqsEvent, TenantMessage, TenantQueue};
use s1_shared::s1::Consoles;
use s1_shared::secrets::LocalTokenProvider;
use s1_shared::store::{EmbeddedTable, Store};
use s1_shared::tenant::{SecretRef, TenantConfig};
use s1_shared::usecase::fanout::consume_assets;
use s1_shared::usecase::sync_assets::{AssetDeps, Outcome};
use serde_json::json;

use crate::fleet::LocalQueue;

/// Halo's own window, seconds: what `--window-s` scales.
const HALO_WINDOW_S: f64 = 300.0;
/// The `sync-assets` Lambda's timeout (infra/template.yaml), seconds.
const LAMBDA_TIMEOUT_S: f64 = 900.0;

#[derive(Args)]
pub struct HaloImportArgs {
    /// Agents on the console (all active unless `--decommissioned-every`).
    #[arg(long, default_value_t = 5_000)]
    agents: usize,
    /// S1 accounts (each a Halo client).
    #[arg(long, default_value_t = 3)]
    accounts: usize,
    /// Sites per account (each a Halo site).
    #[arg(long, default_value_t = 2)]
    sites_per_account: usize,
    /// Every n-th agent decommissioned (never created in Halo); 0: none.
    #[arg(long, default_value_t = 0)]
    decommissioned_every: usize,
    /// Halo's request budget per window (`requests_per_5_minutes`).
    #[arg(long, default_value_t = 500)]
    budget: u32,
    /// The budget's window, seconds: 300 is Halo's (a real run of about an hour); 6 runs it
    /// 50 times faster.
    #[arg(long, default_value_t = 6)]
    window_s: u32,
    /// The invocation's time limit, seconds; default the Lambda's 900 s scaled like the window.
    #[arg(long)]
    invocation_s: Option<f64>,
    /// Give up after this many runs (a sync that never completes).
    #[arg(long, default_value_t = 500)]
    max_runs: usize,
}

fn tenant(console: &str, halo: &FakeHalo, args: &HaloImportArgs) -> Result<TenantConfig, serde_json::Error> {
    let platform = serde_json::from_value(json!({"kind": "halo", "settings": {
        "url": halo.base_url(),
        "client_id": {"kind": "env", "var": "HALO_ID"},
        "client_secret": {"kind": "env", "var": "HALO_SECRET"},
        "ticket_type": "Security Incident",
        "client": "Contoso Ltd",
        "requests_per_5_minutes": args.budget,
        "budget_window_seconds": args.window_s,
    }}))?;
    Ok(TenantConfig {
        name: "Halo import".into(),
        ..TenantConfig::new("import", console, SecretRef::Env { var: "S1".into() }, platform)
    })
}

/// `GET /api/Asset/17` -> `GET /api/Asset/{id}`: the request log grouped by what it asked.
fn route(method: &str, path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .map(|p| if p.parse::<i64>().is_ok() { "{id}" } else { p })
        .collect();
    format!("{method} {}", parts.join("/"))
}

pub async fn run_halo_import_bench(args: HaloImportArgs) -> Result<(), Box<dyn std::error::Error>> {
    if args.window_s == 0 || args.budget == 0 {
        return Err("--window-s and --budget must be at least 1".into());
    }
    let window = Duration::from_secs(u64::from(args.window_s));
    let scale = HALO_WINDOW_S / f64::from(args.window_s);
    let invocation = Duration::from_secs_f64(args.invocation_s.unwrap_or(LAMBDA_TIMEOUT_S / scale));
    let sim = Sim::start(SimConfig {
        threats: 0,
        cloud_alerts: 0,
        agents: args.agents,
        accounts: args.accounts,
        sites_per_account: args.sites_per_account,
        decommissioned_every: args.decommissioned_every,
        ..SimConfig::default()
    })
    .await?;
    let halo = FakeHalo::start(HaloConfig {
        // Lifted so the stand-in measures rather than enforces: its peak per window is compared
        // with the budget below.
        rate_limit: usize::MAX,
        rate_window: window,
        ..HaloConfig::default()
    })
    .await?;
    let store = Store::new(Arc::new(EmbeddedTable::in_memory()?));
    let secrets = HashMap::from([
        ("S1".to_owned(), s1_bridge_sim::DEFAULT_TOKEN.to_owned()),
        ("HALO_ID".to_owned(), halo.config().client_id.clone()),
        ("HALO_SECRET".to_owned(), halo.config().client_secret.clone()),
    ]);
    let tokens = Arc::new(LocalTokenProvider::with_lookup(move |k| secrets.get(k).cloned()));
    let t = tenant(&sim.base_url(), &halo, &args)?;
    store.put_tenant(&t).await?;
    let (http, options) = crate::bench::bench_http()?;
    // With the store, as every deployed process: the budget is the instance's, in the table.
    let platforms = Arc::new(
        Adapters::new(http.clone(), tokens.clone(), options.retry.clone())
            .with_allowed_hosts(crate::bench::bench_hosts())
            .with_store(store.clone()),
    );
    let deps = AssetDeps {
        store: store.clone(),
        consoles: Consoles::new(http, tokens, options),
        platforms,
        owner: String::new(),
        progress: None,
    };
    let queue = LocalQueue::default();
    let started = Instant::now();
    queue
        .send_batch(&[TenantMessage {
            tenant: t.id.clone(),
            delay_seconds: 0,
        }])
        .await?;
    let mut runs = Vec::new();
    let mut busy = Duration::ZERO;
    let mut unscaled = Duration::ZERO;
    while runs.len() < args.max_runs {
        let Some(m) = queue.next() else {
            if queue.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let event: SqsEvent = serde_json::from_value(json!({"Records": [{
            "messageId": format!("m-{}", runs.len()), "body": json!({"tenant": m.tenant}).to_string(),
            "attributes": {"ApproximateReceiveCount": "1"}, "eventSource": "aws:sqs"}]}))?;
        let before = halo.stats().api_requests;
        let logged = halo.requests().len();
        let run_started = Instant::now();
        let deps = AssetDeps {
            owner: format!("invocation-{}", runs.len()),
            ..deps.clone()
        };
        let (answer, consumed) = consume_assets(&deps, &queue, &event, run_started + invocation).await;
        let took = run_started.elapsed();
        busy += took;
        let report = consumed.runs.into_iter().next().ok_or("the consumer ran nothing")?;
        if let Some(e) = &report.error {
            return Err(format!("run {} failed: {e}", runs.len() + 1).into());
        }
        if !answer.batch_item_failures.is_empty() {
            return Err(format!("run {} asked for its message again", runs.len() + 1).into());
        }
        // A continuation lists S1's agents from the start again; until it reaches the first not
        // yet pushed, it sends Halo nothing: that time is S1 and the store's, not the budget's.
        let first_push = halo
            .requests()
            .iter()
            .skip(logged)
            .find(|r| r.path.starts_with("/api/") && r.method == "POST")
            .map_or(took, |r| r.at.saturating_duration_since(run_started));
        unscaled += first_push;
        runs.push(json!({
            "outcome": report.outcome, "created": report.created, "failed": report.failed,
            "halo_requests": halo.stats().api_requests - before, "seconds": took.as_secs_f64(),
            "before_first_push_s": first_push.as_secs_f64(),
        }));
        if report.outcome != Outcome::Partial {
            break;
        }
    }
    let measured = started.elapsed().as_secs_f64();
    let stats = halo.stats();
    let mut by_route: BTreeMap<String, usize> = BTreeMap::new();
    for r in halo.requests().iter().filter(|r| r.path.starts_with("/api/")) {
        *by_route.entry(route(&r.method, &r.path)).or_default() += 1;
    }
    let inventory: Vec<String> = halo
        .assets()
        .iter()
        .filter_map(|a| a["inventory_number"].as_str().map(str::to_owned))
        .filter(|n| n.starts_with("S1:"))
        .collect();
    let distinct: HashSet<&String> = inventory.iter().collect();
    let active = args.agents - args.agents.checked_div(args.decommissioned_every).unwrap_or(0);
    let completed = runs.last().is_some_and(|r| r["outcome"] == json!(Outcome::Completed));
    println!(
        "{}",
        json!({
            "agents": args.agents, "active_agents": active,
            "accounts": args.accounts, "sites": args.accounts * args.sites_per_account,
            "budget": args.budget, "window_s": args.window_s, "scale": scale,
            "invocation_s": invocation.as_secs_f64(),
            "completed": completed,
            "runs": runs.len(),
            "halo_api_requests": stats.api_requests,
            "halo_requests_per_asset": stats.api_requests as f64 / active.max(1) as f64,
            "halo_requests_by_route": by_route,
            "halo_tokens_issued": stats.tokens_issued,
            "peak_requests_in_a_window": stats.peak_in_window,
            "within_budget": stats.peak_in_window <= args.budget as usize,
            "rate_limited": stats.rate_limited,
            "assets_created": inventory.len(),
            "assets_created_twice": inventory.len() - distinct.len(),
            "measured_s": measured,
            "in_runs_s": busy.as_secs_f64(),
            "waiting_for_continuations_s": measured - busy.as_secs_f64(),
            "projected_real_minutes": measured * scale / 60.0,
            "before_first_push_s": unscaled.as_secs_f64(),
            // The runs' S1 listing up to their first push taken at its measured length, not
            // scaled (a lower projection; the listing's share of a real 900 s run is smaller
            // still, so a real import also needs fewer runs than the scaled one).
            "projected_real_minutes_listing_unscaled": ((measured - unscaled.as_secs_f64()) * scale + unscaled.as_secs_f64()) / 60.0,
            "per_run": runs,
            "scaled": "Halo's window (pacing, shared budget, continuation delay) and the invocation's limit, by `scale`; not S1 listing, the store or CPU",
        })
    );
    Ok(())
}
