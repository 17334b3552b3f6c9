//! Builders and fakes for tests (the `test-util` feature): tenants without hand-written
//! literals, secret references, and a recording [`Platform`] for unit tests of logic. Tests
//! that exercise real HTTP use the simulator's receivers instead.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::platform::{
    Notice, Platform, PlatformConfig, PlatformError, PlatformResolver, PublishReceipt, ThreatEvent, settings,
};
use crate::tenant::{SecretRef, TenantConfig};

/// A secret read from the environment variable `var`.
pub fn env(var: &str) -> SecretRef {
    SecretRef::Env { var: var.to_owned() }
}

/// The generic platform POSTing to `url`, signing with the secret in env `secret_var`.
pub fn generic(url: &str, secret_var: &str) -> PlatformConfig {
    PlatformConfig::Generic(settings::Generic {
        url: url.to_owned(),
        secret: env(secret_var),
        inbound_secrets: vec![],
        inbound_bearer: None,
        assets: None,
        batch: None,
    })
}

/// PagerDuty at `events_url` with the routing key in env `key_var`.
pub fn pagerduty(events_url: &str, key_var: &str) -> PlatformConfig {
    PlatformConfig::PagerDuty(settings::PagerDuty {
        routing_key: env(key_var),
        inbound_secrets: vec![],
        events_url: events_url.to_owned(),
        events_per_minute: std::num::NonZeroU32::new(crate::platform::DEFAULT_EVENTS_PER_MINUTE).expect("not zero"),
    })
}

impl TenantConfig {
    /// An enabled tenant `id` on `console_url`, its token in env `S1_TOKEN_<id>`, publishing to
    /// `platform`, grouping stories, default thresholds.
    pub fn for_test(id: &str, console_url: &str, platform: PlatformConfig) -> Self {
        Self {
            name: format!("Tenant {id}"),
            ..Self::new(id, console_url, env(&format!("S1_TOKEN_{id}")), platform)
        }
    }

    /// The generic settings of a tenant made by [`TenantConfig::for_test`] with [`generic`], to
    /// change in a test (panics for another platform).
    pub fn generic_mut(&mut self) -> &mut settings::Generic {
        match &mut self.platform {
            PlatformConfig::Generic(s) => s,
            other => panic!("the tenant's platform is {}, not generic", other.kind()),
        }
    }
}

/// A platform that records what it is told and accepts everything (or refuses with `fail`).
#[derive(Default)]
pub struct RecordingPlatform {
    pub events: Mutex<Vec<ThreatEvent>>,
    pub notices: Mutex<Vec<Notice>>,
    /// When set, every call fails with a copy of it (as [`PlatformError::Unavailable`]).
    pub fail: Mutex<Option<String>>,
}

impl RecordingPlatform {
    /// A shared recorder and a resolver that hands it out for every tenant.
    pub fn shared() -> (Arc<Self>, Arc<dyn PlatformResolver>) {
        let p = Arc::new(Self::default());
        (p.clone(), Arc::new(Recorded(p)))
    }

    fn check(&self) -> Result<PublishReceipt, PlatformError> {
        match self.fail.lock().expect("not poisoned").clone() {
            Some(detail) => Err(PlatformError::Unavailable { attempts: 1, detail }),
            None => Ok(PublishReceipt::default()),
        }
    }
}

#[async_trait]
impl Platform for RecordingPlatform {
    fn kind(&self) -> crate::domain::PlatformKind {
        crate::domain::PlatformKind::Generic
    }

    async fn publish(&self, event: &ThreatEvent) -> Result<PublishReceipt, PlatformError> {
        self.check()?;
        self.events.lock().expect("not poisoned").push(event.clone());
        Ok(PublishReceipt {
            platform_ref: Some(event.story.alert_key.to_string()),
        })
    }

    async fn notify(&self, notice: &Notice) -> Result<PublishReceipt, PlatformError> {
        self.check()?;
        self.notices.lock().expect("not poisoned").push(notice.clone());
        Ok(PublishReceipt::default())
    }
}

struct Recorded(Arc<RecordingPlatform>);

#[async_trait]
impl PlatformResolver for Recorded {
    async fn resolve(&self, _tenant: &TenantConfig) -> Result<Arc<dyn Platform>, PlatformError> {
        Ok(self.0.clone())
    }
}

