//! The platform port: where threats become alerts or tickets. One trait, one adapter per
//! platform: `generic` (signed webhooks) and `pagerduty` (Events API v2).

mod generic;
pub mod halo;
pub mod inbound;
mod pagerduty;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::AllowedHosts;
use crate::domain::Severity;
use crate::s1::dto::Threat;
use crate::secrets::TokenProvider;
use crate::store::{TenantConfig, TokenSource};

pub use generic::{GenericWebhook, SignatureError, WebhookSecret, sign, verify};
pub use pagerduty::{DEFAULT_EVENTS_PER_MINUTE, DEFAULT_EVENTS_URL, PagerDutyEvents};

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The platform refused this item (400, 409, 413, 422): retrying the same item will not help.
    #[error("the platform refused the event (HTTP {status}): {detail}")]
    Rejected { status: u16, detail: String },
    /// The platform refused us, whatever the event (401, 403: credentials; 404, 405, 410: the
    /// endpoint moved; any other 4xx but 408 and 429): it is unavailable for the tenant until
    /// its settings are fixed. Nothing is recorded against an event; the poller's checkpoint
    /// holds.
    #[error(
        "the platform refused our requests (HTTP {status}): {detail}; check the tenant's platform URL and credentials"
    )]
    Refused { status: u16, detail: String },
    /// The platform could not take it now (429, 5xx, network) through the retry budget.
    #[error("the platform is unavailable after {attempts} attempt{}: {detail}", if *.attempts == 1 { "" } else { "s" })]
    Unavailable { attempts: u32, detail: String },
    /// The tenant's platform settings are wrong.
    #[error("platform configuration: {0}")]
    Config(String),
}

/// What happened in S1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A threat seen for the first time.
    #[serde(rename = "threat.created")]
    Created,
    /// A known threat changed in S1 (content, or a status changed in the console).
    #[serde(rename = "threat.updated")]
    Updated,
}

impl EventKind {
    /// The event type on the wire (`threat.created`, `threat.updated`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "threat.created",
            EventKind::Updated => "threat.updated",
        }
    }
}

/// An S1 account or site as the platform sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Scope {
    pub external_id: Option<String>,
    pub name: Option<String>,
}

/// The endpoint a threat is on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AssetView {
    pub external_id: Option<String>,
    pub hostname: Option<String>,
    pub os: Option<String>,
    pub ip: Vec<String>,
}

/// The file a threat is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FileView {
    pub path: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
}

/// A threat as every adapter renders it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreatView {
    pub threat_id: String,
    pub title: String,
    pub status: Option<String>,
    pub verdict: Option<String>,
    pub confidence: Option<String>,
    pub classification: Option<String>,
    pub console_url: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub detected_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
    pub customer: Scope,
    pub site: Scope,
    pub asset: AssetView,
    pub file: FileView,
}

impl ThreatView {
    /// Builds the view of an S1 threat; `console` is the console origin.
    pub fn from_threat(t: &Threat, console: &str) -> Self {
        let i = &t.threat_info;
        let rt = t.agent_realtime_info.clone().unwrap_or_default();
        let det = t.agent_detection_info.clone().unwrap_or_default();
        let host = rt.agent_computer_name.clone();
        let title = format!(
            "{} on {}",
            i.threat_name.as_deref().unwrap_or("S1 threat"),
            host.as_deref().unwrap_or("an unknown endpoint")
        );
        Self {
            threat_id: t.id.clone(),
            title,
            status: i.incident_status.map(|s| s.as_str().to_owned()),
            verdict: i.analyst_verdict.map(|v| v.as_str().to_owned()),
            confidence: i.confidence_level.map(|c| c.as_str().to_owned()),
            classification: i.classification.clone(),
            console_url: format!("{}/incidents/threats/{}/overview", console.trim_end_matches('/'), t.id),
            detected_at: crate::domain::detected_at(t),
            updated_at: i.updated_at,
            customer: Scope {
                external_id: rt.account_id.clone().or(det.account_id.clone()),
                name: rt.account_name.clone().or(det.account_name.clone()),
            },
            site: Scope {
                external_id: rt.site_id.clone().or(det.site_id.clone()),
                name: rt.site_name.clone().or(det.site_name.clone()),
            },
            asset: AssetView {
                external_id: t.agent_uuid().map(str::to_owned),
                hostname: host,
                os: rt.agent_os_name.clone().or(rt.agent_os_type.clone()),
                ip: det.agent_ip_v4.clone().into_iter().collect(),
            },
            file: FileView {
                path: i.file_path.clone().filter(|p| !p.is_empty()),
                sha1: i.sha1.clone().filter(|s| !s.is_empty()),
                sha256: i.sha256.clone().filter(|s| !s.is_empty()),
            },
        }
    }
}

