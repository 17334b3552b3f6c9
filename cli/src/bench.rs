//! `bench-poll`: one poll-threats run against a console and a webhook receiver, reporting the
//! figures scripts/bench.sh collects (throughput, peak RSS, DynamoDB requests).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use s1_shared::platform::Adapters;
use s1_shared::s1::ClientOptions;
use s1_shared::secrets::LocalTokenProvider;
use s1_shared::store::{
    Checkpoint, DynamoTable, EmbeddedTable, Grouping, ItemTable, PlatformTarget, Store, TenantConfig, TokenSource,
    create_table,
};
use s1_shared::usecase::poll_threats::{PollDeps, Selection, run};
use serde_json::{Value, json};

#[derive(Clone, Copy, ValueEnum)]
pub enum StoreKind {
    Embedded,
    Dynamodb,
}

#[derive(Args)]
pub struct BenchArgs {
    #[arg(long)]
    console: String,
    /// The console token (a simulator token: benchmarks never run against a real console).
    #[arg(long, env = "BENCH_S1_TOKEN")]
    token: String,
    #[arg(long)]
    webhook: String,
    #[arg(long, env = "BENCH_WEBHOOK_SECRET")]
    webhook_secret: String,
    #[arg(long, value_enum)]
    store: StoreKind,
    /// Embedded store file.
    #[arg(long, default_value = "bench-state.redb")]
    path: String,
    /// DynamoDB table (created when missing).
    #[arg(long, default_value = "s1-bridge-bench")]
    table: String,
    /// Forget the checkpoint first, so every threat is read again (and found unchanged).
    #[arg(long)]
    reset_checkpoint: bool,
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub async fn run_bench(args: BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let (table, dynamo): (Arc<dyn ItemTable>, Option<DynamoTable>) = match args.store {
        StoreKind::Embedded => (Arc::new(EmbeddedTable::open(&args.path)?), None),
        StoreKind::Dynamodb => {
            let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            let client = aws_sdk_dynamodb::Client::new(&config);
            // A second run finds the table already there.
            let _ = create_table(&client, &args.table).await;
            let t = DynamoTable::new(client, args.table.clone());
            (Arc::new(t.clone()), Some(t))
        }
    };
    let store = Store::new(table);
    let secrets = HashMap::from([
        ("S1".to_owned(), args.token.clone()),
        ("HOOK".to_owned(), args.webhook_secret.clone()),
    ]);
    let tokens = Arc::new(LocalTokenProvider::with_lookup(move |k| secrets.get(k).cloned()));
    store
        .put_tenant(&TenantConfig {
            id: "bench".into(),
            name: "bench".into(),
            enabled: true,
            console_url: args.console.clone(),
            token: TokenSource::Env { var: "S1".into() },
            account_ids: vec![],
            site_ids: vec![],
            platform: PlatformTarget {
                kind: "generic".into(),
                settings: json!({"url": args.webhook, "secret": {"kind": "env", "var": "HOOK"}}),
            },
            grouping: Grouping::Story,
            poll_cloud_alerts: false,
            mapping_overrides: Value::Null,
        })
        .await?;
    if args.reset_checkpoint {
        store.put_checkpoint("bench", "threats", &Checkpoint::default()).await?;
    }
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let options = ClientOptions::default();
    let deps = PollDeps {
        store,
        tokens: tokens.clone(),
        platforms: Arc::new(Adapters::new(http.clone(), tokens, options.retry.clone())),
        http,
        client_options: options,
        owner: "bench".into(),
        concurrency: 1,
        writeback: None,
    };
    let before = dynamo.as_ref().map(DynamoTable::requests).unwrap_or_default();
    let started = Instant::now();
    let report = run(
        &deps,
        &Selection::Tenant("bench".into()),
        Instant::now() + Duration::from_secs(3600),
    )
    .await?;
    let elapsed = started.elapsed().as_secs_f64();
    let r = &report.tenants[0];
    let requests = dynamo.as_ref().map(|d| d.requests() - before);
    let per_thousand = |n: u64| requests.filter(|_| n > 0).map(|q| (q as f64) * 1000.0 / n as f64);
    println!(
        "{}",
        json!({
            "report": r,
            "elapsed_s": elapsed,
            "threats_per_s": r.fetched as f64 / elapsed.max(1e-9),
            "peak_rss_mib": peak_rss_kib().map(|k| k as f64 / 1024.0),
            "dynamodb_requests": requests,
            "dynamodb_requests_per_1000_new": per_thousand(r.new),
            "dynamodb_requests_per_1000_fetched": per_thousand(r.fetched),
        })
    );
    Ok(())
}
