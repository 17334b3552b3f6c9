//! The `generic` adapter: signed JSON webhooks per Standard Webhooks 1.0 (platforms.md §6.2).

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use time::OffsetDateTime;
use url::Url;

use super::{Notice, Platform, PlatformError, PublishReceipt, ThreatEvent};
use crate::s1::RetryPolicy;

/// A Standard Webhooks secret: `whsec_` + base64 key. `Debug` never shows the key.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl WebhookSecret {
    /// Parses `whsec_<base64>` (the prefix is optional). The key must be 24 to 64 bytes.
    ///
    /// # Errors
    /// A description of what is wrong, never the secret.
    pub fn parse(s: &str) -> Result<Self, String> {
        let b64 = s.trim().strip_prefix("whsec_").unwrap_or(s.trim());
        let key = STANDARD
            .decode(b64)
            .map_err(|_| "the webhook secret is not whsec_ followed by base64".to_owned())?;
        if !(24..=64).contains(&key.len()) {
            return Err(format!(
                "the webhook secret's key is {} bytes; Standard Webhooks wants 24 to 64",
                key.len()
            ));
        }
        Ok(Self(key))
    }

    /// A secret from raw key bytes.
    pub fn from_bytes(key: Vec<u8>) -> Self {
        Self(key)
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

/// `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`.
pub fn sign(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "v1,{}",
        STANDARD.encode(secret.mac(id, timestamp, body).finalize().into_bytes())
    )
}

/// Why an inbound signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing header {0}")]
    Missing(&'static str),
    #[error("webhook-timestamp is not a number")]
    BadTimestamp,
    #[error("webhook-timestamp is more than {0} s away from now")]
    Stale(i64),
    #[error("no v1 signature matches")]
    Mismatch,
    #[error("the signature header is over {MAX_SIGNATURE_HEADER} bytes or holds more than {MAX_SIGNATURES} signatures")]
    TooLarge,
}

/// The most signatures one header may carry (room for rotation; a flood of candidates is
/// refused before any MAC is computed).
pub const MAX_SIGNATURES: usize = 8;
/// The longest signature header accepted, in bytes.
pub const MAX_SIGNATURE_HEADER: usize = 1024;

/// Verifies Standard Webhooks headers against any of `secrets` (rotation), in constant time,
/// with a ±`tolerance_secs` window around `now`.
///
/// # Errors
/// What is wrong, never a secret.
pub fn verify(
    secrets: &[WebhookSecret],
    id: Option<&str>,
    timestamp: Option<&str>,
    signatures: Option<&str>,
    body: &[u8],
    now: OffsetDateTime,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let id = id.ok_or(SignatureError::Missing("webhook-id"))?;
    let ts: i64 = timestamp
        .ok_or(SignatureError::Missing("webhook-timestamp"))?
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    let header = signatures.ok_or(SignatureError::Missing("webhook-signature"))?;
    if now.unix_timestamp().abs_diff(ts) > tolerance_secs.unsigned_abs() {
        return Err(SignatureError::Stale(tolerance_secs));
    }
    if header.len() > MAX_SIGNATURE_HEADER || header.split_whitespace().count() > MAX_SIGNATURES {
        return Err(SignatureError::TooLarge);
    }
    // Each secret's MAC over the body once per request; each candidate is then checked
    // against a copy of it (a constant-time comparison of 32 bytes).
    let macs: Vec<Hmac<Sha256>> = secrets.iter().map(|s| s.mac(id, ts, body)).collect();
    for candidate in header.split_whitespace() {
        let Some(b64) = candidate.strip_prefix("v1,") else {
            continue;
        };
        let Ok(sig) = STANDARD.decode(b64) else { continue };
        if macs.iter().any(|m| m.clone().verify_slice(&sig).is_ok()) {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

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
            .map_err(PlatformError::Config)?;
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
                "story": event.story,
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
            platform_ref: Some(event.story.alert_key.clone()),
        })
    }

    async fn notify(&self, notice: &Notice) -> Result<PublishReceipt, PlatformError> {
        let body = json!({
            "type": notice.kind,
            "timestamp": crate::s1::dto::format_time(notice.timestamp),
            "data": notice.data,
        });
        let body = serde_json::to_vec(&body).map_err(|e| PlatformError::Config(e.to_string()))?;
        self.post(&notice.id, body).await?;
        Ok(PublishReceipt::default())
    }
}

impl GenericWebhook {
    /// POSTs a signed body, retrying 429/5xx/network with backoff; a 4xx is final.
    async fn post(&self, id: &str, body: Vec<u8>) -> Result<(), PlatformError> {
        super::deliver(&self.retry, None, || {
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
    fn secret_parsing() {
        assert!(WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").is_ok());
        assert!(WebhookSecret::parse("whsec_not base64!").is_err());
        let short = format!("whsec_{}", STANDARD.encode([1u8; 8]));
        assert!(WebhookSecret::parse(&short).unwrap_err().contains("8 bytes"));
        let s = WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert!(!format!("{s:?}").contains("C2FV"));
    }

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
