//! The fan-out queues: one message per tenant run (`{"tenant": "<id>"}`), sent by the
//! dispatcher (and by `sync-assets` to continue itself) and consumed by `poll-threats`,
//! `sync-assets` and `token-expiry`, each from its own queue through an SQS event source mapping.
//!
//! [`TenantQueue`] is the port (the dispatcher only sends); [`SqsQueue`] its SQS implementation;
//! [`SqsEvent`] and [`SqsBatchResponse`] the shapes Lambda hands a consumer and takes back
//! (partial batch failures: only the records named are received again).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// One message: a tenant's run, due after `delay_seconds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantMessage {
    pub tenant: String,
    /// Seconds SQS holds the message before a consumer may see it (at most 900).
    pub delay_seconds: u32,
}

/// The body of a tenant message, the same shape operators give `poll-threats` by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantBody {
    pub tenant: String,
}

/// SQS takes at most this many messages per `SendMessageBatch`.
pub const SEND_BATCH_MAX: usize = 10;
/// SQS's largest per-message delay.
pub const MAX_DELAY_SECONDS: u32 = 900;

/// A queue could not take messages.
#[derive(Debug, thiserror::Error)]
#[error("queue {queue}: {message}")]
pub struct QueueError {
    pub queue: String,
    pub message: String,
}

/// Where tenant messages go.
#[async_trait]
pub trait TenantQueue: Send + Sync {
    /// Sends `messages` (at most [`SEND_BATCH_MAX`]) in one request; the tenants of the messages
    /// the queue did not take (SQS answers per message), so the caller can say which.
    async fn send_batch(&self, messages: &[TenantMessage]) -> Result<Vec<String>, QueueError>;
}

/// [`TenantQueue`] over SQS.
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    /// A queue by URL.
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }
}

#[async_trait]
impl TenantQueue for SqsQueue {
    async fn send_batch(&self, messages: &[TenantMessage]) -> Result<Vec<String>, QueueError> {
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        let err = |message: String| QueueError {
            queue: self.url.clone(),
            message,
        };
        let mut entries = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            let body = serde_json::to_string(&TenantBody {
                tenant: m.tenant.clone(),
            })
            .map_err(|e| err(e.to_string()))?;
            entries.push(
                SendMessageBatchRequestEntry::builder()
                    // Entry ids only need to be unique in the request; tenant ids may hold
                    // characters SQS refuses there.
                    .id(i.to_string())
                    .message_body(body)
                    .delay_seconds(m.delay_seconds.min(MAX_DELAY_SECONDS) as i32)
                    .build()
                    .map_err(|e| err(e.to_string()))?,
            );
        }
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| err(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
        Ok(out
            .failed()
            .iter()
            .filter_map(|f| f.id().parse::<usize>().ok())
            .filter_map(|i| messages.get(i).map(|m| m.tenant.clone()))
            .collect())
    }
}

/// The event Lambda's SQS event source mapping invokes a consumer with.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SqsEvent {
    #[serde(rename = "Records")]
    pub records: Vec<SqsRecord>,
}

/// One message of an [`SqsEvent`] (the fields a consumer reads; the rest are ignored).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SqsRecord {
    pub message_id: String,
    #[serde(default)]
    pub body: String,
    /// `ApproximateReceiveCount` and the like.
    #[serde(default)]
    pub attributes: std::collections::HashMap<String, String>,
    #[serde(default)]
    pub event_source: Option<String>,
}

impl SqsRecord {
    /// How many times SQS has handed this message out, this time included.
    pub fn receive_count(&self) -> u32 {
        self.attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1)
    }

    /// The tenant the message names, or why it names none (the message is malformed).
    ///
    /// # Errors
    /// A body that is not `{"tenant": "<id>"}`, named.
    pub fn tenant(&self) -> Result<String, String> {
        let body: TenantBody = serde_json::from_str(&self.body)
            .map_err(|e| format!("message {} is not {{\"tenant\": \"<id>\"}}: {e}", self.message_id))?;
        if body.tenant.trim().is_empty() {
            return Err(format!("message {} names an empty tenant", self.message_id));
        }
        Ok(body.tenant)
    }
}

/// What a consumer answers: the records to be received again (the others are deleted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqsBatchResponse {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<BatchItemFailure>,
}

/// One record to be received again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

/// Whether `event` is an SQS batch (rather than an operator's or a schedule's input).
pub fn is_sqs_event(event: &serde_json::Value) -> bool {
    event.get("Records").and_then(|r| r.as_array()).is_some_and(|r| {
        r.iter()
            .all(|x| x.get("eventSource").and_then(|s| s.as_str()) == Some("aws:sqs"))
    })
}

/// An operator's (or a schedule's) direct input to a consumer: `{"tenant": "<id>"}` runs that
/// tenant, a schedule event or `{}` every enabled tenant (`None`).
///
/// # Errors
/// Any other input, with what the function takes (`function` names it).
pub fn operator_input(function: &str, event: &serde_json::Value) -> Result<Option<String>, String> {
    if event.get("detail-type").is_some() || event.as_object().is_some_and(|o| o.is_empty()) {
        return Ok(None);
    }
    serde_json::from_value::<TenantBody>(event.clone())
        .map(|b| Some(b.tenant))
        .map_err(|e| format!("{function} takes an SQS batch, {{\"tenant\": \"<id>\"}} or a schedule event: {e}"))
}
