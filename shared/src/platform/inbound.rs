//! Inbound adapters: a platform's webhook -> one normalised [`StatusChange`], after verifying
//! that the platform sent it.

use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use time::OffsetDateTime;

use super::generic::{MAX_SIGNATURE_HEADER, MAX_SIGNATURES, SignatureError, WebhookSecret, verify};
use crate::s1::dto::AnalystVerdict;

/// A platform's state for an alert, as its webhook says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlatformState {
    New,
    Reopened,
    Investigating,
    Acknowledged,
    InProgress,
    Closed,
    Resolved,
}

impl PlatformState {
    /// The state's name as the mapping table spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PlatformState::New => "new",
            PlatformState::Reopened => "reopened",
            PlatformState::Investigating => "investigating",
            PlatformState::Acknowledged => "acknowledged",
            PlatformState::InProgress => "in_progress",
            PlatformState::Closed => "closed",
            PlatformState::Resolved => "resolved",
        }
    }
}

/// How the platform identifies the alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlertRef {
    /// Our own alert key, echoed back (`s1:<host>:<story id>`), or a dedup key.
    Key(String),
    /// Only the platform's own id (a PagerDuty incident id), resolvable once we have seen it.
    PlatformId(String),
    /// Both: the key, and the platform id to remember for later events.
    KeyAndId(String, String),
}

/// What the analyst did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ChangeAction {
    /// The alert's state changed.
    Status {
        state: PlatformState,
        close_reason: Option<String>,
        verdict: Option<AnalystVerdict>,
    },
    /// A comment, a response action, or a late resolution note; with a verdict when the note
    /// implies one (PagerDuty's "Resolution Note: false positive ...").
    Note { verdict: Option<AnalystVerdict> },
}

/// One normalised change from a platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusChange {
    /// The platform's delivery id (stable across its retries).
    pub event_id: String,
    pub platform: String,
    pub alert: AlertRef,
    pub action: ChangeAction,
    pub analysis: Option<String>,
    pub actor: Option<String>,
    /// When the analyst made the change (orders status changes).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The outcome of reading a webhook.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Change(StatusChange),
    /// Valid but nothing to do (a ping, our own echo, an event type we do not map).
    Ignore(String),
}

/// Why a webhook was refused before any change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InboundError {
    #[error("signature check failed: {0}")]
    Unauthorized(String),
    #[error("malformed webhook: {0}")]
    Malformed(String),
}

/// How a tenant's inbound webhooks prove who sent them.
#[derive(Clone)]
pub enum InboundAuth {
    /// Standard Webhooks signatures with any of these secrets (rotation).
    StandardWebhooks(Vec<WebhookSecret>),
    /// A per-endpoint bearer token: the explicitly weaker mode for senders that cannot sign.
    Bearer(crate::ApiToken),
    /// PagerDuty v3 signatures with any of these subscription secrets.
    PagerDuty(Vec<crate::ApiToken>),
}

impl std::fmt::Debug for InboundAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InboundAuth::StandardWebhooks(_) => "StandardWebhooks(<redacted>)",
            InboundAuth::Bearer(_) => "Bearer(<redacted>)",
            InboundAuth::PagerDuty(_) => "PagerDuty(<redacted>)",
        })
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Through HMAC so the comparison time never depends on where the bytes differ.
    let key = [0u8; 32];
    let mut ma = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    ma.update(a);
    let mut mb = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mb.update(b);
    mb.verify(&ma.finalize().into_bytes()).is_ok()
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

