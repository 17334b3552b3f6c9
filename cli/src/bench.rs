//! `bench-poll`: one poll-threats run against a console and a webhook receiver, reporting the
//! figures scripts/bench.sh collects (throughput, peak RSS, DynamoDB requests); `bench-fetch`:
//! the same source's listing alone. Both read one source (threats or unified alerts), so a
//! source's ratio to its ceiling compares like with like.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use s1_shared::platform::Adapters;
use s1_shared::platform::{PlatformConfig, settings};
use s1_shared::s1::{ClientOptions, Consoles};
use s1_shared::secrets::LocalTokenProvider;
use s1_shared::store::{
    Checkpoint, DynamoTable, EmbeddedTable, ItemTable, Store, TenantConfig, TokenSource, create_table,
};
use s1_shared::tenant::Source;
use s1_shared::usecase::poll_threats::{PollDeps, Selection, run};
use serde_json::json;

#[derive(Clone, Copy, ValueEnum)]
pub enum StoreKind {
    Embedded,
    Dynamodb,
}

/// The listing a benchmark reads.
#[derive(Clone, Copy, ValueEnum)]
pub enum BenchSource {
    /// `GET /threats`, 1,000 a page.
    Threats,
    /// UAM's GraphQL `alerts`, with the poller's document and page size.
    Unified,
}

impl BenchSource {
    fn source(self) -> Source {
        match self {
            BenchSource::Threats => Source::Threats,
            BenchSource::Unified => Source::Unified,
        }
    }
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
    /// Deliver in `threat.batch` requests (the generic platform's batch setting, defaults).
    #[arg(long)]
    batch: bool,
    /// Deliveries in flight (the tenant's max_in_flight).
    #[arg(long, default_value_t = s1_shared::store::DEFAULT_MAX_IN_FLIGHT)]
    in_flight: u32,
    /// The one source the tenant reads.
    #[arg(long, value_enum, default_value = "threats")]
    source: BenchSource,
}

#[derive(Args)]
pub struct FetchBenchArgs {
    #[arg(long)]
    console: String,
    /// The console token (a simulator token).
    #[arg(long, env = "BENCH_S1_TOKEN")]
    token: String,
    #[arg(long, value_enum, default_value = "threats")]
    source: BenchSource,
}

/// CPU time (user + system) this process has used, from /proc/self/stat (in USER_HZ ticks,
/// 100 a second on Linux).
pub(crate) fn cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 10.0)
}

