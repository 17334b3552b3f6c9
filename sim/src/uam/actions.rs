//! The write side: action discovery, `alertTriggerActions` with its per-alert results, and notes.

use serde_json::{Value, json};

use super::ctx::Ctx;
use super::filter::{self, Reach, Refusal};
use super::render;
use super::schema::is_enum_value;
use super::store::ActionDef;
use super::{ActionOutcome, UamAction};
use crate::console::Console;

/// The author id notes and actions of a token are recorded under: derived from the user name,
/// never from the token.
fn user_id(user: &str) -> String {
    let n = user
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    format!("{}", 1_800_000_000_000_000_000 + n % 100_000_000_000_000_000)
}

pub(super) fn available(ctx: &Ctx<'_>, a: &Value) -> Result<Value, Refusal> {
    let w = ctx.console.borrow();
    Reach::new(&ctx.token.scope, &a["scope"], &a["viewType"], &w)?;
    filter::or_selection(&a["filter"])?;
    let mut wanted: Vec<String> = a["actionTypes"]
        .as_array()
        .map(|v| v.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    if let Some(t) = a["actionType"].as_str() {
        wanted.push(t.to_owned());
    }
    let data: Vec<Value> = w
        .uam
        .actions
        .iter()
        .filter(|d| wanted.is_empty() || wanted.iter().any(|t| t == d.action_type))
        .map(|d| {
            json!({
                "id": d.id,
                "title": d.title,
                "description": null,
                "type": d.action_type,
                "types": [d.action_type],
                "isDisabled": !ctx.token.can_write,
                "disabledReason": (!ctx.token.can_write).then_some("Missing permission"),
                "labels": [],
                "provider": "S1",
                "targets": [],
                "triggeredAfter": [],
                "triggersActions": [],
            })
        })
        .collect();
    Ok(json!({ "data": data, "errors": [] }))
}

fn trigger_error(message: String, payload: Value) -> Value {
    json!({
        "__typename": "TriggerActionsError",
        "errors": [{ "errorMessage": message, "errorPayload": payload }],
    })
}

/// Which payload an action type takes.
fn payload_key(action_type: &str) -> &'static [&'static str] {
    match action_type {
        "STATUS_UPDATE" => &["status"],
        "ANALYST_VERDICT_UPDATE" => &["analystVerdict"],
        "SET_TICKET_ID" => &["ticketId"],
        "ADD_NOTE" => &["note", "formattedNote"],
        "ASSIGN_USER" => &["assignUser"],
        _ => &[],
    }
}

pub(super) fn trigger(ctx: &Ctx<'_>, a: &Value) -> Result<Value, Refusal> {
    let (defs, targets, unfiltered, named) = {
        let w = ctx.console.borrow();
        let reach = Reach::new(&ctx.token.scope, &a["scope"], &a["viewType"], &w)?;
        let selection = filter::or_selection(&a["filter"])?;
        // As the schema says, no filter acts on every alert in scope; the simulator reads an empty
        // one (`{"or": []}`, `{"or": [{"and": []}]}`) the same way, the pessimistic reading.
        let unfiltered = selection.is_empty();
        let targets: Vec<usize> = (0..w.uam.alerts.len())
            .filter(|&i| {
                let al = &w.uam.alerts[i];
                reach.covers(al) && (unfiltered || selection.matches(&w, al))
            })
            .collect();
        // Every action is checked before any runs: a refusal changes nothing.
        let mut defs: Vec<(ActionDef, Value)> = Vec::new();
        for act in a["actions"].as_array().into_iter().flatten() {
            let id = act["id"].as_str().unwrap_or_default();
            let Some(def) = w.uam.actions.iter().find(|d| d.id == id) else {
                return Ok(trigger_error(format!("Action '{id}' is not available"), Value::Null));
            };
            let payload = act["payload"].as_object().cloned().unwrap_or_default();
            let given: Vec<&String> = payload.iter().filter(|(_, v)| !v.is_null()).map(|(k, _)| k).collect();
            if given.len() > 1 {
                return Ok(trigger_error(
                    "Only one type of payload can be defined in the input argument".into(),
                    Value::Null,
                ));
            }
            if !given.iter().all(|k| payload_key(def.action_type).contains(&k.as_str())) || given.is_empty() {
                return Ok(trigger_error(
                    format!(
                        "Action '{id}' ({}) needs a payload of {:?}",
                        def.action_type,
                        payload_key(def.action_type)
                    ),
                    Value::Null,
                ));
            }
            let body = payload[given[0].as_str()].clone();
            defs.push((def.clone(), json!({ given[0].clone(): body })));
        }
        if targets.len() > w.uam.trigger_limit {
            return Ok(trigger_error(
                format!(
                    "Too many alerts in one request: {} (limit {})",
                    targets.len(),
                    w.uam.trigger_limit
                ),
                json!({"__typename": "ActionsErrorLimitPayload", "limit": w.uam.trigger_limit}),
            ));
        }
        (defs, targets, unfiltered, selection.named_ids())
    };
    let mut w = ctx.console.borrow_mut();
    let target_ids: Vec<String> = targets.iter().map(|&i| w.uam.alerts[i].id.clone()).collect();
    let missing: Vec<String> = named.into_iter().filter(|id| !target_ids.contains(id)).collect();
    let user = ctx.token.user_name.clone();
    let mut results = Vec::new();
    for (def, payload) in defs {
        let mut record = UamAction {
            action_id: def.id.clone(),
            action_type: def.action_type.to_owned(),
            payload: payload.clone(),
            alert_ids: target_ids.clone(),
            success: Vec::new(),
            skip: Vec::new(),
            failure: Vec::new(),
            unfiltered,
        };
        let mut skips = Vec::new();
        let mut failures: Vec<Value> = missing
            .iter()
            .map(|id| json!({"id": id, "errorType": "ALERT_NOT_FOUND", "errorMessage": "Alert not found"}))
            .collect();
        for &i in &targets {
            let id = w.uam.alerts[i].id.clone();
            if !ctx.token.can_write {
                failures
                    .push(json!({"id": id, "errorType": "MISSING_PERMISSION", "errorMessage": "Missing permission"}));
                record.failure.push(id);
                continue;
            }
            match w.uam.alerts[i].outcome.clone() {
                ActionOutcome::Fail { error_type } => {
                    failures.push(json!({"id": id, "errorType": error_type, "errorMessage": "Action failed"}));
                    record.failure.push(id);
                    continue;
                }
                ActionOutcome::Skip { skip_type } => {
                    skips.push(json!({"id": id, "skipType": skip_type, "skipMessage": "Action skipped"}));
                    record.skip.push(id);
                    continue;
                }
                ActionOutcome::Apply => {}
            }
            if apply(&mut w, i, def.action_type, &payload, &user)? {
                w.mirror_twin(i);
                record.success.push(id);
            } else {
                skips.push(json!({"id": id, "skipType": "NO_CHANGE", "skipMessage": "Value already set"}));
                record.skip.push(id);
            }
        }
        record.failure.extend(missing.iter().cloned());
        results.push(json!({
            "actionId": def.id,
            "alertCount": record.success.len(),
            "success": record.success.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
            "skip": skips,
            "failure": failures,
        }));
        w.uam.applied.push(record);
    }
    Ok(json!({ "__typename": "ActionsTriggered", "actions": results }))
}

