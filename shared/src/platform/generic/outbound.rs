//! The generic platform's outbound side: every event a signed JSON POST to one URL.

use async_trait::async_trait;
use serde_json::json;
use time::OffsetDateTime;
use url::Url;

use serde::Serialize;

use super::Batch;
use super::signature::{WebhookSecret, sign};
use crate::domain::AlertKey;
use crate::platform::{
    AssetView, FileView, Notice, Platform, PlatformError, PublishReceipt, Scope, ThreatEvent, publish_in_turn,
    sending_stopped,
};
use crate::s1::RetryPolicy;
use crate::s1::dto::format_time;
use crate::s1::dto::{AnalystVerdict, IncidentStatus};

/// Delivers events as signed JSON POSTs to one URL, one event per request, or (with
/// [`Batch`] settings) up to a batch of them in one `threat.batch` request.
pub struct GenericWebhook {
    http: reqwest::Client,
    url: Url,
    secret: WebhookSecret,
    retry: RetryPolicy,
    batch: Option<Batch>,
}

impl std::fmt::Debug for GenericWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenericWebhook")
            .field("url", &self.url.as_str())
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

/// The body of one event (the event reference, docs/events.md), serialised straight from the event.
#[derive(Serialize)]
struct Body<'a> {
    /// Only inside a batch, where each event carries its own webhook id.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: Option<String>,
    data: Data<'a>,
}

#[derive(Serialize)]
struct Data<'a> {
    alert_key: &'a AlertKey,
    title: &'a str,
    severity: &'static str,
    s1: S1<'a>,
    story: Story<'a>,
    customer: &'a Scope,
    site: &'a Scope,
    asset: &'a AssetView,
    file: &'a FileView,
}

#[derive(Serialize)]
struct S1<'a> {
    threat_id: &'a str,
    status: Option<IncidentStatus>,
    verdict: Option<AnalystVerdict>,
    confidence: Option<&'a str>,
    classification: Option<&'a str>,
    console_url: &'a str,
    detected_at: Option<String>,
    updated_at: Option<String>,
    /// The listing (`threats`, `star`, `unified`) and detection product (`EDR`, `Identity`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    product: Option<&'a str>,
    /// A unified alert's own verdict (`TRUE_POSITIVE_PUA_ADWARE`) when it says more than
    /// `verdict`.
    #[serde(skip_serializing_if = "Option::is_none")]
    verdict_detail: Option<&'a str>,
}

#[derive(Serialize)]
struct Story<'a> {
    id: &'a str,
    alert_key: &'a AlertKey,
    threat_count: usize,
    new_alert: bool,
    reopened: bool,
    all_resolved: bool,
}

impl<'a> Body<'a> {
    fn of(event: &'a ThreatEvent, id: Option<&'a str>) -> Self {
        let t = &event.threat;
        Body {
            id,
            kind: event.kind.as_str(),
            timestamp: t.updated_at.map(format_time),
            data: Data {
                alert_key: &event.story.alert_key,
                title: &t.title,
                severity: event.severity.as_str(),
                s1: S1 {
                    threat_id: &t.threat_id,
                    status: t.status,
                    verdict: t.verdict,
                    confidence: t.confidence.as_deref(),
                    classification: t.classification.as_deref(),
                    console_url: &t.console_url,
                    detected_at: t.detected_at.map(format_time),
                    updated_at: t.updated_at.map(format_time),
                    source: t.source.as_deref(),
                    product: t.product.as_deref(),
                    verdict_detail: t.verdict_detail.as_deref(),
                },
                story: Story {
                    id: &event.story.id,
                    alert_key: &event.story.alert_key,
                    threat_count: event.story.threat_count,
                    new_alert: event.story.new_alert,
                    reopened: event.story.reopened,
                    all_resolved: event.story.all_resolved,
                },
                customer: &t.customer,
                site: &t.site,
                asset: &t.asset,
                file: &t.file,
            },
        }
    }
}

