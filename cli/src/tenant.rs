//! `tenant add|list|show|disable|test` and `run poll|assets|tokens`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use futures_util::StreamExt;
use s1_shared::config::{DEFAULT_CONSOLE_HOSTS, check_console_url};
use s1_shared::platform::{Adapters, Notice, PlatformResolver};
use s1_shared::s1::{AgentQuery, ClientOptions, S1Client, S1Error, SiteQuery, ThreatQuery};
use s1_shared::secrets::{AnyTokenProvider, LocalTokenProvider, SecretsManagerTokenProvider, TokenProvider};
use s1_shared::store::{Store, TenantConfig};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::ops::StoreArgs;

#[derive(Args, Clone)]
pub struct HostArgs {
    /// Console hosts tenants may use (repeatable; `*.example.com` patterns). Default: *.sentinelone.net
    #[arg(long = "allow-host", env = "S1_BRIDGE_ALLOWED_HOSTS", value_delimiter = ',')]
    allow_host: Vec<String>,
}

impl HostArgs {
    fn allowed(&self) -> Vec<String> {
        if self.allow_host.is_empty() {
            vec![DEFAULT_CONSOLE_HOSTS.to_owned()]
        } else {
            self.allow_host.clone()
        }
    }
}

#[derive(Subcommand)]
pub enum TenantCmd {
    /// Add or replace a tenant from a JSON file (the README's tenant shape).
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
            || t.platform.settings.to_string().contains("\"secrets_manager\"")
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

pub async fn tenant(cmd: TenantCmd) -> Res {
    match cmd {
        TenantCmd::Add { file, hosts, store } => {
            let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let t: TenantConfig = {
                let de = &mut serde_json::Deserializer::from_str(&text);
                serde_path_to_error::deserialize(de)
                    .map_err(|e| format!("{}: at `{}`: {}", file.display(), e.path(), e.inner()))?
            };
            check_console_url(&t.console_url, &hosts.allowed())?;
            s1_shared::usecase::writeback::Mapping::for_tenant(&t)?;
            s1_shared::usecase::sync_assets::AssetSettings::for_tenant(&t)?;
            let s = store.store.open().await?;
            s.put_tenant(&t).await?;
            println!(
                "tenant {} saved ({}, platform {})",
                t.id, t.console_url, t.platform.kind
            );
        }
        TenantCmd::List { store } => {
            let s = store.store.open().await?;
            let all = s.list_tenants().await?;
            if store.json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                println!("{:<20} {:<8} {:<10} console", "tenant", "enabled", "platform");
                for t in &all {
                    println!(
                        "{:<20} {:<8} {:<10} {}",
                        t.id, t.enabled, t.platform.kind, t.console_url
                    );
                }
            }
        }
        TenantCmd::Show { id, store } => {
            let s = store.store.open().await?;
            println!("{}", serde_json::to_string_pretty(&get(&s, &id).await?)?);
        }
        TenantCmd::Disable { id, store } => {
            let s = store.store.open().await?;
            let mut t = get(&s, &id).await?;
            t.enabled = false;
            s.put_tenant(&t).await?;
            println!("tenant {id} disabled");
        }
        TenantCmd::Test { id, hosts, store } => {
            let s = store.store.open().await?;
            let t = get(&s, &id).await?;
            let checks = test_tenant(&t, &hosts.allowed()).await;
            let failed = checks.iter().filter(|c| c["ok"] == false).count();
            if store.json {
                println!("{}", serde_json::to_string_pretty(&checks)?);
            } else {
                for c in &checks {
                    println!(
                        "{} {:<22} {}",
                        if c["ok"] == true { "ok  " } else { "FAIL" },
                        c["check"].as_str().unwrap_or_default(),
                        c["detail"].as_str().unwrap_or_default()
                    );
                }
            }
            if failed > 0 {
                return Err(format!("{failed} check(s) failed for tenant {id}").into());
            }
        }
    }
    Ok(())
}

/// The first page of a list, to prove the token may read it.
async fn first_page<S: futures_util::Stream<Item = Result<usize, S1Error>>>(s: S) -> Result<usize, S1Error> {
    let mut s = std::pin::pin!(s);
    s.next().await.unwrap_or(Ok(0))
}

fn check(name: &str, r: Result<String, String>) -> Value {
    match r {
        Ok(d) => json!({"check": name, "ok": true, "detail": d}),
        Err(d) => json!({"check": name, "ok": false, "detail": d}),
    }
}

