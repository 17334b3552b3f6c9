//! Threats: the list, incident status, analyst verdict, notes and external ticket id.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::Shr;
use super::errors::{ApiError, ApiResult, ok};
use super::request::{ListReq, authenticate, data_field, id_set, parse_body, sort_key};
use crate::render;
use crate::world::{Note, TokenSpec, World, micros};

const THREAT_FILTERS: [&str; 16] = [
    "updatedAt__gte",
    "updatedAt__gt",
    "updatedAt__lte",
    "updatedAt__lt",
    "createdAt__gte",
    "createdAt__gt",
    "createdAt__lte",
    "createdAt__lt",
    "ids",
    "siteIds",
    "accountIds",
    "agentIds",
    "incidentStatuses",
    "analystVerdicts",
    "contentHashes",
    "tenant",
];

pub(super) async fn get_threats(
    State(s): State<Shr>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult {
    let w = s.console();
    let token = authenticate(&w, &headers)?;
    let q = ListReq::parse(&pairs, &THREAT_FILTERS, &["updatedAt", "createdAt", "id"], "createdAt")?;
    let updated = q.range("updatedAt")?;
    let created = q.range("createdAt")?;
    let ids = id_set(q.csv("ids"));
    let sites = id_set(q.csv("siteIds"));
    let accounts = id_set(q.csv("accountIds"));
    let agents = id_set(q.csv("agentIds"));
    let statuses = q.csv("incidentStatuses");
    let verdicts = q.csv("analystVerdicts");
    let hashes = q.csv("contentHashes");
    let matches: Vec<(i128, u64, usize)> = w
        .threats
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            let agent = &w.agents[t.agent];
            let site = &w.sites[agent.site];
            let (u, c) = (micros(t.updated_at), micros(t.created_at));
            w.site_visible(&token.scope, agent.site)
                && updated.contains(u)
                && created.contains(c)
                && ids.as_ref().is_none_or(|s| s.contains(&t.id))
                && sites.as_ref().is_none_or(|s| s.contains(&site.id))
                && accounts
                    .as_ref()
                    .is_none_or(|s| s.contains(&w.accounts[site.account].id))
                && agents.as_ref().is_none_or(|s| s.contains(&agent.id))
                && statuses
                    .as_ref()
                    .is_none_or(|s| s.iter().any(|x| x == t.incident_status))
                && verdicts.as_ref().is_none_or(|s| s.iter().any(|x| x == t.verdict))
                && hashes
                    .as_ref()
                    .is_none_or(|s| s.iter().any(|x| x.eq_ignore_ascii_case(&t.sha1)))
        })
        .map(|(i, t)| (sort_key(&q.sort_by, t.id, i, t.created_at, t.updated_at), t.id, i))
        .collect();
    let (page, pagination) = q.paginate(matches, w.cursor_end);
    let data: Vec<Value> = page.into_iter().map(|i| render::threat(&w, &w.threats[i])).collect();
    ok(json!({"data": data, "pagination": pagination}))
}

/// The threats a write body's `filter` selects, within the token's scope.
fn select_threats(w: &World, token: &TokenSpec, body: &Value) -> Result<Vec<usize>, ApiError> {
    let filter = body
        .get("filter")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::validation("filter: Missing data for required field."))?;
    let mut ids = None;
    let mut sites = None;
    let mut accounts = None;
    for (k, v) in filter {
        let list = || -> Result<std::collections::HashSet<u64>, ApiError> {
            let arr = v
                .as_array()
                .ok_or_else(|| ApiError::validation(format!("filter.{k}: Not a valid list.")))?;
            arr.iter()
                .map(|x| {
                    x.as_str()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| ApiError::validation(format!("filter.{k}: Not a valid id.")))
                })
                .collect()
        };
        match k.as_str() {
            "ids" => ids = Some(list()?),
            "siteIds" => sites = Some(list()?),
            "accountIds" => accounts = Some(list()?),
            "tenant" => {}
            other => return Err(ApiError::validation(format!("filter.{other}: Unknown field."))),
        }
    }
    // Like S1, an empty filter selects everything in scope.
    Ok(w.threats
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            let site_idx = w.agent_site(t.agent);
            let site = &w.sites[site_idx];
            w.site_visible(&token.scope, site_idx)
                && ids
                    .as_ref()
                    .is_none_or(|s: &std::collections::HashSet<u64>| s.contains(&t.id))
                && sites
                    .as_ref()
                    .is_none_or(|s: &std::collections::HashSet<u64>| s.contains(&site.id))
                && accounts
                    .as_ref()
                    .is_none_or(|s: &std::collections::HashSet<u64>| s.contains(&w.accounts[site.account].id))
        })
        .map(|(i, _)| i)
        .collect())
}

pub(super) const STATUSES: [&str; 3] = ["unresolved", "in_progress", "resolved"];
pub(super) const VERDICTS: [&str; 4] = ["undefined", "true_positive", "false_positive", "suspicious"];

