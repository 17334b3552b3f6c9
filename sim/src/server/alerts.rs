//! Cloud-detection alerts: the list, incident status and analyst verdict.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::Shr;
use super::errors::{ApiError, ApiResult, ok};
use super::request::{ListReq, authenticate, data_field, id_set, parse_body};
use super::threats::{STATUSES, VERDICTS};
use crate::render;
use crate::world::micros;

pub(super) async fn get_alerts(
    State(s): State<Shr>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult {
    let w = s.console();
    let token = authenticate(&w, &headers)?;
    let filters = [
        "createdAt__gte",
        "createdAt__gt",
        "createdAt__lte",
        "createdAt__lt",
        "ids",
        "siteIds",
        "accountIds",
        "tenant",
    ];
    let q = ListReq::parse(&pairs, &filters, &["alertInfoCreatedAt", "id"], "alertInfoCreatedAt")?;
    let created = q.range("createdAt")?;
    let ids = id_set(q.csv("ids"));
    let sites = id_set(q.csv("siteIds"));
    let accounts = id_set(q.csv("accountIds"));
    let matches = w
        .alerts
        .iter()
        .enumerate()
        .filter(|(_, a)| {
            let site_idx = w.agent_site(a.agent);
            let site = &w.sites[site_idx];
            w.site_visible(&token.scope, site_idx)
                && created.contains(micros(a.created_at))
                && ids.as_ref().is_none_or(|s| s.contains(&a.id))
                && sites.as_ref().is_none_or(|s| s.contains(&site.id))
                && accounts
                    .as_ref()
                    .is_none_or(|s| s.contains(&w.accounts[site.account].id))
        })
        .map(|(i, a)| {
            (
                if q.sort_by == "id" {
                    a.id as i128
                } else {
                    micros(a.created_at)
                },
                a.id,
                i,
            )
        })
        .collect();
    let (page, pagination) = q.paginate(matches, w.cursor_end);
    let data: Vec<Value> = page
        .into_iter()
        .map(|i| render::cloud_alert(&w, &w.alerts[i]))
        .collect();
    ok(json!({"data": data, "pagination": pagination}))
}

fn alert_update(
    s: &Shr,
    headers: &HeaderMap,
    raw: &[u8],
    field: &str,
    allowed: &[&'static str],
    display: fn(&str) -> &'static str,
) -> ApiResult {
    let body = parse_body(raw)?;
    let mut w = s.console();
    let token = authenticate(&w, headers)?;
    let value = data_field(&body, field, allowed)?
        .ok_or_else(|| ApiError::validation(format!("data.{field}: Missing data for required field.")))?;
    let ids: std::collections::HashSet<u64> = body
        .pointer("/filter/ids")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::validation("filter.ids: Missing data for required field."))?
        .iter()
        .filter_map(|v| v.as_str().and_then(|s| s.parse().ok()))
        .collect();
    let mut affected = 0;
    let now = w.write_time();
    let scope = token.scope.clone();
    let selected: Vec<usize> = (0..w.alerts.len())
        .filter(|&i| ids.contains(&w.alerts[i].id) && w.site_visible(&scope, w.agent_site(w.alerts[i].agent)))
        .collect();
    for i in selected {
        let a = &mut w.alerts[i];
        let shown = display(value);
        let slot = if field == "incidentStatus" {
            &mut a.incident_status
        } else {
            &mut a.verdict
        };
        if token.can_write && *slot != shown {
            *slot = shown;
            a.updated_at = now;
            affected += 1;
        }
    }
    ok(json!({"data": {"affected": affected}}))
}

fn status_display(v: &str) -> &'static str {
    match v {
        "in_progress" => "In progress",
        "resolved" => "Resolved",
        _ => "Unresolved",
    }
}

fn verdict_display(v: &str) -> &'static str {
    match v {
        "true_positive" => "True positive",
        "false_positive" => "False positive",
        "suspicious" => "Suspicious",
        _ => "Undefined",
    }
}

pub(super) async fn post_alert_incident(State(s): State<Shr>, headers: HeaderMap, raw: axum::body::Bytes) -> ApiResult {
    alert_update(&s, &headers, &raw, "incidentStatus", &STATUSES, status_display)
}

pub(super) async fn post_alert_verdict(State(s): State<Shr>, headers: HeaderMap, raw: axum::body::Bytes) -> ApiResult {
    alert_update(&s, &headers, &raw, "analystVerdict", &VERDICTS, verdict_display)
}
