//! Halo's webhook to us. Halo signs nothing, so the request is authenticated by the Basic
//! credentials or the secret header the tenant configured, and then the payload is used only
//! for the ticket ids it names: each ticket and its actions are read back from Halo's API and
//! only what the API says counts. A forged webhook can at most cause a read.
//!
//! What becomes a change: each action by a Halo agent (a technician) in the replay window (a
//! status it set, with the action's outcome as the close reason and its note as the analysis;
//! or a note alone), and a status set without an action (a workflow). Actions by the bridge's
//! own API agent are ours and skipped; actions by anyone else (an end user's reply by e-mail or
//! the portal, and a status a rule set on it) are counted and skipped. Every change has a stable id (`halo:<ticket>:action:<id>`), so a webhook fired
//! twice is one change.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::HeaderMap;
use serde_json::Value;
use time::OffsetDateTime;

use super::client::as_id;
use super::lookup::Resolved;
use super::outbound::HaloTickets;
use crate::platform::inbound::{
    AlertRef, ChangeAction, Inbound, InboundError, PlatformState, StatusChange, constant_time_eq, header,
};
use crate::platform::{InboundAdapter, PlatformError, PlatformKind};

/// The most tickets one delivery may name (a batched delivery); the rest are refused.
pub const MAX_TICKETS: usize = 20;
/// Actions older than this are not turned into changes (they were, or are too old to be now).
pub const WINDOW: time::Duration = time::Duration::hours(24);

/// How a delivery proves it comes from Halo (secrets read).
#[derive(Clone)]
pub enum HaloWebhookAuth {
    Basic {
        username: crate::ApiToken,
        password: crate::ApiToken,
    },
    Header {
        name: String,
        value: crate::ApiToken,
    },
}

/// Halo's webhook endpoint of one tenant.
pub struct HaloInbound {
    pub tickets: Arc<HaloTickets>,
    pub auth: HaloWebhookAuth,
    /// The tenant's S1 console: a ticket is the tenant's only when the third-party id Halo
    /// keeps for it is one of this console's story keys.
    pub console_url: String,
}

impl std::fmt::Debug for HaloInbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HaloInbound(<redacted>)")
    }
}

/// The keys a ticket id is read from, in order, compared without case: Halo's own payloads
/// say `object_id`, custom ones whatever the operator wrote.
const ID_KEYS: [&str; 4] = ["object_id", "ticket_id", "ticketid", "objectid"];
/// Where those keys may sit besides the top level (and `ticket.id`, the full object's).
const ID_PARENTS: [&str; 3] = ["object", "ticket", "data"];

/// A field of a JSON object, its name compared without case.
fn field<'v>(v: &'v Value, name: &str) -> Option<&'v Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The ticket id one payload object names: one of [`ID_KEYS`] at the top level, else under
/// one of [`ID_PARENTS`], else the full object's `ticket.id`.
fn ticket_id_of(item: &Value) -> Option<i64> {
    let at = |v: &Value| {
        ID_KEYS
            .iter()
            .find_map(|k| field(v, k).and_then(as_id))
            .filter(|id| *id > 0)
    };
    at(item)
        .or_else(|| ID_PARENTS.iter().find_map(|p| field(item, p).and_then(at)))
        .or_else(|| field(item, "ticket").and_then(|t| field(t, "id")).and_then(as_id))
        .filter(|id| *id > 0)
}

/// The ticket ids a delivery names (an object, or each element of a batched array), as
/// [`ticket_id_of`] reads them; empty when it names none (or is not JSON).
///
/// # Errors
/// [`InboundError::Malformed`] when it names more than [`MAX_TICKETS`].
pub fn ticket_ids(body: &[u8]) -> Result<Vec<i64>, InboundError> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Ok(vec![]);
    };
    let items = match v {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut ids = Vec::new();
    for id in items.iter().filter_map(ticket_id_of) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.len() > MAX_TICKETS {
        return Err(InboundError::Malformed(format!(
            "the delivery names {} tickets; at most {MAX_TICKETS}",
            ids.len()
        )));
    }
    Ok(ids)
}

