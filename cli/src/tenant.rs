//! `tenant add|list|show|disable|test` and `run poll|assets|tokens`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use futures_util::StreamExt;
use s1_shared::config::AllowedHosts;
use s1_shared::platform::{Adapters, Notice, PlatformResolver};
use s1_shared::s1::{AgentQuery, ClientOptions, Consoles, RetryPolicy, S1Client, S1Error, SiteQuery, ThreatQuery};
use s1_shared::secrets::{AnyTokenProvider, LocalTokenProvider, SecretsManagerTokenProvider, TokenProvider};
use s1_shared::store::{Store, TenantConfig};
use serde_json::{Value, json};
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

pub async fn tenant(cmd: TenantCmd) -> Res {
    match cmd {
        TenantCmd::Add { file, hosts, store } => {
            let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let allowed = hosts.allowed()?;
            let t = s1_shared::tenant::parse_tenant(&text, &allowed).map_err(|e| format!("{}: {e}", file.display()))?;
            let s = store.store.open().await?;
            s.put_tenant(&t).await?;
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
                println!("{:<20} {:<8} {:<10} console", "tenant", "enabled", "platform");
                for t in &all {
                    println!(
                        "{:<20} {:<8} {:<10} {}",
                        t.id,
                        t.enabled,
                        t.platform.kind(),
                        t.console_url
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
            let checks = test_tenant(&t, &hosts.allowed()?).await;
            let failed = checks.iter().filter(|c| c["status"] == "fail").count();
            if store.json {
                println!("{}", serde_json::to_string_pretty(&checks)?);
            } else {
                for c in &checks {
                    println!(
                        "{} {:<26} {}",
                        match c["status"].as_str() {
                            Some("ok") => "ok  ",
                            Some("skip") => "SKIP",
                            _ => "FAIL",
                        },
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

/// How long the console's checks may take in all; the platform check gets the rest of
/// [`TEST_BUDGET`]. The "Test configuration" button answers within it whatever the console does.
const CONSOLE_BUDGET: Duration = Duration::from_secs(6);
/// The whole test.
const TEST_BUDGET: Duration = Duration::from_secs(9);

/// One attempt per call and short timeouts: a test reports what it meets, it does not wait it out.
fn test_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    }
}

/// The checks of `tenant test`, each `ok`, `fail` or `skip`. Once the console cannot be reached
/// (no answer: DNS, refused, TLS, timeout), the checks that need it are skipped, so the cause is
/// said once.
struct Checks {
    out: Vec<Value>,
    /// Why the console's remaining checks are skipped.
    console_down: Option<String>,
    deadline: tokio::time::Instant,
}

impl Checks {
    fn push(&mut self, name: &str, r: Result<String, String>) {
        self.out.push(match r {
            Ok(d) => json!({"check": name, "ok": true, "status": "ok", "detail": d}),
            Err(d) => json!({"check": name, "ok": false, "status": "fail", "detail": d}),
        });
    }

    fn skip(&mut self, name: &str, why: &str) {
        self.out
            .push(json!({"check": name, "ok": false, "status": "skip", "detail": format!("skipped: {why}")}));
    }

    /// Runs one call to the console within the console budget, or skips it once the console is
    /// down. A transport failure or the budget running out marks the console down.
    async fn console<T>(
        &mut self,
        name: &str,
        call: impl std::future::Future<Output = Result<T, S1Error>>,
    ) -> Option<Result<T, S1Error>> {
        if let Some(why) = &self.console_down {
            let why = why.clone();
            self.skip(name, &why);
            return None;
        }
        match tokio::time::timeout_at(self.deadline, call).await {
            Ok(Err(e @ S1Error::Transport { .. })) => {
                self.push(name, Err(e.to_string()));
                self.console_down = Some("console unreachable (see above)".into());
                None
            }
            Ok(r) => Some(r),
            Err(_) => {
                self.push(
                    name,
                    Err(format!(
                        "no answer within the test's {} s budget for the console",
                        CONSOLE_BUDGET.as_secs()
                    )),
                );
                self.console_down = Some("console unreachable (too slow, see above)".into());
                None
            }
        }
    }

    /// Like [`Checks::console`], recording the outcome through `judge`.
    async fn console_check<T>(
        &mut self,
        name: &str,
        call: impl std::future::Future<Output = Result<T, S1Error>>,
        judge: impl FnOnce(T) -> Result<String, String>,
    ) -> Option<()> {
        let r = self.console(name, call).await?;
        self.push(name, r.map_err(|e| e.to_string()).and_then(judge));
        Some(())
    }
}

async fn test_tenant(t: &TenantConfig, allowed: &AllowedHosts) -> Vec<Value> {
    let started = tokio::time::Instant::now();
    let mut c = Checks {
        out: Vec::new(),
        console_down: None,
        deadline: started + CONSOLE_BUDGET,
    };
    c.push(
        "console URL allowed",
        allowed
            .check_console_url(&t.console_url)
            .map(|()| t.console_url.clone())
            .map_err(|e| e.to_string()),
    );
    let tokens = tokens(std::slice::from_ref(t)).await;
    let token = match tokens.token(&t.token).await {
        Ok(tok) => {
            c.push("token readable", Ok("read from its source".into()));
            Some(tok)
        }
        Err(e) => {
            c.push("token readable", Err(e.to_string()));
            c.console_down = Some("no token to call the console with".into());
            None
        }
    };
    let options = ClientOptions {
        connect_timeout: Duration::from_secs(3),
        request_timeout: Duration::from_secs(4),
        retry: test_retry(),
        ..ClientOptions::default()
    }
    .allowing(allowed.clone());
    let client = match token.as_ref().map(|tok| S1Client::new(&t.console_url, tok, options)) {
        Some(Ok(client)) => Some(client),
        Some(Err(e)) => {
            c.push("console reachable", Err(e.to_string()));
            c.console_down = Some("the console cannot be called (see above)".into());
            None
        }
        None => None,
    };
    test_console(&mut c, client.as_ref(), token.as_ref()).await;

    let remaining = (started + TEST_BUDGET).saturating_duration_since(tokio::time::Instant::now());
    let http = s1_shared::net::outbound_client(Duration::from_secs(2), Duration::from_secs(3).min(remaining), allowed);
    let platform = async {
        let http = http.map_err(|e| e.to_string())?;
        let platforms = Adapters::new(http, tokens.clone(), test_retry()).with_allowed_hosts(allowed.clone());
        let p = platforms.resolve(t).await.map_err(|e| e.to_string())?;
        let notice = Notice::Test {
            id: format!("msg_test_{}", OffsetDateTime::now_utc().unix_timestamp_nanos()),
            timestamp: OffsetDateTime::now_utc(),
            tenant: t.id.clone(),
            message: "s1-bridge configuration test".into(),
        };
        p.notify(&notice)
            .await
            .map(|_| format!("{} accepted a test event", p.name()))
            .map_err(|e| e.to_string())
    };
    let r = tokio::time::timeout(remaining, platform)
        .await
        .unwrap_or_else(|_| Err("no answer within the test's time budget".into()));
    c.push("platform reachable", r);
    c.out
}

/// The checks that need the console, in order; skipped once it is down.
async fn test_console(c: &mut Checks, client: Option<&S1Client>, token: Option<&s1_shared::ApiToken>) {
    let (Some(client), Some(token)) = (client, token) else {
        let why = c.console_down.clone().unwrap_or_default();
        for name in CONSOLE_CHECKS {
            if !c.out.iter().any(|done| done["check"] == name) {
                c.skip(name, &why);
            }
        }
        return;
    };
    c.console_check("console reachable", client.system_status(), |s| {
        Ok(format!("health {}", s.health.unwrap_or_default()))
    })
    .await;
    c.console_check("token valid", client.system_info(), |i| {
        Ok(format!("console version {}", i.version.unwrap_or_default()))
    })
    .await;
    match c.console("token scope", client.user()).await {
        None => {
            for name in ["status-writeback can write", "token rotation"] {
                let why = c.console_down.clone().unwrap_or_default();
                c.skip(name, &why);
            }
        }
        Some(Err(e)) => c.push("token scope", Err(e.to_string())),
        Some(Ok(u)) => {
            c.push(
                "token scope",
                Ok(format!("{} scope", u.scope.clone().unwrap_or_default())),
            );
            let roles: std::collections::BTreeSet<&str> = u
                .scope_roles
                .iter()
                .chain(&u.site_roles)
                .filter_map(|r| r.role_name.as_deref())
                .collect();
            let listed = roles.iter().copied().collect::<Vec<_>>().join(", ");
            c.push(
                "status-writeback can write",
                if !roles.is_empty() && roles.iter().all(|r| r.eq_ignore_ascii_case("viewer")) {
                    Err(format!(
                        "the token's user has only the {listed} role: S1 will refuse status, verdict and notes (they would end in the dead letters)"
                    ))
                } else if roles.is_empty() {
                    Ok(format!("{} scope", u.scope.clone().unwrap_or_default()))
                } else {
                    Ok(format!("role(s) {listed}"))
                },
            );
            c.push(
                "token rotation",
                Ok(if u.can_generate_api_token == Some(true) {
                    "S1 lets this user generate API tokens: the rotation function can rotate it".to_owned()
                } else {
                    "this user cannot generate API tokens (a service user?): replace the token by hand before it expires"
                        .to_owned()
                }),
            );
        }
    }
    c.console_check("token expiry", client.api_token_details(token), |d| {
        match d.expires_at {
            Some(x) => {
                let days = (x - OffsetDateTime::now_utc()).whole_days();
                if days < 7 {
                    Err(format!("expires in {days} day(s): rotate or replace it"))
                } else {
                    Ok(format!("{days} days left"))
                }
            }
            None => Err("S1 sent no expiry".into()),
        }
    })
    .await;
    c.console_check(
        "poll-threats can read",
        first_page(
            client
                .threats(&ThreatQuery {
                    limit: 1,
                    ..ThreatQuery::default()
                })
                .map(|p| p.map(|p| p.items.len())),
        ),
        |_| Ok("GET /threats".into()),
    )
    .await;
    let assets = async {
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
    };
    c.console_check("sync-assets can read", assets, Ok).await;
}

/// Every check that needs the console, in the order they run.
const CONSOLE_CHECKS: [&str; 8] = [
    "console reachable",
    "token valid",
    "token scope",
    "status-writeback can write",
    "token rotation",
    "token expiry",
    "poll-threats can read",
    "sync-assets can read",
];

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
        None => store.list_tenants().await?.into_iter().filter(|t| t.enabled).collect(),
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
    let consoles = Consoles::new(http, tokens.clone(), options);
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
