//! The generic platform's inbound side: its signed events (`alert.status_changed`,
//! `alert.comment_added`, `alert.response_action`) into one normalised change.

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use time::OffsetDateTime;

use super::signature::{SignatureError, WebhookSecret, verify};
use crate::platform::inbound::{
    AlertRef, ChangeAction, Inbound, InboundError, PlatformState, StatusChange, constant_time_eq, delivery_id, header,
    parse_time, verdict_word,
};
use crate::platform::{InboundAdapter, PlatformKind};

/// How a generic endpoint proves who sent a webhook.
#[derive(Clone)]
pub enum GenericAuth {
    /// Standard Webhooks signatures with any of these secrets (rotation).
    Signed(Vec<WebhookSecret>),
    /// A per-endpoint bearer token: the explicitly weaker mode for senders that cannot sign.
    Bearer(crate::ApiToken),
}

impl std::fmt::Debug for GenericAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GenericAuth::Signed(_) => "Signed(<redacted>)",
            GenericAuth::Bearer(_) => "Bearer(<redacted>)",
        })
    }
}

/// A generic webhook endpoint of one tenant.
#[derive(Debug, Clone)]
pub struct GenericInbound {
    pub auth: GenericAuth,
}

#[async_trait]
impl InboundAdapter for GenericInbound {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Generic
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8], now: OffsetDateTime) -> Result<(), InboundError> {
        match &self.auth {
            GenericAuth::Signed(secrets) => verify(
                secrets,
                header(headers, "webhook-id"),
                header(headers, "webhook-timestamp"),
                header(headers, "webhook-signature"),
                body,
                now,
                300,
            )
            .map_err(|e: SignatureError| InboundError::Unauthorized(e.to_string())),
            GenericAuth::Bearer(token) => {
                let given = header(headers, "authorization")
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or_default();
                if !given.is_empty() && constant_time_eq(given.trim().as_bytes(), token.expose().as_bytes()) {
                    Ok(())
                } else {
                    Err(InboundError::Unauthorized("bearer token missing or wrong".into()))
                }
            }
        }
    }

    async fn parse(&self, headers: &HeaderMap, body: &[u8]) -> Result<Inbound, InboundError> {
        let id = header(headers, "webhook-id").or_else(|| header(headers, "idempotency-key"));
        parse_generic(id, body)
    }

    fn time_field(&self) -> &'static str {
        "timestamp"
    }

    fn signs_fresh_timestamp(&self) -> bool {
        matches!(self.auth, GenericAuth::Signed(_))
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
                platform: PlatformKind::Generic,
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
        platform: PlatformKind::Generic,
        alert: AlertRef::Key(alert_key),
        action,
        analysis,
        actor,
        at,
    }))
}
