//! `s1-bridge-sim`: serve a simulated S1 console on loopback until Ctrl-C.

use clap::Parser;
use s1_bridge_sim::{DEFAULT_TOKEN, Sim, SimConfig, TokenSpec, WebhookReceiver};

#[derive(Parser)]
#[command(version, about = "SentinelOne Management API simulator for s1-bridge")]
struct Args {
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: std::net::SocketAddr,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 3)]
    accounts: usize,
    #[arg(long, default_value_t = 2)]
    sites_per_account: usize,
    #[arg(long, default_value_t = 200)]
    agents: usize,
    #[arg(long, default_value_t = 1000)]
    threats: usize,
    #[arg(long, default_value_t = 50)]
    cloud_alerts: usize,
    /// Unified (UAM) alerts, a third of them EDR twins of threats.
    #[arg(long, default_value_t = 40)]
    unified_alerts: usize,
    /// Days until the default token expires.
    #[arg(long, default_value_t = 30)]
    token_days: i64,
    /// Also run a counting webhook receiver (for benchmarks) on this address.
    #[arg(long)]
    receiver: Option<std::net::SocketAddr>,
    /// The receiver's Standard Webhooks secret (`whsec_...`).
    #[arg(long, default_value = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    receiver_secret: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let a = Args::parse();
    let config = SimConfig {
        seed: a.seed,
        accounts: a.accounts,
        sites_per_account: a.sites_per_account,
        agents: a.agents,
        threats: a.threats,
        cloud_alerts: a.cloud_alerts,
        unified_alerts: a.unified_alerts,
        tokens: vec![TokenSpec::tenant(DEFAULT_TOKEN, a.token_days)],
        ..SimConfig::default()
    };
    let sim = Sim::start_on(config, a.listen).await?;
    let _receiver = match a.receiver {
        Some(addr) => {
            let r = WebhookReceiver::start_on(&a.receiver_secret, addr, false).await?;
            println!("webhook receiver at {} (counts only; GET /hooks/stats)", r.url());
            Some(r)
        }
        None => None,
    };
    println!(
        "S1 simulator at {} (API under /web/api/v2.1, control under /_sim)",
        sim.base_url()
    );
    println!(
        "token: {DEFAULT_TOKEN} (tenant scope, expires in {} days)",
        a.token_days
    );
    sim.wait().await;
    Ok(())
}
