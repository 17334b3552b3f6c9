//! PagerDuty's inbound side: Webhooks v3 (`X-PagerDuty-Signature`), incident events and notes
//! into one normalised change.

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::HeaderMap;
use sha2::Sha256;
use time::OffsetDateTime;

use crate::platform::generic::{MAX_SIGNATURE_HEADER, MAX_SIGNATURES, SignatureError};
use crate::platform::inbound::{
    AlertRef, ChangeAction, Inbound, InboundError, PlatformState, StatusChange, delivery_id, header, parse_time,
};
use crate::platform::{InboundAdapter, PlatformKind};
use crate::s1::dto::AnalystVerdict;

/// A PagerDuty webhook endpoint of one tenant: the subscriptions' signing secrets (any matches,
/// so they can rotate).
#[derive(Clone)]
pub struct PagerDutyInbound {
    pub secrets: Vec<crate::ApiToken>,
}

impl std::fmt::Debug for PagerDutyInbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PagerDutyInbound(<redacted>)")
    }
}

#[async_trait]
impl InboundAdapter for PagerDutyInbound {
    fn kind(&self) -> PlatformKind {
        PlatformKind::PagerDuty
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8], _now: OffsetDateTime) -> Result<(), InboundError> {
        verify_pagerduty(&self.secrets, header(headers, "x-pagerduty-signature"), body)
    }

    async fn parse(&self, _headers: &HeaderMap, body: &[u8]) -> Result<Inbound, InboundError> {
        parse_pagerduty(body)
    }

    fn time_field(&self) -> &'static str {
        "event.occurred_at"
    }

    fn signs_fresh_timestamp(&self) -> bool {
        false
    }
}

