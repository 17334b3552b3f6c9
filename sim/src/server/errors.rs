//! S1's error envelope (`{"errors": [{code, title, detail}]}`) and the handlers' result type.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub(super) struct ApiError {
    status: StatusCode,
    code: i64,
    title: &'static str,
    detail: Option<String>,
    pub(super) retry_after: Option<String>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: i64, title: &'static str, detail: Option<&str>) -> Self {
        Self {
            status,
            code,
            title,
            detail: detail.map(str::to_owned),
            retry_after: None,
        }
    }
    pub(super) fn validation(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: 4000010,
            title: "Validation Error",
            detail: Some(detail.into()),
            retry_after: None,
        }
    }
    pub(super) fn auth() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, 4010010, "Authentication Failed", None)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"errors": [{"code": self.code, "title": self.title, "detail": self.detail}]});
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(ra) = self.retry_after.and_then(|r| HeaderValue::from_str(&r).ok()) {
            resp.headers_mut().insert(header::RETRY_AFTER, ra);
        }
        resp
    }
}

pub(super) type ApiResult = Result<Response, ApiError>;

pub(super) fn ok(v: Value) -> ApiResult {
    Ok(Json(v).into_response())
}
