//! Operator commands over the state store: dead letters and the outbound request log.

use std::sync::Arc;

use clap::{Args, Subcommand};
use s1_shared::store::{DynamoTable, EmbeddedTable, ItemTable, Store};
use time::OffsetDateTime;

/// Which store to open: `embedded:<path>` (the one-machine runner's file) or
/// `dynamodb:<table>` (a deployment; AWS credentials and region from the environment).
#[derive(Clone, Debug)]
pub struct StoreSpec(String);

impl std::str::FromStr for StoreSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some(("embedded" | "dynamodb", rest)) if !rest.is_empty() => Ok(Self(s.to_owned())),
            _ => Err(format!("{s:?}: use embedded:<path> or dynamodb:<table>")),
        }
    }
}

impl StoreSpec {
    pub async fn open(&self) -> Result<Store, Box<dyn std::error::Error>> {
        let (kind, rest) = self.0.split_once(':').expect("validated");
        let table: Arc<dyn ItemTable> = match kind {
            "embedded" => Arc::new(EmbeddedTable::open(rest)?),
            _ => Arc::new(DynamoTable::from_env(rest).await),
        };
        Ok(Store::new(table))
    }
}

/// `init`: creates the state table in DynamoDB (as the SAM template does), for local DynamoDB
/// and first runs; the embedded store creates itself.
pub async fn init(store: StoreArgs) -> Result<(), Box<dyn std::error::Error>> {
    match store.store.0.split_once(':') {
        Some(("dynamodb", table)) => {
            let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            s1_shared::store::create_table(&aws_sdk_dynamodb::Client::new(&config), table).await?;
            println!("table {table} created");
        }
        _ => {
            store.store.open().await?;
            println!("embedded store ready");
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct StoreArgs {
    /// embedded:<path> or dynamodb:<table>
    #[arg(long, env = "S1_BRIDGE_STORE")]
    pub store: StoreSpec,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Which way a dead letter was going.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Direction {
    /// A platform change S1 refused for good or that ran out of attempts.
    Writeback,
    /// An S1 threat event the platform refused for good (400, 409, 413, 422).
    Publish,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Writeback => "writeback",
            Direction::Publish => "publish",
        }
    }
}

#[derive(Subcommand)]
pub enum DeadLetters {
    /// Both directions: writebacks that S1 refused or ran out of attempts, and threat events the
    /// platform refused, each with its last error.
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// A writeback dead letter goes back to the pending queue (the next scheduled run, or
    /// webhook, retries it); a publish dead letter is sent again, once, by the next poll run.
    Replay {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        id: String,
        /// Which dead letter, when an id names both (default: whichever exists).
        #[arg(long, value_enum)]
        direction: Option<Direction>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Every page of a store listing.
async fn all_pages<T, F, Fut>(mut page: F) -> Result<Vec<T>, s1_shared::store::StoreError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<s1_shared::store::RecordPage<T>, s1_shared::store::StoreError>>,
{
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let p = page(cursor.take()).await?;
        all.extend(p.items);
        match p.next {
            Some(n) => cursor = Some(n),
            None => return Ok(all),
        }
    }
}

/// A dead letter of either direction, as listed.
fn listed(direction: Direction, mut v: serde_json::Value) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        o.insert("direction".into(), direction.as_str().into());
    }
    v
}

pub async fn dead_letters(cmd: DeadLetters) -> Result<(), Box<dyn std::error::Error>> {
    match cmd {
        DeadLetters::List { tenant, store } => {
            let s = store.store.open().await?;
            let writebacks = all_pages(|c| {
                let s = &s;
                let tenant = &tenant;
                async move { s.list_dead(tenant, c.as_deref(), 100).await }
            })
            .await?;
            let publishes = all_pages(|c| {
                let s = &s;
                let tenant = &tenant;
                async move { s.list_publish_dead(tenant, c.as_deref(), 100).await }
            })
            .await?;
            if store.json {
                let mut all = Vec::new();
                for d in &writebacks {
                    all.push(listed(Direction::Writeback, serde_json::to_value(d)?));
                }
                for d in &publishes {
                    all.push(listed(Direction::Publish, serde_json::to_value(d)?));
                }
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else if writebacks.is_empty() && publishes.is_empty() {
                println!("no dead letters for tenant {tenant}");
            } else {
                println!(
                    "{:<10} {:<34} {:<40} {:>8}  last error",
                    "direction", "id", "alert", "attempts"
                );
                for d in &writebacks {
                    println!(
                        "{:<10} {:<34} {:<40} {:>8}  {}",
                        Direction::Writeback.as_str(),
                        d.id,
                        d.alert_key,
                        d.attempts,
                        d.last_error.as_deref().unwrap_or("-")
                    );
                }
                for d in &publishes {
                    println!(
                        "{:<10} {:<34} {:<40} {:>8}  HTTP {}: {}{}",
                        Direction::Publish.as_str(),
                        d.id,
                        d.alert_key,
                        d.attempts,
                        d.status,
                        d.error,
                        if d.replay_requested { " (replay queued)" } else { "" }
                    );
                }
            }
        }
        DeadLetters::Replay {
            tenant,
            id,
            direction,
            store,
        } => {
            let s = store.store.open().await?;
            let direction = match direction {
                Some(d) => d,
                None => {
                    let publish = s.get_publish_dead(&tenant, &id).await?.is_some();
                    let writeback = all_pages(|c| {
                        let s = &s;
                        let tenant = &tenant;
                        async move { s.list_dead(tenant, c.as_deref(), 100).await }
                    })
                    .await?
                    .iter()
                    .any(|d| d.id == id);
                    match (writeback, publish) {
                        (true, true) => {
                            return Err(format!(
                                "{id} names a writeback and a publish dead letter of tenant {tenant}; say which with --direction"
                            )
                            .into());
                        }
                        (false, true) => Direction::Publish,
                        (true, false) => Direction::Writeback,
                        (false, false) => return Err(format!("tenant {tenant} has no dead letter {id}").into()),
                    }
                }
            };
            match direction {
                Direction::Writeback => {
                    let p = s
                        .replay_dead(&tenant, &id, OffsetDateTime::now_utc())
                        .await
                        .map_err(|_| format!("tenant {tenant} has no writeback dead letter {id}"))?;
                    println!(
                        "dead letter {} of tenant {tenant} is pending again; the next run retries it",
                        p.id
                    );
                }
                Direction::Publish => {
                    let l = s.request_publish_replay(&tenant, &id).await?;
                    println!(
                        "publish dead letter {} of tenant {tenant} is queued; the next poll run sends it again, once",
                        l.id
                    );
                }
            }
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct OutboundArgs {
    #[arg(long)]
    tenant: String,
    /// Most recent N calls.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn outbound(args: OutboundArgs) -> Result<(), Box<dyn std::error::Error>> {
    let s = args.store.store.open().await?;
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = s.list_outbound(&args.tenant, cursor.as_deref(), 500).await?;
        all.extend(page.items);
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    let recent = &all[all.len().saturating_sub(args.limit)..];
    if args.store.json {
        println!("{}", serde_json::to_string_pretty(recent)?);
        return Ok(());
    }
    println!(
        "{:<28} {:<6} {:<30} {:>6} {:>8} {:>7}  result",
        "time", "method", "path", "status", "latency", "attempt"
    );
    for r in recent {
        println!(
            "{:<28} {:<6} {:<30} {:>6} {:>6}ms {:>7}  {}",
            s1_shared::s1::dto::format_time(r.at),
            r.method,
            r.path,
            r.status.map_or("-".into(), |s| s.to_string()),
            r.latency_ms,
            r.attempt,
            r.result.as_deref().or(r.error.as_deref()).unwrap_or("")
        );
    }
    Ok(())
}
