//! `tenant add|list|show|disable|enable|test` and `run poll|assets|tokens`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use s1_shared::config::AllowedHosts;
use s1_shared::platform::{Adapters, PlatformResolver};
use s1_shared::s1::{ClientOptions, Consoles};
use s1_shared::secrets::{AnyTokenProvider, LocalTokenProvider, SecretsManagerTokenProvider, TokenProvider};
use s1_shared::store::{Store, TenantConfig};
use s1_shared::usecase::tenant_check::{CheckStatus, tenant_check};
use serde_json::Value;
use time::OffsetDateTime;

use crate::ops::StoreArgs;
use crate::progress::{Live, ProgressMode, assets_line, poll_line, token_line};

#[derive(Args, Clone)]
pub struct HostArgs {
    /// Hosts tenants' consoles may be on, and the only hosts a platform URL may use when it is
    /// (or resolves to) a private or loopback address (repeatable; `*.example.com` patterns;
    /// 127.0.0.1 admits plain http on loopback for local runs). Default: *.sentinelone.net
    #[arg(long = "allow-host", env = "S1_BRIDGE_ALLOWED_HOSTS", value_delimiter = ',')]
    allow_host: Vec<String>,
}

impl HostArgs {
    /// The allow-list given (the default when none is).
    ///
    /// # Errors
    /// A pattern that is not a host, `*.<domain>` or an IP address.
    pub fn allowed(&self) -> Result<AllowedHosts, String> {
        AllowedHosts::from_patterns(&self.allow_host)
            .map_err(|e| format!("--allow-host / S1_BRIDGE_ALLOWED_HOSTS: {e}"))
    }
}

