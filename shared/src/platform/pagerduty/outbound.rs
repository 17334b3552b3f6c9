//! PagerDuty's outbound side: Events API v2, one alert per story.

use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use governor::{Quota, RateLimiter};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use url::Url;

use crate::domain::Severity;
use crate::platform::{EventKind, Notice, Platform, PlatformError, PublishReceipt, ThreatEvent};
use crate::s1::RetryPolicy;

/// PagerDuty's Events API v2 endpoint (US service region).
pub const DEFAULT_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// Hosts an `events_url` may name: PagerDuty's US and EU service regions (and hosts the
/// operator's allow-list admits, e.g. a loopback stand-in for local runs).
const EVENTS_HOSTS: [&str; 2] = ["events.pagerduty.com", "events.eu.pagerduty.com"];
/// PagerDuty's documented limit per integration key (about 120 events in any 60 s).
pub const DEFAULT_EVENTS_PER_MINUTE: u32 = 120;

/// Delivers events to one PagerDuty service through its Events API v2 integration key.
pub struct PagerDutyEvents {
    http: reqwest::Client,
    url: Url,
    routing_key: SecretString,
    retry: RetryPolicy,
    /// Spaces events evenly under the per-key limit, so a backlog never meets a 429.
    limiter: crate::platform::budget::Budget,
    per_minute: u32,
}

impl std::fmt::Debug for PagerDutyEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagerDutyEvents")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl PagerDutyEvents {
    /// # Errors
    /// [`PlatformError::Config`] for a routing key that is not 32 characters, an `events_url`
    /// that is not PagerDuty's (https on `events.pagerduty.com` or `events.eu.pagerduty.com`, or
    /// a host `allowed` admits, as
    /// [`AllowedHosts::check_platform_url`](crate::config::AllowedHosts::check_platform_url)
    /// checks it: plain http only on a named loopback host, for local runs), or a rate of zero.
    pub fn new(
        http: reqwest::Client,
        events_url: &str,
        routing_key: SecretString,
        per_minute: u32,
        retry: RetryPolicy,
        allowed: &crate::config::AllowedHosts,
    ) -> Result<Self, PlatformError> {
        let url: Url = allowed
            .check_platform_url("PagerDuty events_url", events_url)
            .map_err(|e| PlatformError::Config(e.to_string()))?;
        let host = url.host_str().unwrap_or_default();
        if !(EVENTS_HOSTS.contains(&host) || allowed.admits(host)) {
            return Err(PlatformError::Config(format!(
                "PagerDuty events_url {url} must be https on {} or {} (or on a host named in {})",
                EVENTS_HOSTS[0],
                EVENTS_HOSTS[1],
                crate::config::ALLOWED_HOSTS
            )));
        }
        // A key pasted with a trailing newline is the same key: trimmed once, here.
        let routing_key = SecretString::from(routing_key.expose_secret().trim());
        let key_len = routing_key.expose_secret().chars().count();
        if key_len != 32 {
            return Err(PlatformError::Config(format!(
                "the PagerDuty routing key is {key_len} characters; an Events API v2 integration key has 32"
            )));
        }
        let per_minute = NonZeroU32::new(per_minute)
            .ok_or_else(|| PlatformError::Config("PagerDuty events_per_minute must be at least 1".into()))?;
        let period = Duration::from_secs(60) / per_minute.get();
        let quota = Quota::with_period(period)
            .ok_or_else(|| PlatformError::Config("PagerDuty events_per_minute is too high".into()))?
            .allow_burst(NonZeroU32::MIN);
        Ok(Self {
            http,
            url,
            routing_key,
            retry,
            limiter: crate::platform::budget::Budget::local(RateLimiter::direct(quota)),
            per_minute: per_minute.get(),
        })
    }

    /// These events, also keeping to the routing key's budget shared through `store` with every
    /// other process and tenant sending to it (`events_per_minute`), keyed by a hash of the
    /// events URL and the routing key.
    #[must_use]
    pub fn with_shared_budget(mut self, store: crate::store::Store) -> Self {
        let shared = crate::platform::budget::SharedBudget::new(
            std::sync::Arc::new(store),
            "pagerduty",
            &[self.url.as_str(), self.routing_key.expose_secret()],
            self.per_minute,
            Duration::from_secs(60),
        );
        self.limiter.share(shared);
        self
    }

    /// PagerDuty's four severities; `error` is kept for problems of the bridge itself.
    fn severity(s: Severity) -> &'static str {
        match s {
            Severity::Critical | Severity::High => "critical",
            Severity::Medium => "warning",
            Severity::Low | Severity::Info => "info",
        }
    }

    /// The Events API actions one threat event becomes, in order.
    pub fn actions(event: &ThreatEvent) -> Vec<&'static str> {
        if event.story.all_resolved {
            vec!["resolve"]
        } else if event.threat.status == Some(crate::s1::dto::IncidentStatus::InProgress) {
            match event.kind {
                EventKind::Created => vec!["trigger", "acknowledge"],
                EventKind::Updated => vec!["acknowledge"],
            }
        } else {
            vec!["trigger"]
        }
    }

    /// The trigger body of a threat event (acknowledge and resolve need only the key).
    pub fn render_trigger(&self, event: &ThreatEvent) -> Value {
        let t = &event.threat;
        let mut summary = format!("[S1] {}", t.title);
        if let Some(c) = &t.classification {
            summary.push_str(&format!(" ({c})"));
        }
        let source = t.asset.hostname.clone().unwrap_or_else(|| "SentinelOne".to_owned());
        let mut details = crate::platform::GenericWebhook::render(event)["data"].take();
        details["event"] = json!(event.kind.as_str());
        let mut body = json!({
            "routing_key": self.routing_key.expose_secret(),
            "event_action": "trigger",
            "dedup_key": event.story.alert_key,
            "payload": {
                "summary": summary.chars().take(1024).collect::<String>(),
                "source": source,
                "severity": Self::severity(event.severity),
                "timestamp": t.detected_at.map(crate::s1::dto::format_time),
                "component": t.file.path,
                "group": t.site.name.clone().or(t.customer.name.clone()),
                "class": t.classification,
                "custom_details": details,
            },
            "client": "SentinelOne",
            "client_url": t.console_url,
            "links": [{"href": t.console_url, "text": "Open in SentinelOne"}],
        });
        // Optional fields S1 did not give are left out rather than sent as null.
        if let Some(payload) = body["payload"].as_object_mut() {
            payload.retain(|_, v| !v.is_null());
        }
        body
    }

    fn bare(&self, action: &str, dedup_key: &str) -> Value {
        json!({
            "routing_key": self.routing_key.expose_secret(),
            "event_action": action,
            "dedup_key": dedup_key,
        })
    }

    async fn send(&self, body: &Value) -> Result<(), PlatformError> {
        let body = serde_json::to_vec(body).map_err(|e| PlatformError::Config(e.to_string()))?;
        crate::platform::http::deliver(&self.retry, Some(&self.limiter), || {
            self.http
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
        })
        .await
        .map(drop)
        .map_err(|e| match e {
            // PagerDuty answers an unknown routing key with 400, as it does a bad event: but
            // that one refuses every event the tenant sends.
            PlatformError::Rejected { status, detail }
                if detail.to_ascii_lowercase().replace('_', " ").contains("routing key") =>
            {
                PlatformError::Refused {
                    status,
                    detail: format!("PagerDuty does not know the tenant's routing key ({detail})"),
                }
            }
            other => other,
        })
    }
}

