//! Outbound safety: loopback servers that count what reaches them (a console that must never be
//! called, a redirect target that must receive nothing) and the run-time allow-list scenario
//! shared by the embedded and DynamoDB Local test files.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use s1_bridge_sim::SimConfig;
use s1_shared::config::AllowedHosts;
use s1_shared::s1::{ClientOptions, Consoles};
use s1_shared::store::ItemTable;
use s1_shared::usecase::poll_threats::{Outcome, poll_tenant};
use s1_shared::usecase::sync_assets::sync_tenant;
use s1_shared::usecase::token_expiry::check_tenant;
use s1_shared::usecase::writeback::retry_pending;
use time::OffsetDateTime;

use crate::poll::{PollHarness, tenant};
use crate::writeback::{INBOUND_SECRET, post_generic, serve, status_changed};
use crate::{fast_retry_options, loopback_hosts};

/// A loopback listener that counts the connections made to it and drops each at once.
pub struct CountingListener {
    pub addr: SocketAddr,
    count: Arc<AtomicUsize>,
}

impl CountingListener {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                seen.fetch_add(1, Ordering::SeqCst);
                drop(conn);
            }
        });
        Self { addr, count }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// An HTTP server on loopback answering every request with `status`, `headers` and `body`
/// (chunked, without `Content-Length`, when `chunked`); returns its base URL.
pub async fn answering(status: u16, headers: Vec<(&'static str, String)>, body: Vec<u8>, chunked: bool) -> String {
    use axum::body::Body;
    use axum::response::Response;
    let app = axum::Router::new().fallback(move || {
        let headers = headers.clone();
        let body = body.clone();
        async move {
            let mut r = Response::builder().status(status);
            for (k, v) in headers {
                r = r.header(k, v);
            }
            let body = if chunked {
                let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                    body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
                Body::from_stream(futures_util::stream::iter(chunks))
            } else {
                Body::from(body)
            };
            r.body(body).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Client options for the scenario: fast retries and the given console allow-list.
fn options(allowed: &AllowedHosts) -> ClientOptions {
    fast_retry_options().allowing(allowed.clone())
}

/// A tenant item written straight to the store whose console is off the allow-list (or plain
/// http on an allowed name) is refused when poll-threats, sync-assets, token-expiry and the
/// writeback (inline and retried) build their S1 client: no connection ever reaches it.
pub async fn consoles_off_the_allow_list_are_never_called(table: Arc<dyn ItemTable>) {
    let h = PollHarness::start(
        SimConfig {
            threats: 12,
            agents: 6,
            cloud_alerts: 0,
            ..SimConfig::default()
        },
        table,
    )
    .await;
    let mut t = tenant("acme", &h.sim.base_url(), &h.receiver.url());
    t.generic_mut().inbound_secrets = vec![s1_shared::test_util::env("INBOUND")];
    h.store.put_tenant(&t).await.unwrap();
    h.env.lock().unwrap().insert("INBOUND".into(), INBOUND_SECRET.into());
    h.poll().await;
    let alert = h.receiver.events()[0]["data"]["alert_key"].as_str().unwrap().to_owned();

    let console = CountingListener::start().await;
    let port = console.addr.port();
    // The production allow-list; names pointed at the counting listener so that a call that
    // slipped through would be counted, not lost in DNS.
    let default = AllowedHosts::default();
    let resolving = |name: &str| reqwest::Client::builder().resolve(name, console.addr).build().unwrap();
    let cases = [
        (
            format!("http://127.0.0.1:{port}"),
            reqwest::Client::new(),
            "not in the allowed hosts",
        ),
        (
            format!("https://s1.evil.example:{port}"),
            resolving("s1.evil.example"),
            "not in the allowed hosts",
        ),
        (
            format!("http://acme.sentinelone.net:{port}"),
            resolving("acme.sentinelone.net"),
            "must be https",
        ),
    ];
    for (n, (url, http, reason)) in cases.into_iter().enumerate() {
        let mut rogue = t.clone();
        rogue.console_url = url.clone();
        h.store.put_tenant(&rogue).await.unwrap();

        // A console port of its own: the production allow-list, and the resolving HTTP client.
        let consoles = Consoles::new(http.clone(), h.tokens.clone(), options(&default));
        let mut poll = h.deps.clone();
        poll.consoles = consoles.clone();
        let r = poll_tenant(&poll, &rogue, Instant::now() + Duration::from_secs(60)).await;
        assert_eq!(r.outcome, Outcome::Failed, "{url}: {r:?}");
        assert!(r.error.as_deref().unwrap_or_default().contains(reason), "{url}: {r:?}");

        let mut assets = h.asset_deps();
        assets.consoles = consoles.clone();
        let r = sync_tenant(&assets, &rogue, Instant::now() + Duration::from_secs(60)).await;
        assert!(r.error.as_deref().unwrap_or_default().contains(reason), "{url}: {r:?}");

        let mut tokens = h.token_deps();
        tokens.consoles = consoles.clone();
        let r = check_tenant(&tokens, &rogue, OffsetDateTime::now_utc()).await;
        assert!(r.error.as_deref().unwrap_or_default().contains(reason), "{url}: {r:?}");

        let mut writeback = crate::writeback::deps(&h);
        writeback.consoles = consoles;
        let base = serve(writeback.clone()).await;
        let body = status_changed(&alert, "closed", Some("benign"), OffsetDateTime::now_utc());
        let (status, answer) = post_generic(&base, "acme", &format!("msg_rogue_{n}"), &body, INBOUND_SECRET).await;
        assert_ne!(answer["writeback"], "applied", "{url}: {status} {answer}");
        retry_pending(
            &writeback,
            &rogue,
            OffsetDateTime::now_utc() + time::Duration::days(1),
            10,
            std::time::Instant::now() + std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
        let mut errors: Vec<String> = Vec::new();
        for p in h.store.list_pending("acme", None, 100).await.unwrap().items {
            errors.extend(p.last_error);
        }
        for d in h.store.list_dead("acme", None, 100).await.unwrap().items {
            errors.extend(d.last_error);
        }
        assert!(
            errors.iter().any(|e| e.contains(reason)),
            "{url}: the writeback says why: {errors:?}"
        );
    }
    assert_eq!(console.connections(), 0, "no call reached a console off the allow-list");

    // The listener does count: with its address allowed, the same tenant is called.
    let mut allowed = t.clone();
    allowed.console_url = format!("http://127.0.0.1:{port}");
    let mut poll = h.deps.clone();
    poll.consoles = Consoles::new(reqwest::Client::new(), h.tokens.clone(), options(&loopback_hosts()));
    let r = poll_tenant(&poll, &allowed, Instant::now() + Duration::from_secs(60)).await;
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    assert!(console.connections() > 0, "the control run reached the listener");
}
