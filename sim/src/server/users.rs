//! Users, API tokens and system endpoints.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::Shr;
use super::errors::{ApiError, ApiResult, ok};
use super::request::{authenticate, parse_body};
use crate::render;
use crate::world::TokenScope;

pub(super) async fn post_token_details(State(s): State<Shr>, headers: HeaderMap, raw: axum::body::Bytes) -> ApiResult {
    let body = parse_body(&raw)?;
    let w = s.console();
    authenticate(&w, &headers)?;
    let asked = body
        .pointer("/data/apiToken")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::validation("data.apiToken: Missing data for required field."))?;
    let spec = w
        .tokens
        .get(asked)
        .ok_or_else(|| ApiError::validation("Invalid API token"))?;
    let created = spec.expires_at - time::Duration::days(30);
    ok(json!({"data": {"createdAt": render::ts(created), "expiresAt": render::ts(spec.expires_at)}}))
}

pub(super) async fn post_generate_token(State(s): State<Shr>, headers: HeaderMap, raw: axum::body::Bytes) -> ApiResult {
    let _ = parse_body(&raw)?;
    let mut w = s.console();
    let old = authenticate(&w, &headers)?;
    let new_token = w.random_token();
    let mut spec = old.clone();
    spec.token = new_token.clone();
    spec.expires_at = OffsetDateTime::now_utc() + time::Duration::days(30);
    // Generating a token revokes the caller's previous one, as on S1.
    w.tokens.remove(&old.token);
    w.tokens.insert(new_token.clone(), spec);
    ok(json!({"data": {"token": new_token}}))
}

pub(super) async fn get_user(
    State(s): State<Shr>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult {
    let w = s.console();
    let token = authenticate(&w, &headers)?;
    if let Some((k, _)) = pairs
        .iter()
        .find(|(k, _)| !["accountIds", "siteIds", "groupIds", "tenant"].contains(&k.as_str()))
    {
        return Err(ApiError::validation(format!("Unknown field: {k}")));
    }
    let (scope, roles): (&str, Vec<Value>) = match &token.scope {
        TokenScope::Tenant => ("tenant", vec![]),
        TokenScope::Accounts(ids) => ("account", ids.iter().map(|id| json!({"id": id, "name": "Account", "accountName": "Account", "roleName": if token.can_write { "Admin" } else { "Viewer" }, "roles": [if token.can_write { "Admin" } else { "Viewer" }]})).collect()),
        TokenScope::Sites(ids) => ("site", ids.iter().map(|id| json!({"id": id, "name": "Site", "accountName": "Account", "roleName": if token.can_write { "Admin" } else { "Viewer" }, "roles": [if token.can_write { "Admin" } else { "Viewer" }]})).collect()),
    };
    let site_roles: Vec<Value> = if scope == "site" { roles.clone() } else { vec![] };
    let scope_roles: Vec<Value> = if scope == "site" { vec![] } else { roles };
    ok(json!({"data": {
        "id": "1000000000000000950",
        "email": "integration@example.com",
        "fullName": token.user_name,
        "scope": scope,
        "scopeRoles": scope_roles,
        "siteRoles": site_roles,
        "canGenerateApiToken": true,
        "apiToken": {"createdAt": render::ts(token.expires_at - time::Duration::days(30)), "expiresAt": render::ts(token.expires_at)},
        "twoFaEnabled": false,
        "emailVerified": true,
        "source": "mgmt",
    }}))
}

pub(super) async fn get_system_status() -> ApiResult {
    ok(json!({"data": {"health": "ok"}}))
}

pub(super) async fn get_system_info(State(s): State<Shr>, headers: HeaderMap) -> ApiResult {
    let w = s.console();
    authenticate(&w, &headers)?;
    ok(
        json!({"data": {"version": "sim-1.0", "build": "1", "release": "sim", "patch": "0", "latestAgentVersion": "24.1.4.257"}}),
    )
}
