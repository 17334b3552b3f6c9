//! A HaloPSA harness: the simulated S1 console, a fake Halo that checks every request against
//! Halo's own OpenAPI document, and tenant `acme` on the `halo` platform, with the poller, the
//! asset sync and the webhook endpoint wired as the functions wire them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use s1_bridge_sim::{FakeHalo, HaloConfig, HaloWebhookAuth, HaloWebhookPayload, SimConfig};
use s1_shared::platform::{Adapters, PlatformConfig, PlatformResolver};
use s1_shared::store::{ItemTable, TenantConfig};
use s1_shared::usecase::poll_threats::{PollReport, Selection, run};
use s1_shared::usecase::writeback::WritebackDeps;
use serde_json::{Value, json};

use crate::poll::PollHarness;
use crate::{fast_retry_options, loopback_hosts};

/// The secret Halo's webhook carries in its header (test-only).
pub const HOOK_SECRET: &str = "halo-webhook-secret-for-tests";
/// The header it is in.
pub const HOOK_HEADER: &str = "X-Halo-Secret";

/// Simulator, fake Halo, store and tenant; the webhook endpoint at `base`.
pub struct HaloHarness {
    pub h: PollHarness,
    pub halo: FakeHalo,
    pub base: String,
    pub writeback: WritebackDeps,
}

/// The tenant's Halo settings, with `extra` merged over the defaults the tests use.
pub fn settings(halo: &FakeHalo, extra: Value) -> PlatformConfig {
    let mut s = json!({
        "url": halo.base_url(),
        "client_id": {"kind": "env", "var": "HALO_ID"},
        "client_secret": {"kind": "env", "var": "HALO_SECRET"},
        "ticket_type": "Security Incident",
        "client": "Contoso Ltd",
        "site": "Contoso HQ",
        "inbound": {"header": {"name": HOOK_HEADER, "value": {"kind": "env", "var": "HALO_HOOK"}}},
        "requests_per_5_minutes": 100_000,
    });
    if let (Some(base), Value::Object(more)) = (s.as_object_mut(), extra) {
        base.extend(more);
    }
    serde_json::from_value(json!({"kind": "halo", "settings": s})).expect("valid Halo settings")
}

impl HaloHarness {
    /// `threats` on 30 agents, a fake Halo from `config` (its rate limit raised unless the
    /// config sets one below the default), and the tenant's settings with `extra`.
    pub async fn start(threats: usize, table: Arc<dyn ItemTable>, config: HaloConfig, extra: Value) -> Self {
        let sim = SimConfig {
            threats,
            agents: 30,
            cloud_alerts: 0,
            ..SimConfig::default()
        };
        Self::start_with(sim, table, config, extra).await
    }

    /// The same on a simulator of any shape (a large console for an import).
    pub async fn start_with(sim: SimConfig, table: Arc<dyn ItemTable>, config: HaloConfig, extra: Value) -> Self {
        let mut h = PollHarness::start(sim, table).await;
        let halo = FakeHalo::start(config).await.expect("fake Halo");
        {
            let mut env = h.env.lock().unwrap();
            env.insert("HALO_ID".into(), halo.config().client_id.clone());
            env.insert("HALO_SECRET".into(), halo.config().client_secret.clone());
            env.insert("HALO_HOOK".into(), HOOK_SECRET.into());
        }
        let t = TenantConfig::for_test("acme", &h.sim.base_url(), settings(&halo, extra));
        h.store.put_tenant(&t).await.unwrap();
        let platforms = adapters(&h);
        h.deps.platforms = platforms.clone();
        let mut writeback = crate::writeback::deps(&h);
        writeback.platforms = platforms;
        let base = crate::writeback::serve(writeback.clone()).await;
        Self {
            h,
            halo,
            base,
            writeback,
        }
    }

    /// Another Halo tenant, `id`, on the same S1 console (its token in env `S1_TOKEN_<id>`),
    /// sending to `halo` with the tenant settings the tests use and `extra`; its webhook is
    /// `<base>/halo/<id>` with the same header secret.
    pub async fn add_tenant(&self, id: &str, console_url: &str, halo: &FakeHalo, extra: Value) {
        self.h
            .env
            .lock()
            .unwrap()
            .insert(format!("S1_TOKEN_{id}"), s1_bridge_sim::DEFAULT_TOKEN.into());
        let t = TenantConfig::for_test(id, console_url, settings(halo, extra));
        self.h.store.put_tenant(&t).await.unwrap();
    }

