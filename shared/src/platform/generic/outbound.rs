//! The generic platform's outbound side: every event a signed JSON POST to one URL.

use async_trait::async_trait;
use serde_json::json;
use time::OffsetDateTime;
use url::Url;

use super::signature::{WebhookSecret, sign};
use crate::platform::{Notice, Platform, PlatformError, PublishReceipt, ThreatEvent};
use crate::s1::RetryPolicy;

/// Delivers events as signed JSON POSTs to one URL.
pub struct GenericWebhook {
    http: reqwest::Client,
    url: Url,
    secret: WebhookSecret,
    retry: RetryPolicy,
}

impl std::fmt::Debug for GenericWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenericWebhook")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl GenericWebhook {
    /// # Errors
    /// [`PlatformError::Config`] unless `url` passes
    /// [`AllowedHosts::check_platform_url`](crate::config::AllowedHosts::check_platform_url):
    /// https, and a private or loopback address (plain http on loopback, for local runs) only
    /// when `allowed` names it.
    pub fn new(
        http: reqwest::Client,
        url: &str,
        secret: WebhookSecret,
        retry: RetryPolicy,
        allowed: &crate::config::AllowedHosts,
    ) -> Result<Self, PlatformError> {
        let url: Url = allowed
            .check_platform_url("webhook URL", url)
            .map_err(|e| PlatformError::Config(e.to_string()))?;
        Ok(Self {
            http,
            url,
            secret,
            retry,
        })
    }

    /// The JSON body of an event (platforms.md §6.2, plus the story block).
    pub fn render(event: &ThreatEvent) -> serde_json::Value {
        let t = &event.threat;
        json!({
            "type": event.kind.as_str(),
            "timestamp": t.updated_at.map(crate::s1::dto::format_time),
            "data": {
                "alert_key": event.story.alert_key,
                "title": t.title,
                "severity": event.severity.as_str(),
                "s1": {
                    "threat_id": t.threat_id,
                    "status": t.status,
                    "verdict": t.verdict,
                    "confidence": t.confidence,
                    "classification": t.classification,
                    "console_url": t.console_url,
                    "detected_at": t.detected_at.map(crate::s1::dto::format_time),
                    "updated_at": t.updated_at.map(crate::s1::dto::format_time),
                },
                "story": {
                    "id": event.story.id,
                    "alert_key": event.story.alert_key,
                    "threat_count": event.story.threat_count,
                    "new_alert": event.story.new_alert,
                    "reopened": event.story.reopened,
                    "all_resolved": event.story.all_resolved,
                },
                "customer": t.customer,
                "site": t.site,
                "asset": t.asset,
                "file": t.file,
            },
        })
    }
}

#[async_trait]
impl Platform for GenericWebhook {
    fn name(&self) -> &'static str {
        "generic"
    }

    async fn publish(&self, event: &ThreatEvent) -> Result<PublishReceipt, PlatformError> {
        let body = serde_json::to_vec(&Self::render(event)).map_err(|e| PlatformError::Config(e.to_string()))?;
        self.post(&event.id, body).await?;
        Ok(PublishReceipt {
            platform_ref: Some(event.story.alert_key.to_string()),
        })
    }

    async fn notify(&self, notice: &Notice) -> Result<PublishReceipt, PlatformError> {
        let body = json!({
            "type": notice.kind(),
            "timestamp": crate::s1::dto::format_time(notice.timestamp()),
            "data": notice.data(),
        });
        let body = serde_json::to_vec(&body).map_err(|e| PlatformError::Config(e.to_string()))?;
        self.post(notice.id(), body).await?;
        Ok(PublishReceipt::default())
    }
}

impl GenericWebhook {
    /// POSTs a signed body, retrying 429/5xx/network with backoff; a 4xx is final.
    async fn post(&self, id: &str, body: Vec<u8>) -> Result<(), PlatformError> {
        crate::platform::http::deliver(&self.retry, None, || {
            // Signed afresh per attempt, so a retry carries a current timestamp.
            let ts = OffsetDateTime::now_utc().unix_timestamp();
            let signature = sign(&self.secret, id, ts, &body);
            self.http
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("webhook-id", id)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", signature)
                .body(body.clone())
        })
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_named_loopback_http() {
        let s = WebhookSecret::from_bytes(vec![7; 32]);
        let http = reqwest::Client::new();
        let default = crate::config::AllowedHosts::default();
        let local = crate::config::AllowedHosts::parse("127.0.0.1").unwrap();
        for (url, allowed, ok) in [
            ("https://hooks.example.com/s1", &default, true),
            ("http://127.0.0.1:9000/hook", &local, true),
            ("http://127.0.0.1:9000/hook", &default, false),
            ("https://10.0.0.8/hook", &default, false),
            ("http://hooks.example.com/s1", &local, false),
            ("ftp://x", &default, false),
            ("not a url", &default, false),
        ] {
            assert_eq!(
                GenericWebhook::new(http.clone(), url, s.clone(), RetryPolicy::default(), allowed).is_ok(),
                ok,
                "{url}"
            );
        }
    }
}