#[async_trait]
impl Platform for PagerDutyEvents {
    fn kind(&self) -> crate::domain::PlatformKind {
        crate::domain::PlatformKind::PagerDuty
    }

    async fn publish(&self, event: &ThreatEvent) -> Result<PublishReceipt, PlatformError> {
        for action in Self::actions(event) {
            let body = match action {
                "trigger" => self.render_trigger(event),
                other => self.bare(other, &event.story.alert_key),
            };
            self.send(&body).await?;
        }
        Ok(PublishReceipt {
            platform_ref: Some(event.story.alert_key.to_string()),
        })
    }

    async fn notify(&self, notice: &Notice) -> Result<PublishReceipt, PlatformError> {
        // (tenant, dedup key suffix, severity, summary, resolve at once)
        let (tenant, suffix, severity, message, then_resolve) = match notice {
            Notice::TokenExpiring {
                tenant,
                days_left,
                message,
                ..
            } => {
                let severity = match days_left {
                    ..=0 => "critical",
                    1..=7 => "error",
                    _ => "warning",
                };
                (tenant, "token".to_owned(), severity, message, false)
            }
            Notice::TokenUnauthorized { tenant, message, .. } | Notice::TokenRotationFailed { tenant, message, .. } => {
                (tenant, "token".to_owned(), "critical", message, false)
            }
            // An error opens an incident under the tenant's status key; the recovery resolves it.
            Notice::ConnectorStatus {
                tenant,
                recovered: true,
                ..
            } => {
                let key = format!("s1-bridge:{tenant}:status");
                self.send(&self.bare("resolve", &key)).await?;
                return Ok(PublishReceipt {
                    platform_ref: Some(key),
                });
            }
            Notice::ConnectorStatus { tenant, message, .. } => (tenant, "status".to_owned(), "error", message, false),
            // A test must not page anyone: open at info severity and resolve at once.
            Notice::Test {
                tenant, message, id, ..
            } => (tenant, format!("test:{id}"), "info", message, true),
            // Customers, sites and assets: PagerDuty has nowhere to keep them.
            Notice::CustomerUpserted(_)
            | Notice::SiteUpserted(_)
            | Notice::AssetUpserted(_)
            | Notice::AssetDeactivated(_) => return Ok(PublishReceipt::default()),
        };
        let key = format!("s1-bridge:{tenant}:{suffix}");
        self.send(&json!({
            "routing_key": self.routing_key.expose_secret(),
            "event_action": "trigger",
            "dedup_key": key,
            "payload": {
                "summary": message.chars().take(1024).collect::<String>(),
                "source": "s1-bridge",
                "severity": severity,
                "timestamp": crate::s1::dto::format_time(notice.timestamp()),
                "class": notice.kind(),
                "custom_details": notice.data(),
            },
        }))
        .await?;
        if then_resolve {
            self.send(&self.bare("resolve", &key)).await?;
        }
        Ok(PublishReceipt {
            platform_ref: Some(key),
        })
    }

    fn keeps_assets(&self) -> bool {
        false
    }

    fn max_events_per_second(&self) -> Option<f64> {
        Some(f64::from(self.per_minute) / 60.0)
    }
}
