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

#[derive(Subcommand)]
pub enum DeadLetters {
    /// Writebacks that ran out of attempts, with their last error.
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Puts a dead letter back in the pending queue; the next scheduled run (or webhook) retries it.
    Replay {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub async fn dead_letters(cmd: DeadLetters) -> Result<(), Box<dyn std::error::Error>> {
    match cmd {
        DeadLetters::List { tenant, store } => {
            let s = store.store.open().await?;
            let mut all = Vec::new();
            let mut cursor = None;
            loop {
                let page = s.list_dead(&tenant, cursor.as_deref(), 100).await?;
                all.extend(page.items);
                match page.next {
                    Some(n) => cursor = Some(n),
                    None => break,
                }
            }
            if store.json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else if all.is_empty() {
                println!("no dead letters for tenant {tenant}");
            } else {
                println!("{:<34} {:<40} {:>8}  last error", "id", "alert", "attempts");
                for d in &all {
                    println!(
                        "{:<34} {:<40} {:>8}  {}",
                        d.id,
                        d.alert_key,
                        d.attempts,
                        d.last_error.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        DeadLetters::Replay { tenant, id, store } => {
            let s = store.store.open().await?;
            let p = s.replay_dead(&tenant, &id, OffsetDateTime::now_utc()).await?;
            println!(
                "dead letter {} of tenant {tenant} is pending again; the next run retries it",
                p.id
            );
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