/// The `X-PagerDuty-Signature` value PagerDuty sends for `body` under `secret`: `v1=<hex
/// HMAC-SHA256>`. For tests and the demo, which play PagerDuty.
pub fn sign_pagerduty(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Verifies a PagerDuty v3 `X-PagerDuty-Signature`: any `v1=<hex>` entry matching the HMAC of
/// the raw body under any secret (used as UTF-8 bytes) passes; other versions are ignored.
pub fn verify_pagerduty(
    secrets: &[crate::ApiToken],
    header_value: Option<&str>,
    body: &[u8],
) -> Result<(), InboundError> {
    let value = header_value.ok_or_else(|| InboundError::Unauthorized("missing X-PagerDuty-Signature".into()))?;
    if value.len() > MAX_SIGNATURE_HEADER || value.split(',').count() > MAX_SIGNATURES {
        return Err(InboundError::Unauthorized(SignatureError::TooLarge.to_string()));
    }
    // Each secret's MAC over the body once per request, whatever the number of candidates.
    let macs: Vec<Hmac<Sha256>> = secrets
        .iter()
        .map(|s| {
            let mut mac = Hmac::<Sha256>::new_from_slice(s.expose().as_bytes()).expect("any key length");
            mac.update(body);
            mac
        })
        .collect();
    for entry in value.split(',') {
        let Some(hex_sig) = entry.trim().strip_prefix("v1=") else {
            continue;
        };
        let Ok(sig) = hex::decode(hex_sig) else { continue };
        if macs.iter().any(|m| m.clone().verify_slice(&sig).is_ok()) {
            return Ok(());
        }
    }
    Err(InboundError::Unauthorized("no v1 signature matches".into()))
}

/// Words that negate a verdict phrase shortly before it ("not a false positive"); apostrophes
/// are dropped first, so "isn't" is "isnt".
const NEGATIONS: [&str; 9] = ["not", "no", "never", "isnt", "wasnt", "aint", "neither", "nor", "non"];

/// The verdict a resolution note's words imply: a verdict phrase counts unless one of the three
/// words before it negates it ("not malicious", "not a false positive"), and a note naming
/// different verdicts implies none.
fn verdict_from_note(text: &str) -> Option<AnalystVerdict> {
    const PHRASES: [(&[&str], AnalystVerdict); 5] = [
        (&["false", "positive"], AnalystVerdict::FalsePositive),
        (&["benign"], AnalystVerdict::FalsePositive),
        (&["true", "positive"], AnalystVerdict::TruePositive),
        (&["malicious"], AnalystVerdict::TruePositive),
        (&["suspicious"], AnalystVerdict::Suspicious),
    ];
    let lower: String = text
        .to_lowercase()
        .chars()
        .filter(|c| !matches!(c, '\'' | '\u{2019}'))
        .collect();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let mut found: Option<AnalystVerdict> = None;
    for i in 0..words.len() {
        for (phrase, verdict) in PHRASES {
            let end = i + phrase.len();
            if end > words.len() || words[i..end] != *phrase {
                continue;
            }
            if words[i.saturating_sub(3)..i].iter().any(|w| NEGATIONS.contains(w)) {
                continue;
            }
            match found {
                Some(f) if f != verdict => return None,
                _ => found = Some(verdict),
            }
        }
    }
    found
}

/// Parses a PagerDuty Webhooks v3 body. The delivery is identified by the signed `event.id`,
/// never by the unsigned `X-Webhook-Id` header. Echoes of our own Events API calls
/// (`agent.type` = `inbound_integration_reference`) are ignored.
///
/// # Errors
/// [`InboundError::Malformed`] naming the field.
pub fn parse_pagerduty(body: &[u8]) -> Result<Inbound, InboundError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| InboundError::Malformed(format!("body is not JSON: {e}")))?;
    let ev = v
        .get("event")
        .ok_or_else(|| InboundError::Malformed("no event object".into()))?;
    let text = |p: &str| ev.pointer(p).and_then(|x| x.as_str()).map(str::to_owned);
    let event_type =
        text("/event_type").ok_or_else(|| InboundError::Malformed("event.event_type is required".into()))?;
    if event_type == "pagey.ping" {
        return Ok(Inbound::Ignore("ping".into()));
    }
    if text("/agent/type").as_deref() == Some("inbound_integration_reference") {
        return Ok(Inbound::Ignore("echo of our own Events API call".into()));
    }
    let event_id = delivery_id(text("/id").as_deref(), "event.id")?;
    let at = parse_time(
        &text("/occurred_at").ok_or_else(|| InboundError::Malformed("event.occurred_at is required".into()))?,
        "event.occurred_at",
    )?;
    let actor = text("/agent/summary");
    // Route on data.type: for annotated events it differs from resource_type.
    let data_type = text("/data/type").unwrap_or_default();
    let (alert, action, analysis) = if data_type == "incident_note" {
        let incident =
            text("/data/incident/id").ok_or_else(|| InboundError::Malformed("data.incident.id is required".into()))?;
        let content = text("/data/content").unwrap_or_default();
        let verdict = content.strip_prefix("Resolution Note:").and_then(verdict_from_note);
        (
            AlertRef::PlatformId(incident),
            ChangeAction::Note { verdict },
            Some(content),
        )
    } else {
        let incident = text("/data/id").ok_or_else(|| InboundError::Malformed("data.id is required".into()))?;
        let state = match event_type.as_str() {
            "incident.triggered" | "incident.reopened" | "incident.unacknowledged" => PlatformState::Reopened,
            "incident.acknowledged" => PlatformState::Acknowledged,
            "incident.resolved" => PlatformState::Resolved,
            other => return Ok(Inbound::Ignore(format!("event type {other} is not mapped"))),
        };
        let alert = match text("/data/incident_key").filter(|k| !k.is_empty()) {
            Some(key) => AlertRef::KeyAndId(key, incident),
            None => AlertRef::PlatformId(incident),
        };
        let reason = text("/data/resolve_reason");
        let title = text("/data/title");
        (
            alert,
            ChangeAction::Status {
                state,
                close_reason: reason,
                verdict: None,
            },
            title.map(|t| format!("PagerDuty incident: {t}")),
        )
    };
    Ok(Inbound::Change(StatusChange {
        event_id,
        platform: PlatformKind::PagerDuty,
        alert,
        action,
        analysis,
        actor,
        at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_words_respect_negation_and_need_whole_phrases() {
        use AnalystVerdict::{FalsePositive, Suspicious, TruePositive};
        for (text, want) in [
            ("false positive: IT's installer", Some(FalsePositive)),
            ("Benign.", Some(FalsePositive)),
            ("confirmed true_positive", Some(TruePositive)),
            ("MALICIOUS, isolate it", Some(TruePositive)),
            ("looks suspicious", Some(Suspicious)),
            ("not malicious", None),
            ("this is not a false positive", None),
            ("it isn't benign", None),
            ("it isn\u{2019}t benign", None),
            ("never was malicious", None),
            ("no true positive here", None),
            ("not a false positive, it is malicious", Some(TruePositive)),
            ("benign? or malicious?", None),
            ("falsepositive", None),
            ("maliciously named", None),
            ("positive, false alarm", None),
            ("", None),
        ] {
            assert_eq!(verdict_from_note(text), want, "{text:?}");
        }
    }

    #[test]
    fn pagerduty_deliveries_are_identified_by_the_signed_event_id() {
        let body = br#"{"event":{"id":"EV1","event_type":"incident.acknowledged","occurred_at":"2026-01-01T00:00:00Z","data":{"id":"P1","type":"incident"}}}"#;
        let Ok(Inbound::Change(c)) = parse_pagerduty(body) else {
            panic!("parses")
        };
        assert_eq!(c.event_id, "EV1");
        let no_id = br#"{"event":{"event_type":"incident.acknowledged","occurred_at":"2026-01-01T00:00:00Z","data":{"id":"P1"}}}"#;
        assert_eq!(
            parse_pagerduty(no_id),
            Err(InboundError::Malformed("event.id is required".into()))
        );
        let long = format!(
            r#"{{"event":{{"id":"{}","event_type":"incident.acknowledged","occurred_at":"2026-01-01T00:00:00Z","data":{{"id":"P1"}}}}}}"#,
            "x".repeat(300)
        );
        let err = parse_pagerduty(long.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("event.id is 300 bytes"), "{err}");
    }
}