impl ThreatView {
    /// Builds the view of a STAR / cloud-detection alert. Its statuses come in display casing
    /// ("In progress") and are normalised to the threat spelling (`in_progress`).
    pub fn from_cloud_alert(a: &crate::s1::dto::CloudAlert, console: &str) -> Self {
        let norm = |s: &Option<String>| s.as_ref().map(|v| v.trim().to_ascii_lowercase().replace(' ', "_"));
        let det = a.agent_detection_info.clone();
        let rule = a.rule_info.clone();
        let process = a.source_process_info.clone();
        let id = a.alert_info.alert_id.clone().unwrap_or_default();
        let host = det.as_ref().and_then(|d| d.name.clone());
        Self {
            threat_id: id.clone(),
            title: format!(
                "STAR: {} on {}",
                rule.as_ref().and_then(|r| r.name.as_deref()).unwrap_or("custom rule"),
                host.as_deref().unwrap_or("an unknown endpoint")
            ),
            status: norm(&a.alert_info.incident_status),
            verdict: norm(&a.alert_info.analyst_verdict),
            confidence: None,
            classification: Some("STAR rule".into()),
            console_url: format!("{}/incidents/alerts/{id}", console.trim_end_matches('/')),
            detected_at: a.alert_info.created_at,
            updated_at: a.alert_info.updated_at.or(a.alert_info.created_at),
            customer: Scope {
                external_id: det.as_ref().and_then(|d| d.account_id.clone()),
                name: None,
            },
            site: Scope {
                external_id: det.as_ref().and_then(|d| d.site_id.clone()),
                name: None,
            },
            asset: AssetView {
                external_id: det.as_ref().and_then(|d| d.uuid.clone()),
                hostname: host,
                os: det.as_ref().and_then(|d| d.os_family.clone()),
                ip: vec![],
            },
            file: FileView {
                path: process.as_ref().and_then(|p| p.file_path.clone()),
                sha1: process.as_ref().and_then(|p| p.file_hash_sha1.clone()),
                sha256: process.as_ref().and_then(|p| p.file_hash_sha256.clone()),
            },
        }
    }
}

/// The story (platform alert) an event belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoryView {
    pub id: String,
    /// The alert's stable key; the platform echoes it back in webhooks.
    pub alert_key: String,
    pub threat_count: usize,
    /// This event opens a new alert (else it updates the story's existing one).
    pub new_alert: bool,
    /// This event reopens the story's closed alert.
    pub reopened: bool,
    /// Every threat of the story is resolved in S1, counting this event's.
    pub all_resolved: bool,
}

/// One thing to tell the platform. (Serialisable so a refused one can be kept as a publish dead
/// letter and sent again as it was.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreatEvent {
    pub kind: EventKind,
    /// Stable per (threat, change): the receiver's idempotency key.
    pub id: String,
    pub tenant: String,
    pub severity: Severity,
    pub threat: ThreatView,
    pub story: StoryView,
}

/// What the platform answered.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PublishReceipt {
    /// The platform's own id for the alert, when it has one.
    pub platform_ref: Option<String>,
}

/// Anything else the platform is told: token expiry, synced customers, sites and assets.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Stable per (subject, change): the receiver's idempotency key.
    pub id: String,
    /// `token.expiring`, `token.unauthorized`, `customer.upserted`, `site.upserted`,
    /// `asset.upserted`, `asset.deactivated`.
    pub kind: String,
    pub timestamp: OffsetDateTime,
    pub data: serde_json::Value,
}

/// The port every platform adapter implements.
#[async_trait]
pub trait Platform: Send + Sync {
    /// Adapter name (`generic`, `pagerduty`, `halo`).
    fn name(&self) -> &'static str;
    /// Delivers one event; retried inside the adapter for what is safe to retry.
    async fn publish(&self, event: &ThreatEvent) -> Result<PublishReceipt, PlatformError>;
    /// Delivers a notice the same way.
    async fn notify(&self, notice: &Notice) -> Result<PublishReceipt, PlatformError>;
    /// Whether the platform keeps customers, sites and assets (PagerDuty does not, so the asset
    /// sync has nothing to do for it).
    fn keeps_assets(&self) -> bool {
        true
    }
    /// The most events a second the adapter sends (it paces itself under the platform's limit);
    /// `None` when it is not paced. The poller sizes its pages by it.
    fn max_events_per_second(&self) -> Option<f64> {
        None
    }
}