/// Room kept in a batch's body for its envelope (type, timestamp, count, brackets).
const BATCH_ENVELOPE: usize = 128;

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
            batch: None,
        })
    }

    /// Sends events in `threat.batch` requests of up to `batch` (by count and body size).
    #[must_use]
    pub fn batching(mut self, batch: Option<Batch>) -> Self {
        self.batch = batch;
        self
    }

    /// The JSON body of an event (platforms.md §6.2, plus the story block).
    pub fn render(event: &ThreatEvent) -> serde_json::Value {
        serde_json::to_value(Body::of(event, None)).expect("an event always serialises")
    }

    fn body(event: &ThreatEvent, id: Option<&str>) -> Vec<u8> {
        serde_json::to_vec(&Body::of(event, id)).expect("an event always serialises")
    }

    /// The batch body around already serialised events.
    fn batch_body(events: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::with_capacity(events.iter().map(|e| e.len() + 1).sum::<usize>() + BATCH_ENVELOPE);
        out.extend_from_slice(br#"{"type":"threat.batch","timestamp":"#);
        out.extend_from_slice(
            serde_json::to_string(&format_time(OffsetDateTime::now_utc()))
                .expect("a string serialises")
                .as_bytes(),
        );
        out.extend_from_slice(format!(r#","data":{{"count":{},"events":["#, events.len()).as_bytes());
        for (i, e) in events.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(e);
        }
        out.extend_from_slice(b"]}}");
        out
    }

    /// One batch: its webhook id is made of its events' ids, so the same batch sent again is
    /// recognised as a redelivery.
    async fn post_batch(
        &self,
        events: &[&ThreatEvent],
        bodies: &[Vec<u8>],
    ) -> Vec<Result<PublishReceipt, PlatformError>> {
        let receipt = |e: &ThreatEvent| PublishReceipt {
            platform_ref: Some(e.story.alert_key.to_string()),
        };
        if events.len() == 1 {
            // A lone event goes as itself.
            return vec![self.publish(events[0]).await];
        }
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        let id = format!("batch_{}", crate::domain::short_digest(ids.join("\n").as_bytes()));
        match self.post(&id, Self::batch_body(bodies)).await {
            Ok(()) => events.iter().map(|e| Ok(receipt(e))).collect(),
            // The batch was refused as a whole (malformed or too large): find which events the
            // platform refuses by sending them one at a time.
            Err(PlatformError::Rejected { .. }) => publish_in_turn(self, events).await,
            Err(e) => std::iter::once(Err(e))
                .chain(events[1..].iter().map(|_| Err(PlatformError::not_sent())))
                .collect(),
        }
    }
}

#[async_trait]
impl Platform for GenericWebhook {
    fn kind(&self) -> crate::domain::PlatformKind {
        crate::domain::PlatformKind::Generic
    }

    async fn publish(&self, event: &ThreatEvent) -> Result<PublishReceipt, PlatformError> {
        self.post(&event.id, Self::body(event, None)).await?;
        Ok(PublishReceipt {
            platform_ref: Some(event.story.alert_key.to_string()),
        })
    }

    fn batch_limit(&self) -> Option<usize> {
        self.batch.as_ref().map(|b| b.max_events)
    }

    async fn publish_batch(&self, events: &[ThreatEvent]) -> Vec<Result<PublishReceipt, PlatformError>> {
        let Some(batch) = &self.batch else {
            return publish_in_turn(self, events).await;
        };
        let room = batch.max_bytes.saturating_sub(BATCH_ENVELOPE);
        let mut out: Vec<Result<PublishReceipt, PlatformError>> = Vec::with_capacity(events.len());
        let mut group: Vec<&ThreatEvent> = Vec::new();
        let mut bodies: Vec<Vec<u8>> = Vec::new();
        let mut size = 0;
        for e in events {
            let body = Self::body(e, Some(&e.id));
            if !group.is_empty() && (group.len() >= batch.max_events || size + body.len() + 1 > room) {
                out.extend(self.send_group(&group, &bodies, &out).await);
                group.clear();
                bodies.clear();
                size = 0;
            }
            size += body.len() + 1;
            group.push(e);
            bodies.push(body);
        }
        if !group.is_empty() {
            out.extend(self.send_group(&group, &bodies, &out).await);
        }
        out
    }

    async fn notify(&self, notice: &Notice) -> Result<PublishReceipt, PlatformError> {
        let body = json!({
            "type": notice.kind(),
            "timestamp": format_time(notice.timestamp()),
            "data": notice.data(),
        });
        let body = serde_json::to_vec(&body).map_err(|e| PlatformError::Config(e.to_string()))?;
        self.post(notice.id(), body).await?;
        Ok(PublishReceipt::default())
    }
}

impl GenericWebhook {
    /// Sends one group of a batch, unless a group before it failed for a reason that is not
    /// about its events (then none of this group is sent).
    async fn send_group(
        &self,
        group: &[&ThreatEvent],
        bodies: &[Vec<u8>],
        so_far: &[Result<PublishReceipt, PlatformError>],
    ) -> Vec<Result<PublishReceipt, PlatformError>> {
        if sending_stopped(so_far) {
            return group.iter().map(|_| Err(PlatformError::not_sent())).collect();
        }
        self.post_batch(group, bodies).await
    }

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