/// Text of an action's note: `note`, else `note_html` without its tags.
fn note_of(action: &Value) -> Option<String> {
    let text = match action
        .get("note")
        .and_then(Value::as_str)
        .filter(|n| !n.trim().is_empty())
    {
        Some(n) => n.to_owned(),
        None => {
            let html = action.get("note_html").and_then(Value::as_str)?;
            let mut out = String::new();
            let mut in_tag = false;
            for c in html.chars() {
                match c {
                    '<' => in_tag = true,
                    '>' => {
                        in_tag = false;
                        out.push(' ');
                    }
                    c if !in_tag => out.push(c),
                    _ => {}
                }
            }
            out.split_whitespace().collect::<Vec<_>>().join(" ")
        }
    };
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

fn time_of(v: &Value, field: &str) -> Option<OffsetDateTime> {
    let s = v.get(field)?.as_str()?;
    crate::s1::dto::parse_time(s)
        .ok()
        .or_else(|| crate::s1::dto::parse_time(&format!("{}Z", s.trim_end_matches('Z'))).ok())
}

/// The platform state a Halo status means under the tenant's lists.
fn state_of(r: &Resolved, status: i64, reopened: bool) -> Option<PlatformState> {
    if r.closed.contains(&status) {
        Some(PlatformState::Closed)
    } else if r.in_progress.contains(&status) {
        Some(PlatformState::InProgress)
    } else if r.open.contains(&status) || status == r.reopen.0 {
        Some(if reopened {
            PlatformState::Reopened
        } else {
            PlatformState::New
        })
    } else {
        None
    }
}

/// The story key a ticket read from the tenant's own Halo carries, when it is one of this
/// console's stories. Ticket numbers count per Halo instance, so a number alone cannot say whose
/// ticket it is (two instances both have #1001, and an MSP's tenants can share one Halo); the
/// key we wrote into the ticket, read back from the tenant's instance, can.
pub fn story_key_of<'t>(ticket: &'t Value, console_url: &str) -> Option<&'t str> {
    let key = ticket.get("third_party_id_string").and_then(Value::as_str)?.trim();
    crate::domain::AlertKey::story_id(key, console_url).map(|_| key)
}

/// Who wrote an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Author {
    /// The bridge's own API agent: never sent back.
    Us,
    /// A Halo agent (a technician): their actions are decisions.
    Agent,
    /// Anyone else: an end user replying by e-mail or the portal, the system. Not a decision.
    Other,
}

fn author(a: &Value, r: &Resolved) -> Author {
    let agent = [a.get("who_agentid"), a.get("actionby_agent_id")]
        .into_iter()
        .flatten()
        .filter_map(as_id)
        .find(|w| *w > 0);
    let user = a.get("actionby_user_id").and_then(as_id).filter(|u| *u > 0);
    match agent {
        Some(w) if w == r.agent => Author::Us,
        Some(_) if user.is_none() => Author::Agent,
        _ => Author::Other,
    }
}

/// What one ticket holds for S1: the changes, and how many recent actions were skipped because
/// no agent wrote them.
#[derive(Debug, Default)]
pub struct TicketChanges {
    pub changes: Vec<StatusChange>,
    pub skipped_not_agents: usize,
}