/// Checks a request against the tenant's inbound auth.
///
/// # Errors
/// [`InboundError::Unauthorized`], naming what failed, never a secret.
pub fn authenticate(
    auth: &InboundAuth,
    headers: &HeaderMap,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<(), InboundError> {
    match auth {
        InboundAuth::StandardWebhooks(secrets) => verify(
            secrets,
            header(headers, "webhook-id"),
            header(headers, "webhook-timestamp"),
            header(headers, "webhook-signature"),
            body,
            now,
            300,
        )
        .map_err(|e: SignatureError| InboundError::Unauthorized(e.to_string())),
        InboundAuth::Bearer(token) => {
            let given = header(headers, "authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default();
            if !given.is_empty() && constant_time_eq(given.trim().as_bytes(), token.expose().as_bytes()) {
                Ok(())
            } else {
                Err(InboundError::Unauthorized("bearer token missing or wrong".into()))
            }
        }
        InboundAuth::PagerDuty(secrets) => verify_pagerduty(secrets, header(headers, "x-pagerduty-signature"), body),
    }
}

/// The longest delivery id accepted (it keys the replay marker).
pub const MAX_DELIVERY_ID: usize = 256;

/// A delivery's id: present, not empty, at most [`MAX_DELIVERY_ID`] bytes, no control characters.
fn delivery_id(id: Option<&str>, what: &str) -> Result<String, InboundError> {
    match id {
        None | Some("") => Err(InboundError::Malformed(format!("{what} is required"))),
        Some(id) if id.len() > MAX_DELIVERY_ID => Err(InboundError::Malformed(format!(
            "{what} is {} bytes; the limit is {MAX_DELIVERY_ID}",
            id.len()
        ))),
        Some(id) if id.chars().any(char::is_control) => {
            Err(InboundError::Malformed(format!("{what} holds control characters")))
        }
        Some(id) => Ok(id.to_owned()),
    }
}

fn parse_time(s: &str, field: &str) -> Result<OffsetDateTime, InboundError> {
    crate::s1::dto::parse_time(s).map_err(|_| InboundError::Malformed(format!("{field} {s:?} is not RFC 3339")))
}

fn verdict_word(s: &str) -> Option<AnalystVerdict> {
    match s.trim().to_ascii_lowercase().replace([' ', '-'], "_").as_str() {
        "true_positive" => Some(AnalystVerdict::TruePositive),
        "false_positive" => Some(AnalystVerdict::FalsePositive),
        "suspicious" => Some(AnalystVerdict::Suspicious),
        "undefined" => Some(AnalystVerdict::Undefined),
        _ => None,
    }
}

/// Parses the generic contract (platforms.md §6.2): `alert.status_changed`,
/// `alert.comment_added`, `alert.response_action`.
///
/// # Errors
/// [`InboundError::Malformed`] naming the field.
pub fn parse_generic(event_id: Option<&str>, body: &[u8]) -> Result<Inbound, InboundError> {
    #[derive(Deserialize)]
    struct Actor {
        name: Option<String>,
        email: Option<String>,
    }
    #[derive(Deserialize)]
    struct Data {
        alert_key: Option<String>,
        status: Option<String>,
        close_reason: Option<String>,
        verdict: Option<String>,
        analysis: Option<String>,
        comment: Option<String>,
        action: Option<String>,
        actor: Option<Actor>,
    }
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(rename = "type")]
        kind: String,
        timestamp: Option<String>,
        data: Data,
    }
    let e: Envelope = {
        let de = &mut serde_json::Deserializer::from_slice(body);
        serde_path_to_error::deserialize(de)
            .map_err(|e| InboundError::Malformed(format!("at `{}`: {}", e.path(), e.inner())))?
    };
    let event_id = delivery_id(event_id, "the webhook-id header")?;
    let alert_key = e
        .data
        .alert_key
        .filter(|k| !k.is_empty())
        .ok_or_else(|| InboundError::Malformed("data.alert_key is required".into()))?;
    let at = match &e.timestamp {
        Some(t) => parse_time(t, "timestamp")?,
        None => return Err(InboundError::Malformed("timestamp is required".into())),
    };
    let actor = e.data.actor.and_then(|a| match (a.name, a.email) {
        (Some(n), Some(m)) => Some(format!("{n} <{m}>")),
        (n, m) => n.or(m),
    });
    let verdict = match e.data.verdict.as_deref() {
        None => None,
        Some(v) => Some(
            verdict_word(v).ok_or_else(|| InboundError::Malformed(format!("data.verdict {v:?} is not a verdict")))?,
        ),
    };
    let action = match e.kind.as_str() {
        "alert.status_changed" => {
            let status = e
                .data
                .status
                .ok_or_else(|| InboundError::Malformed("data.status is required".into()))?;
            let state: PlatformState = serde_json::from_value(serde_json::Value::String(status.to_ascii_lowercase()))
                .map_err(|_| InboundError::Malformed(format!("data.status {status:?} is not one of new, reopened, investigating, acknowledged, in_progress, closed, resolved")))?;
            let closing = matches!(state, PlatformState::Closed | PlatformState::Resolved);
            if closing && e.data.close_reason.is_none() && verdict.is_none() {
                return Err(InboundError::Malformed(
                    "data.close_reason is required when closing".into(),
                ));
            }
            ChangeAction::Status {
                state,
                close_reason: e.data.close_reason,
                verdict,
            }
        }
        "alert.comment_added" => {
            if e.data.comment.is_none() && e.data.analysis.is_none() {
                return Err(InboundError::Malformed("data.comment is required".into()));
            }
            ChangeAction::Note { verdict }
        }
        "alert.response_action" => {
            let action = e
                .data
                .action
                .clone()
                .ok_or_else(|| InboundError::Malformed("data.action is required".into()))?;
            return Ok(Inbound::Change(StatusChange {
                event_id,
                platform: "generic".into(),
                alert: AlertRef::Key(alert_key),
                action: ChangeAction::Note { verdict: None },
                analysis: Some(format!(
                    "response action {action}{}",
                    e.data.analysis.map(|a| format!(": {a}")).unwrap_or_default()
                )),
                actor,
                at,
            }));
        }
        other => return Ok(Inbound::Ignore(format!("event type {other} is not mapped"))),
    };
    let analysis = match (e.data.analysis, e.data.comment) {
        (Some(a), Some(c)) => Some(format!("{c} — {a}")),
        (a, c) => c.or(a),
    };
    Ok(Inbound::Change(StatusChange {
        event_id,
        platform: "generic".into(),
        alert: AlertRef::Key(alert_key),
        action,
        analysis,
        actor,
        at,
    }))
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
        platform: "pagerduty".into(),
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
