//! Assets: agents, accounts and sites.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::Shr;
use super::errors::{ApiError, ApiResult, ok};
use super::request::{ListReq, authenticate, id_set, sort_key};
use crate::render;
use crate::world::{TokenScope, micros};

pub(super) async fn get_agents(
    State(s): State<Shr>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult {
    let w = s.console();
    let token = authenticate(&w, &headers)?;
    let filters = [
        "siteIds",
        "accountIds",
        "ids",
        "uuids",
        "isDecommissioned",
        "isActive",
        "updatedAt__gte",
        "updatedAt__gt",
        "updatedAt__lte",
        "updatedAt__lt",
    ];
    let q = ListReq::parse(
        &pairs,
        &filters,
        &["id", "updatedAt", "createdAt", "computerName"],
        "id",
    )?;
    let updated = q.range("updatedAt")?;
    let ids = id_set(q.csv("ids"));
    let sites = id_set(q.csv("siteIds"));
    let accounts = id_set(q.csv("accountIds"));
    let uuids = q.csv("uuids");
    let bools = |k: &str| -> Result<Option<Vec<bool>>, ApiError> {
        q.csv(k)
            .map(|v| {
                v.iter()
                    .map(|b| match b.to_ascii_lowercase().as_str() {
                        "true" => Ok(true),
                        "false" => Ok(false),
                        _ => Err(ApiError::validation(format!("{k}: Not a valid boolean."))),
                    })
                    .collect()
            })
            .transpose()
    };
    // Decommissioned agents are hidden unless asked for, as on most consoles.
    let decom = bools("isDecommissioned")?.unwrap_or_else(|| vec![false]);
    let active = bools("isActive")?;
    let matches = w
        .agents
        .iter()
        .enumerate()
        .filter(|(_, a)| {
            let site = &w.sites[a.site];
            !a.deleted
                && w.site_visible(&token.scope, a.site)
                && decom.contains(&a.is_decommissioned)
                && active.as_ref().is_none_or(|v| v.contains(&a.is_active))
                && updated.contains(micros(a.updated_at))
                && ids.as_ref().is_none_or(|s| s.contains(&a.id))
                && sites.as_ref().is_none_or(|s| s.contains(&site.id))
                && accounts
                    .as_ref()
                    .is_none_or(|s| s.contains(&w.accounts[site.account].id))
                && uuids
                    .as_ref()
                    .is_none_or(|s| s.iter().any(|u| u.eq_ignore_ascii_case(&a.uuid)))
        })
        .map(|(i, a)| (sort_key(&q.sort_by, a.id, i, a.created_at, a.updated_at), a.id, i))
        .collect();
    let (page, pagination) = q.paginate(matches, w.cursor_end);
    let data: Vec<Value> = page.into_iter().map(|i| render::agent(&w, &w.agents[i])).collect();
    ok(json!({"data": data, "pagination": pagination}))
}

pub(super) async fn get_accounts(
    State(s): State<Shr>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult {
    let w = s.console();
    let token = authenticate(&w, &headers)?;
    if matches!(token.scope, TokenScope::Sites(_)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            4030010,
            "Action is not allowed to site users",
            None,
        ));
    }
    let q = ListReq::parse(
        &pairs,
        &["accountIds", "ids", "states"],
        &["id", "name", "createdAt", "updatedAt"],
        "id",
    )?;
    let ids = id_set(q.csv("accountIds").or_else(|| q.csv("ids")));
    let states = q.csv("states");
    let matches = w
        .accounts
        .iter()
        .enumerate()
        .filter(|(_, a)| {
            let visible = match &token.scope {
                TokenScope::Accounts(v) => v.contains(&a.id.to_string()),
                _ => true,
            };
            visible
                && ids.as_ref().is_none_or(|s| s.contains(&a.id))
                && states.as_ref().is_none_or(|s| s.iter().any(|x| x == a.state))
        })
        .map(|(i, a)| (sort_key(&q.sort_by, a.id, i, a.created_at, a.updated_at), a.id, i))
        .collect();
    let (page, pagination) = q.paginate(matches, w.cursor_end);
    let data: Vec<Value> = page.into_iter().map(|i| render::account(&w, i)).collect();
    ok(json!({"data": data, "pagination": pagination}))
}

pub(super) async fn get_sites(
    State(s): State<Shr>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult {
    let w = s.console();
    let token = authenticate(&w, &headers)?;
    let q = ListReq::parse(
        &pairs,
        &["accountIds", "siteIds", "state"],
        &["id", "name", "createdAt", "updatedAt"],
        "id",
    )?;
    let accounts = id_set(q.csv("accountIds"));
    let ids = id_set(q.csv("siteIds"));
    let state = q.params.get("state").cloned();
    let matches = w
        .sites
        .iter()
        .enumerate()
        .filter(|(i, st)| {
            w.site_visible(&token.scope, *i)
                && ids.as_ref().is_none_or(|s| s.contains(&st.id))
                && accounts.as_ref().is_none_or(|s| s.contains(&w.accounts[st.account].id))
                && state.as_ref().is_none_or(|s| s == st.state)
        })
        .map(|(i, st)| (sort_key(&q.sort_by, st.id, i, st.created_at, st.updated_at), st.id, i))
        .collect::<Vec<_>>();
    let active: usize = matches
        .iter()
        .map(|m| w.agents.iter().filter(|a| a.site == m.2 && a.is_active).count())
        .sum();
    let total = matches.len() * 50;
    let (page, pagination) = q.paginate(matches, w.cursor_end);
    let sites: Vec<Value> = page.into_iter().map(|i| render::site(&w, i)).collect();
    ok(
        json!({"data": {"allSites": {"activeLicenses": active, "totalLicenses": total}, "sites": sites}, "pagination": pagination}),
    )
}
