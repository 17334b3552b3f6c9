//! `s1-bridge`: the operator CLI, one-machine runner and demo.

mod bench;
mod demo;
mod demo_halo;
mod demo_net;
mod demo_unified;
mod fleet;
mod halo;
mod halo_import;
mod ops;
mod progress;
mod serve;
mod status;
mod tenant;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "s1-bridge",
    version,
    about = "Connect SentinelOne consoles to the platforms where SOC teams work"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the product against a built-in S1 simulator: no AWS account, no S1 console needed.
    Demo(demo::DemoArgs),
    /// The one-machine runner: every job on its schedule plus the webhook endpoint.
    Serve(serve::ServeArgs),
    /// Create the state store (a DynamoDB table, or the embedded file).
    Init(ops::StoreArgs),
    /// Add, list, show, disable or test tenants.
    #[command(subcommand)]
    Tenant(tenant::TenantCmd),
    /// Each tenant's connector status: connected, degraded or error (with the cause), last
    /// success, lag, token days left, pending writebacks and dead letters.
    Status(ops::StoreArgs),
    /// Run one job once (poll, assets, tokens) as its Lambda would.
    Run(tenant::RunArgs),
    /// List or replay dead letters: writebacks S1 refused and events the platform refused.
    #[command(subcommand)]
    DeadLetters(ops::DeadLetters),
    /// A Halo tenant's mapping table: S1 accounts and sites onto Halo clients and sites.
    #[command(subcommand)]
    Halo(halo::HaloCmd),
    /// The log of calls made to a tenant's S1 console (30 days).
    Outbound(ops::OutboundArgs),
    /// One measured poll run (used by scripts/bench.sh).
    #[command(hide = true)]
    BenchPoll(bench::BenchArgs),
    /// The S1 read rate alone, the ceiling of a poll run (used by scripts/bench.sh).
    #[command(hide = true)]
    BenchFetch(bench::FetchBenchArgs),
    /// Webhook handler latency over signed webhooks (used by scripts/bench.sh).
    #[command(hide = true)]
    BenchWebhook(bench::WebhookBenchArgs),
    /// The fleet benchmark: many tenants through the dispatcher, a queue and a bounded pool of
    /// consumers (used by scripts/bench-fleet.sh).
    BenchFleet(fleet::FleetArgs),
    /// The first Halo import of a large console through the asset sync's continuations, time
    /// scaled (used by scripts/bench-halo-import.sh).
    #[command(hide = true)]
    BenchHaloImport(halo_import::HaloImportArgs),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("S1_BRIDGE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // A job (a poll run, a sync, a command) is one task at a time with I/O around it: one thread
    // spares it the cross-thread wake-ups of a worker pool (a fifth of a backlog's CPU: bench.sh).
    // What serves requests keeps a worker per core.
    let mut runtime = match cli.command {
        Command::Serve(_) | Command::Demo(_) | Command::BenchWebhook(_) | Command::BenchFleet(_) => {
            tokio::runtime::Builder::new_multi_thread()
        }
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    match runtime.enable_all().build() {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> std::process::ExitCode {
    let result = match cli.command {
        Command::Demo(args) => demo::run_demo(args).await,
        Command::BenchPoll(args) => bench::run_bench(args).await,
        Command::BenchFetch(args) => bench::run_fetch_bench(args).await,
        Command::BenchWebhook(args) => bench::run_webhook_bench(args).await,
        Command::BenchFleet(args) => fleet::run_fleet_bench(args).await,
        Command::BenchHaloImport(args) => halo_import::run_halo_import_bench(args).await,
        Command::DeadLetters(cmd) => ops::dead_letters(cmd).await,
        Command::Tenant(cmd) => tenant::tenant(cmd).await,
        Command::Init(store) => ops::init(store).await,
        Command::Serve(args) => serve::serve(args).await,
        Command::Run(args) => tenant::run(args).await,
        Command::Status(args) => status::status(args).await,
        Command::Outbound(args) => ops::outbound(args).await,
        Command::Halo(cmd) => halo::halo(cmd).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