/// The changes one ticket of story `alert_key`, as Halo's API returns it with its actions,
/// holds for S1 now. Only agents' actions count; our own and everyone else's (end users'
/// replies, and a status a Halo rule set on them) are skipped.
pub fn changes(ticket: &Value, alert_key: &str, actions: &[Value], r: &Resolved, now: OffsetDateTime) -> TicketChanges {
    let mut out = TicketChanges::default();
    let Some(id) = ticket.get("id").and_then(as_id) else {
        return out;
    };
    let alert = AlertRef::Key(alert_key.to_owned());
    let recent =
        |at: Option<OffsetDateTime>| at.is_some_and(|t| t >= now - WINDOW && t <= now + time::Duration::minutes(5));
    let mut sorted: Vec<&Value> = actions.iter().collect();
    sorted.sort_by_key(|a| (time_of(a, "datetime"), a.get("id").and_then(as_id)));
    let mut status_by_action = None;
    let reopened = ticket.get("hasbeenclosed").and_then(Value::as_bool).unwrap_or(false);
    for a in sorted {
        let action_id = a.get("id").and_then(as_id).unwrap_or_default();
        let new_status = a.get("new_status").and_then(as_id).filter(|s| *s > 0);
        if new_status.is_some() {
            status_by_action = Some(new_status);
        }
        let at = time_of(a, "datetime");
        if !recent(at) {
            continue;
        }
        match author(a, r) {
            Author::Us => continue,
            Author::Other => {
                out.skipped_not_agents += 1;
                continue;
            }
            Author::Agent => {}
        }
        let actor = a.get("who").and_then(Value::as_str).map(str::to_owned);
        let note = note_of(a);
        let outcome = a.get("outcome").and_then(Value::as_str).map(str::to_owned);
        let action = match new_status.and_then(|s| state_of(r, s, reopened)) {
            Some(state) => ChangeAction::Status {
                state,
                close_reason: outcome.filter(|_| state == PlatformState::Closed),
                verdict: None,
            },
            None if note.is_some() => ChangeAction::Note { verdict: None },
            None => continue,
        };
        out.changes.push(StatusChange {
            event_id: format!("halo:{id}:action:{action_id}"),
            platform: PlatformKind::Halo,
            alert: alert.clone(),
            action,
            analysis: note,
            actor,
            at: at.unwrap_or(now),
        });
    }
    // A status no action explains (a workflow, a bulk edit): the ticket's own, dated by its
    // last update, unless that update was an action no agent wrote (our own note after S1
    // changed, an end user's reply a rule acted on), which says nothing about a decision.
    let status = ticket.get("status_id").and_then(as_id);
    let explained = status_by_action.is_some_and(|s| s == status);
    let at = time_of(ticket, "last_update").or_else(|| time_of(ticket, "lastactiondate"));
    let latest = actions
        .iter()
        .max_by_key(|a| (time_of(a, "datetime"), a.get("id").and_then(as_id)));
    let last_not_agent = latest.is_some_and(|a| {
        author(a, r) != Author::Agent
            && time_of(a, "datetime")
                .zip(at)
                .is_some_and(|(d, u)| d >= u - time::Duration::seconds(1))
    });
    if let (Some(status), false, false) = (status, explained, last_not_agent) {
        // Back to an open status only matters as a reopen.
        let state = state_of(r, status, reopened).filter(|s| *s != PlatformState::New);
        if let (Some(state), true) = (state, recent(at)) {
            let stamp = at.map(|t| t.unix_timestamp()).unwrap_or_default();
            out.changes.push(StatusChange {
                event_id: format!("halo:{id}:status:{status}:{stamp}"),
                platform: PlatformKind::Halo,
                alert,
                action: ChangeAction::Status {
                    state,
                    close_reason: None,
                    verdict: None,
                },
                analysis: None,
                actor: Some("a Halo workflow".into()),
                at: at.unwrap_or(now),
            });
        }
    }
    out
}