    /// Halo's webhook for `ticket` of `halo`, fired at tenant `tenant`'s endpoint with the
    /// tests' header secret.
    pub async fn fire_at(&self, halo: &FakeHalo, tenant: &str, ticket: i64) -> u16 {
        fire_url(halo, &format!("{}/halo/{tenant}", self.base), ticket).await
    }

    /// Another webhook endpoint for the same tenants, with adapters of its own: a process that
    /// has read nothing from Halo yet (a cold Lambda container, the status-writeback function
    /// beside the poller's). Returns its base URL.
    pub async fn serve_cold(&self) -> String {
        let mut writeback = self.writeback.clone();
        writeback.platforms = adapters(&self.h);
        crate::writeback::serve(writeback).await
    }

    /// Halo's webhook for `ticket` fired at tenant `tenant`'s endpoint under `base`.
    pub async fn fire_at_base(&self, base: &str, tenant: &str, ticket: i64) -> u16 {
        fire_url(&self.halo, &format!("{base}/halo/{tenant}"), ticket).await
    }

    /// The fake Halo's API requests since the log was last cleared, as `METHOD /api/Path`
    /// (token requests left out: the token is cached for its lifetime).
    pub fn api_requests(&self) -> Vec<String> {
        self.halo
            .requests()
            .into_iter()
            .filter(|r| r.path.starts_with("/api/"))
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    /// One asset sync of every tenant; the first tenant's report.
    pub async fn sync_assets(&self) -> s1_shared::usecase::sync_assets::AssetReport {
        self.sync_assets_all().await.remove(0)
    }

    /// One asset sync of every tenant; each tenant's report.
    pub async fn sync_assets_all(&self) -> Vec<s1_shared::usecase::sync_assets::AssetReport> {
        let deadline = Instant::now() + Duration::from_secs(600);
        s1_shared::usecase::sync_assets::sync_all(&self.h.asset_deps(), deadline)
            .await
            .unwrap()
    }

    /// One poll run of every tenant.
    pub async fn poll(&self) -> PollReport {
        run(&self.h.deps, &Selection::All, Instant::now() + Duration::from_secs(600))
            .await
            .expect("run starts")
    }

    /// Halo's webhook for `ticket`, fired by the fake with the tenant's header secret.
    pub async fn fire(&self, ticket: i64) -> u16 {
        self.fire_at(&self.halo, "acme", ticket).await
    }

    /// Every request the fake refused, as text (empty when Halo's document allowed them all).
    pub fn refusals(&self) -> Vec<String> {
        self.halo.refused().into_iter().map(|r| format!("{r:?}")).collect()
    }

    /// Tickets the bridge created (with an S1 story key), by their story's alert key.
    pub fn story_tickets(&self) -> Vec<Value> {
        self.halo
            .tickets()
            .into_iter()
            .filter(|t| {
                t["third_party_id_string"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("s1:"))
            })
            .collect()
    }
}

/// Platform adapters of one process (each keeps its own Halo tokens and resolved settings).
fn adapters(h: &PollHarness) -> Arc<dyn PlatformResolver> {
    Arc::new(
        Adapters::new(reqwest::Client::new(), h.tokens.clone(), fast_retry_options().retry)
            .with_allowed_hosts(loopback_hosts())
            .with_store(h.store.clone()),
    )
}

/// Halo's event-only webhook for `ticket` of `halo`, posted to `url` with the tests' header
/// secret; the status our endpoint answered.
async fn fire_url(halo: &FakeHalo, url: &str, ticket: i64) -> u16 {
    halo.fire_webhook(
        url,
        ticket,
        HaloWebhookPayload::EventOnly,
        &HaloWebhookAuth::Header {
            name: HOOK_HEADER.into(),
            value: HOOK_SECRET.into(),
        },
    )
    .await
    .expect("webhook delivered")
}