async fn test_tenant(t: &TenantConfig, allowed: &[String]) -> Vec<Value> {
    let mut out = vec![check(
        "console URL allowed",
        check_console_url(&t.console_url, allowed).map(|()| t.console_url.clone()),
    )];
    let tokens = tokens(std::slice::from_ref(t)).await;
    let token = match tokens.token(&t.token).await {
        Ok(tok) => {
            out.push(check("token readable", Ok("read from its source".into())));
            tok
        }
        Err(e) => {
            out.push(check("token readable", Err(e.to_string())));
            return out;
        }
    };
    let client = match S1Client::new(&t.console_url, &token, ClientOptions::default()) {
        Ok(c) => c,
        Err(e) => {
            out.push(check("console reachable", Err(e.to_string())));
            return out;
        }
    };
    let e2s = |e: S1Error| e.to_string();
    out.push(check(
        "console reachable",
        client
            .system_status()
            .await
            .map(|s| format!("health {}", s.health.unwrap_or_default()))
            .map_err(e2s),
    ));
    out.push(check(
        "token valid",
        client
            .system_info()
            .await
            .map(|i| format!("console version {}", i.version.unwrap_or_default()))
            .map_err(e2s),
    ));
    out.push(check(
        "token scope",
        client
            .user()
            .await
            .map(|u| format!("{} scope", u.scope.unwrap_or_default()))
            .map_err(e2s),
    ));
    out.push(check(
        "token expiry",
        match client.api_token_details(&token).await {
            Ok(d) => match d.expires_at {
                Some(x) => {
                    let days = (x - OffsetDateTime::now_utc()).whole_days();
                    if days < 7 {
                        Err(format!("expires in {days} day(s): rotate or replace it"))
                    } else {
                        Ok(format!("{days} days left"))
                    }
                }
                None => Err("S1 sent no expiry".into()),
            },
            Err(e) => Err(e.to_string()),
        },
    ));
    out.push(check(
        "poll-threats can read",
        first_page(
            client
                .threats(&ThreatQuery {
                    limit: 1,
                    ..ThreatQuery::default()
                })
                .map(|p| p.map(|p| p.items.len())),
        )
        .await
        .map(|_| "GET /threats".into())
        .map_err(e2s),
    ));
    out.push(check(
        "sync-assets can read",
        async {
            first_page(
                client
                    .agents(&AgentQuery {
                        limit: 1,
                        ..AgentQuery::default()
                    })
                    .map(|p| p.map(|p| p.items.len())),
            )
            .await?;
            first_page(
                client
                    .sites(&SiteQuery {
                        limit: 1,
                        ..SiteQuery::default()
                    })
                    .map(|p| p.map(|p| p.items.len())),
            )
            .await?;
            match first_page(client.accounts().map(|p| p.map(|p| p.items.len()))).await {
                Ok(_) => Ok("GET /agents, /sites, /accounts".to_owned()),
                Err(S1Error::Forbidden { .. }) => {
                    Ok("GET /agents, /sites (site scope: customers come from sites)".to_owned())
                }
                Err(e) => Err(e),
            }
        }
        .await
        .map_err(e2s),
    ));
    let http = reqwest::Client::new();
    let platforms = Adapters::new(http, tokens.clone(), ClientOptions::default().retry);
    out.push(check(
        "platform reachable",
        async {
            let p = platforms.resolve(t).await.map_err(|e| e.to_string())?;
            let notice = Notice {
                id: format!("msg_test_{}", OffsetDateTime::now_utc().unix_timestamp_nanos()),
                kind: "bridge.test".into(),
                timestamp: OffsetDateTime::now_utc(),
                data: json!({"tenant": t.id, "message": "s1-bridge configuration test"}),
            };
            p.notify(&notice)
                .await
                .map(|_| format!("{} accepted a signed test event", p.name()))
                .map_err(|e| e.to_string())
        }
        .await,
    ));
    out
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Job {
    Poll,
    Assets,
    Tokens,
}

#[derive(Args)]
pub struct RunArgs {
    #[arg(value_enum)]
    job: Job,
    /// Only this tenant (poll only; the others run every enabled tenant).
    #[arg(long)]
    tenant: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

/// Runs one job once, as its Lambda would, against the chosen store.
pub async fn run(args: RunArgs) -> Res {
    let store = args.store.store.open().await?;
    let tokens = tokens(&store.list_tenants().await?).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let options = ClientOptions::default();
    let platforms: Arc<dyn PlatformResolver> =
        Arc::new(Adapters::new(http.clone(), tokens.clone(), options.retry.clone()));
    let started = Instant::now();
    let report: Value = match args.job {
        Job::Poll => {
            use s1_shared::usecase::poll_threats::{PollDeps, Selection, run};
            use s1_shared::usecase::writeback::WritebackDeps;
            let deps = PollDeps {
                store: store.clone(),
                tokens: tokens.clone(),
                platforms,
                http: http.clone(),
                client_options: options.clone(),
                owner: format!("cli-{}", std::process::id()),
                concurrency: 4,
                writeback: Some(WritebackDeps {
                    store,
                    tokens,
                    http,
                    inline_options: WritebackDeps::inline_client_options(),
                    retry_options: options,
                }),
            };
            let selection = args.tenant.map_or(Selection::All, Selection::Tenant);
            serde_json::to_value(run(&deps, &selection, Instant::now() + Duration::from_secs(840)).await?)?
        }
        Job::Assets => {
            use s1_shared::usecase::sync_assets::{AssetDeps, sync_all};
            let deps = AssetDeps {
                store,
                tokens,
                platforms,
                http,
                client_options: options,
                owner: format!("cli-{}", std::process::id()),
            };
            serde_json::to_value(sync_all(&deps).await?)?
        }
        Job::Tokens => {
            use s1_shared::usecase::token_expiry::{TokenDeps, check_all};
            let deps = TokenDeps {
                store,
                tokens,
                platforms,
                http,
                client_options: options,
            };
            serde_json::to_value(check_all(&deps, OffsetDateTime::now_utc()).await?)?
        }
    };
    if args.store.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
        eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(())
}
