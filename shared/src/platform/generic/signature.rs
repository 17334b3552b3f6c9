//! Standard Webhooks 1.0 signing and verification: `webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use time::OffsetDateTime;

/// A Standard Webhooks secret: `whsec_` + base64 key. `Debug` never shows the key.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// What is wrong with a webhook secret (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookSecretError {
    #[error("the webhook secret is not whsec_ followed by base64")]
    NotBase64,
    /// The key's length in bytes.
    #[error("the webhook secret's key is {0} bytes; Standard Webhooks wants 24 to 64")]
    KeyLength(usize),
}

impl WebhookSecret {
    /// Parses `whsec_<base64>` (the prefix is optional). The key must be 24 to 64 bytes.
    ///
    /// # Errors
    /// [`WebhookSecretError`]: what is wrong, never the secret.
    pub fn parse(s: &str) -> Result<Self, WebhookSecretError> {
        let b64 = s.trim().strip_prefix("whsec_").unwrap_or(s.trim());
        let key = STANDARD.decode(b64).map_err(|_| WebhookSecretError::NotBase64)?;
        if !(24..=64).contains(&key.len()) {
            return Err(WebhookSecretError::KeyLength(key.len()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_parsing() {
        assert!(WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").is_ok());
        assert_eq!(
            WebhookSecret::parse("whsec_not base64!").unwrap_err().to_string(),
            "the webhook secret is not whsec_ followed by base64"
        );
        let short = format!("whsec_{}", STANDARD.encode([1u8; 8]));
        assert_eq!(
            WebhookSecret::parse(&short).unwrap_err().to_string(),
            "the webhook secret's key is 8 bytes; Standard Webhooks wants 24 to 64"
        );
        let s = WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert!(!format!("{s:?}").contains("C2FV"));
    }
}