/// Answers that are about the one event sent (malformed, too large, unprocessable, conflicting):
/// [`PlatformError::Rejected`]. Any other 4xx but 408 and 429 is about us or the endpoint:
/// [`PlatformError::Refused`].
pub const ITEM_REFUSALS: [u16; 4] = [400, 409, 413, 422];

/// Sends a request built afresh per attempt, retrying 408, 429 (honouring `Retry-After`), 5xx
/// and network failures with backoff within `retry`; any other 4xx is final: `Rejected` for
/// [`ITEM_REFUSALS`], `Refused` for the rest. With a `limiter`, every
/// attempt waits for its slot (a retry counts against the platform's limit too).
pub(crate) async fn deliver<F>(
    retry: &crate::s1::RetryPolicy,
    limiter: Option<&governor::DefaultDirectRateLimiter>,
    mut build: F,
) -> Result<reqwest::Response, PlatformError>
where
    F: FnMut() -> reqwest::RequestBuilder,
{
    use backon::{BackoffBuilder, ExponentialBuilder};
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(retry.min_delay)
        .with_max_delay(retry.max_delay)
        .with_jitter()
        .with_max_times(retry.max_attempts.saturating_sub(1) as usize)
        .build();
    let mut attempt = 0;
    loop {
        attempt += 1;
        if let Some(l) = limiter {
            l.until_ready().await;
        }
        let (detail, hint) = match build().send().await {
            Ok(resp) if resp.status().is_success() => return Ok(resp),
            Ok(resp)
                if resp.status() == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || resp.status() == reqwest::StatusCode::REQUEST_TIMEOUT
                    || resp.status().is_server_error() =>
            {
                let hint = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(std::time::Duration::from_secs);
                (format!("HTTP {}", resp.status().as_u16()), hint)
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                let detail: String = answer_text(resp).await.chars().take(300).collect();
                return Err(if ITEM_REFUSALS.contains(&status) {
                    PlatformError::Rejected { status, detail }
                } else {
                    PlatformError::Refused { status, detail }
                });
            }
            Err(e) => (crate::net::describe(&e), None),
        };
        match delays.next() {
            Some(d) => tokio::time::sleep(hint.map(|h| h.min(retry.max_retry_after)).unwrap_or(d)).await,
            None => {
                return Err(PlatformError::Unavailable {
                    attempts: attempt,
                    detail,
                });
            }
        }
    }
}