#[derive(Subcommand)]
pub enum TenantCmd {
    /// Add or replace a tenant from a JSON file (the tenant shape of docs/configuration.md).
    Add {
        #[arg(long)]
        file: std::path::PathBuf,
        #[command(flatten)]
        hosts: HostArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Every tenant.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// One tenant's configuration (secret references only; no secret is stored there).
    Show {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Stop polling and syncing a tenant (its state is kept).
    Disable {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Poll and sync a disabled tenant again (undoes `disable`).
    Enable {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// "Test configuration": reachability, token, scope, expiry, permissions per job, platform.
    Test {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        hosts: HostArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
}

type Res = Result<(), Box<dyn std::error::Error>>;

/// Environment and file sources always; Secrets Manager only when a tenant uses it, so local
/// runs never touch AWS configuration.
pub(crate) async fn tokens(tenants: &[TenantConfig]) -> Arc<dyn TokenProvider> {
    let needs_aws = tenants.iter().any(|t| {
        matches!(t.token, s1_shared::store::TokenSource::SecretsManager { .. })
            || t.platform
                .secrets()
                .iter()
                .any(|(_, s)| matches!(s, s1_shared::store::TokenSource::SecretsManager { .. }))
    });
    let secrets_manager = if needs_aws {
        Some(SecretsManagerTokenProvider::from_env(SecretsManagerTokenProvider::DEFAULT_TTL).await)
    } else {
        None
    };
    Arc::new(AnyTokenProvider {
        local: LocalTokenProvider::from_process_env(),
        secrets_manager,
    })
}

async fn get(store: &Store, id: &str) -> Result<TenantConfig, Box<dyn std::error::Error>> {
    store
        .get_tenant(id)
        .await?
        .ok_or_else(|| format!("no tenant {id:?}").into())
}

/// `tenant enable` / `tenant disable`.
async fn set_enabled(id: &str, store: &StoreArgs, enabled: bool) -> Res {
    let s = store.store.open().await?;
    let mut t = get(&s, id).await?;
    t.enabled = enabled;
    save(&s, &t).await?;
    println!("tenant {id} {}", if enabled { "enabled" } else { "disabled" });
    Ok(())
}

/// Forgets the tenant's failed runs: its configuration changed or `tenant test` passed, so what
/// they failed on may be fixed, and the dispatcher sends it at its own interval at once
/// instead of after its backoff.
async fn forget_failures(s: &Store, id: &str, quiet: bool) -> Res {
    if s.clear_failure_streak(id).await? && !quiet {
        println!("tenant {id}: its failed runs are forgotten; it is polled at its own interval again");
    }
    Ok(())
}

/// Saves a tenant's configuration (see [`forget_failures`]).
async fn save(s: &Store, t: &TenantConfig) -> Res {
    s.put_tenant(t).await?;
    forget_failures(s, &t.id, false).await
}

pub async fn tenant(cmd: TenantCmd) -> Res {
    match cmd {
        TenantCmd::Add { file, hosts, store } => {
            let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let allowed = hosts.allowed()?;
            let t = s1_shared::tenant::parse_tenant(&text, &allowed).map_err(|e| format!("{}: {e}", file.display()))?;
            let s = store.store.open().await?;
            save(&s, &t).await?;
            println!(
                "tenant {} saved ({}, platform {})",
                t.id,
                t.console_url,
                t.platform.kind()
            );
        }
        TenantCmd::List { store } => {
            let s = store.store.open().await?;
            let all = s.list_tenants().await?;
            if store.json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                let statuses = crate::status::by_tenant(&s, &all).await?;
                println!(
                    "{:<20} {:<8} {:<10} {:<9} console",
                    "tenant", "enabled", "platform", "status"
                );
                for t in &all {
                    println!(
                        "{:<20} {:<8} {:<10} {:<9} {}",
                        t.id,
                        t.enabled,
                        t.platform.kind(),
                        crate::status::state_of(statuses.get(&t.id)),
                        t.console_url
                    );
                }
            }
        }
        TenantCmd::Show { id, store } => {
            let s = store.store.open().await?;
            println!("{}", serde_json::to_string_pretty(&get(&s, &id).await?)?);
        }
        TenantCmd::Disable { id, store } => set_enabled(&id, &store, false).await?,
        TenantCmd::Enable { id, store } => set_enabled(&id, &store, true).await?,
        TenantCmd::Test { id, hosts, store } => {
            let s = store.store.open().await?;
            let t = get(&s, &id).await?;
            let allowed = hosts.allowed()?;
            let checks = tenant_check(&t, tokens(std::slice::from_ref(&t)).await, &allowed).await;
            let failed = checks.iter().filter(|c| c.status == CheckStatus::Fail).count();
            if store.json {
                println!("{}", serde_json::to_string_pretty(&checks)?);
            } else {
                for c in &checks {
                    println!(
                        "{} {:<26} {}",
                        match c.status {
                            CheckStatus::Ok => "ok  ",
                            CheckStatus::Skip => "SKIP",
                            CheckStatus::Fail => "FAIL",
                        },
                        c.check,
                        c.detail
                    );
                }
            }
            if failed > 0 {
                return Err(format!("{failed} check(s) failed for tenant {id}").into());
            }
            forget_failures(&s, &id, store.json).await?;
        }
    }
    Ok(())
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Job {
    Poll,
    Assets,
    Tokens,
}

impl Job {
    fn name(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Assets => "assets",
            Self::Tokens => "tokens",
        }
    }
}

#[derive(Args)]
pub struct RunArgs {
    #[arg(value_enum)]
    job: Job,
    /// Only this tenant (enabled or not); by default every enabled tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Live counts on stderr while the job runs.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    progress: ProgressMode,
    #[command(flatten)]
    hosts: HostArgs,
    #[command(flatten)]
    store: StoreArgs,
}

/// Runs one job once, as its Lambda would, against the chosen store. Exits non-zero when a
/// tenant failed, after printing every tenant's report.
pub async fn run(args: RunArgs) -> Res {
    let store = args.store.store.open().await?;
    let selected: Vec<TenantConfig> = match &args.tenant {
        Some(id) => vec![
            store
                .get_tenant(id)
                .await?
                .ok_or_else(|| format!("no tenant {id:?} in this store (see `tenant list`)"))?,
        ],
        None => store.enabled_tenants().await?,
    };
    let allowed = args.hosts.allowed()?;
    let tokens = tokens(&selected).await;
    let http = s1_shared::net::outbound_client(Duration::from_secs(5), Duration::from_secs(30), &allowed)?;
    let options = ClientOptions::default().allowing(allowed.clone());
    let platforms: Arc<dyn PlatformResolver> = Arc::new(
        Adapters::new(http.clone(), tokens.clone(), options.retry.clone())
            .with_allowed_hosts(allowed.clone())
            .with_store(store.clone()),
    );
    let consoles = Consoles::new(http, tokens.clone(), options).sharing_budgets(Arc::new(store.clone()));
    let owner = format!("cli-{}", std::process::id());
    let live = Live::new(args.job.name(), args.progress, args.store.json);
    let started = Instant::now();
    // (tenant, summary line, error) per tenant, and the whole report for --json.
    let (rows, report): (Vec<(String, String, Option<String>)>, Value) = match args.job {
        Job::Poll => {
            use s1_shared::usecase::poll_threats::{PollDeps, Selection, run};
            use s1_shared::usecase::writeback::WritebackDeps;
            let deps = PollDeps {
                progress: live.as_ref().map(Live::poll),
                store: store.clone(),
                consoles: consoles.clone(),
                platforms: platforms.clone(),
                owner,
                concurrency: 4,
                writeback: Some(WritebackDeps {
                    platforms,
                    store,
                    tokens,
                    consoles,
                    inline_retry: WritebackDeps::inline_retry_policy(),
                }),
            };
            let selection = args.tenant.map_or(Selection::All, Selection::Tenant);
            let report = run(&deps, &selection, Instant::now() + Duration::from_secs(840)).await?;
            let rows = report
                .tenants
                .iter()
                .map(|r| {
                    let mut line = format!("{:?}: {}", r.outcome, poll_line(r)).to_lowercase();
                    if r.writebacks_applied + r.writebacks_dead > 0 {
                        line.push_str(&format!(
                            "; pending writebacks: {} applied, {} to dead letters",
                            r.writebacks_applied, r.writebacks_dead
                        ));
                    }
                    (r.tenant.clone(), line, r.error.clone())
                })
                .collect();
            (rows, serde_json::to_value(report)?)
        }
        Job::Assets => {
            use s1_shared::usecase::sync_assets::{AssetDeps, sync_tenant};
            let deps = AssetDeps {
                progress: live.as_ref().map(Live::assets),
                store,
                consoles,
                platforms,
                owner,
            };
            // One Lambda invocation's time, shared by the tenants one after another.
            let deadline = Instant::now() + Duration::from_secs(840);
            let mut reports = Vec::new();
            for t in &selected {
                reports.push(sync_tenant(&deps, t, deadline).await);
            }
            let rows = reports
                .iter()
                .map(|r| (r.tenant.clone(), assets_line(r), r.error.clone()))
                .collect();
            (rows, serde_json::to_value(reports)?)
        }
        Job::Tokens => {
            use s1_shared::usecase::token_expiry::{TokenDeps, check_tenant};
            let deps = TokenDeps {
                store,
                consoles,
                platforms,
            };
            let mut reports = Vec::new();
            for t in &selected {
                reports.push(check_tenant(&deps, t, OffsetDateTime::now_utc()).await);
            }
            let rows = reports
                .iter()
                .map(|r| (r.tenant.clone(), token_line(r), r.error.clone()))
                .collect();
            (rows, serde_json::to_value(reports)?)
        }
    };
    if let Some(live) = &live {
        live.finish();
    }
    if args.store.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        if rows.is_empty() {
            println!("no enabled tenants (see `tenant list`)");
        }
        for (tenant, line, error) in &rows {
            match error {
                Some(e) => println!("FAIL {tenant}: {line}; error: {e}"),
                None => println!("ok   {tenant}: {line}"),
            }
        }
        eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    }
    let failed: Vec<&str> = rows.iter().filter(|r| r.2.is_some()).map(|r| r.0.as_str()).collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{} tenant(s) failed: {}", failed.len(), failed.join(", ")).into())
    }
}