/// The statuses the ticket and its actions name that Halo did not have when `r` was resolved.
fn unknown_statuses(ticket: &Value, actions: &[Value], r: &Resolved) -> Vec<i64> {
    let mut out = Vec::new();
    let named = std::iter::once(ticket.get("status_id"))
        .chain(actions.iter().map(|a| a.get("new_status")))
        .filter_map(|v| v.and_then(as_id));
    for s in named.filter(|s| *s > 0 && !r.knows_status(*s)) {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

fn config_error(e: PlatformError) -> InboundError {
    // The delivery was authenticated; Halo being unreachable is ours to retry, not malformed.
    InboundError::Unavailable(e.to_string())
}

#[async_trait]
impl InboundAdapter for HaloInbound {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Halo
    }

    fn verify(&self, headers: &HeaderMap, _body: &[u8], _now: OffsetDateTime) -> Result<(), InboundError> {
        let ok = match &self.auth {
            HaloWebhookAuth::Basic { username, password } => header(headers, "authorization")
                .and_then(|v| v.strip_prefix("Basic "))
                .and_then(|b64| STANDARD.decode(b64.trim()).ok())
                .is_some_and(|given| {
                    let want = format!("{}:{}", username.expose(), password.expose());
                    constant_time_eq(&given, want.as_bytes())
                }),
            HaloWebhookAuth::Header { name, value } => header(headers, name)
                .is_some_and(|given| constant_time_eq(given.trim().as_bytes(), value.expose().as_bytes())),
        };
        if ok {
            Ok(())
        } else {
            Err(InboundError::Unauthorized(
                "Halo webhook credentials missing or wrong".into(),
            ))
        }
    }

    async fn parse(&self, _headers: &HeaderMap, body: &[u8]) -> Result<Inbound, InboundError> {
        let ids = ticket_ids(body)?;
        if ids.is_empty() {
            // Authenticated, but no ticket named: answered (a refusal would make Halo retry and
            // in the end disable the webhook) and logged for the operator to fix the payload.
            tracing::warn!(
                tenant = %self.tickets.tenant,
                bytes = body.len(),
                "Halo webhook names no ticket id (looked for object_id, ticket_id, ticketid, objectid at the top level or under object, ticket, data)"
            );
            return Ok(Inbound::Ignore(
                "no ticket id in the payload (looked for object_id, ticket_id, ticketid or objectid, at the top level or under object, ticket or data)".into(),
            ));
        }
        let mut r = self.tickets.resolved().await.map_err(config_error)?;
        let now = OffsetDateTime::now_utc();
        let mut all = Vec::new();
        let mut not_ours = Vec::new();
        let mut skipped = 0;
        for id in ids {
            let ticket = match self.tickets.client.get(&format!("Tickets/{id}"), &[]).await {
                Ok(t) => t,
                // Not a ticket Halo has (or lets us see): nothing to do for it.
                Err(PlatformError::Refused { status: 404, .. } | PlatformError::Rejected { .. }) => {
                    not_ours.push(id);
                    continue;
                }
                Err(e) => return Err(config_error(e)),
            };
            // Halo fires a webhook for every ticket; one that is not one of this tenant's
            // stories (made by hand, another tenant's on a shared Halo, a token alert) is
            // answered, not refused, so Halo does not retry it.
            let Some(alert_key) = story_key_of(&ticket, &self.console_url).map(str::to_owned) else {
                not_ours.push(id);
                continue;
            };
            if let (Some(dir), Some(story)) = (
                &self.tickets.directory,
                crate::domain::AlertKey::story_id(&alert_key, &self.console_url),
            ) {
                let owned = dir
                    .owns_ticket(&self.tickets.tenant, story, id)
                    .await
                    .map_err(InboundError::Unavailable)?;
                if !owned {
                    not_ours.push(id);
                    continue;
                }
            }
            let actions = self
                .tickets
                .client
                .get("Actions", &[("ticket_id", id.to_string()), ("count", "100".into())])
                .await
                .map_err(config_error)?;
            let actions = match actions {
                Value::Array(a) => a,
                Value::Object(mut o) => match o.remove("actions") {
                    Some(Value::Array(a)) => a,
                    _ => vec![],
                },
                _ => vec![],
            };
            let unknown = unknown_statuses(&ticket, &actions, &r);
            if !unknown.is_empty() {
                // Statuses Halo added since the settings were read (ones the tenant's lists may
                // name): read them again before judging the ticket.
                if let Some(fresh) = self.tickets.refreshed(&unknown).await.map_err(config_error)? {
                    r = fresh;
                }
            }
            let found = changes(&ticket, &alert_key, &actions, &r, now);
            skipped += found.skipped_not_agents;
            all.extend(found.changes);
        }
        if skipped > 0 {
            tracing::info!(tenant = %self.tickets.tenant, skipped, "Halo webhook: actions by end users (not agents) skipped");
        }
        if !not_ours.is_empty() {
            tracing::info!(tenant = %self.tickets.tenant, tickets = ?not_ours, "Halo webhook: not this tenant's story tickets");
        }
        Ok(match all.len() {
            0 if !not_ours.is_empty() => Inbound::Ignore(format!(
                "not ours: ticket(s) {not_ours:?} are not this tenant's story tickets"
            )),
            0 if skipped > 0 => Inbound::Ignore(format!(
                "nothing new for S1: {skipped} action(s) by end users, not agents, skipped"
            )),
            0 => Inbound::Ignore("nothing new on the ticket for S1".into()),
            1 => Inbound::Change(all.remove(0)),
            _ => Inbound::Batch(all),
        })
    }

    fn time_field(&self) -> &'static str {
        "the Halo action's datetime"
    }

    fn signs_fresh_timestamp(&self) -> bool {
        // Changes come from Halo's API, already limited to the replay window.
        false
    }
}
