//! What a technician does in Halo's UI, and Halo's outbound webhook, for tests and the demo.

use serde_json::{Map, Value, json};

use super::FakeHalo;
use super::entity::{HaloEntity, Record, guid, now_text, reference};
use super::store::Actor;

/// A status, by id or by name (case-insensitive).
#[derive(Debug, Clone, PartialEq)]
pub enum HaloStatusRef {
    Id(i64),
    Name(String),
}

impl From<i64> for HaloStatusRef {
    fn from(id: i64) -> Self {
        Self::Id(id)
    }
}

impl From<&str> for HaloStatusRef {
    fn from(name: &str) -> Self {
        Self::Name(name.to_owned())
    }
}

/// Which of Halo's webhook payload types to send (docs/platforms.md §1.5).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HaloWebhookPayload {
    /// "Event information only": ids, event name, `object_id` and timestamp.
    EventOnly,
    /// "Full object with linked objects": the above plus `message`, `agent_id` and the ticket.
    FullObject,
}

/// How Halo authenticates its webhook to our endpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum HaloWebhookAuth {
    None,
    Basic {
        username: String,
        password: String,
    },
    /// A custom header (Halo's "API key" style), e.g. `X-Halo-Secret: <value>`.
    Header {
        name: String,
        value: String,
    },
}

/// A control call that could not be done.
#[derive(Debug, thiserror::Error)]
pub enum HaloControlError {
    #[error("no ticket {0}")]
    NoSuchTicket(i64),
    #[error("no status {0:?}")]
    NoSuchStatus(HaloStatusRef),
    #[error("refused: {}", .0.join("; "))]
    Refused(Vec<String>),
    #[error("webhook delivery failed: {0}")]
    Delivery(String),
}

/// The event name the fake's webhooks carry.
const EVENT: &str = "ticket status changed";
/// The id of the fake's one webhook configuration.
const WEBHOOK_ID: &str = "00000000-0000-4000-8000-0000000000aa";

impl FakeHalo {
    /// Writes records as a `POST` of `fields` (an object or an array of them) to the collection
    /// would, as the API agent, with the same checks on what they refer to; answers the records
    /// written. For tests that need records the seed does not have.
    ///
    /// # Errors
    /// The store's checks refused the batch (nothing was written).
    pub fn upsert(&self, entity: HaloEntity, fields: Value) -> Result<Vec<Value>, HaloControlError> {
        let items: Vec<Record> = match fields {
            Value::Array(items) => items.into_iter().filter_map(into_record).collect(),
            other => into_record(other).into_iter().collect(),
        };
        let mut inner = self.shared.lock();
        let actor = self.shared.api_actor(&inner);
        inner
            .store
            .upsert(entity, items, &actor)
            .map_err(HaloControlError::Refused)
    }

    /// A technician closes (or otherwise moves) a ticket in the UI: an action by `technician`
    /// (an agent found by name, created when new) with the outcome (by name), the note and the
    /// new status, which becomes the ticket's status. Answers the action.
    ///
    /// # Errors
    /// No such ticket or status; an outcome the tenant does not have.
    pub fn close_ticket_as_technician(
        &self,
        ticket_id: i64,
        status: impl Into<HaloStatusRef>,
        outcome: &str,
        note: &str,
        technician: &str,
    ) -> Result<Value, HaloControlError> {
        let status = self.status_id(status.into())?;
        let action = json!({"ticket_id": ticket_id, "outcome": outcome, "note": note, "new_status": status});
        self.technician_action(ticket_id, action, technician)
    }

    /// A technician adds a note (outcome "Note" when the tenant has it) without changing the
    /// status. Answers the action.
    ///
    /// # Errors
    /// No such ticket.
    pub fn add_technician_note(&self, ticket_id: i64, note: &str, technician: &str) -> Result<Value, HaloControlError> {
        let mut action = json!({"ticket_id": ticket_id, "note": note});
        if self.shared.lock().store.outcome_by_name("Note").is_some() {
            action["outcome"] = "Note".into();
        }
        self.technician_action(ticket_id, action, technician)
    }