pub(super) async fn post_incident(State(s): State<Shr>, headers: HeaderMap, raw: axum::body::Bytes) -> ApiResult {
    let body = parse_body(&raw)?;
    let mut w = s.console();
    let token = authenticate(&w, &headers)?;
    let status = data_field(&body, "incidentStatus", &STATUSES)?
        .ok_or_else(|| ApiError::validation("data.incidentStatus: Missing data for required field."))?;
    let verdict = data_field(&body, "analystVerdict", &VERDICTS)?;
    let selected = select_threats(&w, &token, &body)?;
    let mut affected = 0;
    let mut details = Vec::new();
    for i in selected {
        let t = &w.threats[i];
        let id = t.id.to_string();
        if !token.can_write {
            details.push(
                json!({"threatId": id, "result": "missing_permissions", "analystVerdict": "missing_permissions"}),
            );
            continue;
        }
        let status_changed = t.incident_status != status;
        let verdict_changed = verdict.is_some_and(|v| v != t.verdict);
        let mut d = json!({"threatId": id, "result": if status_changed { "updated" } else { "already_set" }});
        if verdict.is_some() {
            d["analystVerdict"] = json!(if verdict_changed { "updated" } else { "already_set" });
        }
        details.push(d);
        if status_changed || verdict_changed {
            let now = w.write_time();
            let t = &mut w.threats[i];
            t.incident_status = status;
            if let Some(v) = verdict {
                t.verdict = v;
            }
            t.updated_at = now;
            affected += 1;
            w.mirror_threat(i);
        }
    }
    ok(json!({"data": {"affected": affected, "details": details}}))
}

pub(super) async fn post_verdict(State(s): State<Shr>, headers: HeaderMap, raw: axum::body::Bytes) -> ApiResult {
    let body = parse_body(&raw)?;
    let mut w = s.console();
    let token = authenticate(&w, &headers)?;
    let verdict = data_field(&body, "analystVerdict", &VERDICTS)?
        .ok_or_else(|| ApiError::validation("data.analystVerdict: Missing data for required field."))?;
    let selected = select_threats(&w, &token, &body)?;
    let mut affected = 0;
    let mut details = Vec::new();
    for i in selected {
        let id = w.threats[i].id.to_string();
        let result = if !token.can_write {
            "missing_permissions"
        } else if w.threats[i].verdict == verdict {
            "already_set"
        } else {
            let now = w.write_time();
            let t = &mut w.threats[i];
            t.verdict = verdict;
            t.updated_at = now;
            affected += 1;
            w.mirror_threat(i);
            "updated"
        };
        details.push(json!({"threatId": id, "result": result}));
    }
    ok(json!({"data": {"affected": affected, "details": details}}))
}

pub(super) async fn post_notes(State(s): State<Shr>, headers: HeaderMap, raw: axum::body::Bytes) -> ApiResult {
    let body = parse_body(&raw)?;
    let mut w = s.console();
    let token = authenticate(&w, &headers)?;
    let text = body
        .pointer("/data/text")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::validation("data.text: Missing data for required field."))?
        .to_owned();
    let selected = select_threats(&w, &token, &body)?;
    if !token.can_write {
        return ok(json!({"data": {"affected": 0}}));
    }
    let affected = selected.len();
    for i in selected {
        let now = w.write_time();
        w.next_note += 1;
        let note = Note {
            id: w.next_note,
            text: text.clone(),
            creator: token.user_name.clone(),
            created_at: now,
        };
        let t = &mut w.threats[i];
        t.notes.push(note);
        t.updated_at = now;
    }
    ok(json!({"data": {"affected": affected}}))
}

pub(super) async fn get_notes(
    State(s): State<Shr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult {
    let w = s.console();
    let token = authenticate(&w, &headers)?;
    let q = ListReq::parse(&pairs, &[], &["createdAt", "updatedAt"], "createdAt")?;
    let idx = id
        .parse::<u64>()
        .ok()
        .and_then(|id| w.threat_index.get(&id).copied())
        .filter(|&i| w.site_visible(&token.scope, w.agent_site(w.threats[i].agent)))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, 4040010, "Not Found", Some("Threat not found")))?;
    let t = &w.threats[idx];
    let matches = t
        .notes
        .iter()
        .enumerate()
        .map(|(i, n)| (micros(n.created_at), n.id, i))
        .collect();
    let (page, pagination) = q.paginate(matches, w.cursor_end);
    let data: Vec<Value> = page.into_iter().map(|i| render::note(&t.notes[i])).collect();
    ok(json!({"data": data, "pagination": pagination}))
}

pub(super) async fn post_external_ticket(
    State(s): State<Shr>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> ApiResult {
    let body = parse_body(&raw)?;
    let mut w = s.console();
    let token = authenticate(&w, &headers)?;
    let ticket = body
        .pointer("/data/externalTicketId")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::validation("data.externalTicketId: Missing data for required field."))?
        .to_owned();
    let selected = select_threats(&w, &token, &body)?;
    if !token.can_write {
        return ok(json!({"data": {"affected": 0}}));
    }
    let mut affected = 0;
    for i in selected {
        if w.threats[i].external_ticket_id.as_deref() != Some(ticket.as_str()) {
            let now = w.write_time();
            let t = &mut w.threats[i];
            t.external_ticket_id = Some(ticket.clone());
            t.updated_at = now;
            affected += 1;
        }
    }
    ok(json!({"data": {"affected": affected}}))
}
