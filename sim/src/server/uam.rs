//! `POST /unifiedalerts/graphql`: the UAM GraphQL endpoint (see [`crate::uam`]).

use std::cell::{Cell, RefCell};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::Shr;
use super::errors::ApiError;
use super::request::authenticate_uam;
use crate::faults::FaultKind;
use crate::uam::ctx::Ctx;
use crate::uam::exec::execute;
use crate::uam::schema::check;
use crate::world::TokenScope;

/// A request the endpoint cannot read at all (not JSON, no `query`): HTTP 400 with a GraphQL
/// error, as GraphQL-over-HTTP servers answer.
fn bad_request(message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"errors": [{"message": message.into(), "extensions": {"code": "BAD_REQUEST"}}]})),
    )
        .into_response()
}

pub(super) async fn post_graphql(
    State(s): State<Shr>,
    headers: HeaderMap,
    fault: Option<axum::Extension<FaultKind>>,
    body: Bytes,
) -> Response {
    let mut w = s.console();
    let token = match authenticate_uam(&w, &headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    if w.uam.needs_scoped_token && token.scope == TokenScope::Tenant {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            4030010,
            "Forbidden",
            Some("Unified Alert Management needs an account- or site-scoped API token"),
        )
        .into_response();
    }
    if !w.uam.admit(&token.token, std::time::Instant::now()) {
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, 4290010, "Too Many Requests", None);
        e.retry_after = Some("1".into());
        return e.into_response();
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("The request body is not JSON");
    };
    let Some(query) = request["query"].as_str() else {
        return bad_request("The request has no 'query' string");
    };
    let variables: Map<String, Value> = match &request["variables"] {
        Value::Null => Map::new(),
        Value::Object(m) => m.clone(),
        _ => return bad_request("'variables' must be an object"),
    };
    let operation_name = request["operationName"].as_str();
    let partial = match fault.map(|f| f.0) {
        Some(FaultKind::GraphqlError { code, message }) => {
            let message = message.unwrap_or_else(|| format!("{code}: the request could not be served"));
            return Json(json!({"data": null, "errors": [{"message": message, "extensions": {"code": code}}]}))
                .into_response();
        }
        Some(FaultKind::PartialData) => true,
        _ => false,
    };
    let checked = match check(query, operation_name, &variables) {
        Ok(c) => c,
        Err(errors) => return Json(json!({ "errors": errors })).into_response(),
    };
    let ctx = Ctx {
        console: RefCell::new(&mut w),
        token,
        partial: Cell::new(partial),
    };
    Json(execute(&ctx, &checked)).into_response()
}
