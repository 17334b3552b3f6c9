//! `serve`: the one-machine runner. Every job on its schedule plus the webhook endpoint, over
//! one state store (the embedded file, or a DynamoDB table).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use s1_shared::platform::{Adapters, PlatformResolver};
use s1_shared::s1::{ClientOptions, Consoles};
use s1_shared::usecase::poll_threats::PollDeps;
use s1_shared::usecase::sync_assets::AssetDeps;
use s1_shared::usecase::token_expiry::TokenDeps;
use s1_shared::usecase::writeback::{WritebackDeps, handle_webhook};
use serde_json::Value;
use time::OffsetDateTime;

use crate::ops::StoreArgs;

#[derive(Args)]
pub struct ServeArgs {
    /// Where the webhook endpoint listens (`POST /webhooks/<platform>/<tenant>`).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Seconds between a tenant's threat polls (pending writebacks are retried with them).
    #[arg(long, default_value_t = 60)]
    poll_seconds: u64,
    /// Tenants polled at once: each tenant runs on its own schedule, so a slow one holds one
    /// of these and never delays the others.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    poll_workers: u16,
    /// Seconds between asset syncs.
    #[arg(long, default_value_t = 86_400)]
    assets_seconds: u64,
    /// Seconds between token checks.
    #[arg(long, default_value_t = 86_400)]
    tokens_seconds: u64,
    #[command(flatten)]
    hosts: crate::tenant::HostArgs,
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let store = args.store.store.open().await?;
    let tokens = crate::tenant::tokens(&store.list_tenants().await?).await;
    let allowed = args.hosts.allowed()?;
    let http = s1_shared::net::outbound_client(Duration::from_secs(5), Duration::from_secs(30), &allowed)?;
    let options = ClientOptions::default().allowing(allowed.clone());
    let platforms: Arc<dyn PlatformResolver> = Arc::new(
        Adapters::new(http.clone(), tokens.clone(), options.retry.clone())
            .with_allowed_hosts(allowed.clone())
            .with_store(store.clone()),
    );
    // One console port for every job: one client (one rate budget) per tenant.
    let consoles = Consoles::new(http, tokens.clone(), options).sharing_budgets(Arc::new(store.clone()));
    let writeback = WritebackDeps {
        platforms: platforms.clone(),
        store: store.clone(),
        tokens,
        consoles: consoles.clone(),
        inline_retry: WritebackDeps::inline_retry_policy(),
    };
    let poll = PollDeps {
        progress: None,
        store: store.clone(),
        consoles: consoles.clone(),
        platforms: platforms.clone(),
        owner: format!("serve-{}", std::process::id()),
        concurrency: 4,
        writeback: Some(writeback.clone()),
    };
    let assets = AssetDeps {
        progress: None,
        store: store.clone(),
        consoles: consoles.clone(),
        platforms: platforms.clone(),
        owner: poll.owner.clone(),
    };
    let watch = TokenDeps {
        store: store.clone(),
        consoles,
        platforms,
    };

    let every = |secs: u64| {
        let mut t = tokio::time::interval(Duration::from_secs(secs.max(1)));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    };
    let (mut a, mut k) = (every(args.assets_seconds), every(args.tokens_seconds));
    // Not spawned: the jobs borrow their deps, and one task with the server is plenty.
    let poll_loop = async {
        // Each tenant on its own schedule in a bounded pool (usecase::fanout::serve_polls).
        let limit = Duration::from_secs(args.poll_seconds.clamp(30, 840));
        s1_shared::usecase::fanout::serve_polls(
            &poll,
            Duration::from_secs(args.poll_seconds),
            usize::from(args.poll_workers),
            limit,
            |event| {
                if let s1_shared::usecase::fanout::PoolEvent::Finished(r) = event {
                    match &r.error {
                        Some(e) => println!("poll {}: {:?}: {e}", r.tenant, r.outcome),
                        None if r.published + r.failed + r.writebacks_applied > 0 => println!(
                            "poll {}: {} published, {} failed, {} writebacks applied",
                            r.tenant, r.published, r.failed, r.writebacks_applied
                        ),
                        None => {}
                    }
                }
            },
        )
        .await;
    };
    let assets_loop = async {
        loop {
            a.tick().await;
            let limit = Duration::from_secs(args.assets_seconds.clamp(30, 840));
            match s1_shared::usecase::sync_assets::sync_all(&assets, Instant::now() + limit).await {
                Ok(r) => println!("assets: {}", serde_json::to_string(&r).unwrap_or_default()),
                Err(e) => eprintln!("assets: {e}"),
            }
        }
    };
    let tokens_loop = async {
        loop {
            k.tick().await;
            match s1_shared::usecase::token_expiry::check_all(&watch, OffsetDateTime::now_utc()).await {
                Ok(r) => println!("tokens: {}", serde_json::to_string(&r).unwrap_or_default()),
                Err(e) => eprintln!("tokens: {e}"),
            }
        }
    };

    let app = webhook_router(writeback);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!(
        "s1-bridge serving webhooks at http://{}/webhooks/<platform>/<tenant>",
        listener.local_addr()?
    );
    let server = axum::serve(listener, app).with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    tokio::select! {
        r = server => r?,
        () = async { tokio::join!(poll_loop, assets_loop, tokens_loop); } => {}
    }
    Ok(())
}

/// The writeback behind HTTP, as its Function URL serves it: `POST /webhooks/<platform>/<tenant>`
/// (and `GET /health`). Used by `serve` and by the demo.
pub(crate) fn webhook_router(deps: WritebackDeps) -> axum::Router {
    async fn hook(
        axum::extract::State(deps): axum::extract::State<Arc<WritebackDeps>>,
        method: axum::http::Method,
        uri: axum::http::Uri,
        headers: axum::http::HeaderMap,
        body: axum::body::Bytes,
    ) -> (axum::http::StatusCode, axum::Json<Value>) {
        let path = uri.path().strip_prefix("/webhooks").unwrap_or("/");
        let r = handle_webhook(&deps, method.as_str(), path, &headers, &body).await;
        (
            axum::http::StatusCode::from_u16(r.status).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
            axum::Json(r.body),
        )
    }
    axum::Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .fallback(hook)
        .layer(axum::extract::DefaultBodyLimit::max(1 << 20))
        .with_state(Arc::new(deps))
}