    /// The ticket's end user replies (by e-mail or the portal): an action by the user (found by
    /// name among the users, or the ticket's own user), with no agent; `status`, when given, is
    /// the status a Halo rule sets on the reply (recorded on the action, as Halo does). Answers
    /// the action.
    ///
    /// # Errors
    /// No such ticket, user or status.
    pub fn add_end_user_reply(
        &self,
        ticket_id: i64,
        note: &str,
        user: Option<&str>,
        status: Option<HaloStatusRef>,
    ) -> Result<Value, HaloControlError> {
        let ticket = self
            .ticket(ticket_id)
            .ok_or(HaloControlError::NoSuchTicket(ticket_id))?;
        let mut action = json!({"ticket_id": ticket_id, "note": note});
        if let Some(s) = status {
            action["new_status"] = self.status_id(s)?.into();
        }
        let mut inner = self.shared.lock();
        let found = inner.store.table(HaloEntity::User).iter().find(|u| match user {
            Some(name) => u
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case(name.trim())),
            None => reference(u, "id").is_some() && reference(u, "id") == ticket["user_id"].as_i64(),
        });
        let Some((user_id, name)) = found.and_then(|u| {
            Some((
                reference(u, "id")?,
                u.get("name").and_then(Value::as_str).unwrap_or("End User").to_owned(),
            ))
        }) else {
            return Err(HaloControlError::Refused(vec![format!(
                "no end user {user:?} for ticket {ticket_id}"
            )]));
        };
        let actor = Actor {
            agent_id: 0,
            name,
            user_id: Some(user_id),
        };
        let mut written = inner
            .store
            .upsert(HaloEntity::Action, into_record(action).into_iter().collect(), &actor)
            .map_err(HaloControlError::Refused)?;
        Ok(written.remove(0))
    }

    /// Sets a ticket's status directly (as a workflow or a bulk edit would), with no action.
    ///
    /// # Errors
    /// No such ticket or status.
    pub fn set_ticket_status(&self, ticket_id: i64, status: impl Into<HaloStatusRef>) -> Result<(), HaloControlError> {
        let status = self.status_id(status.into())?;
        self.ticket(ticket_id)
            .ok_or(HaloControlError::NoSuchTicket(ticket_id))?;
        self.upsert(HaloEntity::Ticket, json!({"id": ticket_id, "status_id": status}))
            .map(drop)
    }

    fn status_id(&self, status: HaloStatusRef) -> Result<i64, HaloControlError> {
        let inner = self.shared.lock();
        let found = inner.store.table(HaloEntity::Status).iter().find(|s| match &status {
            HaloStatusRef::Id(id) => reference(s, "id") == Some(*id),
            HaloStatusRef::Name(name) => s
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case(name.trim())),
        });
        found
            .and_then(|s| reference(s, "id"))
            .ok_or(HaloControlError::NoSuchStatus(status))
    }

    fn technician_action(&self, ticket_id: i64, action: Value, technician: &str) -> Result<Value, HaloControlError> {
        if self.ticket(ticket_id).is_none() {
            return Err(HaloControlError::NoSuchTicket(ticket_id));
        }
        let mut inner = self.shared.lock();
        let existing = inner.store.table(HaloEntity::Agent).iter().find(|a| {
            a.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case(technician.trim()))
        });
        let agent_id = match existing.and_then(|a| reference(a, "id")) {
            Some(id) => id,
            None => {
                let api = self.shared.api_actor(&inner);
                let created = inner
                    .store
                    .upsert(
                        HaloEntity::Agent,
                        into_record(json!({"name": technician})).into_iter().collect(),
                        &api,
                    )
                    .map_err(HaloControlError::Refused)?;
                created.first().and_then(|a| a["id"].as_i64()).unwrap_or_default()
            }
        };
        let actor = Actor {
            agent_id,
            name: technician.trim().to_owned(),
            user_id: None,
        };
        let mut written = inner
            .store
            .upsert(HaloEntity::Action, into_record(action).into_iter().collect(), &actor)
            .map_err(HaloControlError::Refused)?;
        Ok(written.remove(0))
    }

    /// The body Halo would send for a status change of `ticket_id`.
    ///
    /// # Errors
    /// `FullObject` for a ticket that does not exist (an event-only payload may name any id,
    /// for forged-webhook tests).
    pub fn webhook_payload(&self, ticket_id: i64, payload: HaloWebhookPayload) -> Result<Value, HaloControlError> {
        let mut inner = self.shared.lock();
        inner.webhooks_sent += 1;
        let n = inner.webhooks_sent;
        let mut body = json!({
            "id": guid(0xC000 + n),
            "webhook_id": WEBHOOK_ID,
            "notification_id": 7,
            "escmsg_id": guid(0xD000 + n),
            "event": EVENT,
            "object_id": ticket_id,
            "timestamp": now_text(),
        });
        if payload == HaloWebhookPayload::FullObject {
            let store = &inner.store;
            let ticket = store
                .find(HaloEntity::Ticket, &ticket_id.to_string())
                .ok_or(HaloControlError::NoSuchTicket(ticket_id))?;
            let last_agent = store
                .table(HaloEntity::Action)
                .iter()
                .rev()
                .find(|a| reference(a, "ticket_id") == Some(ticket_id))
                .and_then(|a| reference(a, "who_agentid"))
                .or_else(|| reference(ticket, "agent_id"));
            body["message"] = format!("The status has been changed for Ticket ID: {ticket_id:07}.").into();
            body["agent_id"] = last_agent.into();
            body["ticket"] = store.render(HaloEntity::Ticket, ticket);
        }
        Ok(body)
    }

    /// Fires Halo's webhook for `ticket_id` at `url`, as Halo would (`POST`, JSON, the given
    /// authentication); answers the HTTP status our endpoint gave.
    ///
    /// # Errors
    /// See [`Self::webhook_payload`]; the endpoint could not be reached.
    pub async fn fire_webhook(
        &self,
        url: &str,
        ticket_id: i64,
        payload: HaloWebhookPayload,
        auth: &HaloWebhookAuth,
    ) -> Result<u16, HaloControlError> {
        let body = self.webhook_payload(ticket_id, payload)?;
        Self::post_webhook(url, &body, auth).await
    }

    /// POSTs any body (e.g. a batch array, or a forged payload) as Halo's webhook would;
    /// answers the HTTP status.
    ///
    /// # Errors
    /// The endpoint could not be reached.
    pub async fn post_webhook(url: &str, body: &Value, auth: &HaloWebhookAuth) -> Result<u16, HaloControlError> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| HaloControlError::Delivery(e.to_string()))?;
        let mut request = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::USER_AGENT, "Halo-Webhook")
            .body(body.to_string());
        request = match auth {
            HaloWebhookAuth::None => request,
            HaloWebhookAuth::Basic { username, password } => request.basic_auth(username, Some(password)),
            HaloWebhookAuth::Header { name, value } => request.header(name.as_str(), value.as_str()),
        };
        let response = request
            .send()
            .await
            .map_err(|e| HaloControlError::Delivery(e.without_url().to_string()))?;
        Ok(response.status().as_u16())
    }
}

fn into_record(v: Value) -> Option<Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        _ => None,
    }
}
