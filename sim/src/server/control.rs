//! The control API under `/_sim`: faults, tokens, settings, the request log and stats, and
//! changes a test makes to the console's state.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::Shr;
use super::threats::{STATUSES, VERDICTS};
use crate::control::RequestLogEntry;
use crate::faults::FaultRule;
use crate::render;
use crate::world::{CursorEnd, TokenSpec};

pub(super) async fn ctl_add_fault(State(s): State<Shr>, Json(rule): Json<FaultRule>) -> StatusCode {
    s.console().faults.add(rule);
    StatusCode::NO_CONTENT
}

pub(super) async fn ctl_clear_faults(State(s): State<Shr>) -> StatusCode {
    s.console().faults.clear();
    StatusCode::NO_CONTENT
}

pub(super) async fn ctl_add_token(State(s): State<Shr>, Json(spec): Json<TokenSpec>) -> StatusCode {
    s.console().tokens.insert(spec.token.clone(), spec);
    StatusCode::NO_CONTENT
}

#[derive(serde::Deserialize)]
pub(super) struct Settings {
    cursor_end: Option<CursorEnd>,
}

pub(super) async fn ctl_settings(State(s): State<Shr>, Json(settings): Json<Settings>) -> StatusCode {
    if let Some(c) = settings.cursor_end {
        s.console().cursor_end = c;
    }
    StatusCode::NO_CONTENT
}

pub(super) async fn ctl_requests(State(s): State<Shr>) -> Json<Vec<RequestLogEntry>> {
    Json(s.requests.lock().unwrap_or_else(|e| e.into_inner()).clone())
}

pub(super) async fn ctl_clear_requests(State(s): State<Shr>) -> StatusCode {
    s.requests.lock().unwrap_or_else(|e| e.into_inner()).clear();
    s.counts.lock().unwrap_or_else(|e| e.into_inner()).clear();
    StatusCode::NO_CONTENT
}

pub(super) async fn ctl_stats(State(s): State<Shr>) -> Json<Value> {
    let counts = s.counts.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let w = s.console();
    Json(json!({
        "accounts": w.accounts.len(),
        "sites": w.sites.len(),
        "agents": w.agents.len(),
        "threats": w.threats.len(),
        "cloud_alerts": w.alerts.len(),
        "unified_alerts": w.uam.alerts.len(),
        "uam_peak_per_second": w.uam.peak_per_second,
        "uam_throttled": w.uam.throttled,
        "requests": counts,
    }))
}

/// A threat's current state and notes, for tests to check what a write did.
pub(super) async fn ctl_threat(State(s): State<Shr>, Path(id): Path<String>) -> Result<Json<Value>, StatusCode> {
    let w = s.console();
    let idx = id
        .parse::<u64>()
        .ok()
        .and_then(|id| w.threat_index.get(&id).copied())
        .ok_or(StatusCode::NOT_FOUND)?;
    let t = &w.threats[idx];
    let mut v = render::threat(&w, t);
    v["notes"] = Value::Array(t.notes.iter().map(render::note).collect());
    Ok(Json(v))
}

/// A change made by a person in the S1 console (not through the API client under test).
#[derive(serde::Deserialize)]
pub(super) struct ConsoleUpdate {
    #[serde(rename = "incidentStatus")]
    incident_status: Option<String>,
    #[serde(rename = "analystVerdict")]
    analyst_verdict: Option<String>,
}