/// Applies one action to one alert; false when it changed nothing (a `NO_CHANGE` skip).
fn apply(w: &mut Console, i: usize, action_type: &str, payload: &Value, user: &str) -> Result<bool, Refusal> {
    let value = |k: &str| payload[k]["value"].as_str().map(str::to_owned);
    match action_type {
        "STATUS_UPDATE" | "ANALYST_VERDICT_UPDATE" | "SET_TICKET_ID" => {
            let new = match action_type {
                "STATUS_UPDATE" => value("status"),
                "ANALYST_VERDICT_UPDATE" => value("analystVerdict"),
                _ => value("ticketId"),
            }
            .unwrap_or_default();
            if action_type == "ANALYST_VERDICT_UPDATE" && !is_enum_value("AnalystVerdict", &new) {
                return Err(format!("'{new}' is not an AnalystVerdict"));
            }
            let now = w.uam.write_time();
            let a = &mut w.uam.alerts[i];
            let slot = match action_type {
                "STATUS_UPDATE" => &mut a.status,
                "ANALYST_VERDICT_UPDATE" => &mut a.verdict,
                _ => a.ticket_id.get_or_insert_with(String::new),
            };
            if *slot == new {
                return Ok(false);
            }
            *slot = new;
            a.updated_at = now;
            Ok(true)
        }
        "ADD_NOTE" => {
            let (text, content_type) = match value("note") {
                Some(t) => (t, "PLAIN_TEXT".to_owned()),
                None => {
                    let f = &payload["formattedNote"];
                    (
                        f["text"]
                            .as_str()
                            .or(f["plainText"].as_str())
                            .unwrap_or_default()
                            .to_owned(),
                        f["type"].as_str().unwrap_or("PLAIN_TEXT").to_owned(),
                    )
                }
            };
            w.uam.add_note(i, &text, &content_type, user, &user_id(user));
            Ok(true)
        }
        // Assignment is accepted and recorded; the simulator keeps no user directory.
        _ => Ok(true),
    }
}

pub(super) fn add_note(ctx: &Ctx<'_>, a: &Value) -> Result<Value, Refusal> {
    let i = ctx.visible(a["alertId"].as_str().unwrap_or_default())?;
    if !ctx.token.can_write {
        return Err("MISSING_PERMISSION: the token may not add notes".into());
    }
    let text = a["text"].as_str().unwrap_or_default();
    if text.is_empty() {
        return Err("Note text must not be empty".into());
    }
    let content_type = a["type"].as_str().unwrap_or("PLAIN_TEXT");
    let user = ctx.token.user_name.clone();
    let mut w = ctx.console.borrow_mut();
    w.uam.add_note(i, text, content_type, &user, &user_id(&user));
    Ok(json!({ "data": render::notes(&w.uam.alerts[i]) }))
}