/// The start of a platform's answer, read up to [`crate::net::MAX_PLATFORM_BODY`]; a longer or
/// broken body is described, not read.
async fn answer_text(resp: reqwest::Response) -> String {
    let location = resp
        .status()
        .is_redirection()
        .then(|| {
            resp.headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .flatten();
    if let Some(to) = location {
        return format!("redirected to {to}; redirects are not followed: check the platform URL");
    }
    match crate::net::read_capped(resp, crate::net::MAX_PLATFORM_BODY).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(crate::net::ReadError::TooLarge { limit }) => {
            format!("the answer's body is over the {limit}-byte cap; refused without reading it")
        }
        Err(crate::net::ReadError::Transport(e)) => {
            format!("the answer's body could not be read: {}", crate::net::describe(&e))
        }
    }
}

/// Builds the platform adapter of a tenant.
#[async_trait]
pub trait PlatformResolver: Send + Sync {
    /// The adapter for `tenant`'s platform, with its secrets read.
    ///
    /// # Errors
    /// [`PlatformError::Config`] naming the tenant and what is wrong with its settings.
    async fn resolve(&self, tenant: &TenantConfig) -> Result<Arc<dyn Platform>, PlatformError>;
}

/// The platforms this build can deliver to.
pub const PLATFORM_KINDS: [&str; 2] = ["generic", "pagerduty"];

/// Checks a tenant's platform section without reading any secret, so `tenant add` refuses what
/// would only fail at the first run: an unknown kind, or a missing required setting.
///
/// # Errors
/// What is wrong, naming the setting.
pub fn check_settings(target: &crate::store::PlatformTarget) -> Result<(), String> {
    let has = |k: &str| target.settings.get(k).is_some_and(|v| !v.is_null());
    let required: &[&str] = match target.kind.as_str() {
        "generic" => &["url", "secret"],
        "pagerduty" => &["routing_key"],
        other => {
            return Err(format!(
                "platform {other:?} is not available in this build; use one of: {}",
                PLATFORM_KINDS.join(", ")
            ));
        }
    };
    match required.iter().find(|k| !has(k)) {
        Some(k) => Err(format!("the {} platform needs settings.{k}", target.kind.as_str())),
        None => Ok(()),
    }
}

/// Builds adapters from tenant settings, reading their secrets through a [`TokenProvider`].
pub struct Adapters {
    http: reqwest::Client,
    secrets: Arc<dyn TokenProvider>,
    retry: crate::s1::RetryPolicy,
    allowed: AllowedHosts,
}

impl Adapters {
    /// Adapters sending with `http` (build it with [`crate::net::outbound_client`]), reading
    /// secrets through `secrets`, retrying per `retry`. Platform URLs are checked against the
    /// default allow-list until [`Adapters::with_allowed_hosts`] says otherwise.
    pub fn new(http: reqwest::Client, secrets: Arc<dyn TokenProvider>, retry: crate::s1::RetryPolicy) -> Self {
        Self {
            http,
            secrets,
            retry,
            allowed: AllowedHosts::default(),
        }
    }

    /// Checks every platform URL against `allowed` (`S1_BRIDGE_ALLOWED_HOSTS`) when an adapter
    /// is built, at run time.
    #[must_use]
    pub fn with_allowed_hosts(mut self, allowed: AllowedHosts) -> Self {
        self.allowed = allowed;
        self
    }
}

#[async_trait]
impl PlatformResolver for Adapters {
    async fn resolve(&self, tenant: &TenantConfig) -> Result<Arc<dyn Platform>, PlatformError> {
        let settings = &tenant.platform.settings;
        match tenant.platform.kind.as_str() {
            "generic" => {
                let url = settings.get("url").and_then(|u| u.as_str()).ok_or_else(|| {
                    PlatformError::Config(format!("tenant {}: generic platform needs settings.url", tenant.id))
                })?;
                let source: TokenSource = serde_json::from_value(settings.get("secret").cloned().unwrap_or_default())
                    .map_err(|e| {
                    PlatformError::Config(format!("tenant {}: generic platform settings.secret: {e}", tenant.id))
                })?;
                let raw = self
                    .secrets
                    .token(&source)
                    .await
                    .map_err(|e| PlatformError::Config(format!("tenant {}: webhook secret: {e}", tenant.id)))?;
                let secret = WebhookSecret::parse(raw.expose())
                    .map_err(|e| PlatformError::Config(format!("tenant {}: webhook secret: {e}", tenant.id)))?;
                let webhook = GenericWebhook::new(self.http.clone(), url, secret, self.retry.clone(), &self.allowed)
                    .map_err(|e| match e {
                        PlatformError::Config(m) => PlatformError::Config(format!("tenant {}: {m}", tenant.id)),
                        other => other,
                    })?;
                Ok(Arc::new(webhook))
            }
            "pagerduty" => {
                let source: TokenSource =
                    serde_json::from_value(settings.get("routing_key").cloned().unwrap_or_default()).map_err(|e| {
                        PlatformError::Config(format!(
                            "tenant {}: pagerduty platform needs settings.routing_key (a secret reference): {e}",
                            tenant.id
                        ))
                    })?;
                let key =
                    self.secrets.token(&source).await.map_err(|e| {
                        PlatformError::Config(format!("tenant {}: PagerDuty routing key: {e}", tenant.id))
                    })?;
                let url = settings
                    .get("events_url")
                    .and_then(|u| u.as_str())
                    .unwrap_or(DEFAULT_EVENTS_URL);
                let per_minute = match settings.get("events_per_minute") {
                    None => DEFAULT_EVENTS_PER_MINUTE,
                    Some(v) => v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
                        PlatformError::Config(format!(
                            "tenant {}: pagerduty settings.events_per_minute must be a whole number",
                            tenant.id
                        ))
                    })?,
                };
                let events = PagerDutyEvents::new(
                    self.http.clone(),
                    url,
                    key.expose().to_owned().into(),
                    per_minute,
                    self.retry.clone(),
                    &self.allowed,
                )
                .map_err(|e| match e {
                    PlatformError::Config(m) => PlatformError::Config(format!("tenant {}: {m}", tenant.id)),
                    other => other,
                })?;
                Ok(Arc::new(events))
            }
            other => Err(PlatformError::Config(format!(
                "tenant {}: platform {other:?} is not available in this build",
                tenant.id
            ))),
        }
    }
}