pub(super) async fn ctl_console_update(
    State(s): State<Shr>,
    Path(id): Path<String>,
    Json(u): Json<ConsoleUpdate>,
) -> Result<StatusCode, (StatusCode, String)> {
    let mut w = s.console();
    let idx = id
        .parse::<u64>()
        .ok()
        .and_then(|id| w.threat_index.get(&id).copied())
        .ok_or((StatusCode::NOT_FOUND, format!("no threat {id}")))?;
    let pick = |v: Option<String>, allowed: &[&'static str]| -> Result<Option<&'static str>, (StatusCode, String)> {
        v.map(|v| {
            allowed
                .iter()
                .find(|a| **a == v)
                .copied()
                .ok_or((StatusCode::BAD_REQUEST, format!("{v} is not one of {allowed:?}")))
        })
        .transpose()
    };
    let status = pick(u.incident_status, &STATUSES)?;
    let verdict = pick(u.analyst_verdict, &VERDICTS)?;
    let now = w.write_time();
    let t = &mut w.threats[idx];
    if let Some(st) = status {
        t.incident_status = st;
    }
    if let Some(v) = verdict {
        t.verdict = v;
    }
    t.updated_at = now;
    w.mirror_threat(idx);
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn ctl_add_threats(
    State(s): State<Shr>,
    Json(spec): Json<crate::world::NewThreats>,
) -> Result<Json<Vec<String>>, (StatusCode, String)> {
    let mut w = s.console();
    w.add_threats(&spec).map(Json).map_err(|e| (StatusCode::BAD_REQUEST, e))
}

pub(super) async fn ctl_change_agent(
    State(s): State<Shr>,
    Path(uuid): Path<String>,
    Json(c): Json<crate::world::AgentChange>,
) -> Result<StatusCode, (StatusCode, String)> {
    s.console()
        .change_agent(&uuid, &c)
        .map(|()| StatusCode::NO_CONTENT)
        .map_err(|e| (StatusCode::BAD_REQUEST, e))
}

// ---- unified alerts (UAM) --------------------------------------------------------------------

pub(super) async fn ctl_add_unified(
    State(s): State<Shr>,
    Json(spec): Json<crate::uam::NewUnifiedAlerts>,
) -> Result<Json<Vec<String>>, (StatusCode, String)> {
    let mut w = s.console();
    w.add_unified_alerts(&spec)
        .map(Json)
        .map_err(|e| (StatusCode::BAD_REQUEST, e))
}

/// Every unified alert's id, `externalId` and source, in the order they were made.
pub(super) async fn ctl_unified_ids(State(s): State<Shr>) -> Json<Value> {
    let w = s.console();
    Json(Value::Array(
        w.uam
            .alerts
            .iter()
            .map(|a| json!({"id": a.id, "externalId": a.external_id, "source": a.source}))
            .collect(),
    ))
}

/// A unified alert as UAM serves it, plus its `notes`.
pub(super) async fn ctl_unified(State(s): State<Shr>, Path(id): Path<String>) -> Result<Json<Value>, StatusCode> {
    let w = s.console();
    let i = w.uam.find(&id).ok_or(StatusCode::NOT_FOUND)?;
    let mut v = crate::uam::render::alert(&w, &w.uam.alerts[i]);
    v["notes"] = crate::uam::render::notes(&w.uam.alerts[i]);
    Ok(Json(v))
}

pub(super) async fn ctl_change_unified(
    State(s): State<Shr>,
    Path(id): Path<String>,
    Json(c): Json<crate::uam::UnifiedAlertChange>,
) -> Result<StatusCode, (StatusCode, String)> {
    s.console()
        .change_unified_alert(&id, &c)
        .map(|()| StatusCode::NO_CONTENT)
        .map_err(|e| (StatusCode::BAD_REQUEST, e))
}

pub(super) async fn ctl_uam_actions(State(s): State<Shr>) -> Json<Vec<crate::uam::UamAction>> {
    Json(s.console().uam.applied.clone())
}

pub(super) async fn ctl_rotate_uam_actions(State(s): State<Shr>) -> StatusCode {
    s.console().uam.rotate_action_ids();
    StatusCode::NO_CONTENT
}

#[derive(serde::Deserialize)]
pub(super) struct UamSettings {
    needs_scoped_token: Option<bool>,
    trigger_limit: Option<usize>,
    /// `0` lifts the limit.
    rate_limit: Option<u32>,
}

pub(super) async fn ctl_uam_settings(State(s): State<Shr>, Json(u): Json<UamSettings>) -> StatusCode {
    let mut w = s.console();
    if let Some(b) = u.needs_scoped_token {
        w.uam.needs_scoped_token = b;
    }
    if let Some(n) = u.trigger_limit {
        w.uam.trigger_limit = n;
    }
    if let Some(n) = u.rate_limit {
        w.uam.rate_limit = (n > 0).then_some(n);
    }
    StatusCode::NO_CONTENT
}