/// `bench-fetch`: pages through every item of the source as the poller does (its query, its
/// page size), doing nothing with them: the S1 read rate, the ceiling of an end-to-end run on
/// the same machine.
pub async fn run_fetch_bench(args: FetchBenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let (http, options) = bench_http()?;
    let client =
        s1_shared::s1::S1Client::with_http(http, &args.console, &s1_shared::ApiToken::new(args.token), options)?;
    let cpu_before = cpu_ms();
    let started = Instant::now();
    let (fetched, requests) = match args.source {
        BenchSource::Threats => {
            let query = s1_shared::s1::ThreatQuery {
                limit: s1_shared::s1::MAX_PAGE_LIMIT,
                ..Default::default()
            };
            count_pages(client.threats(&query)).await?
        }
        BenchSource::Unified => {
            // The poller's page: a generic platform paces nothing, so it asks for the most.
            count_pages(client.unified_alerts(&s1_shared::s1::UnifiedAlertQuery::default())).await?
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_ms().zip(cpu_before).map(|(a, b)| a - b);
    let mut figures = rate_figures(fetched, elapsed, cpu);
    figures["requests"] = json!(requests);
    println!("{figures}");
    Ok(())
}

/// Items and pages of a listing, read to its end.
async fn count_pages<T>(
    pages: impl futures_util::Stream<Item = Result<s1_shared::s1::Page<T>, s1_shared::s1::S1Error>>,
) -> Result<(u64, u64), s1_shared::s1::S1Error> {
    use futures_util::StreamExt;
    let mut pages = std::pin::pin!(pages);
    let (mut fetched, mut requests) = (0u64, 0u64);
    while let Some(page) = pages.next().await {
        fetched += page?.items.len() as u64;
        requests += 1;
    }
    Ok((fetched, requests))
}

/// What every pass reports: items read, their rate, CPU per 1,000 and the peak RSS so far.
fn rate_figures(fetched: u64, elapsed: f64, cpu_ms: Option<f64>) -> serde_json::Value {
    json!({
        "fetched": fetched,
        "elapsed_s": elapsed,
        "per_s": fetched as f64 / elapsed.max(1e-9),
        "cpu_ms_per_1000": cpu_ms.map(|c| c * 1000.0 / (fetched.max(1) as f64)),
        "peak_rss_mib": peak_rss_kib().map(|k| k as f64 / 1024.0),
    })
}

pub(crate) fn peak_rss_kib() -> Option<u64> {
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
            name: "bench".into(),
            max_in_flight: args.in_flight,
            sources: vec![args.source.source()],
            ..TenantConfig::new(
                "bench",
                args.console.clone(),
                TokenSource::Env { var: "S1".into() },
                PlatformConfig::Generic(settings::Generic {
                    url: args.webhook.clone(),
                    secret: TokenSource::Env { var: "HOOK".into() },
                    inbound_secrets: vec![],
                    inbound_bearer: None,
                    assets: None,
                    batch: args.batch.then(s1_shared::platform::Batch::default),
                }),
            )
        })
        .await?;
    if args.reset_checkpoint {
        store
            .put_checkpoint("bench", args.source.source().checkpoint(), &Checkpoint::default())
            .await?;
    }
    let (http, options) = bench_http()?;
    let deps = PollDeps {
        progress: None,
        store,
        consoles: Consoles::new(http.clone(), tokens.clone(), options.clone()),
        platforms: Arc::new(Adapters::new(http, tokens, options.retry).with_allowed_hosts(bench_hosts())),
        owner: "bench".into(),
        concurrency: 1,
        writeback: None,
    };
    let before = dynamo.as_ref().map(DynamoTable::requests).unwrap_or_default();
    let cpu_before = cpu_ms();
    let started = Instant::now();
    let report = run(
        &deps,
        &Selection::Tenant("bench".into()),
        Instant::now() + Duration::from_secs(3600),
    )
    .await?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_ms().zip(cpu_before).map(|(a, b)| a - b);
    let r = &report.tenants[0];
    let requests = dynamo.as_ref().map(|d| d.requests() - before);
    let per_thousand = |n: u64| requests.filter(|_| n > 0).map(|q| (q as f64) * 1000.0 / n as f64);
    let mut figures = rate_figures(r.fetched, elapsed, cpu);
    figures["report"] = json!(r);
    figures["dynamodb_requests"] = json!(requests);
    figures["dynamodb_requests_per_1000_new"] = json!(per_thousand(r.new));
    figures["dynamodb_requests_per_1000_fetched"] = json!(per_thousand(r.fetched));
    println!("{figures}");
    Ok(())
}

#[derive(Args)]
pub struct WebhookBenchArgs {
    /// Signed webhooks to send.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    #[arg(long, value_enum)]
    store: StoreKind,
    #[arg(long, default_value = "bench-webhook.redb")]
    path: String,
    #[arg(long, default_value = "s1-bridge-bench-webhook")]
    table: String,
}

