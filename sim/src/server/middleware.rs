//! Middleware on the S1 routes: request log, counters, faults.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::errors::ApiError;
use super::{API, ConnReset, Shr};
use crate::control::RequestLogEntry;
use crate::faults::FaultKind;

/// Requests kept in the log the control API serves; older ones are dropped.
const REQUEST_LOG_CAP: usize = 100_000;

pub(super) async fn faults_and_log(State(shared): State<Shr>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path()
        .strip_prefix(API)
        .unwrap_or(req.uri().path())
        .to_owned();
    let query: Vec<(String, String)> = req.uri().query().map(url_pairs).unwrap_or_default();
    // Bodies are small JSON documents; keep a parsed copy for tests that check what was sent.
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, 1 << 20).await.unwrap_or_default();
    let logged_body = if bytes.is_empty() {
        None
    } else {
        Some(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    };
    let req = Request::from_parts(parts, Body::from(bytes));
    {
        let at_ms = shared.started.elapsed().as_millis() as u64;
        let mut log = shared.requests.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() >= REQUEST_LOG_CAP {
            log.remove(0);
        }
        log.push(RequestLogEntry {
            method: method.clone(),
            path: path.clone(),
            query,
            body: logged_body,
            at_ms,
        });
    }
    *shared
        .counts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(format!("{method} {path}"))
        .or_default() += 1;

    let fault = shared.console().faults.take(&method, &path);
    match fault {
        None => next.run(req).await,
        Some(FaultKind::Status {
            status,
            retry_after,
            code,
        }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let (default_code, title) = match status.as_u16() {
                429 => (4290010, "Too Many Requests"),
                401 => (4010010, "Authentication Failed"),
                403 => (4030010, "Forbidden"),
                400 => (4000010, "Validation Error"),
                s if s >= 500 => (5000010, "Internal server error"),
                _ => (4000000, "Error"),
            };
            let mut e = ApiError::new(status, code.unwrap_or(default_code), title, None);
            e.retry_after = retry_after;
            e.into_response()
        }
        Some(FaultKind::Slow { millis }) => {
            tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
            next.run(req).await
        }
        Some(FaultKind::Truncate) => {
            let resp = next.run(req).await;
            let (mut parts, body) = resp.into_parts();
            let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
            let cut = bytes.slice(..bytes.len() / 2);
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(cut.len()));
            Response::from_parts(parts, Body::from(cut))
        }
        // Faults inside a GraphQL answer are the handler's to make.
        Some(f @ (FaultKind::GraphqlError { .. } | FaultKind::PartialData)) => {
            let mut req = req;
            req.extensions_mut().insert(f);
            next.run(req).await
        }
        Some(FaultKind::Reset) => {
            if let Some(ConnReset(n)) = req.extensions().get::<ConnReset>() {
                n.notify_one();
            }
            std::future::pending::<Response>().await
        }
    }
}

fn url_pairs(q: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}