impl ThreatEvent {
    /// A `threat.created` event of threat `threat_id` of `tenant`'s console
    /// `https://acme.sentinelone.net`, opening its story's alert (as a publish dead letter keeps).
    pub fn for_test(tenant: &str, threat_id: &str) -> Self {
        use crate::platform::{AssetView, EventKind, FileView, Scope, StoryView, ThreatView};
        let console = "https://acme.sentinelone.net";
        let story = format!("agent:hash@{threat_id}");
        Self {
            kind: EventKind::Created,
            id: crate::domain::event_id(tenant, EventKind::Created.as_str(), threat_id, None),
            tenant: tenant.to_owned(),
            severity: crate::domain::Severity::High,
            threat: ThreatView {
                threat_id: threat_id.to_owned(),
                title: "x.exe on SRV-1".into(),
                status: Some(crate::s1::dto::IncidentStatus::Unresolved),
                verdict: Some(crate::s1::dto::AnalystVerdict::Undefined),
                confidence: Some("malicious".into()),
                classification: Some("Trojan".into()),
                console_url: format!("{console}/incidents/threats/{threat_id}/overview"),
                detected_at: None,
                updated_at: None,
                customer: Scope::default(),
                site: Scope::default(),
                asset: AssetView::default(),
                file: FileView::default(),
                source: None,
                product: None,
                verdict_detail: None,
            },
            story: StoryView {
                alert_key: crate::domain::AlertKey::new(console, &story),
                id: story,
                threat_count: 1,
                new_alert: true,
                reopened: false,
                all_resolved: false,
                platform_ref: None,
            },
        }
    }
}

/// The loopback address the simulator and the test receivers listen on, as an allow-list.
pub fn loopback() -> crate::config::AllowedHosts {
    crate::config::AllowedHosts::parse("127.0.0.1").expect("a valid host")
}

/// The ports a handler test wires its use case with: secrets from `env` (variable -> value),
/// S1 clients and platform adapters over one HTTP client, allowed to call loopback.
pub struct LoopbackPorts {
    pub tokens: Arc<dyn crate::secrets::TokenProvider>,
    pub consoles: crate::s1::Consoles,
    pub platforms: Arc<dyn PlatformResolver>,
}

impl LoopbackPorts {
    /// Ports reading secrets from `env`.
    pub fn new(env: impl IntoIterator<Item = (&'static str, String)>) -> Self {
        use crate::s1::ClientOptions;
        let env: std::collections::HashMap<String, String> = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let tokens: Arc<dyn crate::secrets::TokenProvider> =
            Arc::new(crate::secrets::LocalTokenProvider::with_lookup(move |k| {
                env.get(k).cloned()
            }));
        let http = reqwest::Client::new();
        Self {
            consoles: crate::s1::Consoles::new(
                http.clone(),
                tokens.clone(),
                ClientOptions::default().allowing(loopback()),
            ),
            platforms: Arc::new(
                crate::platform::Adapters::new(http, tokens.clone(), ClientOptions::default().retry)
                    .with_allowed_hosts(loopback()),
            ),
            tokens,
        }
    }
}

/// A fresh in-memory store holding `tenant`.
///
/// # Panics
/// When the embedded store cannot be made or written (a test fails there).
pub async fn store_with(tenant: &TenantConfig) -> crate::store::Store {
    let store = crate::store::Store::new(Arc::new(
        crate::store::EmbeddedTable::in_memory().expect("an in-memory store"),
    ));
    store.put_tenant(tenant).await.expect("the tenant is stored");
    store
}

/// A queue that keeps what it is sent (a consumer's continuations, in unit tests; the
/// integration tests use moto's SQS).
#[derive(Default)]
pub struct MemoryQueue {
    pub sent: Mutex<Vec<crate::queue::TenantMessage>>,
}

#[async_trait]
impl crate::queue::TenantQueue for MemoryQueue {
    async fn send_batch(
        &self,
        messages: &[crate::queue::TenantMessage],
    ) -> Result<Vec<String>, crate::queue::QueueError> {
        self.sent.lock().unwrap().extend_from_slice(messages);
        Ok(Vec::new())
    }
}