/// Sends signed status changes to the writeback over loopback HTTP and reports the handler's
/// own latency (time waiting on S1 excluded), p50 and p99.
pub async fn run_webhook_bench(args: WebhookBenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    use s1_bridge_sim::{DEFAULT_TOKEN, Sim, SimConfig, WebhookReceiver};
    use s1_shared::platform::{WebhookSecret, sign};
    use s1_shared::usecase::writeback::{WritebackDeps, handle_webhook};
    use std::sync::Mutex;

    const OUT: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const IN: &str = "whsec_ZGVtby1pbmJvdW5kLXNlY3JldC1mb3ItdGVzdHM=";
    let sim = Sim::start(SimConfig {
        threats: 300,
        agents: 50,
        cloud_alerts: 0,
        ..SimConfig::default()
    })
    .await?;
    let receiver = WebhookReceiver::start(OUT).await?;
    let table: Arc<dyn ItemTable> = match args.store {
        StoreKind::Embedded => Arc::new(EmbeddedTable::open(&args.path)?),
        StoreKind::Dynamodb => {
            let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            let client = aws_sdk_dynamodb::Client::new(&config);
            let _ = create_table(&client, &args.table).await;
            Arc::new(DynamoTable::new(client, args.table.clone()))
        }
    };
    let store = Store::new(table);
    let secrets = HashMap::from([
        ("S1".to_owned(), DEFAULT_TOKEN.to_owned()),
        ("OUT".to_owned(), OUT.to_owned()),
        ("IN".to_owned(), IN.to_owned()),
    ]);
    let tokens = Arc::new(LocalTokenProvider::with_lookup(move |k| secrets.get(k).cloned()));
    store
        .put_tenant(&TenantConfig {
            name: "bench".into(),
            ..TenantConfig::new(
                "bench",
                sim.base_url(),
                TokenSource::Env { var: "S1".into() },
                PlatformConfig::Generic(settings::Generic {
                    url: receiver.url(),
                    secret: TokenSource::Env { var: "OUT".into() },
                    inbound_secrets: vec![TokenSource::Env { var: "IN".into() }],
                    inbound_bearer: None,
                    assets: None,
                    batch: None,
                }),
            )
        })
        .await?;
    let (http, options) = bench_http()?;
    let consoles = Consoles::new(http.clone(), tokens.clone(), options.clone());
    let poll = PollDeps {
        progress: None,
        store: store.clone(),
        consoles: consoles.clone(),
        platforms: Arc::new(
            Adapters::new(http.clone(), tokens.clone(), options.retry).with_allowed_hosts(bench_hosts()),
        ),
        owner: "bench".into(),
        concurrency: 1,
        writeback: None,
    };
    run(
        &poll,
        &Selection::Tenant("bench".into()),
        Instant::now() + Duration::from_secs(600),
    )
    .await?;
    let alerts: Vec<String> = {
        let mut a: Vec<String> = receiver
            .events()
            .iter()
            .filter_map(|e| e["data"]["alert_key"].as_str().map(str::to_owned))
            .collect();
        a.sort();
        a.dedup();
        a
    };
    let deps = Arc::new(WritebackDeps {
        platforms: poll.platforms.clone(),
        store,
        tokens,
        consoles,
        inline_retry: WritebackDeps::inline_retry_policy(),
    });
    let samples: Arc<Mutex<Vec<u64>>> = Arc::default();
    let (d, rec) = (deps.clone(), samples.clone());
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method,
              uri: axum::http::Uri,
              headers: axum::http::HeaderMap,
              body: axum::body::Bytes| {
            let (d, rec) = (d.clone(), rec.clone());
            async move {
                let started = Instant::now();
                let r = handle_webhook(&d, method.as_str(), uri.path(), &headers, &body).await;
                let own = started.elapsed().saturating_sub(r.s1_time);
                rec.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(own.as_micros() as u64);
                axum::http::StatusCode::from_u16(r.status).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let key = WebhookSecret::parse(IN)?;
    let start = time::OffsetDateTime::now_utc();
    let mut codes: HashMap<u16, usize> = HashMap::new();
    let wall = Instant::now();
    for i in 0..args.count {
        let alert = &alerts[i % alerts.len()];
        // Status changes per alert move forward in time, so none is refused as stale.
        let at = start + time::Duration::milliseconds(i as i64);
        let state = if (i / alerts.len()) % 2 == 0 {
            "investigating"
        } else {
            "new"
        };
        let body = serde_json::to_vec(&json!({
            "type": "alert.status_changed", "timestamp": s1_shared::s1::dto::format_time(at),
            "data": {"alert_key": alert, "status": state, "actor": {"name": "bench"}}
        }))?;
        let id = format!("bench-{i}");
        let ts = time::OffsetDateTime::now_utc().unix_timestamp();
        let r = http
            .post(format!("{base}/generic/bench"))
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sign(&key, &id, ts, &body))
            .body(body)
            .send()
            .await?;
        *codes.entry(r.status().as_u16()).or_default() += 1;
    }
    let mut s = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    s.sort_unstable();
    let pct = |p: f64| {
        s.get(((s.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or_default() as f64
            / 1000.0
    };
    println!(
        "{}",
        json!({
            "webhooks": args.count,
            "status_codes": codes,
            "handler_ms_excluding_s1": {"p50": pct(0.50), "p99": pct(0.99), "max": pct(1.0)},
            "wall_s": wall.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}

/// The HTTP client and S1 client options every benchmark uses.
pub(crate) fn bench_http() -> Result<(reqwest::Client, ClientOptions), reqwest::Error> {
    let http = s1_shared::net::outbound_client(Duration::from_secs(5), Duration::from_secs(30), &bench_hosts())?;
    Ok((http, ClientOptions::default().allowing(bench_hosts())))
}

/// Benchmarks run against the simulator and receivers on loopback only.
pub(crate) fn bench_hosts() -> s1_shared::config::AllowedHosts {
    s1_shared::config::AllowedHosts::parse("127.0.0.1").expect("a valid host")
}
